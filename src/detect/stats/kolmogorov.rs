//! The two-sided one-sample Kolmogorov distribution for finite n (scipy `kstwo`, `_ksstats.py`),
//! which gives the two-sided [`ks_2samp`](super::ks_2samp) p-value.

use std::f64::consts::{LN_2, PI};

use super::clip01;
use super::special::{dbinom_raw, LN_2PI};

/// x·2^e without intermediate overflow/underflow of the scale factor.
fn ldexp(mut x: f64, mut e: i64) -> f64 {
    while e > 1000 {
        x *= 2f64.powi(1000);
        e -= 1000;
    }
    while e < -1000 {
        x *= 2f64.powi(-1000);
        e += 1000;
    }
    x * 2f64.powi(e as i32)
}

/// scipy `kstwo.sf(x, n)` = `_kolmogn(n, x, cdf=False)`: P(D_n ≥ x) for the two-sided
/// one-sample Kolmogorov–Smirnov statistic, with scipy's (Simard & L'Ecuyer) choice of method.
pub(super) fn kolmogn_sf(n: u64, x: f64) -> f64 {
    if x.is_nan() || n == 0 {
        return f64::NAN;
    }
    if x >= 1.0 {
        return 0.0;
    }
    if x <= 0.0 {
        return 1.0;
    }
    let nf = n as f64;
    let t = nf * x;
    if t <= 1.0 {
        // Ruben–Gambino: 1/2n <= x <= 1/n.
        if t <= 0.5 {
            return 1.0;
        }
        let prob = if n <= 140 {
            let mut prod = 1.0;
            for i in 1..=n {
                prod *= i as f64 * (1.0 / nf) * (2.0 * t - 1.0);
            }
            prod
        } else {
            (log_nfactorial_div_n_pow_n(nf) + nf * (2.0 * t - 1.0).ln()).exp()
        };
        return clip01(1.0 - prob);
    }
    if t >= nf - 1.0 {
        // Ruben–Gambino
        return clip01(2.0 * (1.0 - x).powf(nf));
    }
    if x >= 0.5 {
        return clip01(2.0 * smirnov_sf(n, x));
    }
    let nxsquared = t * x;
    if n <= 140 {
        if nxsquared <= 0.754693 {
            return clip01(1.0 - dmtw_cdf(n, x));
        }
        if nxsquared <= 4.0 {
            return clip01(1.0 - pomeranz_cdf(n, x));
        }
        return clip01(2.0 * smirnov_sf(n, x));
    }
    if nxsquared >= 370.0 {
        return 0.0;
    }
    if nxsquared >= 2.2 {
        return clip01(2.0 * smirnov_sf(n, x));
    }
    let cdf = if nxsquared >= 18.0 {
        1.0
    } else if n <= 100_000 && nf * x.powf(1.5) <= 1.4 {
        dmtw_cdf(n, x)
    } else {
        pelz_good_cdf(nf, x)
    };
    clip01(1.0 - cdf)
}

/// ln(n!/n^n) by Stirling's series (scipy `_log_nfactorial_div_n_pow_n`).
fn log_nfactorial_div_n_pow_n(n: f64) -> f64 {
    const STIRLING_COEFFS: [f64; 8] = [
        -0.029550653594771242,
        0.00641025641025641,
        -0.0019175269175269176,
        0.0008417508417508417,
        -0.0005952380952380953,
        0.0007936507936507937,
        -0.002777777777777778,
        0.08333333333333333,
    ];
    let rn = 1.0 / n;
    let x = rn / n;
    let poly = STIRLING_COEFFS.iter().fold(0.0, |acc, &c| acc * x + c);
    n.ln() / 2.0 - n + LN_2PI / 2.0 + rn * poly
}

/// Durbin's matrix algorithm (Marsaglia–Tsang–Wang form) for P(D_n ≤ d) (scipy
/// `_kolmogn_DMTW`). The matrix is at most 117×117 on the paths that use it.
fn dmtw_cdf(n: u64, d: f64) -> f64 {
    let ep128 = 2f64.powi(128);
    let em128 = 2f64.powi(-128);
    if d >= 1.0 {
        return 1.0;
    }
    let nf = n as f64;
    let nd = nf * d;
    if nd <= 0.5 {
        return 0.0;
    }
    let k = nd.ceil() as usize;
    let h = k as f64 - nd;
    let m = 2 * k - 1;

    let mut v: Vec<f64> = (1..=m).map(|j| 1.0 - h.powi(j as i32)).collect();
    let mut w = vec![0.0; m];
    let mut fac = 1.0;
    for j in 1..=m {
        w[j - 1] = fac;
        fac /= j as f64;
        v[j - 1] *= fac;
    }
    let tt = (2.0 * h - 1.0).max(0.0).powi(m as i32) - 2.0 * h.powi(m as i32);
    v[m - 1] = (1.0 + tt) * fac;

    let mut hm = vec![0.0; m * m];
    for i in 1..m {
        for s in 0..=(m - i) {
            hm[(i - 1 + s) * m + i] = w[s];
        }
    }
    for r in 0..m {
        hm[r * m] = v[r];
    }
    for c in 0..m {
        hm[(m - 1) * m + c] = v[m - 1 - c];
    }

    let matmul = |x: &[f64], y: &[f64]| -> Vec<f64> {
        let mut out = vec![0.0; m * m];
        for r in 0..m {
            for kk in 0..m {
                let xv = x[r * m + kk];
                if xv == 0.0 {
                    continue;
                }
                let yrow = &y[kk * m..(kk + 1) * m];
                let orow = &mut out[r * m..(r + 1) * m];
                for (o, &yv) in orow.iter_mut().zip(yrow) {
                    *o += xv * yv;
                }
            }
        }
        out
    };

    let mut hpwr = vec![0.0; m * m];
    for r in 0..m {
        hpwr[r * m + r] = 1.0;
    }
    let mut nn = n;
    let mut expnt: i64 = 0;
    let mut hexpnt: i64 = 0;
    while nn > 0 {
        if nn % 2 == 1 {
            hpwr = matmul(&hpwr, &hm);
            expnt += hexpnt;
        }
        hm = matmul(&hm, &hm);
        hexpnt *= 2;
        if hm[(k - 1) * m + (k - 1)].abs() > ep128 {
            for e in hm.iter_mut() {
                *e /= ep128;
            }
            hexpnt += 128;
        }
        nn /= 2;
    }
    let mut p = hpwr[(k - 1) * m + (k - 1)];
    for i in 1..=n {
        p = i as f64 * p / nf;
        if p.abs() < em128 {
            p *= ep128;
            expnt -= 128;
        }
    }
    clip01(ldexp(p, expnt))
}

/// Row interval of the Pomeranz recursion (scipy `_pomeranz_compute_j1j2`).
fn pomeranz_j1j2(i: i64, n: i64, ll: i64, ceilf: i64, roundf: i64) -> (i64, i64) {
    let (j1, j2) = if i == 0 {
        (-ll - ceilf - 1, ll + ceilf - 1)
    } else {
        let (ip1div2, ip1mod2) = ((i + 1) / 2, (i + 1) % 2);
        if ip1mod2 == 0 {
            if ip1div2 == n + 1 {
                (n - ll - ceilf - 1, n + ll + ceilf - 1)
            } else {
                (ip1div2 - 1 - ll - roundf - 1, ip1div2 + ll - 1 + ceilf - 1)
            }
        } else {
            (ip1div2 - 1 - ll - 1, ip1div2 + ll + roundf - 1)
        }
    };
    ((j1 + 2).max(0), j2.min(n))
}

/// Pomeranz's recursion for P(D_n ≤ x) (scipy `_kolmogn_Pomeranz`); used for n ≤ 140 only,
/// with rows of at most 48 entries.
fn pomeranz_cdf(n: u64, x: f64) -> f64 {
    let ep128 = 2f64.powi(128);
    let em128 = 2f64.powi(-128);
    let nf = n as f64;
    let ni = n as i64;
    let t = nf * x;
    let ll = t.floor() as i64;
    let f = t - ll as f64;
    let g = f.min(1.0 - f);
    let ceilf = i64::from(f > 0.0);
    let roundf = i64::from(f > 0.5);
    let npwrs = (2 * (ll + 1)) as usize;
    let mut gpower = vec![1.0; npwrs];
    let mut twogpower = vec![1.0; npwrs];
    let mut onem2gpower = vec![1.0; npwrs];
    let (g_over_n, two_g_over_n, one_minus_two_g_over_n) =
        (g / nf, 2.0 * g / nf, (1.0 - 2.0 * g) / nf);
    for m in 1..npwrs {
        let mf = m as f64;
        gpower[m] = gpower[m - 1] * g_over_n / mf;
        twogpower[m] = twogpower[m - 1] * two_g_over_n / mf;
        onem2gpower[m] = onem2gpower[m - 1] * one_minus_two_g_over_n / mf;
    }
    let mut v0 = vec![0.0; npwrs];
    let mut v1 = vec![0.0; npwrs];
    v1[0] = 1.0;
    let (mut v0s, mut v1s) = (0i64, 0i64);
    let mut expnt: i64 = 0;
    let (mut j1, _) = pomeranz_j1j2(0, ni, ll, ceilf, roundf);
    for i in 1..(2 * ni + 2) {
        let k1 = j1;
        std::mem::swap(&mut v0, &mut v1);
        std::mem::swap(&mut v0s, &mut v1s);
        v1.fill(0.0);
        let (nj1, j2) = pomeranz_j1j2(i, ni, ll, ceilf, roundf);
        j1 = nj1;
        let pwrs = if i == 1 || i == 2 * ni + 1 {
            &gpower
        } else if i % 2 == 1 {
            &twogpower
        } else {
            &onem2gpower
        };
        let ln2 = j2 - k1 + 1;
        if ln2 > 0 {
            let off = k1 - v0s;
            let conv_start = j1 - k1;
            let conv_len = (j2 - j1 + 1).clamp(0, npwrs as i64);
            for idx in 0..conv_len {
                let s = conv_start + idx;
                let mut acc = 0.0;
                let jlo = (s - (ln2 - 1)).max(0);
                let jhi = (ln2 - 1).min(s);
                for jj in jlo..=jhi {
                    let ai = off + jj;
                    let bi = s - jj;
                    if ai < 0 || ai >= npwrs as i64 || bi >= npwrs as i64 {
                        continue;
                    }
                    acc += v0[ai as usize] * pwrs[bi as usize];
                }
                v1[idx as usize] = acc;
            }
            let maxv = v1.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            if 0.0 < maxv && maxv < em128 {
                for e in v1.iter_mut() {
                    *e *= ep128;
                }
                expnt -= 128;
            }
            v1s = v0s + j1 - k1;
        }
    }
    let idx = ni - v1s;
    if idx < 0 || idx >= npwrs as i64 {
        return f64::NAN;
    }
    let mut ans = v1[idx as usize];
    for m in 1..=n {
        if ans.abs() > ep128 {
            ans *= em128;
            expnt += 128;
        }
        ans *= m as f64;
    }
    clip01(ldexp(ans, expnt))
}

/// Pelz–Good asymptotic expansion of P(D_n ≤ x) (scipy `_kolmogn_PelzGood`).
fn pelz_good_cdf(n: f64, x: f64) -> f64 {
    const PI_SQUARED: f64 = 9.869604401089358;
    const PI_FOUR: f64 = 97.40909103400242;
    const PI_SIX: f64 = 961.3891935753043;
    const SQRT2PI: f64 = 2.5066282746310002;
    const SQRT3: f64 = 1.7320508075688772;
    if x <= 0.0 {
        return 0.0;
    }
    if x >= 1.0 {
        return 1.0;
    }
    let z = n.sqrt() * x;
    let (zsquared, zthree, zfour, zsix) = (z.powi(2), z.powi(3), z.powi(4), z.powi(6));
    let qlog = -PI_SQUARED / 8.0 / zsquared;
    if qlog < -708.0 {
        return 0.0;
    }
    let q = qlog.exp();
    let k1a = -zsquared;
    let k1b = PI_SQUARED / 4.0;
    let k2a = 6.0 * zsix + 2.0 * zfour;
    let k2b = (2.0 * zfour - 5.0 * zsquared) * PI_SQUARED / 4.0;
    let k2c = PI_FOUR * (1.0 - 2.0 * zsquared) / 16.0;
    let k3d = PI_SIX * (5.0 - 30.0 * zsquared) / 64.0;
    let k3c = PI_FOUR * (-60.0 * zsquared + 212.0 * zfour) / 16.0;
    let k3b = PI_SQUARED * (135.0 * zfour - 96.0 * zsix) / 4.0;
    let k3a = -30.0 * zsix - 90.0 * z.powi(8);

    let mut kk = [0.0f64; 4];
    let maxk = (16.0 * z / PI).ceil() as i64;
    for k in (1..=maxk).rev() {
        let m = (2 * k - 1) as f64;
        let (msquared, mfour, msix) = (m * m, m.powi(4), m.powi(6));
        let qpower = q.powf((8 * k) as f64);
        let coeffs = [
            1.0,
            k1a + k1b * msquared,
            k2a + k2b * msquared + k2c * mfour,
            k3a + k3b * msquared + k3c * mfour + k3d * msix,
        ];
        for (acc, c) in kk.iter_mut().zip(coeffs) {
            *acc = *acc * qpower + c;
        }
    }
    let divisors = [z, 6.0 * zfour, 72.0 * z.powi(7), 6480.0 * z.powi(10)];
    for (acc, dv) in kk.iter_mut().zip(divisors) {
        *acc = *acc * q * SQRT2PI / dv;
    }
    let q2 = (-PI_SQUARED / 2.0 / zsquared).exp();
    let sqrt3z = SQRT3 * z;
    let (mut k2extra, mut k3extra) = (0.0, 0.0);
    for k in (1..=maxk).rev() {
        let ksquared = (k * k) as f64;
        let kspi = PI * k as f64;
        let qp = q2.powf(ksquared);
        k2extra += ksquared * qp;
        k3extra += (sqrt3z + kspi) * (sqrt3z - kspi) * ksquared * qp;
    }
    kk[2] += k2extra * (PI_SQUARED * SQRT2PI / (-36.0 * zthree));
    kk[3] += k3extra * (PI_SQUARED * SQRT2PI / (216.0 * zsix));
    let mut sum = 0.0;
    for (i, acc) in kk.iter().enumerate() {
        sum += acc / n.powf(i as f64 / 2.0);
    }
    sum
}

/// One-sided one-sample Smirnov survival function P(D⁺_n ≥ x) (scipy `special.smirnov`, xsf
/// `_smirnov`) by the Birnbaum–Tingey sum x·Σ_{v<n(1−x)} C(n,v)(x+v/n)^(v−1)(1−x−v/n)^(n−v),
/// each term evaluated as x·dbinom(v; n, x+v/n)/(x+v/n) with Loader's method; above n = 10⁶
/// the same closed-form approximation as xsf. Only the lower sum is needed on the paths of
/// [`kolmogn_sf`] (x ≥ 0.5, or n·x² ≥ 2.2, or n ≤ 140 with n·x² > 4).
fn smirnov_sf(n: u64, x: f64) -> f64 {
    const MINLOG: f64 = -708.3964185322641;
    if !(n > 0 && (0.0..=1.0).contains(&x)) {
        return f64::NAN;
    }
    if n == 1 {
        return 1.0 - x;
    }
    if x == 0.0 {
        return 1.0;
    }
    if x == 1.0 {
        return 0.0;
    }
    let nf = n as f64;
    // n·x = nx_hi + nx_lo exactly; floor and fractional part.
    let nx_hi = nf * x;
    let nx_lo = nf.mul_add(x, -nx_hi);
    let mut nxfl = nx_hi.floor();
    let mut alpha = (nx_hi - nxfl) + nx_lo;
    if alpha < 0.0 {
        nxfl -= 1.0;
        alpha += 1.0;
    }
    if alpha >= 1.0 {
        nxfl += 1.0;
        alpha -= 1.0;
    }
    let nxfl = nxfl as u64;
    if nxfl == 0 || (nxfl == 1 && alpha == 0.0) {
        let cdf = x * (1.0 + x).powf(nf - 1.0);
        return clip01(1.0 - cdf);
    }
    if -2.0 * nf * x * x < MINLOG {
        return 0.0;
    }
    if nxfl >= n - 1 {
        return clip01((nf * (-x).ln_1p()).exp());
    }
    if n > 1_000_000 {
        let logp = -(6.0 * nf * x + 1.0).powi(2) / 18.0 / nf;
        return if logp < -LN_2 {
            logp.exp()
        } else {
            1.0 - (-logp.exp_m1())
        };
    }
    let n_terms = n - nxfl;
    let vmid = n / 2;
    let mut sum = (nf * (-x).ln_1p()).exp() / x;
    for j in 1..n_terms {
        let a = ((j as f64 + nx_hi) + nx_lo) / nf;
        let b = (((n - j) as f64 - nx_hi) - nx_lo) / nf;
        let aj = dbinom_raw(j as f64, nf, a, b) / a;
        if aj.is_finite() && aj != 0.0 {
            sum += aj;
        }
        if aj != 0.0 {
            if 4.0 * (n_terms - j) as f64 * aj.abs() < f64::EPSILON * sum && j != n_terms - 1 {
                break;
            }
        } else if j > vmid {
            break;
        }
    }
    clip01(x * sum)
}
