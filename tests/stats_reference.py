#!/usr/bin/env python3
"""Reference values for `src/stats.rs`, computed with scipy.

Regenerate (deterministic: fixed seeds, sorted keys, no timestamps):

    python3 tests/stats_reference.py > tests/fixtures/stats_reference.json

Check that the committed fixture is what scipy computes here (CI does this):

    python3 tests/stats_reference.py --check tests/fixtures/stats_reference.json

Floats are compared to 1e-10 relative: the last digits of some values depend on the CPU and the
math library scipy runs on (seen: 13 values differing around 1e-14 between two machines of the
same kind with the same scipy and numpy), which says nothing about the reference itself.

Requires Python 3.11+, numpy and scipy (the version used is recorded in the JSON under
"scipy_version"; the fixture in the repository was made with scipy 1.16.3:
`pip install scipy==1.16.3`).

The Rust side never sees raw samples: binned tests get aligned count vectors (bin i of `a` and
of `b` is the same value range, bins ascending by value). Here every bin is expanded to its
representative value repeated count[i] times (`np.repeat(bin_values, counts)`) and scipy runs
on the expanded samples, so ties are exactly what the Rust code assumes. Moment-based tests get
(n, mean, m2) with m2 the sum of squared deviations.

`alternative` in the JSON is the name of the Rust `Alternative` ("two-sided", "less",
"greater", meaning current `a` smaller / larger than baseline `b`); `scipy_alternative` is what
was passed to scipy (they differ only for ks_2samp, see there). `expected` is null where the
Rust function must return None (scipy raises, returns nan, or the test is undefined).

The "distributions" section holds scipy values of the distribution functions the tests are built
on (norm.sf, t.sf, chi2.sf, binom pmf/cdf/sf/ppf, kstwo.sf over all of scipy's method branches);
`src/stats.rs` checks its private implementations against them.
"""

import json
import math
import sys
from fractions import Fraction

import warnings

import numpy as np
import scipy
from scipy import stats
from scipy.spatial.distance import jensenshannon

warnings.simplefilter("ignore")  # anderson_ksamp warns when it caps the p-value

ALTS = ["two-sided", "less", "greater"]


def f(x):
    """JSON-safe float (None for nan/inf)."""
    x = float(x)
    return x if math.isfinite(x) else None


def ints(v):
    return [int(c) for c in v]


# ---------------------------------------------------------------------------------------------
# Binned data


def bin_values(k):
    """Representative value of each bin: ascending, HDR-like (geometric) spacing."""
    return np.round(np.geomspace(1.0, 1.0e5, k), 3)


def hist(x, k, lo=0.0, hi=10.0):
    """Counts of samples x in k equal-width bins on [lo, hi] (values outside are clipped)."""
    edges = np.linspace(lo, hi, k + 1)
    x = np.clip(x, lo, hi - 1e-9)
    return np.histogram(x, edges)[0].astype(np.int64)


def expand(counts):
    counts = np.asarray(counts, dtype=np.int64)
    return np.repeat(bin_values(len(counts)), counts)


def binned_cases():
    """(name, a_counts, b_counts): aligned count vectors for the rank tests."""
    cases = []

    def add(name, a, b):
        a, b = np.asarray(a, dtype=np.int64), np.asarray(b, dtype=np.int64)
        assert a.shape == b.shape
        cases.append((name, ints(a), ints(b)))

    rng = np.random.default_rng(101)
    add("small_5_vs_7", hist(rng.normal(5, 2, 5), 10), hist(rng.normal(5, 2, 7), 10))
    rng = np.random.default_rng(102)
    add("heavy_ties_3_bins", hist(rng.normal(5, 2, 20), 3), hist(rng.normal(6, 2, 25), 3))
    rng = np.random.default_rng(103)
    same = hist(rng.lognormal(1.0, 0.5, 1000), 40)
    add("identical_1000", same, same)
    rng = np.random.default_rng(104)
    add(
        "same_dist_2000_vs_3000",
        hist(rng.lognormal(1.0, 0.5, 2000), 60),
        hist(rng.lognormal(1.0, 0.5, 3000), 60),
    )
    rng = np.random.default_rng(105)
    add(
        "shifted_500_vs_800",
        hist(rng.lognormal(1.1, 0.5, 500), 50),
        hist(rng.lognormal(1.0, 0.5, 800), 50),
    )
    rng = np.random.default_rng(106)
    add(
        "very_different_5000",
        hist(rng.normal(4.0, 1.0, 5000), 80),
        hist(rng.normal(6.0, 1.0, 5000), 80),
    )
    rng = np.random.default_rng(107)
    a = hist(rng.normal(3.0, 1.0, 400), 30)
    b = hist(rng.normal(5.0, 1.0, 600), 30)
    a[15:] = 0  # a only in the low bins
    b[:8] = 0  # b only in the high bins
    add("one_side_empty_bins", a, b)
    add("disjoint", [5, 9, 3, 0, 0, 0], [0, 0, 0, 4, 8, 1])
    rng = np.random.default_rng(109)
    add(
        "large_200k_vs_150k_small_shift",
        hist(rng.lognormal(1.0, 0.4, 200_000), 100),
        hist(rng.lognormal(1.005, 0.4, 150_000), 100),
    )
    rng = np.random.default_rng(110)
    add(
        "unbalanced_30_vs_100k",
        hist(rng.lognormal(1.2, 0.4, 30), 64),
        hist(rng.lognormal(1.0, 0.4, 100_000), 64),
    )
    add("two_values", [0, 12, 0, 0], [0, 0, 0, 9])
    rng = np.random.default_rng(112)
    a = np.zeros(200, dtype=np.int64)
    b = np.zeros(200, dtype=np.int64)
    np.add.at(a, rng.choice(200, 12), 1)
    np.add.at(b, rng.choice(200, 30), 1)
    add("sparse_200_bins", a, b)
    rng = np.random.default_rng(113)
    add(
        "huge_3m_vs_2_5m",
        hist(rng.lognormal(1.0, 0.5, 3_000_000), 48),
        hist(rng.lognormal(1.002, 0.5, 2_500_000), 48),
    )
    rng = np.random.default_rng(114)
    add(
        "night_20_vs_1000",
        hist(rng.lognormal(1.3, 0.5, 20), 30),
        hist(rng.lognormal(1.0, 0.5, 1000), 30),
    )
    rng = np.random.default_rng(115)
    add(
        "medium_150_vs_130",
        hist(rng.normal(5.0, 1.0, 150), 40),
        hist(rng.normal(5.15, 1.0, 130), 40),
    )
    rng = np.random.default_rng(116)
    add(
        "mid_20k_vs_30k_tiny_shift",
        hist(rng.lognormal(1.0, 0.5, 20_000), 90),
        hist(rng.lognormal(1.01, 0.5, 30_000), 90),
    )
    for seed, shift in [(117, 0.12), (118, 0.18), (119, 0.25)]:
        rng = np.random.default_rng(seed)
        add(
            f"slight_shift_400_vs_500_{seed}",
            hist(rng.normal(5.0, 1.0, 400), 45),
            hist(rng.normal(5.0 + shift, 1.0, 500), 45),
        )
    return cases


# Sub-sets for which the one-sided alternatives are computed too.
ONE_SIDED = {
    "small_5_vs_7",
    "heavy_ties_3_bins",
    "shifted_500_vs_800",
    "very_different_5000",
    "one_side_empty_bins",
    "large_200k_vs_150k_small_shift",
    "night_20_vs_1000",
    "disjoint",
}

# Degenerate inputs: the Rust functions return None.
DEGENERATE = [
    ("a_empty", [0, 0, 0], [1, 2, 3]),
    ("b_empty", [4, 0, 1], [0, 0, 0]),
    ("length_mismatch", [1, 2], [1, 2, 3]),
]


def mwu_cases():
    out = []
    for name, a, b in binned_cases():
        x, y = expand(a), expand(b)
        assert max(np.asarray(a) + np.asarray(b)) < 2_000_000  # scipy's int64 tie term
        for alt in ALTS if name in ONE_SIDED else ["two-sided"]:
            r = stats.mannwhitneyu(
                x, y, use_continuity=True, alternative=alt, method="asymptotic"
            )
            out.append(
                dict(
                    name=name,
                    a=a,
                    b=b,
                    alternative=alt,
                    scipy_alternative=alt,
                    expected=dict(statistic=f(r.statistic), p_value=f(r.pvalue)),
                )
            )
    # All values tied: scipy gives z = -0.5/0 = -inf and p = 1; the statistic's variance is
    # zero, so the Rust function returns None.
    for name, a, b in DEGENERATE + [("all_tied", [0, 7, 0], [0, 5, 0])]:
        out.append(dict(name=name, a=a, b=b, alternative="two-sided", expected=None))
    return out


# Rust `Alternative` -> scipy ks_2samp `alternative`. scipy names the one-sided KS alternatives
# after the CDFs: 'greater' means F_a > F_b somewhere, i.e. `a` tends to be SMALLER. The Rust
# enum names the direction of the values (Less = current smaller), hence the swap.
KS_ALT = {"two-sided": "two-sided", "less": "greater", "greater": "less"}


def ks_cases():
    out = []
    for name, a, b in binned_cases():
        x, y = expand(a), expand(b)
        for alt in ALTS if name in ONE_SIDED else ["two-sided"]:
            r = stats.ks_2samp(x, y, alternative=KS_ALT[alt], method="asymp")
            out.append(
                dict(
                    name=name,
                    a=a,
                    b=b,
                    alternative=alt,
                    scipy_alternative=KS_ALT[alt],
                    expected=dict(statistic=f(r.statistic), p_value=f(r.pvalue)),
                )
            )
    for name, a, b in DEGENERATE:
        out.append(dict(name=name, a=a, b=b, alternative="two-sided", expected=None))
    # en = n*m/(n+m) rounds to 0 for one sample each: kstwo is undefined for n = 0.
    out.append(dict(name="one_vs_one", a=[1, 0], b=[0, 1], alternative="two-sided", expected=None))
    return out


def anderson_cases():
    out = []
    for name, a, b in binned_cases():
        if sum(a) + sum(b) > 2_000_000:
            continue  # scipy's O(N) loops and memory; covered by the 350k case
        r = stats.anderson_ksamp([expand(a), expand(b)], midrank=True)
        out.append(
            dict(name=name, a=a, b=b, expected=dict(statistic=f(r.statistic), p_value=f(r.pvalue)))
        )
    # A single distinct value (scipy raises), and tiny N where the variance formula divides by
    # (N-1)(N-2)(N-3) = 0.
    for name, a, b in DEGENERATE + [
        ("one_distinct_value", [0, 7, 0], [0, 5, 0]),
        ("n_total_3", [1, 1, 0], [0, 0, 1]),
    ]:
        out.append(dict(name=name, a=a, b=b, expected=None))
    return out


# ---------------------------------------------------------------------------------------------
# Moments


def moments(x):
    x = np.asarray(x, dtype=np.float64)
    mean = float(np.mean(x))
    return dict(n=int(x.size), mean=mean, m2=float(np.sum((x - mean) ** 2)))


def welch_cases():
    out = []

    def add_samples(name, x, y, alts=ALTS):
        for alt in alts:
            r = stats.ttest_ind(x, y, equal_var=False, alternative=alt)
            out.append(
                dict(
                    name=name,
                    a=moments(x),
                    b=moments(y),
                    alternative=alt,
                    expected=dict(statistic=f(r.statistic), p_value=f(r.pvalue)),
                )
            )

    def add_stats(name, a, b, alts=ALTS):
        # Sketch-sized inputs (millions of samples): scipy's ttest_ind_from_stats is the same
        # computation as ttest_ind with the means and (n-1)-variances.
        for alt in alts:
            r = stats.ttest_ind_from_stats(
                a["mean"],
                math.sqrt(a["m2"] / (a["n"] - 1)),
                a["n"],
                b["mean"],
                math.sqrt(b["m2"] / (b["n"] - 1)),
                b["n"],
                equal_var=False,
                alternative=alt,
            )
            out.append(
                dict(
                    name=name,
                    a=a,
                    b=b,
                    alternative=alt,
                    expected=dict(statistic=f(r.statistic), p_value=f(r.pvalue)),
                )
            )

    rng = np.random.default_rng(201)
    add_samples("small_5_vs_6", rng.normal(10, 2, 5), rng.normal(12, 3, 6))
    rng = np.random.default_rng(202)
    x = rng.normal(100, 15, 50)
    add_samples("identical", x, x.copy(), ["two-sided", "less"])
    rng = np.random.default_rng(203)
    add_samples("large_100k_small_diff", rng.normal(250, 40, 100_000), rng.normal(250.5, 40, 100_000))
    rng = np.random.default_rng(204)
    add_samples("very_different", rng.normal(100, 10, 1000), rng.normal(115, 10, 1000))
    rng = np.random.default_rng(205)
    add_samples("unequal_var_10_vs_200", rng.normal(5, 1, 10), rng.normal(4, 10, 200))
    rng = np.random.default_rng(206)
    add_samples("one_constant", np.full(30, 7.0), rng.normal(8, 2, 40))
    add_samples("n2_each", [1.0, 3.0], [2.0, 7.0])
    rng = np.random.default_rng(208)
    add_samples("latency_lognormal_300_vs_5000", rng.lognormal(5.0, 0.6, 300), rng.lognormal(5.1, 0.6, 5000))
    rng = np.random.default_rng(209)
    add_samples("extreme_t", rng.normal(0, 1, 3000), rng.normal(6, 1, 3000), ["two-sided"])
    add_stats(
        "sketch_5m_vs_3m",
        dict(n=5_000_000, mean=812.25, m2=5_000_000 * 310.0**2),
        dict(n=3_000_000, mean=811.9, m2=3_000_000 * 305.0**2),
    )
    add_stats(
        "sketch_2_vs_1m",
        dict(n=2, mean=1500.0, m2=2.0e4),
        dict(n=1_000_000, mean=800.0, m2=1_000_000 * 250.0**2),
        ["two-sided", "greater"],
    )
    for name, a, b in [
        ("n1_is_1", dict(n=1, mean=3.0, m2=0.0), dict(n=10, mean=2.0, m2=5.0)),
        ("n_is_0", dict(n=0, mean=0.0, m2=0.0), dict(n=10, mean=2.0, m2=5.0)),
        ("both_zero_variance", dict(n=5, mean=3.0, m2=0.0), dict(n=8, mean=4.0, m2=0.0)),
    ]:
        out.append(dict(name=name, a=a, b=b, alternative="two-sided", expected=None))
    return out


# ---------------------------------------------------------------------------------------------
# Rates


def two_proportion_cases():
    out = []

    def ref(x1, n1, x2, n2, alt):
        p1, p2 = x1 / n1, x2 / n2
        p = (x1 + x2) / (n1 + n2)
        z = (p1 - p2) / math.sqrt(p * (1 - p) * (1 / n1 + 1 / n2))
        if alt == "two-sided":
            pv = 2 * stats.norm.sf(abs(z))
        elif alt == "less":
            pv = stats.norm.cdf(z)
        else:
            pv = stats.norm.sf(z)
        return dict(statistic=f(z), p_value=f(min(1.0, pv)))

    for name, x1, n1, x2, n2, alts in [
        ("typical", 12, 1000, 8, 1000, ALTS),
        ("zero_current", 0, 500, 5, 500, ALTS),
        ("night_1_of_20_vs_baseline", 1, 20, 40, 20000, ALTS),
        ("same_rate", 30, 1000, 60, 2000, ["two-sided", "less"]),
        ("huge_difference", 5000, 10000, 3000, 10000, ALTS),
        ("all_current_success", 50, 50, 10, 100, ["two-sided", "greater"]),
        ("large_n_small_diff", 10_120, 1_000_000, 10_000, 1_000_000, ALTS),
    ]:
        for alt in alts:
            out.append(
                dict(
                    name=name, x1=x1, n1=n1, x2=x2, n2=n2, alternative=alt,
                    expected=ref(x1, n1, x2, n2, alt),
                )
            )
    for name, x1, n1, x2, n2 in [
        ("pooled_zero", 0, 100, 0, 100),
        ("pooled_one", 100, 100, 40, 40),
        ("n_zero", 0, 0, 1, 10),
        ("x_gt_n", 11, 10, 1, 10),
    ]:
        out.append(
            dict(name=name, x1=x1, n1=n1, x2=x2, n2=n2, alternative="two-sided", expected=None)
        )
    return out


def wilson_cases():
    out = []
    for k, n in [(0, 20), (1, 20), (10, 20), (20, 20), (0, 1), (1, 1), (5000, 1_000_000),
                 (3, 100_000), (999_999, 1_000_000), (7, 13)]:
        for conf in [0.95, 0.99, 0.9]:
            ci = stats.binomtest(k, n).proportion_ci(confidence_level=conf, method="wilson")
            out.append(dict(k=k, n=n, confidence=conf, expected=[f(ci.low), f(ci.high)]))
    for k, n, conf in [(0, 0, 0.95), (3, 2, 0.95), (1, 10, 1.0), (1, 10, 0.0)]:
        out.append(dict(k=k, n=n, confidence=conf, expected=None))
    return out


def binom_test_cases():
    out = []
    for k, n, p, alts in [
        (1, 20, 0.01, ALTS),  # 1 error in 20 requests at night, baseline 1 %
        (0, 20, 0.01, ALTS),
        (20, 20, 0.99, ALTS),
        (0, 100, 0.5, ALTS),
        (100, 100, 0.5, ALTS),
        (7, 1000, 0.01, ALTS),
        (50, 100, 0.5, ["two-sided"]),
        (30, 1000, 0.01, ALTS),
        (1100, 1_000_000, 0.001, ALTS),
        (880, 1_000_000, 0.001, ["two-sided"]),
        (3, 10, 0.3, ["two-sided"]),
        (0, 10, 0.0, ["two-sided", "greater"]),
        (10, 10, 1.0, ["two-sided", "less"]),
        (2, 10, 0.0, ["two-sided"]),
        (400, 1000, 0.37, ALTS),
        (12, 40, 0.5, ["two-sided"]),
    ]:
        for alt in alts:
            r = stats.binomtest(k, n, p, alternative=alt)
            out.append(dict(k=k, n=n, p=p, alternative=alt, expected=f(r.pvalue)))
    for k, n, p in [(0, 0, 0.5), (3, 2, 0.5), (1, 10, 1.5), (1, 10, -0.1)]:
        out.append(dict(k=k, n=n, p=p, alternative="two-sided", expected=None))
    return out


def exceedance_cases():
    """The exceedance test: c of n current samples above tau; under H0 (the q-quantile is at
    most tau) at most Binomial(n, 1 - q) of them are: scipy's one-sided binomtest. `samples`
    cases draw log-normal latencies, scale them (the incident) and count above 2 x the
    baseline's P99 with numpy, as the Rust side does on HDR buckets away from the edges."""
    out = []
    for c, n, q in [
        (0, 60, 0.99),
        (1, 60, 0.99),
        (5, 180, 0.99),
        (6, 180, 0.99),
        (9, 360, 0.99),
        (12, 360, 0.99),
        (3, 60, 0.99),
        (30, 900, 0.99),
        (2, 50, 0.999),
        (60, 100, 0.5),
        (100, 100, 0.9),
        (0, 1, 0.99),
    ]:
        r = stats.binomtest(c, n, 1.0 - q, alternative="greater")
        out.append(dict(name=f"c{c}_n{n}_q{q}", c=c, n=n, q=q, expected=f(r.pvalue)))
    for seed, scale, n in [(201, 2.5, 180), (202, 3.0, 120), (203, 1.0, 360), (204, 2.0, 600)]:
        rng = np.random.default_rng(seed)
        base = rng.lognormal(math.log(800.0), 0.45, 3600)
        cur = rng.lognormal(math.log(800.0 * scale), 0.45, n)
        tau = 2.0 * float(np.quantile(base, 0.99, method="inverted_cdf"))
        c = int(np.sum(cur > tau))
        r = stats.binomtest(c, n, 0.01, alternative="greater")
        out.append(dict(name=f"lognormal_x{scale}_n{n}", c=c, n=n, q=0.99, expected=f(r.pvalue)))
    out.append(dict(name="no_samples", c=0, n=0, q=0.99, expected=None))
    return out


def welch_ci_cases():
    """Welch confidence intervals of mean_a - mean_b (scipy's TtestResult.confidence_interval)."""
    out = []

    def add(name, x, y, confs=(0.95, 0.99, 0.9)):
        for conf in confs:
            ci = stats.ttest_ind(x, y, equal_var=False).confidence_interval(confidence_level=conf)
            out.append(dict(name=name, a=moments(x), b=moments(y), confidence=conf,
                            expected=[f(ci.low), f(ci.high)]))

    rng = np.random.default_rng(301)
    add("small_5_vs_6", rng.normal(10, 2, 5), rng.normal(12, 3, 6))
    rng = np.random.default_rng(302)
    add("judge_scores_200_vs_300", rng.beta(8, 2, 200), rng.beta(7, 2, 300))
    rng = np.random.default_rng(303)
    add("unequal_var_10_vs_200", rng.normal(5, 1, 10), rng.normal(4, 10, 200))
    rng = np.random.default_rng(304)
    add("large_100k", rng.normal(250, 40, 100_000), rng.normal(250.5, 40, 100_000), (0.95,))
    add("n2_each", [1.0, 3.0], [2.0, 7.0])
    rng = np.random.default_rng(306)
    add("one_constant", np.full(30, 7.0), rng.normal(8, 2, 40), (0.95,))
    for a, b, conf in [([1.0], [2.0, 3.0], 0.95), ([1.0, 1.0], [2.0, 2.0], 0.95),
                       ([1.0, 2.0], [2.0, 3.0], 1.0)]:
        out.append(dict(name="undefined", a=moments(a), b=moments(b), confidence=conf,
                        expected=None))
    return out


def newcombe_cases():
    """Newcombe's hybrid score interval for k1/n1 - k2/n2, from scipy's Wilson intervals."""
    out = []
    for k1, n1, k2, n2 in [(56, 70, 48, 80), (9, 10, 3, 10), (6, 7, 2, 7), (5, 56, 0, 29),
                           (0, 10, 0, 20), (10, 10, 0, 20), (30, 1000, 12, 1000),
                           (5000, 1_000_000, 4800, 1_000_000), (3, 40, 1, 300)]:
        for conf in [0.95, 0.99]:
            w1 = stats.binomtest(k1, n1).proportion_ci(confidence_level=conf, method="wilson")
            w2 = stats.binomtest(k2, n2).proportion_ci(confidence_level=conf, method="wilson")
            p1, p2 = k1 / n1, k2 / n2
            d = p1 - p2
            lo = d - math.sqrt((p1 - w1.low) ** 2 + (w2.high - p2) ** 2)
            hi = d + math.sqrt((w1.high - p1) ** 2 + (p2 - w2.low) ** 2)
            out.append(dict(k1=k1, n1=n1, k2=k2, n2=n2, confidence=conf, expected=[f(lo), f(hi)]))
    for k1, n1, k2, n2 in [(0, 0, 1, 2), (3, 2, 1, 2)]:
        out.append(dict(k1=k1, n1=n1, k2=k2, n2=n2, confidence=0.95, expected=None))
    return out


def welch_threshold_cases():
    """Welch's test against the threshold: "the current mean is at most theta (relative
    change) below the baseline's" is ttest_ind(cur, (1 + theta) * base); for a difference
    theta, ttest_ind(cur, base + theta)."""
    out = []
    for seed, drop, theta, n_cur, n_base, effect in [
        (301, 0.10, -0.05, 150, 18000, "relative_change"),
        (302, 0.06, -0.05, 3000, 18000, "relative_change"),
        (303, 0.00, -0.05, 300, 18000, "relative_change"),
        (304, 0.10, -0.05, 40, 200, "relative_change"),
        (305, 0.08, -0.03, 500, 5000, "difference"),
        (306, -0.10, 0.05, 400, 4000, "relative_change"),
    ]:
        rng = np.random.default_rng(seed)
        base = np.clip(rng.normal(0.8, 0.12, n_base), 0, 1)
        cur = np.clip(rng.normal(0.8 * (1 - drop), 0.12, n_cur), 0, 1)
        moved = base * (1 + theta) if effect == "relative_change" else base + theta
        for alt in ALTS:
            r = stats.ttest_ind(cur, moved, equal_var=False, alternative=alt)
            out.append(
                dict(
                    name=f"drop{drop}_theta{theta}_{effect}_{n_cur}",
                    a=moments(cur),
                    b=moments(base),
                    effect=effect,
                    threshold=theta,
                    alternative=alt,
                    expected=dict(statistic=f(r.statistic), p_value=f(r.pvalue)),
                )
            )
    return out


def cusum_cases():
    """Page's CUSUM change-point estimate, computed independently: the start of the step j
    maximising sum(llr[j:]), the latest of equal maxima, None when no suffix sum is positive.
    Bernoulli steps (k of n against p0 -> p1), as the error-rate and exceedance onsets use."""
    out = []
    for seed, p0, p1, steps, change, rate in [
        (401, 0.01, 0.04, 60, 40, 20),
        (402, 0.003, 0.04, 30, 12, 20),
        (403, 0.01, 0.05, 30, 29, 30),
        (404, 0.01, 0.04, 30, 30, 20),
        (405, 0.0005, 0.034, 30, 18, 30),
    ]:
        rng = np.random.default_rng(seed)
        ks, ns, llr = [], [], []
        for j in range(steps):
            n = int(rng.poisson(rate))
            p = p1 if j >= change else p0 * 0.3
            k = int(rng.binomial(n, p))
            ks.append(k)
            ns.append(n)
            llr.append(k * math.log(p1 / p0) + (n - k) * math.log((1 - p1) / (1 - p0)))
        suffix = np.cumsum(np.asarray(llr)[::-1])[::-1]
        best = float(np.max(suffix))
        if best > 0:
            at = int(np.flatnonzero(suffix == best)[-1])
            expected = at * 10_000
        else:
            expected = None
        out.append(dict(name=f"seed{seed}", p0=p0, p1=p1, k=ks, n=ns, expected=expected))
    return out


# ---------------------------------------------------------------------------------------------
# Categorical


def chi_square_cases():
    out = []

    def add(name, a, b):
        a, b = np.asarray(a, dtype=np.int64), np.asarray(b, dtype=np.int64)
        keep = (a + b) > 0
        obs = np.vstack([a[keep], b[keep]])
        r = stats.chi2_contingency(obs, correction=False)
        out.append(
            dict(name=name, a=ints(a), b=ints(b), expected=dict(statistic=f(r.statistic), p_value=f(r.pvalue)))
        )

    add("two_columns", [30, 70], [45, 55])
    add("same_distribution", [120, 340, 90, 50], [250, 660, 170, 110])
    add("identical", [5, 10, 15], [5, 10, 15])
    add("sparse_categories", [0, 3, 0, 0, 1, 40, 0, 2], [0, 0, 0, 5, 2, 300, 0, 1])
    add("one_side_empty", [10, 0, 25, 0], [12, 8, 20, 3])
    rng = np.random.default_rng(301)
    add("fifty_categories", rng.poisson(20, 50), rng.poisson(20, 50))
    add("tiny_p", [900, 50, 50], [100, 800, 100])
    add("extreme_p", [100_000, 0, 10], [0, 100_000, 10])
    add("large_counts_small_shift", [500_300, 250_100, 249_600], [500_000, 250_000, 250_000])
    for name, a, b in [
        ("one_nonempty_column", [0, 5, 0], [0, 7, 0]),
        ("a_all_zero", [0, 0, 0], [1, 2, 3]),
        ("length_mismatch", [1, 2], [1, 2, 3]),
        ("all_zero", [0, 0], [0, 0]),
    ]:
        out.append(dict(name=name, a=a, b=b, expected=None))
    return out


def psi_ref(a, b, eps):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    pa, pb = a / a.sum(), b / b.sum()
    pa = np.where(pa == 0, eps, pa)
    pb = np.where(pb == 0, eps, pb)
    return float(np.sum((pa - pb) * np.log(pa / pb)))


def psi_cases():
    out = []
    rng = np.random.default_rng(401)
    shifted = (hist(rng.normal(5.3, 2, 5000), 10), hist(rng.normal(5, 2, 20000), 10))
    for name, a, b, eps in [
        ("identical", [10, 20, 30, 40], [10, 20, 30, 40], 1e-4),
        ("proportional", [1, 2, 3, 4], [100, 200, 300, 400], 1e-4),
        ("shifted_deciles", shifted[0], shifted[1], 1e-4),
        ("zero_in_current", [0, 50, 50], [10, 45, 45], 1e-4),
        ("zero_in_baseline", [5, 50, 45], [0, 50, 50], 1e-4),
        ("zero_both_sides", [0, 30, 0, 70], [0, 40, 10, 50], 1e-4),
        ("other_epsilon", [0, 50, 50], [10, 45, 45], 1e-6),
        ("disjoint", [10, 0], [0, 10], 1e-4),
    ]:
        out.append(dict(name=name, a=ints(a), b=ints(b), epsilon=eps, expected=psi_ref(a, b, eps)))
    for name, a, b, eps in [
        ("a_empty", [0, 0], [1, 1], 1e-4),
        ("length_mismatch", [1, 2], [1, 2, 3], 1e-4),
        ("bad_epsilon", [1, 2], [2, 1], 0.0),
    ]:
        out.append(dict(name=name, a=a, b=b, epsilon=eps, expected=None))
    return out


def js_cases():
    out = []
    rng = np.random.default_rng(501)
    shifted = (hist(rng.normal(5.3, 2, 5000), 12), hist(rng.normal(5, 2, 20000), 12))
    rng = np.random.default_rng(502)
    wide = (rng.poisson(30, 300), rng.poisson(30, 300))
    for name, a, b in [
        ("identical", [10, 20, 30, 40], [10, 20, 30, 40]),
        ("proportional", [1, 2, 3, 4], [100, 200, 300, 400]),
        ("disjoint", [10, 0], [0, 10]),
        ("shifted", shifted[0], shifted[1]),
        ("zeros_on_one_side", [0, 5, 5, 0], [3, 3, 3, 3]),
        ("wide_300_bins", wide[0], wide[1]),
        ("tiny_difference", [1_000_000, 1_000_001], [1_000_001, 1_000_000]),
    ]:
        out.append(dict(name=name, a=ints(a), b=ints(b), expected=f(jensenshannon(a, b, base=2))))
    for name, a, b in [("a_empty", [0, 0], [1, 1]), ("length_mismatch", [1, 2], [1, 2, 3])]:
        out.append(dict(name=name, a=a, b=b, expected=None))
    return out


# ---------------------------------------------------------------------------------------------
# Quantiles


def quantile_ci_cases():
    out = []
    for n in [1, 5, 10, 30, 100, 1000, 10_000, 1_000_000]:
        for q in [0.5, 0.9, 0.99, 0.999]:
            for conf in [0.95, 0.99]:
                a = 1.0 - conf
                lo = int(stats.binom.ppf(a / 2.0, n, q))
                hi = int(stats.binom.ppf(1.0 - a / 2.0, n, q)) + 1
                lo, hi = min(max(lo, 1), n), min(max(hi, 1), n)
                out.append(dict(n=n, q=q, confidence=conf, expected=[lo, hi]))
    for n, q, conf in [(0, 0.5, 0.95), (10, 0.0, 0.95), (10, 1.0, 0.95), (10, 0.5, 1.0), (10, 0.5, 0.0)]:
        out.append(dict(n=n, q=q, confidence=conf, expected=None))
    return out


def binned_rank_cases():
    out = []
    for counts, rank in [
        ([3, 0, 2, 5], 1), ([3, 0, 2, 5], 3), ([3, 0, 2, 5], 4), ([3, 0, 2, 5], 5),
        ([3, 0, 2, 5], 6), ([3, 0, 2, 5], 10), ([0, 0, 7], 7), ([1_000_000, 1], 1_000_001),
    ]:
        samples = np.repeat(np.arange(len(counts)), counts)
        out.append(dict(counts=counts, rank=rank, expected=int(samples[rank - 1])))
    for counts, rank in [([3, 0, 2, 5], 0), ([3, 0, 2, 5], 11), ([], 1), ([0, 0], 1)]:
        out.append(dict(counts=counts, rank=rank, expected=None))
    return out


def min_samples_cases():
    out = []
    for q, tail in [(0.99, 10), (0.9, 10), (0.999, 1), (0.95, 3), (0.5, 1), (0.0, 5), (0.99, 0),
                    (0.999, 50), (0.75, 7), (0.995, 20), (0.98, 33)]:
        # Exact decimal semantics: q as written (0.9 is nine tenths).
        exact = Fraction(tail) / (1 - Fraction(repr(q)))
        out.append(dict(q=q, tail=tail, expected=int(math.ceil(exact))))
    return out


# ---------------------------------------------------------------------------------------------
# Distribution functions (checked against the private helpers in src/stats.rs)


def distribution_cases():
    d = {}
    d["norm_sf"] = [
        dict(x=x, sf=f(stats.norm.sf(x)))
        for x in [-40.0, -8.0, -1.5, -0.6, -0.1, -1e-9, 0.0, 1e-12, 2e-6, 0.3, 0.69, 0.72, 1.0, 1.3,
                  1.959963984540054, 3.0, 5.5, 8.0, 12.0, 20.0, 30.0, 37.5]
    ]
    d["t_sf"] = [
        dict(df=df, t=t, sf=f(stats.t.sf(t, df)))
        for df in [1.0, 2.5, 5.0, 29.0, 30.0, 31.0, 1000.0, 123456.7, 1.0e7, 1.0e9]
        for t in [-30.0, -2.0, -1e-7, 0.0, 1e-9, 0.1, 1.0, 2.0, 5.0, 10.0, 40.0, 1000.0]
    ]
    d["t_isf"] = [
        dict(df=df, p=p, t=f(stats.t.isf(p, df)))
        for df in [1.0, 2.5, 5.0, 29.0, 1000.0, 123456.7, 1.0e7]
        for p in [1e-12, 1e-6, 0.0005, 0.025, 0.05, 0.3, 0.5, 0.7, 0.975]
    ]
    d["chi2_sf"] = [
        dict(df=k, x=x, sf=f(stats.chi2.sf(x, k)))
        for k in [1, 2, 3, 10, 49, 200]
        for x in [0.01, 0.5, 1.0, 3.84, 10.0, 50.0, 200.0, 1000.0, 3000.0]
    ]
    binom = []
    for n, p in [(1, 0.3), (20, 0.01), (20, 0.5), (100, 0.37), (1000, 0.99), (100_000, 0.001),
                 (1_000_000, 0.5), (1_000_000, 0.999), (10**9, 0.01), (10**8, 1e-7),
                 (10**9, 2e-9), (10**6, 0.3), (5_000_000, 0.9999993), (10**6, 0.5 + 1e-9)]:
        mean, sd = n * p, math.sqrt(n * p * (1 - p))
        ks = sorted({0, 1, n - 1, n, int(mean), int(mean - 3 * sd), int(mean + 3 * sd),
                     int(mean - 10 * sd), int(mean + 10 * sd), int(mean + 0.5 * sd)})
        for k in ks:
            if 0 <= k <= n:
                binom.append(dict(k=k, n=n, p=p, pmf=f(stats.binom.pmf(k, n, p)),
                                  cdf=f(stats.binom.cdf(k, n, p)), sf=f(stats.binom.sf(k, n, p))))
    d["binom"] = binom
    d["binom_ppf"] = [
        dict(q=q, n=n, p=p, k=int(stats.binom.ppf(q, n, p)))
        for n, p in [(1, 0.5), (10, 0.9), (100, 0.99), (1000, 0.5), (12345, 0.999), (1_000_000, 0.99)]
        for q in [0.0005, 0.025, 0.5, 0.975, 0.9995]
    ]
    kstwo = []
    for n in [1, 2, 3, 5, 10, 37, 100, 140, 141, 500, 1000, 5000, 99_999, 100_001, 400_000,
              1_000_000, 1_000_001, 5_000_000]:
        xs = set()
        for nx2 in [0.1, 0.3, 0.7, 1.0, 1.5, 2.0, 2.5, 3.0, 4.5, 8.0, 20.0, 60.0, 200.0, 400.0]:
            xs.add(math.sqrt(nx2 / n))
        xs.update([0.4 / n, 0.75 / n, 1.0 / n, 1.7 / n, 0.5, 0.62, 0.93, 1.0 - 0.5 / n])
        if n <= 100_001:
            xs.add(1.4 ** (2.0 / 3.0) / n ** (2.0 / 3.0) * 0.98)  # DMTW corner for n > 140
        for x in sorted(xs):
            if 0.0 < x <= 1.0:
                kstwo.append(dict(n=n, x=x, sf=f(stats.kstwo.sf(x, n))))
    d["kstwo_sf"] = kstwo
    return d


def paired_cases():
    """Paired t and Wilcoxon signed-rank on integer differences (shadow - primary)."""
    rng = np.random.default_rng(20261204)
    samples = [
        ("shift_up", rng.integers(-20, 40, 60)),
        ("no_shift", rng.integers(-30, 31, 200)),
        ("small_down", rng.integers(-9, 5, 25)),
        ("many_ties", rng.integers(-3, 4, 500)),
        ("big", rng.integers(-400, 450, 3000)),
        ("with_zeros", np.array([0, 0, 1, -2, 3, 3, -1, 4, 0, 5, 2, -3, 6, 1])),
    ]
    t_out, w_out = [], []
    for name, d in samples:
        d = [int(v) for v in d]
        for alt in ALTS:
            r = stats.ttest_1samp(d, 0.0, alternative=alt)
            t_out.append(dict(name=name, d=moments(d), alternative=alt,
                              expected=dict(statistic=f(r.statistic), p_value=f(r.pvalue))))
            r = stats.wilcoxon(d, zero_method="wilcox", correction=False, method="approx",
                               alternative=alt)
            # scipy's statistic is min(W+, W-) two-sided; W+ one-sided. Report W+.
            nz = np.array([v for v in d if v != 0], dtype=float)
            ranks = stats.rankdata(np.abs(nz))
            w_plus = float(np.sum(ranks[nz > 0]))
            w_out.append(dict(name=name, d=d, alternative=alt,
                              expected=dict(statistic=f(w_plus), p_value=f(r.pvalue))))
    for name, d in [("empty", []), ("all_zero", [0, 0, 0])]:
        w_out.append(dict(name=name, d=d, alternative="two-sided", expected=None))
    t_out.append(dict(name="constant", d=moments([2, 2, 2]), alternative="two-sided", expected=None))
    return t_out, w_out


def differences(want, got, path="$"):
    """Where `got` differs from `want`: floats to 1e-10 relative, everything else exactly."""
    if isinstance(want, dict) and isinstance(got, dict):
        if want.keys() != got.keys():
            return [f"{path}: keys {sorted(want.keys() ^ got.keys())} in one but not the other"]
        return [d for k in sorted(want) for d in differences(want[k], got[k], f"{path}.{k}")]
    if isinstance(want, list) and isinstance(got, list):
        if len(want) != len(got):
            return [f"{path}: {len(want)} entries in the fixture, {len(got)} computed"]
        return [d for i, (w, g) in enumerate(zip(want, got)) for d in differences(w, g, f"{path}[{i}]")]
    numbers = (int, float)
    if (isinstance(want, float) or isinstance(got, float)) and not isinstance(want, bool) \
            and not isinstance(got, bool) and isinstance(want, numbers) and isinstance(got, numbers):
        if math.isclose(want, got, rel_tol=1e-10, abs_tol=1e-300):
            return []
    elif want == got and type(want) is type(got):
        return []
    return [f"{path}: fixture has {want!r}, scipy computes {got!r}"]


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--check":
        with open(sys.argv[2]) as f:
            want = json.load(f)
        got = json.loads(json.dumps(reference(), sort_keys=True, allow_nan=False))
        diffs = differences(want, got)
        for d in diffs[:20]:
            print(d, file=sys.stderr)
        if diffs:
            print(f"{len(diffs)} value(s) differ; regenerate the fixture:\n"
                  "  python3 tests/stats_reference.py > tests/fixtures/stats_reference.json",
                  file=sys.stderr)
            sys.exit(1)
        return
    if len(sys.argv) != 1:
        sys.exit("usage: stats_reference.py [--check FIXTURE]")
    json.dump(reference(), sys.stdout, sort_keys=True, indent=1, allow_nan=False)
    sys.stdout.write("\n")


def reference():
    return dict(
        generator="tests/stats_reference.py",
        numpy_version=np.__version__,
        scipy_version=scipy.__version__,
        welch_t=welch_cases(),
        mann_whitney_u=mwu_cases(),
        ks_2samp=ks_cases(),
        anderson_ksamp=anderson_cases(),
        two_proportion_z=two_proportion_cases(),
        wilson_interval=wilson_cases(),
        binom_test=binom_test_cases(),
        exceedance=exceedance_cases(),
        welch_threshold=welch_threshold_cases(),
        welch_ci=welch_ci_cases(),
        newcombe_interval=newcombe_cases(),
        cusum_onset=cusum_cases(),
        chi_square=chi_square_cases(),
        psi=psi_cases(),
        jensen_shannon=js_cases(),
        quantile_ci_ranks=quantile_ci_cases(),
        binned_quantile_rank=binned_rank_cases(),
        min_samples_for_quantile=min_samples_cases(),
        distributions=distribution_cases(),
        paired_t=paired_cases()[0],
        wilcoxon_signed_rank=paired_cases()[1],
    )


if __name__ == "__main__":
    main()
