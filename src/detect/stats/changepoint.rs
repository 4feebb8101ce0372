//! The tests and estimates behind fast detection: the exceedance test for "quantile above
//! τ", Welch's test against a threshold instead of "no change", and Page's CUSUM estimate of
//! when a change began.

use super::{binom_test, welch_t, Alternative, TestResult};
use crate::window::sketch::Moments;

/// p-value of the exceedance test: `c` of `n` current samples lie above τ. Under H0 (the
/// q-quantile is at most τ) each sample is above τ with probability at most 1 − q, so the
/// count is stochastically at most Binomial(n, 1 − q) and p = P(Binomial(n, 1 − q) ≥ c) —
/// scipy's `binomtest(c, n, 1 - q, alternative="greater").pvalue`. `None` without samples.
pub fn exceedance_test(c: u64, n: u64, q: f64) -> Option<f64> {
    if n == 0 || !(0.0..1.0).contains(&q) {
        return None;
    }
    binom_test(c, n, 1.0 - q, Alternative::Greater)
}

/// The moments of `scale · X + shift` for the sample with moments `m`.
pub fn affine_moments(m: &Moments, scale: f64, shift: f64) -> Moments {
    Moments {
        n: m.n,
        mean: m.mean * scale + shift,
        m2: m.m2 * scale * scale,
    }
}

/// Welch's t-test of `a` against `b` moved onto a threshold: scipy's
/// `ttest_ind(a, scale * b + shift, equal_var=False, alternative=alt)`. With `scale = 1 + θ`
/// it tests "the mean of `a` is at most (at least) a relative change θ from `b`'s"; with
/// `shift = θ`, a difference θ.
pub fn welch_t_against(
    a: &Moments,
    b: &Moments,
    scale: f64,
    shift: f64,
    alt: Alternative,
) -> Option<TestResult> {
    welch_t(a, &affine_moments(b, scale, shift), alt)
}

/// Page's CUSUM change-point estimate over `(step start, log-likelihood ratio)` pairs in time
/// order: the start of the step `j` maximising Σ_{i ≥ j} llr_i — the latest of equal maxima —
/// or `None` when no suffix sum is positive (the data since no step fit the changed level
/// better than the old one).
pub fn cusum_onset(llr: &[(i64, f64)]) -> Option<i64> {
    let (mut sum, mut best, mut at) = (0.0, 0.0, None);
    for (start, l) in llr.iter().rev() {
        sum += l;
        if sum > best {
            best = sum;
            at = Some(*start);
        }
    }
    at
}

/// Log-likelihood ratio of `k` events in `n` trials at rate `p1` against rate `p0`.
pub fn bernoulli_llr(k: u64, n: u64, p0: f64, p1: f64) -> f64 {
    let k = k.min(n);
    k as f64 * (p1 / p0).ln() + (n - k) as f64 * ((1.0 - p1) / (1.0 - p0)).ln()
}
