//! Unit tests of properties that need no reference values: symmetry, p-values in [0, 1], the
//! direction of one-sided alternatives, consistency of the binomial functions, quantile ranks
//! and degenerate inputs.

use super::special::{binom_cdf, binom_pmf, binom_sf};
use super::*;
use crate::window::sketch::Moments;

/// Deterministic pseudo-random count vectors (64-bit LCG).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }

    fn counts(&mut self, len: usize, max: u64, zero_every: u64) -> Vec<u64> {
        (0..len)
            .map(|_| {
                if self.next().is_multiple_of(zero_every) {
                    0
                } else {
                    self.next() % max
                }
            })
            .collect()
    }
}

const ALL: [Alternative; 3] = [
    Alternative::TwoSided,
    Alternative::Less,
    Alternative::Greater,
];

fn random_pairs() -> Vec<(Vec<u64>, Vec<u64>)> {
    let mut rng = Lcg(42);
    let mut out = Vec::new();
    for i in 0..40 {
        let len = 2 + (rng.next() % 60) as usize;
        let max = [3, 20, 1000, 100_000][i % 4];
        out.push((rng.counts(len, max, 3), rng.counts(len, max, 3)));
    }
    out
}

fn in_unit(p: f64) -> bool {
    (0.0..=1.0).contains(&p)
}

#[test]
fn two_sided_tests_are_symmetric_and_p_in_unit_interval() {
    for (a, b) in random_pairs() {
        let ab = mann_whitney_u(&a, &b, Alternative::TwoSided);
        let ba = mann_whitney_u(&b, &a, Alternative::TwoSided);
        assert_eq!(ab.is_some(), ba.is_some());
        if let (Some(x), Some(y)) = (ab, ba) {
            assert!((x.p_value - y.p_value).abs() <= 1e-12 * x.p_value.max(1e-300));
        }
        let ab = ks_2samp(&a, &b, Alternative::TwoSided);
        let ba = ks_2samp(&b, &a, Alternative::TwoSided);
        assert_eq!(ab, ba);
        let ab = anderson_ksamp(&a, &b);
        let ba = anderson_ksamp(&b, &a);
        if let (Some(x), Some(y)) = (ab, ba) {
            assert!((x.statistic - y.statistic).abs() <= 1e-9 * x.statistic.abs().max(1.0));
        }
        let ab = chi_square(&a, &b);
        let ba = chi_square(&b, &a);
        if let (Some(x), Some(y)) = (ab, ba) {
            assert!((x.statistic - y.statistic).abs() <= 1e-9 * x.statistic.max(1.0));
        }
        assert_eq!(jensen_shannon(&a, &b), jensen_shannon(&b, &a));
        if let (Some(x), Some(y)) = (psi(&a, &b, 1e-4), psi(&b, &a, 1e-4)) {
            assert!(x >= 0.0 && (x - y).abs() <= 1e-12 * x.max(1.0));
        }
        if let Some(js) = jensen_shannon(&a, &b) {
            assert!(in_unit(js), "js {js}");
        }
        for alt in ALL {
            for r in [mann_whitney_u(&a, &b, alt), ks_2samp(&a, &b, alt)]
                .into_iter()
                .flatten()
            {
                assert!(in_unit(r.p_value), "{alt:?} {r:?}");
            }
        }
        for r in [anderson_ksamp(&a, &b), chi_square(&a, &b)]
            .into_iter()
            .flatten()
        {
            assert!(in_unit(r.p_value), "{r:?}");
        }
    }
}

#[test]
fn less_means_current_smaller() {
    // a sits two bins lower than b.
    let a = [0, 5, 40, 80, 40, 5, 0, 0, 0];
    let b = [0, 0, 0, 5, 40, 80, 40, 5, 0];
    for (name, less, greater) in [
        (
            "mann_whitney_u",
            mann_whitney_u(&a, &b, Alternative::Less),
            mann_whitney_u(&a, &b, Alternative::Greater),
        ),
        (
            "ks_2samp",
            ks_2samp(&a, &b, Alternative::Less),
            ks_2samp(&a, &b, Alternative::Greater),
        ),
    ] {
        let (less, greater) = (less.unwrap(), greater.unwrap());
        assert!(less.p_value < 1e-10, "{name} less {less:?}");
        assert!(greater.p_value > 0.5, "{name} greater {greater:?}");
    }
    let cur = Moments {
        n: 100,
        mean: 10.0,
        m2: 99.0 * 4.0,
    };
    let base = Moments {
        n: 120,
        mean: 12.0,
        m2: 119.0 * 4.0,
    };
    let less = welch_t(&cur, &base, Alternative::Less).unwrap();
    let greater = welch_t(&cur, &base, Alternative::Greater).unwrap();
    let two = welch_t(&cur, &base, Alternative::TwoSided).unwrap();
    assert!(less.statistic < 0.0 && less.p_value < 1e-10);
    assert!((less.p_value + greater.p_value - 1.0).abs() < 1e-12);
    assert!((two.p_value - 2.0 * less.p_value).abs() <= 1e-12 * two.p_value);
    let swapped = welch_t(&base, &cur, Alternative::TwoSided).unwrap();
    assert_eq!(swapped.statistic, -two.statistic);
    assert_eq!(swapped.p_value, two.p_value);
    let z = two_proportion_z(5, 1000, 20, 1000, Alternative::Less).unwrap();
    assert!(z.statistic < 0.0 && z.p_value < 0.01);
    assert!(binom_test(0, 1000, 0.01, Alternative::Less).unwrap() < 1e-4);
}

#[test]
fn binomial_rates_are_consistent() {
    for (k, n, p) in [
        (1, 20, 0.01),
        (7, 1000, 0.01),
        (500, 1000, 0.5),
        (0, 5, 0.3),
    ] {
        let two = binom_test(k, n, p, Alternative::TwoSided).unwrap();
        let less = binom_test(k, n, p, Alternative::Less).unwrap();
        let greater = binom_test(k, n, p, Alternative::Greater).unwrap();
        assert!(in_unit(two) && in_unit(less) && in_unit(greater));
        assert!(less + greater >= 1.0 - 1e-12, "P(X<=k) + P(X>=k) >= 1");
        assert!(two >= less.min(greater) - 1e-12);
        let (lo, hi) = wilson_interval(k, n, 0.95).unwrap();
        assert!(0.0 <= lo && lo <= k as f64 / n as f64 && k as f64 / n as f64 <= hi && hi <= 1.0);
    }
    // The pmf sums to one and the cdf is the running sum.
    let (n, p) = (60u64, 0.37);
    let mut run = 0.0;
    for k in 0..=n as i64 {
        run += binom_pmf(k, n, p);
        assert!((binom_cdf(k, n, p) - run).abs() < 1e-13);
        assert!((binom_cdf(k, n, p) + binom_sf(k, n, p) - 1.0).abs() < 1e-14);
    }
}

#[test]
fn quantile_ranks_cover_and_read_from_bins() {
    for n in [20u64, 200, 1000, 5000, 100_000] {
        for q in [0.5, 0.9, 0.99] {
            let (lo, hi) = quantile_ci_ranks(n, q, 0.95).unwrap();
            assert!(1 <= lo && lo <= hi && hi <= n);
            if lo > 1 && hi < n {
                let coverage = binom_cdf(hi as i64 - 1, n, q) - binom_cdf(lo as i64 - 1, n, q);
                assert!(coverage >= 0.95, "n={n} q={q} coverage {coverage}");
            }
        }
    }
    assert_eq!(min_samples_for_quantile(0.99, 10), 1000);
    assert_eq!(min_samples_for_quantile(0.9, 10), 100);
    assert_eq!(min_samples_for_quantile(1.0, 10), u64::MAX);
    assert_eq!(min_samples_for_quantile(f64::NAN, 10), u64::MAX);
    let n = min_samples_for_quantile(0.99, 10);
    let (_, hi) = quantile_ci_ranks(n, 0.99, 0.95).unwrap();
    assert!(hi < n, "enough samples for a bounded p99 interval");
    let counts = [10u64, 0, 30, 60];
    assert_eq!(binned_quantile_rank(&counts, 10), Some(0));
    assert_eq!(binned_quantile_rank(&counts, 11), Some(2));
    assert_eq!(binned_quantile_rank(&counts, 100), Some(3));
    assert_eq!(binned_quantile_rank(&counts, 101), None);
}

#[test]
fn degenerate_inputs_give_none() {
    assert!(welch_t(
        &Moments::default(),
        &Moments::default(),
        Alternative::TwoSided
    )
    .is_none());
    let bad = Moments {
        n: 10,
        mean: f64::NAN,
        m2: 1.0,
    };
    let ok = Moments {
        n: 10,
        mean: 1.0,
        m2: 1.0,
    };
    assert!(welch_t(&bad, &ok, Alternative::TwoSided).is_none());
    assert!(mann_whitney_u(&[], &[], Alternative::TwoSided).is_none());
    assert!(ks_2samp(&[], &[], Alternative::TwoSided).is_none());
    assert!(anderson_ksamp(&[], &[]).is_none());
    assert!(chi_square(&[], &[]).is_none());
    assert!(psi(&[], &[], 1e-4).is_none());
    assert!(jensen_shannon(&[], &[]).is_none());
    assert!(mann_whitney_u(&[u64::MAX, 1], &[1, 1], Alternative::TwoSided).is_none());
    assert!(two_proportion_z(0, 0, 0, 0, Alternative::TwoSided).is_none());
    assert!(binom_test(1, 10, f64::NAN, Alternative::TwoSided).is_none());
    assert!(wilson_interval(1, 10, f64::NAN).is_none());
    assert!(quantile_ci_ranks(10, f64::NAN, 0.95).is_none());
    // Identical samples: nothing to detect.
    let a = [3u64, 10, 50, 10, 3];
    assert_eq!(
        ks_2samp(&a, &a, Alternative::TwoSided).unwrap().p_value,
        1.0
    );
    assert!(
        mann_whitney_u(&a, &a, Alternative::TwoSided)
            .unwrap()
            .p_value
            > 0.99
    );
    assert_eq!(chi_square(&a, &a).unwrap().p_value, 1.0);
    assert_eq!(psi(&a, &a, 1e-4), Some(0.0));
    assert_eq!(jensen_shannon(&a, &a), Some(0.0));
}
