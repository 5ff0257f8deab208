"""Concept correlations: which features co-occur in documents more than chance, scored by NPMI."""
from __future__ import annotations

import logging
from collections.abc import Iterable

import numpy as np
import pandas as pd
import scipy.sparse as sp

from .blockwise import PresenceBlocks, check_blockwise
from .cooccurrence import FeatureOrder, add_pairs, feature_blocks
from .fires_on import add_fires_on, words_of
from .inputs import PRESENCE, Encoded, EncodedDataset, feature_counts, label_array, load_documents, presence
from .stats import benjamini_hochberg, fisher_greater, fisher_greater_threshold
from ..validation import Features, Fraction, Int, MemorySize, OrNone, validate_params

logger = logging.getLogger(__name__)

PAIR_COLUMNS = ["feature_a", "label_a", "feature_b", "label_b", "count_a", "count_b", "count_ab",
                "expected_ab", "npmi", "p_value", "q_value"]


def npmi(count_ab: np.ndarray, count_a: np.ndarray, count_b: np.ndarray, n: int) -> np.ndarray:
    """Normalised pointwise mutual information of document-level presence, in [-1, 1].

    ``log(p_ab / (p_a p_b)) / -log(p_ab)``; 1 when the two features always occur together, 0 when they are
    independent, -1 when they never co-occur. When ``p_ab == 1`` (both in every document) it is 1.

    >>> npmi(np.array([5, 0]), np.array([5, 5]), np.array([5, 5]), 10).tolist()
    [1.0, -1.0]
    """
    count_ab, count_a, count_b = (np.asarray(x, dtype=np.float64) for x in (count_ab, count_a, count_b))
    with np.errstate(divide="ignore", invalid="ignore"):
        log_pab = np.log(count_ab / n)
        value = (log_pab - np.log(count_a / n) - np.log(count_b / n)) / -log_pab
    value = np.where(count_ab == 0, -1.0, value)
    value = np.where(count_ab == n, 1.0, value)
    return np.clip(value, -1.0, 1.0)


def _candidates(counts: np.ndarray, n: int, features: np.ndarray | None, min_count: int,
                max_coverage: float) -> np.ndarray:
    if features is not None:
        return features
    # A feature present in every document has no variation: its co-occurrence with anything is
    # uninformative (NPMI's 0/0), so it is never a candidate, whatever max_coverage says.
    return np.flatnonzero((counts >= min_count) & (counts <= max_coverage * n) & (counts < n))


# Bytes of one block's dense co-occurrence counts (int64); the pair arrays drawn from a block and the list of
# enumerated document-level pairs that fills it stay within a small multiple of this.
BLOCK_BYTES = 16 * 2**20
# Relative width of the count classes that share a screening threshold (see _Screen).
_CLASS_WIDTH = 0.02


def _co_occurrence_blocks(S: sp.csr_matrix, block_size: int, block_bytes: int):
    """Yield ``(start, counts)``: ``counts[r, x]`` documents holding both features ``start + r`` and ``start + x``.

    Only pairs ``start + x > start + r`` are counted (each unordered pair once; the rest is 0). The rows of a
    block are chosen so it holds at most ``block_bytes`` (see :func:`feature_blocks`).
    """
    order = FeatureOrder.of(S)
    for start, stop in feature_blocks(S.shape[1], block_size, block_bytes):
        counts = np.zeros((stop - start) * (S.shape[1] - start), dtype=np.int64)
        add_pairs(S, order, start, stop, counts, block_bytes)
        yield start, counts.reshape(stop - start, -1)


class _Screen:
    """A provably safe screen for one-sided Fisher p-values <= ``level`` of many feature pairs.

    Candidate counts fall into classes ~``_CLASS_WIDTH`` wide; ``threshold[u, v]`` is the least joint count
    whose p-value is <= ``level`` for the *smallest* counts of classes u and v. Safety: X ~ Hypergeom(n,
    count_a, count_b) only grows when a margin grows (mark one more ball, or draw one more, and the number of
    marked draws rises by 0 or 1), so P(X >= ab) >= the same tail at the class minima, which is > ``level``
    whenever ab < threshold (tails do not increase in ab). A pair below its threshold therefore has
    p > ``level`` for certain and may be skipped; pairs at or above it still need their exact p.
    """

    def __init__(self, counts: np.ndarray, n: int, level: float):
        key = np.floor(np.log1p(counts) / np.log1p(_CLASS_WIDTH)).astype(np.int64)
        classes, self.cls = np.unique(key, return_inverse=True)
        low = np.full(classes.size, np.iinfo(np.int64).max)
        np.minimum.at(low, self.cls, counts)
        u, v = np.triu_indices(classes.size)
        self.threshold = np.zeros((classes.size, classes.size), dtype=np.int64)
        # A hair above level so that rounding in the tail sums can only admit more pairs, never skip one.
        self.threshold[u, v] = fisher_greater_threshold(low[u], low[v], n, level * (1 + 1e-9))
        self.threshold[v, u] = self.threshold[u, v]

    def thresholds(self, start: int, stop: int) -> np.ndarray:
        """The thresholds of the pairs (i, j) for i in [start, stop) and j >= start, as a dense block."""
        return np.take(self.threshold[self.cls[start:stop]], self.cls[start:], axis=1)

    def admits(self, ab: np.ndarray, i: np.ndarray, j: np.ndarray) -> np.ndarray:
        """False only for pairs (candidate indices i, j; joint count ab) whose p-value is surely > level."""
        return ab >= self.threshold[self.cls[i], self.cls[j]]


PAIRS = dict(min_count=Int(min=1), max_coverage=Fraction(above_zero=True),
             exact_q_below=Fraction(above_zero=True, below_one=True), block_size=Int(min=1))
"""What the options of every correlation analysis may be."""


@validate_params(**PAIRS, top=OrNone(Int(min=1)))
def correlate_presence(
    P: sp.csr_matrix | PresenceBlocks, labels: np.ndarray | None = None, *, features: np.ndarray | None = None,
    min_count: int = 5, max_coverage: float = 1.0, top: int | None = None, exact_q_below: float = 0.05,
    block_size: int = 4096, block_bytes: int = BLOCK_BYTES,
) -> pd.DataFrame:
    """Pairwise NPMI and co-occurrence test on a binary document × feature matrix (see feature_correlations).

    Co-occurrence counts are made one block of candidate features at a time (at most ``block_size``
    features and ``block_bytes`` of counts), so memory never holds a dense F × F array. ``P`` may be presence
    blocks read from a store (analysis/blockwise.py): each block of counts is then one pass over the store.
    With ``top`` set, only the ``top`` pairs by NPMI are kept between blocks.

    The q-values are Benjamini–Hochberg over all m = F(F-1)/2 candidate pairs, found without the p-value of
    every pair. Write α = ``exact_q_below``, R(t) = #pairs with p <= t; q(p) = min over p' >= p of p'·m/R(p').
    While the blocks stream past, a safe screen (:class:`_Screen`) keeps the S pairs that may have p <= α
    (R(α) <= S). Afterwards only the pairs with p <= τ = α·S/m get an exact p and enter BH. Every term left
    out is >= α: for p' > α it is >= p' (R <= m), and for τ < p' <= α it is >= τ·m/R(α) >= τ·m/S = α. So a
    q-value computed from the kept p-values is exact whenever it is below α; at or above α it is an upper
    bound (a minimum over fewer terms). A pair with p > τ gets the bound min(1, p·m/R(τ)), which is > α.
    """
    return _correlate(P, labels, features, min_count, max_coverage, top, exact_q_below, block_size, block_bytes)


def _correlate(P: sp.csr_matrix | PresenceBlocks, labels: np.ndarray | None, features: np.ndarray | None,
               min_count: int, max_coverage: float, top: int | None, exact_q_below: float, block_size: int,
               block_bytes: int = BLOCK_BYTES) -> pd.DataFrame:
    """:func:`correlate_presence` of checked options."""
    n, d = P.shape
    counts = P.counts if isinstance(P, PresenceBlocks) else feature_counts(P)
    labels = np.full(d, "", dtype=object) if labels is None else labels
    cand = _candidates(counts, n, features, min_count, max_coverage)
    F = cand.size
    n_pairs = F * (F - 1) // 2
    logger.info("correlating %d candidate features (%d pairs) over %d documents", F, n_pairs, n)
    if isinstance(P, PresenceBlocks):
        blocks = P.co_occurrence_blocks(cand, block_size, block_bytes)
    else:
        S = P[:, cand].tocsr()
        S.sort_indices()
        blocks = _co_occurrence_blocks(S, block_size, block_bytes)
    c = counts[cand]
    screen = _Screen(c, n, exact_q_below)
    kept: list[tuple[np.ndarray, ...]] = []
    maybe_key: list[np.ndarray] = []  # pairs (key i·F + j) that may have p <= exact_q_below, in key order
    maybe_ab: list[np.ndarray] = []
    log_c, log_n = np.log(np.maximum(c, 1)), np.log(n)
    for start, block in blocks:
        stop = start + block.shape[0]
        i, j, ab = _pairs_where(block >= screen.thresholds(start, stop), block, start)
        maybe_key.append(i * F + j)
        maybe_ab.append(ab)
        floor = kept[0][3].min() if top is not None and kept and kept[0][3].size == top else -1.0  # to beat
        if floor > -1.0:
            # NPMI rises with ab for fixed counts, and NPMI >= floor <=> ab * exp(-log c_b / (1 + floor)) >=
            # exp((log c_a - (1 - floor) log n) / (1 + floor)); a hair lower so that rounding only admits more.
            row_bound = np.exp((log_c[start:stop] - (1 - floor) * log_n) / (1 + floor)) * (1 - 1e-9)
            listed = block * np.exp(-log_c[start:] / (1 + floor)) >= row_bound[:, None]
        else:
            listed = block > 0
        i, j, ab = _pairs_where(listed, block, start)
        del block, listed
        score = npmi(ab, c[i], c[j], n)
        if top is not None and score.size > top:  # the block's own best (ties included) before merging
            best = score >= np.partition(score, score.size - top)[score.size - top]
            i, j, ab, score = i[best], j[best], ab[best], score[best]
        kept.append((i, j, ab, score))
        if top is not None:
            kept = [_top_pairs(*map(np.concatenate, zip(*kept)), top=top)]
    if kept:
        i, j, ab, score = map(np.concatenate, zip(*kept))
    else:
        i = j = ab = np.zeros(0, np.int64)
        score = np.zeros(0)
    family_key, family_p, cutoff = _family(np.concatenate(maybe_key) if maybe_key else np.zeros(0, np.int64),
                                           np.concatenate(maybe_ab) if maybe_ab else np.zeros(0, np.int64),
                                           c, n, exact_q_below)
    p = fisher_greater(ab, c[i], c[j], n)
    key = i * F + j
    slot = np.minimum(np.searchsorted(family_key, key), max(family_key.size - 1, 0))
    in_family = family_key[slot] == key if family_key.size else np.zeros(key.size, bool)
    p[in_family] = family_p[slot[in_family]]  # one value per pair, whichever path computed it
    q = _q_values(p, in_family, np.sort(family_p), n_pairs)
    fa, fb = cand[i], cand[j]
    table = pd.DataFrame({
        "feature_a": fa, "label_a": labels[fa], "feature_b": fb, "label_b": labels[fb],
        "count_a": c[i], "count_b": c[j], "count_ab": ab, "expected_ab": c[i] * c[j] / n,
        "npmi": score, "p_value": p, "q_value": q,
    }, columns=PAIR_COLUMNS)
    table = table.sort_values(["npmi", "count_ab", "feature_a", "feature_b"], ascending=[False, False, True, True],
                              ignore_index=True)
    table = table if top is None else table.head(top)
    table.attrs.update(n_tests=n_pairs, exact_q_below=exact_q_below, p_cutoff=cutoff,
                       **_excluded(counts, n, features, min_count, max_coverage))
    return table


def _excluded(counts: np.ndarray, n: int, features: np.ndarray | None, min_count: int, max_coverage: float) -> dict:
    """What the candidate rules left out, as ``attrs``: ``excluded`` (counts) and ``excluded_text`` (a sentence)."""
    if features is not None:
        return {"excluded": {"rare": 0, "ubiquitous": 0}, "excluded_text": f"the {len(features)} features given were "
                "paired; none was left out"}
    active = counts > 0
    rare = int((active & (counts < min_count)).sum())
    ubiquitous = int((active & (counts >= min_count) & ((counts > max_coverage * n) | (counts == n))).sum())
    share = f"{max_coverage:.0%}" if max_coverage < 1 else "all"
    return {"excluded": {"rare": rare, "ubiquitous": ubiquitous},
            "excluded_text": f"left out: {rare:,} features active in fewer than {min_count} documents and "
                             f"{ubiquitous:,} in more than {share} of the {n:,}"}


def _pairs_where(mask: np.ndarray, block: np.ndarray, start: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Candidate indices (i, j) and joint counts of the cells of a block (see _co_occurrence_blocks) in mask."""
    r, x = np.divmod(np.flatnonzero(mask), block.shape[1])
    return r + start, x + start, block[r, x]


def _family(key: np.ndarray, ab: np.ndarray, c: np.ndarray, n: int, alpha: float):
    """The p-values the BH family needs: (keys, p-values, τ) of the pairs with p <= τ = α·S/m.

    ``key``/``ab`` are the S screened pairs that may have p <= α (see correlate_presence); a second screen
    at τ spares the exact tails of most of them.
    """
    F = c.size
    n_pairs = F * (F - 1) // 2
    cutoff = alpha * key.size / n_pairs if n_pairs else 0.0
    i, j = np.divmod(key, F)
    keep = _Screen(c, n, cutoff).admits(ab, i, j)
    key, i, j, ab = key[keep], i[keep], j[keep], ab[keep]
    p = fisher_greater(ab, c[i], c[j], n)
    keep = p <= cutoff
    return key[keep], p[keep], cutoff


def _q_values(p: np.ndarray, in_family: np.ndarray, family_p: np.ndarray, n_tests: int) -> np.ndarray:
    """BH q-values of pairs with p-values ``p``, knowing only the sorted family p-values <= the cutoff τ.

    ``in_family`` marks the pairs whose p-value is among ``family_p`` (those with p <= τ). Their q is the
    step-up minimum over the known p-values (exact below α, see correlate_presence); the others get the
    valid bound p·m/R(τ), since R(p) >= R(τ) = len(family_p) for p > τ.
    """
    q = np.ones(p.size)
    if family_p.size:
        q_sorted = benjamini_hochberg(family_p, n_tests)  # sorted input, so q_sorted aligns with family_p
        # The largest rank holding a value <= p carries q(p) (ties share the step-up minimum).
        q[in_family] = q_sorted[np.searchsorted(family_p, p[in_family], side="right") - 1]
        q[~in_family] = np.minimum(1.0, p[~in_family] * n_tests / family_p.size)
    return q


def _top_pairs(*columns: np.ndarray, top: int) -> tuple[np.ndarray, ...]:
    """Keep the ``top`` pairs by NPMI, then joint count, then (i, j); columns are (i, j, ab, score)."""
    i, j, ab, score = columns
    if score.size <= top:
        return columns
    keep = np.lexsort((j, i, -ab, -score))[:top]
    return tuple(col[keep] for col in columns)


@validate_params(ds=Encoded(), features=Features(), **PAIRS, **PRESENCE)
def feature_correlations(
    ds: EncodedDataset, features: Iterable[int] | None = None, min_count: int = 10, *, max_coverage: float = 0.5,
    aggregation: str = "max", activated_threshold: float = 0.0, exact_q_below: float = 0.05, block_size: int = 4096,
) -> pd.DataFrame:
    """Every pair of features that co-occurs in at least one document, with NPMI and a significance test.

    Presence is document level: the pooled activation exceeds ``activated_threshold`` (encoded documents
    only; ``aggregation`` (``max``, ``mean``, ``sum``, ``binarize`` or ``count``) pools each document's token activations, max by default). Candidate features are ``features`` if given, else those active in at least ``min_count``
    documents and in at most ``max_coverage`` of them: by default features seen in fewer than 10 documents (whose
    NPMI is 1 after a handful of joint occurrences) and features active in more than half of them (which co-occur
    with everything) are left out, and ``attrs["excluded"]`` counts them (``attrs["excluded_text"]`` says it). Per pair: ``count_a``, ``count_b``, ``count_ab``
    (documents with both), ``expected_ab`` under independence, ``npmi`` (see :func:`npmi`), ``p_value`` from
    the one-sided Fisher exact (hypergeometric) test that the pair co-occurs more than chance, and
    ``q_value`` (Benjamini–Hochberg over *all* candidate pairs, including those that never co-occur, which
    have p = 1). q-values below ``exact_q_below`` are exact; larger ones are conservative upper bounds
    (never below the exact q), which spares computing the p-value of every pair in the family. The table's
    ``attrs`` hold ``n_tests`` (the family size), ``exact_q_below`` and ``p_cutoff`` (the largest p-value the
    BH computation needed). Sorted by NPMI descending. The listing grows with the number of co-occurring
    pairs; use :func:`top_correlations` for large datasets.

    Example::

        pairs = feature_correlations(ds)
        pairs.query("q_value < 0.05").head()
    """
    P = presence(load_documents(ds, aggregation=aggregation).activations, activated_threshold)
    return _with_words(ds, _correlate(P, label_array(ds), features, min_count, max_coverage, None, exact_q_below,
                                      block_size))


def _with_words(ds: EncodedDataset, pairs: pd.DataFrame) -> pd.DataFrame:
    """``pairs`` with ``fires_on_a`` and ``fires_on_b``: the words each feature of a pair fires on in ``ds``."""
    words = [words_of(ds)]
    return add_fires_on(add_fires_on(pairs, words, feature_column="feature_a", column="fires_on_a"), words,
                        feature_column="feature_b", column="fires_on_b")


@validate_params(ds=Encoded(), k=Int(min=1), features=Features(), **PAIRS, **PRESENCE, memory_limit=MemorySize())
def top_correlations(
    ds: EncodedDataset, k: int = 20, features: Iterable[int] | None = None, min_count: int = 10, *,
    max_coverage: float = 0.5, aggregation: str = "max", activated_threshold: float = 0.0, exact_q_below: float = 0.05,
    block_size: int = 4096, memory_limit: int | str | None = None,
) -> pd.DataFrame:
    """The ``k`` most strongly co-occurring feature pairs by NPMI, with labels and q-values.

    Same statistics, BH family and q-values as :func:`feature_correlations` (a pair gets the same q in
    both), but only the best ``k`` pairs are kept while the co-occurrence blocks stream past, so memory
    stays bounded on large datasets. The same candidates: by default, features active in at least 10 documents
    (rarer ones reach NPMI 1 after a handful of joint occurrences) and in at most half of them;
    ``attrs["excluded"]`` counts the features left out. ``fires_on_a``/``fires_on_b``: the words each feature
    of a pair fires on most specifically in ``ds``.

    ``memory_limit`` (bytes, or a string such as ``"4GB"``) reads the store block by block within that bound
    instead of building the matrix in memory (analysis/blockwise.py); the table is the same. The co-occurrence
    counts of one block of candidate features then take an eighth of the bound, and each such block is one
    pass over the store: with F candidates, about 4·F² bytes / (memory_limit / 8) passes.

    Example::

        top_correlations(ds, k=10)[["label_a", "label_b", "npmi", "q_value"]]
    """
    limit = check_blockwise(ds, memory_limit)
    options = (features, min_count, max_coverage, k, exact_q_below, block_size)
    if limit is None:
        P = presence(load_documents(ds, aggregation=aggregation).activations, activated_threshold)
        return _with_words(ds, _correlate(P, label_array(ds), *options))
    P = PresenceBlocks.of(ds, "ds", aggregation, activated_threshold, limit)
    return _with_words(ds, _correlate(P, label_array(ds), *options, block_bytes=limit // 8))
