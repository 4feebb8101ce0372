//! The statistical tests, interval estimates and distances (every public item of the stats
//! stage; re-exported from the parent module).

use std::f64::consts::LN_2;

use super::kolmogorov::kolmogn_sf;
use super::special::{
    binom_cdf, binom_pmf, binom_ppf, binom_sf, chi2_sf, norm_ppf, norm_sf, t_isf, t_sf,
};
use super::{positive, Alternative, TestResult};
use crate::window::sketch::Moments;

/// `0 < x < 1` (false for NaN).
fn in_open_unit(x: f64) -> bool {
    x > 0.0 && x < 1.0
}

// ============================================================================================
// Moments
// ============================================================================================

/// Welch's unequal-variance t test of the means of two sketches.
///
/// Matches `scipy.stats.ttest_ind(a, b, equal_var=False, alternative=...)` on the underlying
/// samples (equivalently `scipy.stats.ttest_ind_from_stats` with the n−1 standard deviations).
/// `statistic` is t = (mean_a − mean_b) / sqrt(v_a/n_a + v_b/n_b) with v = m2/(n−1); the p-value
/// is from Student's t with the Welch–Satterthwaite degrees of freedom.
///
/// `None` if either sample has fewer than 2 observations, both variances are zero, or an input
/// is not finite (scipy returns nan there).
pub fn welch_t(a: &Moments, b: &Moments, alt: Alternative) -> Option<TestResult> {
    if a.n < 2 || b.n < 2 {
        return None;
    }
    if !(a.mean.is_finite() && b.mean.is_finite() && a.m2 >= 0.0 && b.m2 >= 0.0) {
        return None;
    }
    if !(a.m2.is_finite() && b.m2.is_finite()) {
        return None;
    }
    let (n1, n2) = (a.n as f64, b.n as f64);
    let vn1 = a.m2 / (n1 - 1.0) / n1;
    let vn2 = b.m2 / (n2 - 1.0) / n2;
    let se2 = vn1 + vn2;
    if !positive(se2) {
        return None;
    }
    let df = se2 * se2 / (vn1 * vn1 / (n1 - 1.0) + vn2 * vn2 / (n2 - 1.0));
    let t = (a.mean - b.mean) / se2.sqrt();
    if !t.is_finite() || !positive(df) {
        return None;
    }
    let p = t_p_value(t, df, alt);
    Some(TestResult {
        statistic: t,
        p_value: p,
    })
}

/// Two-sided confidence interval of the difference of means `a − b` (Welch, unequal
/// variances).
///
/// Matches `scipy.stats.ttest_ind(a, b, equal_var=False).confidence_interval(confidence)`:
/// (mean_a − mean_b) ± t_{1−α/2, df}·se with the Welch–Satterthwaite df. `None` where
/// [`welch_t`] is `None` (fewer than 2 samples, both variances zero) or `confidence` is not in
/// (0, 1).
pub fn welch_ci(a: &Moments, b: &Moments, confidence: f64) -> Option<(f64, f64)> {
    if a.n < 2 || b.n < 2 || !in_open_unit(confidence) {
        return None;
    }
    if !(a.mean.is_finite() && b.mean.is_finite() && a.m2 >= 0.0 && b.m2 >= 0.0) {
        return None;
    }
    let (n1, n2) = (a.n as f64, b.n as f64);
    let vn1 = a.m2 / (n1 - 1.0) / n1;
    let vn2 = b.m2 / (n2 - 1.0) / n2;
    let se2 = vn1 + vn2;
    if !(positive(se2) && se2.is_finite()) {
        return None;
    }
    let df = se2 * se2 / (vn1 * vn1 / (n1 - 1.0) + vn2 * vn2 / (n2 - 1.0));
    let t = t_isf((1.0 - confidence) / 2.0, df);
    if !t.is_finite() {
        return None;
    }
    let d = a.mean - b.mean;
    let half = t * se2.sqrt();
    Some((d - half, d + half))
}

// ============================================================================================
// Binned rank tests
// ============================================================================================

/// Largest total count accepted (2⁵³: every count and cumulative count is exact in f64).
const MAX_EXACT: u64 = 1 << 53;

/// Totals of two aligned count slices; `None` if the lengths differ, either total is zero, or
/// the grand total exceeds [`MAX_EXACT`].
fn binned_totals(a: &[u64], b: &[u64]) -> Option<(u64, u64)> {
    if a.len() != b.len() {
        return None;
    }
    let n1 = a.iter().try_fold(0u64, |s, &c| s.checked_add(c))?;
    let n2 = b.iter().try_fold(0u64, |s, &c| s.checked_add(c))?;
    let total = n1.checked_add(n2)?;
    (n1 > 0 && n2 > 0 && total <= MAX_EXACT).then_some((n1, n2))
}

/// Mann–Whitney U test on aligned binned counts, normal approximation with tie correction.
///
/// Matches `scipy.stats.mannwhitneyu(x, y, use_continuity=True, alternative=...,
/// method="asymptotic")` on the expanded samples (all samples of a bin tied, midranks).
/// `statistic` is U of the first sample (scipy's `U1`); the p-value uses
/// z = (U − n₁n₂/2 − 0.5)/σ with the tie-corrected σ and the normal survival function, doubled
/// (and capped at 1) for the two-sided test; U is U₁ for `Greater`, U₂ = n₁n₂ − U₁ for `Less`
/// and max(U₁, U₂) for `TwoSided`, as in scipy. The rank sum and the tie term Σ(t³ − t) are
/// computed in exact integers (scipy's int64 tie term would overflow for a bin holding more than
/// ~2·10⁶ samples).
///
/// `None` if the slices differ in length, either sample is empty, or all samples fall in a
/// single bin (σ = 0; scipy then returns p = 1 from z = −∞ with the continuity correction).
pub fn mann_whitney_u(a: &[u64], b: &[u64], alt: Alternative) -> Option<TestResult> {
    let (n1, n2) = binned_totals(a, b)?;
    let mut cum: u128 = 0;
    let mut twice_r1: u128 = 0;
    let mut tie = 0.0f64;
    let mut distinct = 0usize;
    for (&ca, &cb) in a.iter().zip(b) {
        let t = ca as u128 + cb as u128;
        if t == 0 {
            continue;
        }
        distinct += 1;
        // Midrank of the bin: cum + (t + 1) / 2.
        twice_r1 += ca as u128 * (2 * cum + t + 1);
        // Σ (t³ − t) over the bins: exact per bin while t³ fits in u128.
        tie += if t < 1 << 42 {
            (t * t * t - t) as f64
        } else {
            (t as f64).powi(3) - t as f64
        };
        cum += t;
    }
    if distinct < 2 {
        return None;
    }
    let (n1w, n2w) = (n1 as u128, n2 as u128);
    let r1 = twice_r1 as f64 / 2.0;
    let u1 = r1 - (n1w * (n1w + 1)) as f64 / 2.0;
    let n1n2 = (n1w * n2w) as f64;
    let u2 = n1n2 - u1;
    let (u, factor) = match alt {
        Alternative::Greater => (u1, 1.0),
        Alternative::Less => (u2, 1.0),
        Alternative::TwoSided => (u1.max(u2), 2.0),
    };
    let n = n1w + n2w;
    let mu = n1n2 / 2.0;
    let s = (n1n2 / 12.0 * ((n + 1) as f64 - tie / (n * (n - 1)) as f64)).sqrt();
    if !positive(s) {
        return None;
    }
    let z = (u - mu - 0.5) / s;
    let p = (norm_sf(z) * factor).clamp(0.0, 1.0);
    Some(TestResult {
        statistic: u1,
        p_value: p,
    })
}

/// Two-sample Kolmogorov–Smirnov test on aligned binned counts, asymptotic p-value.
///
/// Matches `scipy.stats.ks_2samp(x, y, alternative=..., method="asymp")` on the expanded samples.
/// The statistic is computed exactly as scipy does (ECDFs `cum/n` at every occupied bin):
///
/// * `TwoSided`: D = max |F_a − F_b| (scipy `'two-sided'`); the p-value is scipy's
///   `kstwo.sf(D, round(n₁n₂/(n₁+n₂)))`, the exact finite-n two-sided one-sample Kolmogorov
///   distribution at the rounded effective size (Simard–L'Ecuyer selection of Durbin matrix,
///   Pomeranz recursion, Pelz–Good and Smirnov/Birnbaum–Tingey sums, all reproduced here from
///   scipy's `_ksstats.py` and `xsf` `smirnov`). This is NOT the limiting `kstwobign`
///   (`scipy.special.kolmogorov`) distribution, which would differ by O(1/√n).
///   Cost grows with the rounded effective size n = n₁n₂/(n₁+n₂): for 140 < n ≤ 10⁶ and
///   n·D² ≥ 2.2 (p ≲ 0.03) the Smirnov sum has up to ~n/2 terms of ~0.1 µs (≈ 5 ms at
///   n = 10⁵, ≈ 50 ms at n = 10⁶); for tiny D (n·D^1.5 ≤ 1.4, p ≈ 1, n ≤ 10⁵) a matrix power of
///   up to 117×117 (≈ 5 ms); everything else, and every n > 10⁶ (scipy's closed-form
///   approximation), takes microseconds.
/// * `Less` (current values smaller, i.e. F_a above F_b): D⁺ = max(F_a − F_b), which is scipy's
///   `alternative='greater'`.
/// * `Greater` (current values larger): D⁻ = max(F_b − F_a), scipy's `alternative='less'`.
///
///   One-sided p-values are Hodges' approximation exactly as scipy's `"asymp"` computes them:
///   exp(−2z² − 2z(m+2n)/√(mn(m+n))/3), z = D·√(mn/(m+n)), m ≥ n the sample sizes.
///
/// `None` if the slices differ in length, either sample is empty, or the rounded effective size
/// is 0 (one sample each; scipy returns nan).
pub fn ks_2samp(a: &[u64], b: &[u64], alt: Alternative) -> Option<TestResult> {
    let (n1, n2) = binned_totals(a, b)?;
    let (n1f, n2f) = (n1 as f64, n2 as f64);
    let (mut cum_a, mut cum_b) = (0u64, 0u64);
    let mut min_diff = f64::INFINITY;
    let mut max_diff = f64::NEG_INFINITY;
    for (&ca, &cb) in a.iter().zip(b) {
        if ca == 0 && cb == 0 {
            continue;
        }
        cum_a += ca;
        cum_b += cb;
        let diff = cum_a as f64 / n1f - cum_b as f64 / n2f;
        min_diff = min_diff.min(diff);
        max_diff = max_diff.max(diff);
    }
    let min_s = (-min_diff).clamp(0.0, 1.0);
    let max_s = max_diff;
    let d = match alt {
        Alternative::TwoSided => {
            if min_s > max_s {
                min_s
            } else {
                max_s
            }
        }
        Alternative::Less => max_s,
        Alternative::Greater => min_s,
    };
    let (m, n) = if n1f >= n2f { (n1f, n2f) } else { (n2f, n1f) };
    let en = m * n / (m + n);
    let p = match alt {
        Alternative::TwoSided => {
            let en_round = en.round_ties_even();
            if en_round < 1.0 {
                return None;
            }
            kolmogn_sf(en_round as u64, d)
        }
        Alternative::Less | Alternative::Greater => {
            let z = en.sqrt() * d;
            let expt = -2.0 * (z * z) - 2.0 * z * (m + 2.0 * n) / (m * n * (m + n)).sqrt() / 3.0;
            expt.exp()
        }
    };
    Some(TestResult {
        statistic: d,
        p_value: p.clamp(0.0, 1.0),
    })
}

/// The polynomial `c[0] + c[1]·t + c[2]·t²` with `t = (x − shift)/scale`, least-squares fitted.
struct QuadFit {
    shift: f64,
    scale: f64,
    c: [f64; 3],
}

impl QuadFit {
    /// Least-squares quadratic through the points, equal to `numpy.polyfit(x, y, 2)` up to
    /// rounding (solved on centred and scaled abscissae for a well-conditioned 3×3 system).
    fn fit(x: &[f64], y: &[f64]) -> Option<QuadFit> {
        let len = x.len() as f64;
        let shift = x.iter().sum::<f64>() / len;
        let scale = (x.iter().map(|v| (v - shift) * (v - shift)).sum::<f64>() / len).sqrt();
        if !positive(scale) {
            return None;
        }
        // Normal equations M c = r with M[i][j] = sum t^(i+j), r[i] = sum y t^i.
        let mut m = [[0.0f64; 4]; 3];
        for (&xv, &yv) in x.iter().zip(y) {
            let t = (xv - shift) / scale;
            let pw = [1.0, t, t * t, t * t * t, t * t * t * t];
            for (i, row) in m.iter_mut().enumerate() {
                for (j, cell) in row.iter_mut().take(3).enumerate() {
                    *cell += pw[i + j];
                }
                row[3] += yv * pw[i];
            }
        }
        // Gaussian elimination with partial pivoting.
        for col in 0..3 {
            let pivot = (col..3).max_by(|&i, &j| m[i][col].abs().total_cmp(&m[j][col].abs()))?;
            m.swap(col, pivot);
            if m[col][col] == 0.0 {
                return None;
            }
            let pivot_row = m[col];
            for row in m.iter_mut().skip(col + 1) {
                let f = row[col] / pivot_row[col];
                for (cell, &pv) in row.iter_mut().zip(&pivot_row).skip(col) {
                    *cell -= f * pv;
                }
            }
        }
        let mut c = [0.0f64; 3];
        for i in (0..3).rev() {
            let s: f64 = (i + 1..3).map(|j| m[i][j] * c[j]).sum();
            c[i] = (m[i][3] - s) / m[i][i];
        }
        Some(QuadFit { shift, scale, c })
    }

    fn eval(&self, x: f64) -> f64 {
        let t = (x - self.shift) / self.scale;
        self.c[0] + t * (self.c[1] + t * self.c[2])
    }
}

/// Harmonic numbers H_n = Σ_{i≤n} 1/i and H⁽²⁾_n = Σ_{i≤n} 1/i², summed from the smallest term
/// for n ≤ 10⁴ and from their asymptotic expansions (error < 1e-20) above.
fn harmonic_numbers(n: u64) -> (f64, f64) {
    const EULER_GAMMA: f64 = 0.5772156649015329;
    const ZETA_2: f64 = 1.6449340668482264;
    if n <= 10_000 {
        let mut h = 0.0;
        let mut h2 = 0.0;
        for i in (1..=n).rev() {
            let x = 1.0 / i as f64;
            h += x;
            h2 += x * x;
        }
        return (h, h2);
    }
    let x = n as f64;
    let r = 1.0 / x;
    let r2 = r * r;
    let h = x.ln() + EULER_GAMMA + r / 2.0 - r2 * (1.0 / 12.0 - r2 * (1.0 / 120.0 - r2 / 252.0));
    let h2 = ZETA_2 - r + r2 / 2.0 - r2 * r * (1.0 / 6.0 - r2 * (1.0 / 30.0 - r2 / 42.0));
    (h, h2)
}

/// k-sample Anderson–Darling test (k = 2) on aligned binned counts, midrank version.
///
/// Matches `scipy.stats.anderson_ksamp([x, y], midrank=True)` (default `method=None`) on the
/// expanded samples: `statistic` is scipy's standardized T = (A²akN − (k−1))/σ_N (Scholz &
/// Stephens 1987, eq. 7, with ties), and `p_value` is scipy's interpolated p-value:
/// `exp(polyval(polyfit(critical, log(sig), 2), T))` over the tabulated critical values for
/// k = 2 (`[0.325, 1.226, 1.961, 2.718, 3.752, 4.592, 6.546]` at significance
/// `[0.25, 0.1, 0.05, 0.025, 0.01, 0.005, 0.001]`), capped at 0.25 below the smallest and floored
/// at 0.001 above the largest critical value. Treat 0.25 as "≥ 0.25" and 0.001 as "≤ 0.001".
///
/// σ_N needs h = H_{N−1} (harmonic number) and scipy's double harmonic sum
/// g = Σ_{i=2}^{N−1} (H_{N−1} − H_{N−i})/i, which scipy evaluates in O(N) time and memory; here
/// g = H⁽²⁾_{N−1} − 2H_{N−1}/N in closed form (the same value), so the cost is O(bins).
///
/// `None` if the slices differ in length, a sample is empty, all samples fall in one bin (scipy
/// raises), or N < 4 (σ_N divides by (N−1)(N−2)(N−3)).
pub fn anderson_ksamp(a: &[u64], b: &[u64]) -> Option<TestResult> {
    let (n1, n2) = binned_totals(a, b)?;
    let total = n1 + n2;
    if total < 4 {
        return None;
    }
    let nn = total as f64;
    let sizes = [n1 as f64, n2 as f64];
    let distinct = a.iter().zip(b).filter(|(&x, &y)| x > 0 || y > 0).count();
    if distinct < 2 {
        return None;
    }
    let mut a2akn = 0.0;
    for (i, counts) in [a, b].into_iter().enumerate() {
        let mut inner_sum = 0.0;
        let mut cum_all = 0u64;
        let mut cum_i = 0u64;
        for (j, &f) in counts.iter().enumerate() {
            let lj = a[j] + b[j];
            if lj == 0 {
                continue;
            }
            let ljf = lj as f64;
            let bj = cum_all as f64 + ljf / 2.0;
            cum_i += f;
            let mij = cum_i as f64 - f as f64 / 2.0;
            let dev = nn * mij - bj * sizes[i];
            inner_sum += ljf / nn * (dev * dev) / (bj * (nn - bj) - nn * ljf / 4.0);
            cum_all += lj;
        }
        a2akn += inner_sum / sizes[i];
    }
    a2akn *= (nn - 1.0) / nn;

    let k = 2.0f64;
    let hh = 1.0 / sizes[0] + 1.0 / sizes[1];
    let (h, h2) = harmonic_numbers(total - 1);
    let g = h2 - 2.0 * h / nn;
    let ca = (4.0 * g - 6.0) * (k - 1.0) + (10.0 - 6.0 * g) * hh;
    let cb = (2.0 * g - 4.0) * k * k + 8.0 * h * k + (2.0 * g - 14.0 * h - 4.0) * hh - 8.0 * h
        + 4.0 * g
        - 6.0;
    let cc = (6.0 * h + 2.0 * g - 2.0) * k * k
        + (4.0 * h - 4.0 * g + 6.0) * k
        + (2.0 * h - 6.0) * hh
        + 4.0 * h;
    let cd = (2.0 * h + 6.0) * k * k - 4.0 * h * k;
    let sigmasq =
        (ca * nn.powi(3) + cb * nn * nn + cc * nn + cd) / ((nn - 1.0) * (nn - 2.0) * (nn - 3.0));
    if !positive(sigmasq) {
        return None;
    }
    let m = k - 1.0;
    let t = (a2akn - m) / sigmasq.sqrt();
    if !t.is_finite() {
        return None;
    }

    const B0: [f64; 7] = [0.675, 1.281, 1.645, 1.96, 2.326, 2.573, 3.085];
    const B1: [f64; 7] = [-0.245, 0.25, 0.678, 1.149, 1.822, 2.364, 3.615];
    const B2: [f64; 7] = [-0.105, -0.305, -0.362, -0.391, -0.396, -0.345, -0.154];
    const SIG: [f64; 7] = [0.25, 0.1, 0.05, 0.025, 0.01, 0.005, 0.001];
    let mut critical = [0.0f64; 7];
    let mut log_sig = [0.0f64; 7];
    for i in 0..7 {
        critical[i] = B0[i] + B1[i] / m.sqrt() + B2[i] / m;
        log_sig[i] = SIG[i].ln();
    }
    let cmin = critical.iter().copied().fold(f64::INFINITY, f64::min);
    let cmax = critical.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let p = if t < cmin {
        0.25
    } else if t > cmax {
        0.001
    } else {
        QuadFit::fit(&critical, &log_sig)?.eval(t).exp()
    };
    Some(TestResult {
        statistic: t,
        p_value: p,
    })
}

// ============================================================================================
// Rates
// ============================================================================================

/// Pooled two-proportion z test of x1/n1 (current) against x2/n2 (baseline).
///
/// `statistic` is z = (p₁ − p₂)/√(p̂(1−p̂)(1/n₁ + 1/n₂)) with the pooled p̂ = (x₁+x₂)/(n₁+n₂); the
/// p-value is from `scipy.stats.norm` (`2·sf(|z|)` two-sided, `cdf(z)` for `Less`, `sf(z)` for
/// `Greater`). This is the same test as `statsmodels.stats.proportion.proportions_ztest` with
/// its default pooled variance (scipy has no direct equivalent; the reference computes the
/// formula with `scipy.stats.norm`).
///
/// `None` if a sample is empty, a count exceeds its total, or the pooled rate is 0 or 1 (zero
/// variance).
pub fn two_proportion_z(
    x1: u64,
    n1: u64,
    x2: u64,
    n2: u64,
    alt: Alternative,
) -> Option<TestResult> {
    if n1 == 0 || n2 == 0 || x1 > n1 || x2 > n2 {
        return None;
    }
    let (p1, p2) = (x1 as f64 / n1 as f64, x2 as f64 / n2 as f64);
    let p = (x1 as f64 + x2 as f64) / (n1 as f64 + n2 as f64);
    let var = p * (1.0 - p) * (1.0 / n1 as f64 + 1.0 / n2 as f64);
    if !positive(var) {
        return None;
    }
    let z = (p1 - p2) / var.sqrt();
    let pv = match alt {
        Alternative::TwoSided => (2.0 * norm_sf(z.abs())).min(1.0),
        Alternative::Less => norm_sf(-z),
        Alternative::Greater => norm_sf(z),
    };
    Some(TestResult {
        statistic: z,
        p_value: pv,
    })
}

/// Fewer expected events than this in a cell and the z-test's normal approximation is not
/// trusted (the textbook n·p ≥ 5).
pub const Z_TEST_MIN_EXPECTED: f64 = 5.0;

/// p-value comparing the rates k1/n1 and k2/n2: the pooled two-proportion z-test, or — when
/// a sample expects fewer than [`Z_TEST_MIN_EXPECTED`] events or non-events under the pooled
/// rate (rare errors on a small canary) — the exact conditional test: given the k1 + k2
/// events, is sample 1's share binomially larger (smaller) than n1 / (n1 + n2)? The z-test
/// is anti-conservative there: 8 errors in 687 requests against 0.3 % gives z p = 0.0004,
/// the exact test 0.004.
pub fn two_proportions(k1: u64, n1: u64, k2: u64, n2: u64, alt: Alternative) -> Option<f64> {
    if n1 == 0 || n2 == 0 {
        return None;
    }
    let pooled = (k1 + k2) as f64 / (n1 + n2) as f64;
    let expected_min = [n1, n2]
        .iter()
        .map(|n| *n as f64 * pooled.min(1.0 - pooled))
        .fold(f64::INFINITY, f64::min);
    if expected_min >= Z_TEST_MIN_EXPECTED {
        return two_proportion_z(k1, n1, k2, n2, alt).map(|r| r.p_value);
    }
    if k1 + k2 == 0 {
        return Some(1.0);
    }
    let share = n1 as f64 / (n1 + n2) as f64;
    binom_test(k1, k1 + k2, share, alt)
}

/// Wilson score interval (without continuity correction) for a rate of k successes in n trials.
///
/// Matches `scipy.stats.binomtest(k, n).proportion_ci(confidence_level=confidence,
/// method="wilson")`: two-sided, z = Φ⁻¹(0.5 + confidence/2), the lower bound is exactly 0 when
/// k = 0 and the upper exactly 1 when k = n.
///
/// `None` if n = 0, k > n, or `confidence` is not in (0, 1).
pub fn wilson_interval(k: u64, n: u64, confidence: f64) -> Option<(f64, f64)> {
    if n == 0 || k > n || !in_open_unit(confidence) {
        return None;
    }
    let nf = n as f64;
    let p = k as f64 / nf;
    let z = norm_ppf(0.5 + 0.5 * confidence);
    let z2 = z * z;
    let denom = 2.0 * (nf + z2);
    let center = (2.0 * nf * p + z2) / denom;
    let q = 1.0 - p;
    let delta = z / denom * (4.0 * nf * p * q + z2).sqrt();
    let lo = if k == 0 { 0.0 } else { center - delta };
    let hi = if k == n { 1.0 } else { center + delta };
    Some((lo, hi))
}

/// Newcombe's hybrid score interval for the difference of two rates k1/n1 − k2/n2 (his
/// method 10, from the two [`wilson_interval`]s): with (l₁, u₁), (l₂, u₂) the Wilson bounds,
/// d − √((p₁ − l₁)² + (u₂ − p₂)²) to d + √((u₁ − p₁)² + (p₂ − l₂)²). Well-behaved at rates
/// of 0 and for small n, where the Wald interval is not. `None` where either Wilson interval is.
pub fn newcombe_interval(
    k1: u64,
    n1: u64,
    k2: u64,
    n2: u64,
    confidence: f64,
) -> Option<(f64, f64)> {
    let (l1, u1) = wilson_interval(k1, n1, confidence)?;
    let (l2, u2) = wilson_interval(k2, n2, confidence)?;
    let (p1, p2) = (k1 as f64 / n1 as f64, k2 as f64 / n2 as f64);
    let d = p1 - p2;
    let lo = d - ((p1 - l1).powi(2) + (u2 - p2).powi(2)).sqrt();
    let hi = d + ((u1 - p1).powi(2) + (p2 - l2).powi(2)).sqrt();
    Some((lo, hi))
}

/// Exact binomial test p-value of k successes in n trials against success probability p.
///
/// Matches `scipy.stats.binomtest(k, n, p, alternative).pvalue`: `Less` is P(X ≤ k), `Greater`
/// is P(X ≥ k), and `TwoSided` is scipy's "minlike" rule: the total probability of all outcomes
/// whose probability is at most P(X = k)·(1 + 1e-7), found with the same binary search on the
/// other side of the mode (1 when k = n·p exactly).
///
/// `None` if n = 0, k > n, n > 2⁵³, or p is not in [0, 1].
pub fn binom_test(k: u64, n: u64, p: f64, alt: Alternative) -> Option<f64> {
    if n == 0 || k > n || n > MAX_EXACT || !(0.0..=1.0).contains(&p) {
        return None;
    }
    let ki = k as i64;
    let ni = n as i64;
    let pv = match alt {
        Alternative::Less => binom_cdf(ki, n, p),
        Alternative::Greater => binom_sf(ki - 1, n, p),
        Alternative::TwoSided => {
            let d = binom_pmf(ki, n, p);
            let rerr = 1.0 + 1e-7;
            let pn = p * n as f64;
            if k as f64 == pn {
                1.0
            } else if (k as f64) < pn {
                let ix =
                    binary_search_binom(|x| -binom_pmf(x, n, p), -d * rerr, pn.ceil() as i64, ni);
                let y = ni - ix + i64::from(d * rerr == binom_pmf(ix, n, p));
                binom_cdf(ki, n, p) + binom_sf(ni - y, n, p)
            } else {
                let ix =
                    binary_search_binom(|x| binom_pmf(x, n, p), d * rerr, 0, pn.floor() as i64);
                let y = ix + 1;
                binom_cdf(y - 1, n, p) + binom_sf(ki - 1, n, p)
            }
            .min(1.0)
        }
    };
    Some(pv)
}

/// scipy's `_binary_search_for_binom_tst`: the i in [lo, hi] with a(i) ≤ d < a(i+1), for `a`
/// ascending on that range.
fn binary_search_binom(a: impl Fn(i64) -> f64, d: f64, mut lo: i64, mut hi: i64) -> i64 {
    while lo < hi {
        let mid = lo + (hi - lo).div_euclid(2);
        let midval = a(mid);
        if midval < d {
            lo = mid + 1;
        } else if midval > d {
            hi = mid - 1;
        } else {
            return mid;
        }
    }
    if a(lo) <= d {
        lo
    } else {
        lo - 1
    }
}

// ============================================================================================
// Categorical
// ============================================================================================

/// Pearson chi-square test of homogeneity of two categorical count vectors (a 2×k table).
///
/// Matches `scipy.stats.chi2_contingency([a, b], correction=False)` after dropping the
/// categories where both counts are 0: `statistic` is Σ(O − E)²/E with E from the margins, the
/// p-value is the chi-square survival function with k − 1 degrees of freedom.
///
/// `None` if the slices differ in length, fewer than 2 categories are non-empty, or either row
/// is all zero (scipy raises on the zero expected frequencies).
pub fn chi_square(a: &[u64], b: &[u64]) -> Option<TestResult> {
    let (ra, rb) = binned_totals(a, b)?;
    let total = ra + rb;
    let cols = a.iter().zip(b).filter(|(&x, &y)| x > 0 || y > 0).count();
    if cols < 2 {
        return None;
    }
    let nf = total as f64;
    let mut stat = 0.0;
    for (row, row_sum) in [(a, ra), (b, rb)] {
        for (j, &obs) in row.iter().enumerate() {
            let col = a[j] as u128 + b[j] as u128;
            if col == 0 {
                continue;
            }
            let expected = (row_sum as u128 * col) as f64 / nf;
            let diff = obs as f64 - expected;
            stat += diff * diff / expected;
        }
    }
    let p = chi2_sf(stat, (cols - 1) as f64)?;
    Some(TestResult {
        statistic: stat,
        p_value: p,
    })
}

/// Population stability index of the current distribution `a` against the baseline `b`:
/// Σ (pa − pb)·ln(pa/pb) over the bins, with the proportions pa = a/Σa, pb = b/Σb, and a zero
/// proportion replaced by `epsilon` (the usual convention is `1e-4`; the values are not
/// renormalized). Bins empty on both sides contribute 0.
///
/// No scipy equivalent; the reference is the same formula in numpy. Common reading:
/// < 0.1 stable, 0.1–0.25 moderate shift, > 0.25 large shift.
///
/// `None` if the slices differ in length, either total is 0, or `epsilon` is not a positive
/// finite number.
pub fn psi(a: &[u64], b: &[u64], epsilon: f64) -> Option<f64> {
    let (na, nb) = binned_totals(a, b)?;
    if !(positive(epsilon) && epsilon.is_finite()) {
        return None;
    }
    let (na, nb) = (na as f64, nb as f64);
    let mut sum = 0.0;
    for (&ca, &cb) in a.iter().zip(b) {
        let pa = ca as f64 / na;
        let pb = cb as f64 / nb;
        let pa = if pa == 0.0 { epsilon } else { pa };
        let pb = if pb == 0.0 { epsilon } else { pb };
        sum += (pa - pb) * (pa / pb).ln();
    }
    Some(sum)
}

/// Jensen–Shannon DISTANCE (base 2) between the distributions of the two count vectors: the
/// square root of the JS divergence, in [0, 1] (0 identical, 1 disjoint).
///
/// Matches `scipy.spatial.distance.jensenshannon(a, b, base=2)` (which normalizes the counts);
/// a divergence that rounds below 0 is clamped to 0 (scipy would return nan there).
///
/// `None` if the slices differ in length or either total is 0.
pub fn jensen_shannon(a: &[u64], b: &[u64]) -> Option<f64> {
    let (na, nb) = binned_totals(a, b)?;
    let (na, nb) = (na as f64, nb as f64);
    let rel_entr = |x: f64, y: f64| if x > 0.0 { x * (x / y).ln() } else { 0.0 };
    let (mut left, mut right) = (0.0, 0.0);
    for (&ca, &cb) in a.iter().zip(b) {
        let p = ca as f64 / na;
        let q = cb as f64 / nb;
        let m = (p + q) / 2.0;
        left += rel_entr(p, m);
        right += rel_entr(q, m);
    }
    let js = (left + right) / LN_2;
    Some((js / 2.0).max(0.0).sqrt())
}

// ============================================================================================
// Quantiles
// ============================================================================================

/// Distribution-free confidence interval for the q-quantile ξ_q from order statistics: 1-based
/// ranks `(lo, hi)` with P(X_(lo) ≤ ξ_q ≤ X_(hi)) ≥ `confidence` for n samples of a continuous
/// distribution.
///
/// With α = 1 − confidence and B ~ Binomial(n, q) (the number of samples below ξ_q):
/// lo = `binom.ppf(α/2, n, q)`, hi = `binom.ppf(1 − α/2, n, q) + 1` (scipy's `binom.ppf`: the
/// smallest k with P(B ≤ k) ≥ the level), then both are clamped to [1, n]. Coverage is
/// P(lo ≤ B ≤ hi − 1) ≥ 1 − α. When clamping was needed (lo would be 0, or hi would be n + 1:
/// too few samples for that quantile, see [`min_samples_for_quantile`]) that end of the interval
/// is the sample minimum/maximum and no longer carries the guarantee.
///
/// Read the values with [`binned_quantile_rank`]. `None` if n = 0, n > 2⁵³, q is not in (0, 1)
/// or `confidence` is not in (0, 1).
pub fn quantile_ci_ranks(n: u64, q: f64, confidence: f64) -> Option<(u64, u64)> {
    if n == 0 || n > MAX_EXACT || !in_open_unit(q) || !in_open_unit(confidence) {
        return None;
    }
    let alpha = 1.0 - confidence;
    let lo = binom_ppf(alpha / 2.0, n, q);
    let hi = binom_ppf(1.0 - alpha / 2.0, n, q).saturating_add(1);
    Some((lo.clamp(1, n), hi.clamp(1, n)))
}

/// Index of the bin holding the sample of 1-based rank `rank` in ascending order (the bin where
/// the cumulative count first reaches `rank`). `None` if `rank` is 0 or exceeds the total.
pub fn binned_quantile_rank(counts: &[u64], rank: u64) -> Option<usize> {
    if rank == 0 {
        return None;
    }
    let mut cum = 0u64;
    for (i, &c) in counts.iter().enumerate() {
        cum = cum.saturating_add(c);
        if cum >= rank {
            return Some(i);
        }
    }
    None
}

/// Smallest n with at least `tail` samples expected above the q-quantile: ⌈tail/(1 − q)⌉,
/// e.g. p99 with tail 10 → 1000, p90 with tail 10 → 100.
///
/// q is taken as the decimal it was written as: a quotient within 1e-9 (relative) of an integer
/// counts as that integer, so binary rounding of 1 − 0.9 does not turn 100 into 101. Returns
/// `u64::MAX` (never enough) if q is not in [0, 1).
pub fn min_samples_for_quantile(q: f64, tail: u64) -> u64 {
    if !(0.0..1.0).contains(&q) {
        return u64::MAX;
    }
    let x = tail as f64 / (1.0 - q);
    let r = x.round();
    let n = if (x - r).abs() <= 1e-9 * r.max(1.0) {
        r
    } else {
        x.ceil()
    };
    // Saturating float-to-int conversion.
    n as u64
}

/// One-sample (paired) t-test of the differences `d` (shadow − primary): is their mean
/// above / below zero. Matches `scipy.stats.ttest_rel(x, y, alternative=…)` with
/// `d = x − y` (equivalently `ttest_1samp(d, 0)`). `statistic` is t = mean / (sd / √n).
///
/// `None` with fewer than 2 differences or zero variance (scipy returns nan there).
pub fn paired_t(d: &Moments, alt: Alternative) -> Option<TestResult> {
    if d.n < 2 || !(d.mean.is_finite() && d.m2.is_finite() && d.m2 >= 0.0) {
        return None;
    }
    let n = d.n as f64;
    let se = (d.m2 / (n - 1.0) / n).sqrt();
    if !positive(se) {
        return None;
    }
    let t = d.mean / se;
    let df = n - 1.0;
    let p = t_p_value(t, df, alt);
    Some(TestResult {
        statistic: t,
        p_value: p,
    })
}

/// Wilcoxon's signed-rank test of paired differences, from their absolute values grouped
/// into ascending classes: `classes[k] = (positive, negative)` counts of the differences
/// whose |d| falls in class k (equal |d| share a class; zero differences are left out).
/// Tied classes get their mid-rank; the normal approximation uses the tie-corrected
/// variance without continuity correction. Matches `scipy.stats.wilcoxon(d,
/// zero_method='wilcox', correction=False, method='approx', alternative=…)` when the
/// classes are exact values. `statistic` is W⁺, the rank sum of the positive differences.
///
/// `None` without differences or when every difference is tied (zero variance).
pub fn wilcoxon_signed_rank(classes: &[(u64, u64)], alt: Alternative) -> Option<TestResult> {
    let n: u64 = classes.iter().map(|(p, q)| p + q).sum();
    if n == 0 {
        return None;
    }
    let mut below = 0u64;
    let mut w_plus = 0.0;
    let mut ties = 0.0;
    for &(p, q) in classes {
        let t = p + q;
        if t == 0 {
            continue;
        }
        let mid = below as f64 + (t as f64 + 1.0) / 2.0;
        w_plus += p as f64 * mid;
        let tf = t as f64;
        ties += tf * tf * tf - tf;
        below += t;
    }
    let nf = n as f64;
    let mean = nf * (nf + 1.0) / 4.0;
    let var = nf * (nf + 1.0) * (2.0 * nf + 1.0) / 24.0 - ties / 48.0;
    if !positive(var) {
        return None;
    }
    let z = (w_plus - mean) / var.sqrt();
    let p = match alt {
        Alternative::Greater => norm_sf(z),
        Alternative::Less => norm_sf(-z),
        Alternative::TwoSided => (2.0 * norm_sf(z.abs())).min(1.0),
    };
    Some(TestResult {
        statistic: w_plus,
        p_value: p,
    })
}

/// Two-sided confidence interval of the mean difference of pairs (`ttest_rel(x, y)
/// .confidence_interval(confidence)`): mean ± t_{1−α/2, n−1}·sd/√n. `None` where
/// [`paired_t`] is `None` or `confidence` is not in (0, 1).
pub fn paired_t_ci(d: &Moments, confidence: f64) -> Option<(f64, f64)> {
    if !(confidence > 0.0 && confidence < 1.0) {
        return None;
    }
    paired_t(d, Alternative::TwoSided)?;
    let n = d.n as f64;
    let se = (d.m2 / (n - 1.0) / n).sqrt();
    let q = t_isf((1.0 - confidence) / 2.0, n - 1.0);
    Some((d.mean - q * se, d.mean + q * se))
}

/// Student's t p-value of `t` with `df` degrees of freedom under `alt`.
fn t_p_value(t: f64, df: f64, alt: Alternative) -> f64 {
    match alt {
        Alternative::Less => t_sf(-t, df),
        Alternative::Greater => t_sf(t, df),
        Alternative::TwoSided => (2.0 * t_sf(t.abs(), df)).min(1.0),
    }
}
