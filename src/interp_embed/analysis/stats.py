"""Vectorised statistics shared by the analyses: Fisher's exact test, Welch's t-test, BH q-values, intervals.

Everything here works on arrays of 2x2 tables or group summaries at once, so testing 65,536 features costs
a few vector operations instead of 65,536 calls into scipy.
"""
from __future__ import annotations

import numpy as np
from scipy import stats

# Tables whose probability is within this relative tolerance of the observed table's count as "as extreme"
# in the two-sided Fisher test (the same idea as R's fisher.test, which uses 1 + 1e-7).
_RELATIVE_TIE = 1e-7


def benjamini_hochberg(p: np.ndarray, n_tests: int | None = None) -> np.ndarray:
    """Benjamini–Hochberg q-values (FDR-adjusted p-values) for ``p``.

    ``n_tests`` is the size of the family when some tested hypotheses are not in ``p`` because their p-value
    is 1 (for example feature pairs that never co-occur under a one-sided enrichment test); they rank last
    and leave the q-values of the others exactly as if they had been passed.

    >>> benjamini_hochberg(np.array([0.01, 0.04, 0.03])).round(3).tolist()
    [0.03, 0.04, 0.04]
    """
    p = np.asarray(p, dtype=np.float64)
    m = p.size if n_tests is None else int(n_tests)
    if m < p.size:
        raise ValueError(f"n_tests ({m}) is smaller than the number of p-values ({p.size}).")
    if p.size == 0:
        return p.copy()
    order = np.argsort(p, kind="stable")
    ranked = p[order] * m / np.arange(1, p.size + 1)
    q_sorted = np.minimum.accumulate(ranked[::-1])[::-1]
    q = np.empty_like(p)
    q[order] = np.minimum(q_sorted, 1.0)
    return q


def _hypergeom_args(a: np.ndarray, row: np.ndarray, col: np.ndarray, n: np.ndarray):
    a, row, col, n = (np.asarray(x, dtype=np.int64) for x in (a, row, col, n))
    return np.broadcast_arrays(a, row, col, n)


def _hypergeom_tail(start: np.ndarray, step: int, row: np.ndarray, col: np.ndarray, n: np.ndarray,
                    rtol: float = 1e-13) -> np.ndarray:
    """Sum of the hypergeometric pmf from ``start`` outwards (``step`` +1: upwards, -1: downwards).

    ``start`` must lie on the side of the mode where the pmf decreases in the direction of ``step``. The
    terms follow from the first by the pmf's ratio recurrence, all tables advancing together, and a table
    stops once the geometric bound on what is left falls below ``rtol`` of its sum. scipy's own tail
    functions cost tens of microseconds per table, too slow for tens of thousands of features.
    """
    start = np.asarray(start, dtype=np.int64)
    lo, hi = np.maximum(0, row + col - n), np.minimum(row, col)
    out = np.zeros(start.shape, dtype=np.float64)
    inside = (start >= lo) & (start <= hi)
    if not inside.any():
        return out
    idx = np.flatnonzero(inside)
    log_first = stats.hypergeom.logpmf(start[idx], n[idx], col[idx], row[idx])
    total = np.ones(idx.size)
    term = np.ones(idx.size)
    x = start[idx].astype(np.float64)
    r, c, m = (v[idx].astype(np.float64) for v in (row, col, n))
    live = np.arange(idx.size)
    while live.size:
        xl, rl, cl, ml = x[live], r[live], c[live], m[live]
        if step > 0:
            ratio = (cl - xl) * (rl - xl) / ((xl + 1) * (ml - cl - rl + xl + 1))
        else:
            ratio = xl * (ml - cl - rl + xl) / ((cl - xl + 1) * (rl - xl + 1))
        term[live] *= ratio
        total[live] += term[live]
        x[live] += step
        with np.errstate(divide="ignore", invalid="ignore"):
            left = term[live] * ratio / (1.0 - ratio)
        live = live[(ratio > 0) & ~(left <= rtol * total[live])]
    out[idx] = np.exp(log_first + np.log(total))
    return out


def fisher_greater(a: np.ndarray, row: np.ndarray, col: np.ndarray, n: np.ndarray) -> np.ndarray:
    """One-sided Fisher exact p-value P(X >= a) for 2x2 tables with cell ``a``, margins ``row``, ``col``, total ``n``.

    Tests whether the two events co-occur more often than independence predicts; a table with ``a == 0``
    has p = 1 exactly.
    """
    a, row, col, n = _hypergeom_args(a, row, col, n)
    shape = a.shape
    a, row, col, n = (x.ravel() for x in (a, row, col, n))
    mode = ((row + 1) * (col + 1)) // (n + 2)
    upper = a > mode
    p = np.empty(a.shape, dtype=np.float64)
    i = np.flatnonzero(upper)
    p[i] = _hypergeom_tail(a[i], +1, row[i], col[i], n[i])
    i = np.flatnonzero(~upper)  # P(X >= a) = 1 - P(X <= a - 1), a lower tail that decreases downwards
    p[i] = 1.0 - _hypergeom_tail(a[i] - 1, -1, row[i], col[i], n[i])
    return np.clip(p, 0.0, 1.0).reshape(shape)


def fisher_greater_threshold(row: np.ndarray, col: np.ndarray, n: np.ndarray, level: float) -> np.ndarray:
    """Smallest joint count ``a`` whose one-sided Fisher p-value P(X >= a) is at most ``level``, per table.

    X is hypergeometric with margins ``row``, ``col`` and total ``n``. P(X >= a) does not increase with a and
    is 0 at a = min(row, col) + 1, so a vectorised binary search over [0, min(row, col) + 1] finds the
    threshold in ~log2(min(row, col)) passes of :func:`fisher_greater`.

    >>> fisher_greater_threshold(np.array([10]), np.array([9]), np.array([20]), 0.01).tolist()
    [8]
    """
    row, col, n = (np.asarray(x, dtype=np.int64) for x in np.broadcast_arrays(row, col, n))
    lo = np.zeros(row.shape, dtype=np.int64)  # P(X >= lo - 1) > level is known; lo itself is untested
    hi = np.minimum(row, col) + 1  # qualifies: P(X >= hi) = 0
    live = np.flatnonzero(lo < hi)
    while live.size:
        mid = (lo[live] + hi[live]) // 2
        ok = fisher_greater(mid, row[live], col[live], n[live]) <= level
        hi[live] = np.where(ok, mid, hi[live])
        lo[live] = np.where(ok, lo[live], mid + 1)
        live = live[lo[live] < hi[live]]
    return hi


def fisher_two_sided(a: np.ndarray, row: np.ndarray, col: np.ndarray, n: np.ndarray) -> np.ndarray:
    """Two-sided Fisher exact p-values for many 2x2 tables at once.

    The table is ``[[a, row - a], [col - a, n - row - col + a]]``. The p-value is the probability, with all
    margins fixed, of a table no more probable than the observed one (the definition of
    ``scipy.stats.fisher_exact``). The opposite tail's boundary is found by a vectorised binary search on
    the unimodal hypergeometric pmf, so the cost is ~log2(n) array passes, not one scipy call per table.

    >>> float(fisher_two_sided(np.array([8]), np.array([10]), np.array([9]), np.array([20]))[0]).__round__(4)
    0.0055
    """
    a, row, col, n = _hypergeom_args(a, row, col, n)
    shape = a.shape
    a, row, col, n = (x.ravel() for x in (a, row, col, n))
    p = np.ones(a.shape, dtype=np.float64)
    lo = np.maximum(0, row + col - n)
    hi = np.minimum(row, col)
    live = (row > 0) & (row < n) & (col > 0) & (col < n)

    def logpmf(x: np.ndarray, idx: np.ndarray) -> np.ndarray:
        return stats.hypergeom.logpmf(x, n[idx], col[idx], row[idx])

    idx = np.flatnonzero(live)
    mode = ((row[idx] + 1) * (col[idx] + 1)) // (n[idx] + 2)
    log_obs = logpmf(a[idx], idx)
    limit = log_obs + np.log1p(_RELATIVE_TIE)
    at_mode = logpmf(mode, idx) <= limit  # the observed table is as probable as the most probable one

    # Observed in the lower tail: P(X <= a) plus the upper tail beyond the first y >= mode with pmf(y) <= pmf(a).
    below = (a[idx] < mode) & ~at_mode
    i = idx[below]
    if i.size:
        left, right, thr = mode[below].copy(), hi[i].copy(), limit[below]
        has_tail = logpmf(right, i) <= thr
        while np.any(left < right):
            mid = (left + right) // 2
            ok = logpmf(mid, i) <= thr
            right = np.where(ok, mid, right)
            left = np.where(ok, left, mid + 1)
        tail = np.where(has_tail, _hypergeom_tail(left, +1, row[i], col[i], n[i]), 0.0)
        p[i] = _hypergeom_tail(a[i], -1, row[i], col[i], n[i]) + tail

    # Observed in the upper tail: P(X >= a) plus the lower tail up to the last y <= mode with pmf(y) <= pmf(a).
    above = (a[idx] > mode) & ~at_mode
    i = idx[above]
    if i.size:
        left, right, thr = lo[i].copy(), mode[above].copy(), limit[above]
        has_tail = logpmf(left, i) <= thr
        while np.any(left < right):
            mid = (left + right + 1) // 2
            ok = logpmf(mid, i) <= thr
            left = np.where(ok, mid, left)
            right = np.where(ok, right, mid - 1)
        tail = np.where(has_tail, _hypergeom_tail(left, -1, row[i], col[i], n[i]), 0.0)
        p[i] = _hypergeom_tail(a[i], +1, row[i], col[i], n[i]) + tail

    return np.clip(p, 0.0, 1.0).reshape(shape)


def welch_t_test(
    mean_1: np.ndarray, var_1: np.ndarray, n_1: np.ndarray, mean_2: np.ndarray, var_2: np.ndarray, n_2: np.ndarray,
    confidence: float = 0.95,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Welch's unequal-variance t-test of mean_1 − mean_2 from group summaries (sample variances, ddof=1).

    Returns (two-sided p-value, CI low, CI high) for the difference of means; needs n >= 2 in both groups.
    Groups with zero variance in both give p = 1 when the means agree and p = 0 when they differ.
    """
    se2 = var_1 / n_1 + var_2 / n_2
    diff = mean_1 - mean_2
    with np.errstate(divide="ignore", invalid="ignore"):
        df = se2**2 / ((var_1 / n_1) ** 2 / (n_1 - 1) + (var_2 / n_2) ** 2 / (n_2 - 1))
        t = diff / np.sqrt(se2)
        p = 2 * stats.t.sf(np.abs(t), df)
        half = stats.t.ppf(0.5 + confidence / 2, df) * np.sqrt(se2)
    degenerate = se2 == 0
    p = np.where(degenerate, np.where(diff == 0, 1.0, 0.0), p)
    half = np.where(degenerate, 0.0, half)
    return p, diff - half, diff + half


def rank_sum_p_values(rank_sums: np.ndarray, n_1: np.ndarray, n: int, tie_counts: np.ndarray) -> np.ndarray:
    """Two-sided p-values of the Mann–Whitney U (Wilcoxon rank-sum) test, normal approximation with tie and
    continuity corrections, from each group's sum of ranks among all ``n`` values (``n_1`` values in the
    group; ``tie_counts``: the size of every run of tied values). As ``scipy.stats.mannwhitneyu(...,
    method="asymptotic")``; it depends on the values' order only, so skewed targets do not bias it.
    """
    n_1 = np.asarray(n_1, dtype=np.float64)
    n_2 = n - n_1
    u = np.asarray(rank_sums, dtype=np.float64) - n_1 * (n_1 + 1) / 2
    ties = float(np.sum(tie_counts.astype(np.float64) ** 3 - tie_counts))
    sd = np.sqrt(n_1 * n_2 / 12 * ((n + 1) - ties / (n * (n - 1))))
    with np.errstate(divide="ignore", invalid="ignore"):
        z = (np.abs(u - n_1 * n_2 / 2) - 0.5) / sd
    return np.where(sd > 0, np.clip(2 * stats.norm.sf(np.maximum(z, 0)), 0, 1), 1.0)


def permutation_p_values(y: np.ndarray, sizes: np.ndarray, sums: np.ndarray, n_permutations: int,
                         rng: np.random.Generator) -> np.ndarray:
    """Two-sided Monte Carlo permutation p-values: how often a group of ``sizes[i]`` values drawn at random
    from ``y`` (without replacement) has a sum at least as far from its expectation as ``sums[i]``.

    Valid for any group size and any distribution of ``y`` (only exchangeability is assumed); the smallest
    possible p is ``1 / (n_permutations + 1)``, so a handful of documents can never look overwhelming. The
    null distributions of every size come from one set of random orderings of ``y``.
    """
    y = np.asarray(y, dtype=np.float64)
    sizes, sums = np.asarray(sizes, dtype=np.int64), np.asarray(sums, dtype=np.float64)
    p = np.ones(sizes.size)
    if not sizes.size:
        return p
    # One set of random orderings serves every size: the first m values of a random ordering are a random
    # group of m, so the running sums along each ordering give every size's null distribution at once.
    running = np.cumsum(y[_draws_without_replacement(y.size, int(sizes.max()), n_permutations, rng)], axis=1)
    for size in np.unique(sizes):
        centre = size * y.mean()
        null = np.sort(np.abs(running[:, size - 1] - centre))
        which = sizes == size
        # A relative tolerance, so that sums equal to the observed one up to rounding count as "as extreme".
        observed = np.abs(sums[which] - centre) * (1 - 1e-9)
        as_extreme = n_permutations - np.searchsorted(null, observed, side="left")
        p[which] = (1 + as_extreme) / (n_permutations + 1)
    return p


def _draws_without_replacement(n: int, size: int, draws: int, rng: np.random.Generator) -> np.ndarray:
    """``draws`` rows of ``size`` distinct indices in [0, n), each row uniformly random."""
    if draws * n <= 20_000_000:  # small populations: shuffle every row
        return rng.permuted(np.tile(np.arange(n), (draws, 1)), axis=1)[:, :size]
    rows = rng.integers(0, n, size=(draws, size))  # large populations: redraw the rare rows with a repeat
    while True:
        ordered = np.sort(rows, axis=1)
        repeated = (ordered[:, 1:] == ordered[:, :-1]).any(axis=1)
        if not repeated.any():
            return rows
        rows[repeated] = rng.integers(0, n, size=(int(repeated.sum()), size))


def wilson_interval(k: np.ndarray, n: np.ndarray, confidence: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval for a proportion k/n (stays inside [0, 1] and behaves at k = 0 or k = n)."""
    k = np.asarray(k, dtype=np.float64)
    n = np.asarray(n, dtype=np.float64)
    z = stats.norm.ppf(0.5 + confidence / 2)
    z2 = z * z
    with np.errstate(divide="ignore", invalid="ignore"):
        centre = (k + z2 / 2) / (n + z2)
        half = z / (n + z2) * np.sqrt(k * (n - k) / n + z2 / 4)
    return np.clip(centre - half, 0.0, 1.0), np.clip(centre + half, 0.0, 1.0)


def newcombe_interval(
    k_1: np.ndarray, n_1: np.ndarray, k_2: np.ndarray, n_2: np.ndarray, confidence: float = 0.95
) -> tuple[np.ndarray, np.ndarray]:
    """Newcombe's hybrid score interval (method 10) for the difference of proportions k_1/n_1 − k_2/n_2."""
    p1 = np.asarray(k_1, dtype=np.float64) / n_1
    p2 = np.asarray(k_2, dtype=np.float64) / n_2
    l1, u1 = wilson_interval(k_1, n_1, confidence)
    l2, u2 = wilson_interval(k_2, n_2, confidence)
    d = p1 - p2
    return d - np.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2), d + np.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)


def stratified_score_test(score_sums: np.ndarray, counts: np.ndarray, n: np.ndarray, score_mean: np.ndarray,
                          score_var: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(z, two-sided p)`` of the stratified linear permutation test: is a feature's presence related to a
    document score once documents are compared only with documents of their own stratum?

    Arrays are (strata, features): ``score_sums[k, f]`` is the sum of the scores of the documents of stratum k
    holding feature f, ``counts[k, f]`` their number; ``n[k]``, ``score_mean[k]`` and ``score_var[k]`` (population
    variance) describe stratum k's scores. Under the null, each stratum's documents holding the feature are a
    random draw from the stratum, so the sum has mean ``Σ_k counts·mean_k`` and variance
    ``Σ_k counts·(n_k − counts)/(n_k − 1)·var_k``; z is standard normal for large counts. With scores 1 for one side
    of a comparison and 0 for the other this is the Cochran–Mantel–Haenszel test (statsmodels' ``StratifiedTable
    .test_null_odds(correction=False)``); with one stratum and ordered scores, the Cochran–Armitage trend test
    (``Table.test_ordinal_association``). Where no stratum varies, the data cannot tell: z = 0 and p = 1.
    """
    counts = np.asarray(counts, dtype=np.float64)
    n, score_mean, score_var = (np.asarray(x, dtype=np.float64).reshape(-1, 1) for x in (n, score_mean, score_var))
    expected = (counts * score_mean).sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        variance = np.where(n > 1, counts * (n - counts) / (n - 1) * score_var, 0.0).sum(axis=0)
        z = np.where(variance > 0, (np.asarray(score_sums, dtype=np.float64).sum(axis=0) - expected)
                     / np.sqrt(variance), 0.0)
    return z, np.where(variance > 0, np.clip(2 * stats.norm.sf(np.abs(z)), 0.0, 1.0), 1.0)
