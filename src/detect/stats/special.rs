//! Special and distribution functions behind the tests: the normal tail and quantile, the
//! Student t and chi-square survival functions, and the binomial pmf, tails and quantile.
//!
//! From statrs: the regularized upper incomplete gamma (chi-square survival function, and the
//! normal tail as erfc(x) = Q(½, x²)), `ln_gamma` for small arguments and `erfc_inv` (normal
//! quantile). statrs' own `erfc` is only good to ~1e-10 relative and its `beta_reg` stops after
//! 140 continued-fraction iterations and loses relative precision for parameters in the
//! millions, so the regularized incomplete beta (Student t, binomial) is implemented here:
//! prefactor with Loader's saddle-point terms (as R's `dbinom`), continued fraction run to
//! convergence, DiDonato–Morris' BGRAT expansion where the fraction is ill-conditioned (t with
//! large df), and term-by-term sums for lower binomial tails with small p. Where scipy (Boost)
//! itself is less accurate (binomial tails with n ≳ 10⁸: ~1e-8 relative, checked against mpmath)
//! these functions are the more accurate ones.

use std::f64::consts::SQRT_2;

use statrs::function::erf::erfc_inv;
use statrs::function::gamma::{checked_gamma_ur, ln_gamma};

use super::{clip01, positive};

/// ln √(2π)
const LN_SQRT_2PI: f64 = 0.9189385332046727;
/// ln 2π
pub(super) const LN_2PI: f64 = 1.8378770664093453;

/// Complementary error function for x ≥ 0: Taylor series of erf below 0.5, above it
/// erfc(x) = Q(½, x²) with statrs' regularized upper incomplete gamma (full relative precision in
/// the tail; statrs' own `erfc` is only good to ~1e-10 relative).
fn erfc_nonneg(x: f64) -> f64 {
    if x.is_nan() {
        return f64::NAN;
    }
    if x < 0.5 {
        // erf(x) = 2/√π Σ (−1)^k x^(2k+1) / (k! (2k+1))
        const TWO_OVER_SQRT_PI: f64 = std::f64::consts::FRAC_2_SQRT_PI;
        let x2 = x * x;
        let mut term = x;
        let mut sum = x;
        for k in 1..40 {
            let kf = f64::from(k);
            term *= -x2 / kf;
            let add = term / (2.0 * kf + 1.0);
            sum += add;
            if add.abs() <= f64::EPSILON * sum.abs() {
                break;
            }
        }
        return 1.0 - TWO_OVER_SQRT_PI * sum;
    }
    if x.is_infinite() {
        return 0.0;
    }
    checked_gamma_ur(0.5, x * x).unwrap_or(0.0)
}

/// Standard normal survival function P(Z > z) (scipy `norm.sf`, `ndtr(-z)`), accurate in the
/// far tail.
pub(super) fn norm_sf(z: f64) -> f64 {
    let e = erfc_nonneg(z.abs() / SQRT_2);
    if z >= 0.0 {
        0.5 * e
    } else {
        1.0 - 0.5 * e
    }
}

/// Standard normal quantile Φ⁻¹(p) (scipy `norm.ppf`, `ndtri`).
pub(super) fn norm_ppf(p: f64) -> f64 {
    -SQRT_2 * erfc_inv(2.0 * p)
}

/// Chi-square survival function (scipy `chi2.sf(x, df)`), the regularized upper incomplete
/// gamma Q(df/2, x/2) from statrs.
pub(super) fn chi2_sf(x: f64, df: f64) -> Option<f64> {
    if x.is_nan() || !positive(df) {
        return None;
    }
    if x <= 0.0 {
        return Some(1.0);
    }
    if x.is_infinite() {
        return Some(0.0);
    }
    checked_gamma_ur(df / 2.0, x / 2.0).ok().map(clip01)
}

/// Stirling's error δ(n) = ln Γ(n+1) − [(n + ½) ln n − n + ln √(2π)] (Loader's `stirlerr`).
fn stirlerr(n: f64) -> f64 {
    const S0: f64 = 0.08333333333333333; // 1/12
    const S1: f64 = 0.002777777777777778; // 1/360
    const S2: f64 = 0.0007936507936507937; // 1/1260
    const S3: f64 = 0.0005952380952380953; // 1/1680
    const S4: f64 = 0.0008417508417508417; // 1/1188
    const S5: f64 = 0.0019175269175269176; // 691/360360
    const S6: f64 = 0.00641025641025641; // 1/156
    if n <= 15.0 {
        return ln_gamma(n + 1.0) - (n + 0.5) * n.ln() + n - LN_SQRT_2PI;
    }
    let nn = n * n;
    (S0 - (S1 - (S2 - (S3 - (S4 - (S5 - S6 / nn) / nn) / nn) / nn) / nn) / nn) / n
}

/// Loader's deviance term bd0(x, np) = x ln(x/np) + np − x, accurate when x ≈ np.
fn bd0(x: f64, np: f64) -> f64 {
    if (x - np).abs() < 0.1 * (x + np) {
        let v = (x - np) / (x + np);
        let mut s = (x - np) * v;
        if s.abs() < f64::MIN_POSITIVE {
            return s;
        }
        let mut ej = 2.0 * x * v;
        let v2 = v * v;
        for j in 1..1000 {
            ej *= v2;
            let s1 = s + ej / f64::from(2 * j + 1);
            if s1 == s {
                return s1;
            }
            s = s1;
        }
        return s;
    }
    x * (x / np).ln() + np - x
}

/// Binomial probability C(n,k) p^k q^(n−k), q = 1 − p given separately (Loader's saddle-point
/// `dbinom_raw`, relative accuracy ~1e-15 for any n).
pub(super) fn dbinom_raw(k: f64, n: f64, p: f64, q: f64) -> f64 {
    if p == 0.0 {
        return if k == 0.0 { 1.0 } else { 0.0 };
    }
    if q == 0.0 {
        return if k == n { 1.0 } else { 0.0 };
    }
    if k < 0.0 || k > n {
        return 0.0;
    }
    if k == 0.0 {
        if n == 0.0 {
            return 1.0;
        }
        let lc = if p < 0.1 {
            -bd0(n, n * q) - n * p
        } else {
            n * q.ln()
        };
        return lc.exp();
    }
    if k == n {
        let lc = if q < 0.1 {
            -bd0(n, n * p) - n * q
        } else {
            n * p.ln()
        };
        return lc.exp();
    }
    let lc = stirlerr(n) - stirlerr(k) - stirlerr(n - k) - bd0(k, n * p) - bd0(n - k, n * q);
    // ln(2π k (n−k)/n), with n − k exact (ln1p(−k/n) would lose digits when k/n ≈ 1).
    let lf = LN_2PI + k.ln() + ((n - k) / n).ln();
    (lc - 0.5 * lf).exp()
}

/// x^a y^b / B(a, b) for y = 1 − x, via Stirling's error and bd0 so that it keeps its relative
/// precision for parameters in the millions.
fn ibeta_prefix(a: f64, b: f64, x: f64, y: f64) -> f64 {
    let c = a + b;
    let ln = -bd0(a, c * x) - bd0(b, c * y) + 0.5 * (a.ln() + b.ln() - c.ln()) - LN_SQRT_2PI
        + stirlerr(c)
        - stirlerr(a)
        - stirlerr(b);
    ln.exp()
}

/// Continued fraction of the incomplete beta (modified Lentz), run to convergence.
fn betacf(a: f64, b: f64, x: f64) -> f64 {
    let fpmin = f64::MIN_POSITIVE / f64::EPSILON;
    let qab = a + b;
    let qap = a + 1.0;
    let qam = a - 1.0;
    let mut c = 1.0;
    let mut d = 1.0 - qab * x / qap;
    if d.abs() < fpmin {
        d = fpmin;
    }
    d = 1.0 / d;
    let mut h = d;
    for m in 1..5_000_000u32 {
        let m = f64::from(m);
        let m2 = 2.0 * m;
        let aa = m * (b - m) * x / ((qam + m2) * (a + m2));
        d = 1.0 + aa * d;
        if d.abs() < fpmin {
            d = fpmin;
        }
        c = 1.0 + aa / c;
        if c.abs() < fpmin {
            c = fpmin;
        }
        d = 1.0 / d;
        h *= d * c;
        let aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2));
        d = 1.0 + aa * d;
        if d.abs() < fpmin {
            d = fpmin;
        }
        c = 1.0 + aa / c;
        if c.abs() < fpmin {
            c = fpmin;
        }
        d = 1.0 / d;
        let del = d * c;
        h *= del;
        if (del - 1.0).abs() <= f64::EPSILON {
            break;
        }
    }
    h
}

/// DiDonato & Morris' BGRAT (TOMS 708): asymptotic expansion of I_x(a, b) for a ≥ 15, b ≤ 1 and
/// x near 1, where the continued fraction is ill-conditioned (its coefficients differ from x
/// only by O(1/a), so it loses ~a·ε relative precision). `None` if the expansion fails.
fn bgrat(a: f64, b: f64, x: f64, y: f64) -> Option<f64> {
    let bm1 = b - 1.0;
    let nu = a + 0.5 * bm1;
    let lnx = if y <= 0.375 { (-y).ln_1p() } else { x.ln() };
    let z = -nu * lnx;
    if !(positive(z) && z.is_finite()) {
        return None;
    }
    // r = e^(−z) z^b / Γ(b);  u = r · Γ(a+b) / (Γ(a) ν^b)
    let r = (b * z.ln() - z - ln_gamma(b)).exp();
    let ln_ratio =
        (a - 0.5) * (b / a).ln_1p() - b + b * ((b + 1.0) / (2.0 * nu)).ln_1p() + stirlerr(a + b)
            - stirlerr(a);
    let u = r * ln_ratio.exp();
    if r == 0.0 || u == 0.0 {
        // I_x(a, b) < e^(−z) underflows.
        return Some(0.0);
    }
    let q = if b == 0.5 {
        erfc_nonneg(z.sqrt())
    } else {
        checked_gamma_ur(b, z).ok()?
    };
    let v = 0.25 / (nu * nu);
    let t2 = 0.25 * lnx * lnx;
    let mut j = q / r;
    let mut sum = j;
    let mut t = 1.0;
    let mut cn = 1.0;
    let mut n2 = 0.0;
    let mut c = [0.0f64; 31];
    let mut d = [0.0f64; 31];
    for n in 1..=30usize {
        let bp2n = b + n2;
        j = (bp2n * (bp2n + 1.0) * j + (z + bp2n + 1.0) * t) * v;
        n2 += 2.0;
        t *= t2;
        cn /= n2 * (n2 + 1.0);
        c[n] = cn;
        let mut s = 0.0;
        let mut coef = b - n as f64;
        for i in 1..n {
            s += coef * c[i] * d[n - i];
            coef += b;
        }
        d[n] = bm1 * cn + s / n as f64;
        let dj = d[n] * j;
        sum += dj;
        if !positive(sum) {
            return None;
        }
        if dj.abs() <= f64::EPSILON * sum {
            break;
        }
    }
    Some((u * sum).clamp(0.0, 1.0))
}

/// Regularized incomplete beta I_x(a, b) and its complement 1 − I_x(a, b), with y = 1 − x
/// given separately; the smaller of the two is computed directly (full relative precision),
/// except in the regime a ≥ 15, b ≤ 1, x > 0.7 which goes through [`bgrat`].
fn ibeta(a: f64, b: f64, x: f64, y: f64) -> (f64, f64) {
    if x <= 0.0 {
        return (0.0, 1.0);
    }
    if y <= 0.0 {
        return (1.0, 0.0);
    }
    if a >= 15.0 && b <= 1.0 && x > 0.7 {
        if let Some(w) = bgrat(a, b, x, y) {
            return (w, 1.0 - w);
        }
    }
    let prefix = ibeta_prefix(a, b, x, y);
    if x < (a + 1.0) / (a + b + 2.0) {
        let v = (prefix * betacf(a, b, x) / a).clamp(0.0, 1.0);
        (v, 1.0 - v)
    } else {
        let v = (prefix * betacf(b, a, y) / b).clamp(0.0, 1.0);
        (1.0 - v, v)
    }
}

/// Student t survival function P(T > t) with `df` degrees of freedom (scipy `t.sf`,
/// `stdtr(df, -t)`).
pub(super) fn t_sf(t: f64, df: f64) -> f64 {
    if t.is_nan() || !positive(df) {
        return f64::NAN;
    }
    if t == 0.0 {
        return 0.5;
    }
    if t.is_infinite() {
        return if t > 0.0 { 0.0 } else { 1.0 };
    }
    let t2 = t * t;
    // x = df/(df + t²), y = t²/(df + t²), each computed without cancellation.
    let (x, y) = if t2 > df {
        let r = df / t2;
        (r / (1.0 + r), 1.0 / (1.0 + r))
    } else {
        let r = t2 / df;
        (1.0 / (1.0 + r), r / (1.0 + r))
    };
    // P(|T| > |t|) = I_x(df/2, 1/2).
    let (tail2, tail2c) = ibeta(df / 2.0, 0.5, x, y);
    if t > 0.0 {
        0.5 * tail2
    } else {
        0.5 + 0.5 * tail2c
    }
}

/// Student t quantile: the t with P(T > t) = `p` (scipy `t.isf(p, df)`), by bisection on
/// [`t_sf`] to the last bit. NaN unless 0 < p < 1 and df > 0.
pub(super) fn t_isf(p: f64, df: f64) -> f64 {
    if !(p > 0.0 && p < 1.0 && positive(df)) {
        return f64::NAN;
    }
    if p == 0.5 {
        return 0.0;
    }
    if p > 0.5 {
        return -t_isf(1.0 - p, df);
    }
    // t_sf decreases in t: bracket [0, hi] with t_sf(hi) <= p, then halve.
    let mut hi = 1.0f64;
    while t_sf(hi, df) > p {
        hi *= 2.0;
        if !hi.is_finite() {
            return f64::INFINITY;
        }
    }
    let mut lo = 0.0f64;
    for _ in 0..2000 {
        let mid = 0.5 * (lo + hi);
        if mid <= lo || mid >= hi {
            break;
        }
        if t_sf(mid, df) > p {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    0.5 * (lo + hi)
}

/// Binomial probability P(X = k), X ~ Binomial(n, p) (scipy `binom.pmf`).
pub(super) fn binom_pmf(k: i64, n: u64, p: f64) -> f64 {
    if k < 0 || k as u64 > n {
        return 0.0;
    }
    dbinom_raw(k as f64, n as f64, p, 1.0 - p)
}

/// Binomial tails (P(X ≤ k), P(X > k)), X ~ Binomial(n, p), each with full relative precision.
///
/// p > ½ is reflected to 1 − p (exact) so that the success probability is given exactly. The
/// upper tail is I_p(k + 1, n − k) by the continued fraction in p. The lower tail below the mode
/// is the continued fraction in 1 − p, except for p < 0.05 where it is summed term by term (there
/// 1 − p ≈ 1 has lost the low digits of p and the fraction is ill-conditioned for large n).
fn binom_tails(k: i64, n: u64, p: f64) -> (f64, f64) {
    if k < 0 {
        return (0.0, 1.0);
    }
    if k as u64 >= n {
        return (1.0, 0.0);
    }
    if p <= 0.0 {
        return (1.0, 0.0);
    }
    if p >= 1.0 {
        return (0.0, 1.0);
    }
    if p > 0.5 {
        // X ≤ k  ⇔  n − X ≥ n − k, with n − X ~ Binomial(n, 1 − p).
        let (c, s) = binom_tails(n as i64 - k - 1, n, 1.0 - p);
        return (s, c);
    }
    let (a, b) = (n as f64 - k as f64, k as f64 + 1.0);
    let (x, y) = (1.0 - p, p);
    if p < 0.05 && x < (a + 1.0) / (a + b + 2.0) {
        let lower = binom_lower_sum(k, n, p);
        (lower, 1.0 - lower)
    } else {
        ibeta(a, b, x, y)
    }
}

/// P(X ≤ k) for k below the mode: Σ_{j ≤ k} P(X = j), summed downward from k (the terms
/// decrease) until they no longer matter; the ratio recurrence is re-anchored on Loader's pmf
/// every 32 terms.
fn binom_lower_sum(k: i64, n: u64, p: f64) -> f64 {
    let (nf, q) = (n as f64, 1.0 - p);
    let mut term = binom_pmf(k, n, p);
    let mut sum = term;
    let mut j = k;
    while j > 0 {
        j -= 1;
        term = if (k - j) % 32 == 0 {
            binom_pmf(j, n, p)
        } else {
            // P(X = j) / P(X = j + 1) = (j + 1) q / ((n − j) p)
            term * ((j + 1) as f64 * q) / ((nf - j as f64) * p)
        };
        sum += term;
        if term <= sum * 1e-17 {
            break;
        }
    }
    sum.min(1.0)
}

/// Binomial CDF P(X ≤ k) (scipy `binom.cdf`).
pub(super) fn binom_cdf(k: i64, n: u64, p: f64) -> f64 {
    binom_tails(k, n, p).0
}

/// Binomial survival function P(X > k) (scipy `binom.sf`).
pub(super) fn binom_sf(k: i64, n: u64, p: f64) -> f64 {
    binom_tails(k, n, p).1
}

/// Binomial quantile (scipy `binom.ppf(level, n, p)`): the smallest k with P(X ≤ k) ≥ level,
/// where a CDF within 64 ulps below the level counts as reaching it (exact ties such as
/// `binom.ppf(0.5, 1, 0.5) = 0` must not be lost to rounding).
pub(super) fn binom_ppf(level: f64, n: u64, p: f64) -> u64 {
    let target = level * (1.0 - 64.0 * f64::EPSILON);
    let (mut lo, mut hi) = (0u64, n);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if binom_cdf(mid as i64, n, p) >= target {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    lo
}
