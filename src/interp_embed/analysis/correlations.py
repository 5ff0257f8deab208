"""Concept correlations: which features co-occur in documents more than chance, scored by NPMI."""
from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from .inputs import feature_counts, label_array, load_documents, presence
from .stats import benjamini_hochberg, fisher_greater
from .validation import check_fraction, check_features, check_int

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
    return np.flatnonzero((counts >= min_count) & (counts <= max_coverage * n))


def correlate_presence(
    P: sp.csr_matrix, labels: np.ndarray | None = None, *, features: np.ndarray | None = None, min_count: int = 5,
    max_coverage: float = 1.0, top: int | None = None, block_size: int = 1024,
) -> pd.DataFrame:
    """Pairwise NPMI and co-occurrence test on a binary document × feature matrix (see feature_correlations).

    Co-occurrence counts come from ``P_s.T @ P_s`` over the candidate features, one block of ``block_size``
    features at a time, so memory holds one block of counts plus the p-values of co-occurring pairs, never
    a dense F × F array. With ``top`` set, only the ``top`` pairs by NPMI are kept between blocks.
    """
    n, d = P.shape
    counts = feature_counts(P)
    labels = np.full(d, "", dtype=object) if labels is None else labels
    cand = _candidates(counts, n, features, min_count, max_coverage)
    n_pairs = cand.size * (cand.size - 1) // 2
    logger.info("correlating %d candidate features (%d pairs) over %d documents", cand.size, n_pairs, n)
    S = P[:, cand].tocsc()
    St = S.T.tocsr()
    c = counts[cand]
    kept: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
    all_p: list[np.ndarray] = []
    for start in range(0, cand.size, block_size):
        block = (St[start:start + block_size] @ S).tocoo()
        i = block.row.astype(np.int64) + start
        j = block.col.astype(np.int64)
        upper = j > i  # each unordered pair once, no diagonal
        i, j, ab = i[upper], j[upper], block.data[upper].astype(np.int64)
        score = npmi(ab, c[i], c[j], n)
        # One-sided (enrichment) test: pairs that never co-occur have p = 1 exactly, so leaving them out of
        # the listing and counting them only in the BH family size is exact.
        p = fisher_greater(ab, c[i], c[j], n)
        all_p.append(p)
        kept.append((i, j, ab, score, p))
        if top is not None:
            kept = [_top_pairs(*map(np.concatenate, zip(*kept)), top=top)]
    if kept:
        i, j, ab, score, p = map(np.concatenate, zip(*kept))
    else:
        i = j = ab = np.zeros(0, np.int64)
        score = p = np.zeros(0)
    p_all = np.concatenate(all_p) if all_p else np.zeros(0)
    q = _q_of_subset(p, p_all, n_pairs)
    fa, fb = cand[i], cand[j]
    table = pd.DataFrame({
        "feature_a": fa, "label_a": labels[fa], "feature_b": fb, "label_b": labels[fb],
        "count_a": c[i], "count_b": c[j], "count_ab": ab, "expected_ab": c[i] * c[j] / n,
        "npmi": score, "p_value": p, "q_value": q,
    }, columns=PAIR_COLUMNS)
    table = table.sort_values(["npmi", "count_ab"], ascending=False, ignore_index=True)
    return table if top is None else table.head(top)


def _top_pairs(i, j, ab, score, p, top: int):
    if score.size <= top:
        return i, j, ab, score, p
    keep = np.lexsort((-ab, -score))[:top]
    return i[keep], j[keep], ab[keep], score[keep], p[keep]


def _q_of_subset(p_subset: np.ndarray, p_all: np.ndarray, n_tests: int) -> np.ndarray:
    """BH q-values of ``p_subset`` (drawn from ``p_all``) within a family of ``n_tests`` tests.

    q(p) = min over p' >= p of p' * m / rank(p'), so it depends only on the sorted p-values of the family.
    """
    if p_subset.size == 0:
        return p_subset.copy()
    sorted_p = np.sort(p_all)
    q_sorted = benjamini_hochberg(sorted_p, n_tests)  # already sorted, so q_sorted is aligned with sorted_p
    # The largest rank holding a value <= p carries q(p) (ties share the step-up minimum).
    pos = np.searchsorted(sorted_p, p_subset, side="right") - 1
    return q_sorted[pos]


def feature_correlations(
    ds: Any, features: Any = None, min_count: int = 5, *, max_coverage: float = 1.0,
    activated_threshold: float = 0.0, block_size: int = 1024,
) -> pd.DataFrame:
    """Every pair of features that co-occurs in at least one document, with NPMI and a significance test.

    Presence is document level (max activation over tokens > ``activated_threshold``; encoded documents
    only). Candidate features are ``features`` if given, else those active in at least ``min_count``
    documents and in at most ``max_coverage`` of them. Per pair: ``count_a``, ``count_b``, ``count_ab``
    (documents with both), ``expected_ab`` under independence, ``npmi`` (see :func:`npmi`), ``p_value`` from
    the one-sided Fisher exact (hypergeometric) test that the pair co-occurs more than chance, and
    ``q_value`` (Benjamini–Hochberg over *all* candidate pairs, including those that never co-occur, which
    have p = 1). Sorted by NPMI descending. The listing grows with the number of co-occurring pairs; use
    :func:`top_correlations` for large datasets.

    Example::

        pairs = feature_correlations(ds, min_count=20)
        pairs.query("q_value < 0.05").head()
    """
    docs = load_documents(ds)
    P = presence(docs.activations, activated_threshold)
    return correlate_presence(P, label_array(ds), features=check_features(features, ds.d_sae),
                              min_count=check_int(min_count, "min_count", 1),
                              max_coverage=check_fraction(max_coverage, "max_coverage", open_low=True),
                              block_size=check_int(block_size, "block_size", 1))


def top_correlations(
    ds: Any, k: int = 20, features: Any = None, min_count: int = 5, *, max_coverage: float = 1.0,
    activated_threshold: float = 0.0, block_size: int = 1024,
) -> pd.DataFrame:
    """The ``k`` most strongly co-occurring feature pairs by NPMI, with labels and q-values.

    Same statistics and BH family as :func:`feature_correlations`, but only the best ``k`` pairs are kept
    while the co-occurrence blocks stream past, so memory stays bounded on large datasets. Raise
    ``min_count`` to keep rare features (whose NPMI is 1 after a handful of joint occurrences) from
    crowding the list.

    Example::

        top_correlations(ds, k=10, min_count=50)[["label_a", "label_b", "npmi", "q_value"]]
    """
    docs = load_documents(ds)
    P = presence(docs.activations, activated_threshold)
    return correlate_presence(P, label_array(ds), features=check_features(features, ds.d_sae),
                              min_count=check_int(min_count, "min_count", 1),
                              max_coverage=check_fraction(max_coverage, "max_coverage", open_low=True),
                              top=check_int(k, "k", 1), block_size=check_int(block_size, "block_size", 1))
