"""The statistics of interp_embed.analysis checked against scipy and statsmodels."""
import doctest

import numpy as np
import pytest
from scipy import stats
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.proportion import confint_proportions_2indep, proportion_confint

from interp_embed.analysis import stats as S
from interp_embed.analysis import clustering, correlations, diff, label_search, terms


def random_tables(rng, count, max_n):
    n = rng.integers(2, max_n, count)
    row = rng.integers(0, n + 1)
    col = rng.integers(0, n + 1)
    lo, hi = np.maximum(0, row + col - n), np.minimum(row, col)
    a = lo + (rng.random(count) * (hi - lo + 1)).astype(np.int64)
    return a, row, col, n


@pytest.mark.parametrize("max_n", [30, 400, 2_000_000])
def test_fisher_two_sided_matches_scipy(max_n):
    rng = np.random.default_rng(max_n)
    a, row, col, n = random_tables(rng, 400, max_n)
    got = S.fisher_two_sided(a, row, col, n)
    want = [stats.fisher_exact([[x, r - x], [c - x, m - r - c + x]]).pvalue for x, r, c, m in zip(a, row, col, n)]
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-12)


def test_fisher_two_sided_on_balanced_tables_with_exact_ties():
    # Equal group sizes make the pmf symmetric: mirror-image tables tie and must both count.
    a = np.arange(0, 11)
    got = S.fisher_two_sided(a, np.full(11, 10), np.full(11, 10), np.full(11, 20))
    want = [stats.fisher_exact([[x, 10 - x], [10 - x, x]]).pvalue for x in a]
    np.testing.assert_allclose(got, want, rtol=1e-9)


def test_fisher_greater_matches_scipy():
    rng = np.random.default_rng(7)
    a, row, col, n = random_tables(rng, 300, 5000)
    got = S.fisher_greater(a, row, col, n)
    want = [stats.fisher_exact([[x, r - x], [c - x, m - r - c + x]], alternative="greater").pvalue
            for x, r, c, m in zip(a, row, col, n)]
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-300)


def test_benjamini_hochberg_matches_statsmodels():
    rng = np.random.default_rng(1)
    p = np.concatenate([rng.random(500), rng.random(50) * 1e-4, [0.5, 0.5, 1e-3, 1e-3]])
    np.testing.assert_allclose(S.benjamini_hochberg(p), multipletests(p, method="fdr_bh")[1], rtol=1e-12)


def test_benjamini_hochberg_family_size_equals_padding_with_ones():
    p = np.random.default_rng(2).random(40) ** 3
    padded = multipletests(np.concatenate([p, np.ones(60)]), method="fdr_bh")[1][:40]
    np.testing.assert_allclose(S.benjamini_hochberg(p, n_tests=100), padded, rtol=1e-12)
    with pytest.raises(ValueError, match="n_tests"):
        S.benjamini_hochberg(p, n_tests=10)


@pytest.mark.parametrize("alpha", [0.05, 0.3])
def test_q_values_from_the_p_values_below_the_cutoff(alpha):
    # A family of m tests: nulls, planted signals and ties; correlations keeps only p <= tau = alpha * S / m,
    # where S >= R(alpha) counts the pairs its screen could not rule out.
    rng = np.random.default_rng(3)
    p = np.concatenate([rng.random(3000), rng.random(60) * 1e-4, np.full(20, 2e-5), np.ones(900)])
    m = p.size
    screened = int((p <= alpha).sum() * 1.3)
    tau = alpha * screened / m
    kept = p <= tau
    q = correlations._q_values(p, kept, np.sort(p[kept]), m)
    want = multipletests(p, method="fdr_bh")[1]
    exact = want < alpha
    assert 20 < exact.sum() < kept.sum()  # truncation bites: some kept p-values have q >= alpha
    np.testing.assert_allclose(q[exact], want[exact], rtol=1e-12)
    assert (q >= want * (1 - 1e-12)).all() and (q[~exact] >= alpha).all()


@pytest.mark.parametrize("max_n", [12, 300, 3_000_000])
def test_fisher_greater_threshold_matches_scipy(max_n):
    rng = np.random.default_rng(max_n)
    _, row, col, n = random_tables(rng, 300, max_n)
    for level in (1e-6, 0.05, 0.4):
        t = S.fisher_greater_threshold(row, col, n, level)
        at, below = stats.hypergeom.sf(t - 1, n, col, row), stats.hypergeom.sf(t - 2, n, col, row)
        assert (at <= level * (1 + 1e-9)).all()
        assert ((below > level * (1 - 1e-9)) | (t == 0)).all()


@pytest.mark.parametrize("max_count,n", [(6, 10), (400, 1000), (20_000, 2_000_000), (900_000, 1_000_000)])
def test_screen_skips_only_pairs_whose_exact_p_exceeds_the_level(max_count, n):
    rng = np.random.default_rng(max_count)
    counts = rng.integers(1, max_count + 1, 500)
    i, j = rng.integers(0, 500, (2, 4000))
    ca, cb = counts[i], counts[j]
    n_skipped = n_significant = 0
    for level in (1e-4, 0.05):
        screen = correlations._Screen(counts, n, level)
        # Joint counts around each pair's own exact threshold, where a careless screen would fail.
        ab = S.fisher_greater_threshold(ca, cb, n, level) + rng.integers(-4, 3, i.size)
        ab = np.clip(ab, np.maximum(0, ca + cb - n), np.minimum(ca, cb))
        exact_p = stats.hypergeom.sf(ab - 1, n, cb, ca)
        skipped = ~screen.admits(ab, i, j)
        assert (exact_p[skipped] > level * (1 - 1e-9)).all()
        n_skipped += skipped.sum()
        n_significant += (exact_p[~skipped] <= level).sum()
    assert n_skipped > 100 and n_significant > 100


def test_wilson_and_newcombe_match_statsmodels():
    k1, n1, k2, n2 = np.array([0, 3, 50, 99, 7]), np.array([10, 40, 100, 99, 7]), np.array([5, 0, 20, 1, 3]), \
        np.array([10, 30, 60, 80, 9])
    lo, hi = S.wilson_interval(k1, n1, 0.9)
    ref = np.array([proportion_confint(k, n, alpha=0.1, method="wilson") for k, n in zip(k1, n1)])
    np.testing.assert_allclose(np.c_[lo, hi], ref, atol=1e-12)
    lo, hi = S.newcombe_interval(k1, n1, k2, n2)
    ref = np.array([confint_proportions_2indep(a, m, b, o, method="newcomb", compare="diff")
                    for a, m, b, o in zip(k1, n1, k2, n2)])
    np.testing.assert_allclose(np.c_[lo, hi], ref, atol=1e-12)


def test_welch_matches_scipy():
    rng = np.random.default_rng(4)
    for _ in range(20):
        x, y = rng.normal(0.3, 1, rng.integers(2, 30)), rng.normal(0, 2, rng.integers(2, 30))
        p, lo, hi = S.welch_t_test(x.mean(), x.var(ddof=1), x.size, y.mean(), y.var(ddof=1), y.size, 0.9)
        ref = stats.ttest_ind(x, y, equal_var=False)
        ci = ref.confidence_interval(0.9)
        np.testing.assert_allclose([p, lo, hi], [ref.pvalue, ci.low, ci.high], rtol=1e-9)


def test_welch_degenerate_groups():
    p, lo, hi = S.welch_t_test(np.array([1.0, 1.0]), np.zeros(2), np.array([3, 3]), np.array([1.0, 0.0]),
                               np.zeros(2), np.array([4, 4]))
    assert p.tolist() == [1.0, 0.0] and lo.tolist() == hi.tolist() == [0.0, 1.0]


def test_rank_sum_matches_scipy_with_ties():
    rng = np.random.default_rng(5)
    for _ in range(20):
        y = rng.integers(0, 8, rng.integers(10, 200)).astype(float)  # many ties
        group = rng.random(y.size) < rng.uniform(0.1, 0.9)
        if group.all() or not group.any():
            continue
        ranks = stats.rankdata(y)
        p = S.rank_sum_p_values(np.array([ranks[group].sum()]), np.array([group.sum()]), y.size,
                                np.unique(y, return_counts=True)[1])
        reference = stats.mannwhitneyu(y[group], y[~group], method="asymptotic").pvalue
        np.testing.assert_allclose(p, reference, rtol=1e-9)


def test_permutation_p_values_match_the_exact_distribution():
    from itertools import combinations

    y = np.array([0.5, 1.0, 1.5, 2.0, 7.0, 9.0, 11.0, 20.0, 3.0, 3.0])  # skewed, with a tie
    for size in (2, 3):
        sums = np.array([sum(c) for c in combinations(y, size)])  # every group of that size, equally likely
        centre = size * y.mean()
        observed = np.array([y[:size].sum(), y[-size:].sum(), y[[4, 7, 8][:size]].sum()])
        exact = [(np.abs(sums - centre) >= abs(o - centre) - 1e-9).mean() for o in observed]
        p = S.permutation_p_values(y, np.full(3, size), observed, 40_000, np.random.default_rng(0))
        np.testing.assert_allclose(p, exact, atol=4 * np.sqrt(0.25 / 40_000) + 1e-4)
    # Large populations draw by rejection: still distinct indices and the right distribution.
    big = np.random.default_rng(1).lognormal(size=3_000_000)
    p = S.permutation_p_values(big, np.array([2]), np.array([2 * big.mean()]), 10_000, np.random.default_rng(2))
    assert p[0] > 0.95 and S.permutation_p_values(big, np.array([2]), np.array([1e9]), 100,
                                                   np.random.default_rng(3))[0] == 1 / 101


@pytest.mark.parametrize("module", [S, diff, correlations, label_search, terms, clustering])
def test_docstring_examples(module):
    result = doctest.testmod(module, extraglobs={"np": np}, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0
