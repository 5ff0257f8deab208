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
    kept: list[tuple[np.ndarray, ...]] = []
    family_p: list[np.ndarray] = []
    for start in range(0, cand.size, block_size):
        block = (St[start:start + block_size] @ S).tocoo()
        i = block.row.astype(np.int64) + start
        j = block.col.astype(np.int64)
        upper = j > i  # each unordered pair once, no diagonal
        i, j, ab = i[upper], j[upper], block.data[upper].astype(np.int64)
        score = npmi(ab, c[i], c[j], n)
        # One-sided (enrichment) test. A hypergeometric median is floor or ceil of its mean, so a pair seen
        # at most floor(expected) times has p >= 0.5: such pairs enter BH as p = 1, which leaves every
        # q < 0.5 exact and spares the costly tail sums. Pairs that never co-occur have p = 1 exactly.
        enriched = ab > (c[i] * c[j]) // n
        p = np.ones(ab.size)
        p[enriched] = fisher_greater(ab[enriched], c[i][enriched], c[j][enriched], n)
        family_p.append(p[enriched])
        kept.append((i, j, ab, score, p, enriched))
        if top is not None:
            kept = [_top_pairs(*map(np.concatenate, zip(*kept)), top=top)]
    if kept:
        i, j, ab, score, p, enriched = map(np.concatenate, zip(*kept))
    else:
        i = j = ab = np.zeros(0, np.int64)
        score = p = np.zeros(0)
        enriched = np.zeros(0, bool)
    q = _q_of_subset(p, np.concatenate(family_p) if family_p else np.zeros(0), n_pairs)
    # The listed pairs get their exact p-value for display; their q (>= 0.5) is a conservative bound.
    p[~enriched] = fisher_greater(ab[~enriched], c[i][~enriched], c[j][~enriched], n)
    fa, fb = cand[i], cand[j]
    table = pd.DataFrame({
        "feature_a": fa, "label_a": labels[fa], "feature_b": fb, "label_b": labels[fb],
        "count_a": c[i], "count_b": c[j], "count_ab": ab, "expected_ab": c[i] * c[j] / n,
        "npmi": score, "p_value": p, "q_value": q,
    }, columns=PAIR_COLUMNS)
    table = table.sort_values(["npmi", "count_ab"], ascending=False, ignore_index=True)
    return table if top is None else table.head(top)


def _top_pairs(*columns: np.ndarray, top: int) -> tuple[np.ndarray, ...]:
    """Keep the ``top`` pairs by NPMI (then joint count); columns are (i, j, ab, score, ...)."""
    ab, score = columns[2], columns[3]
    if score.size <= top:
        return columns
    keep = np.lexsort((-ab, -score))[:top]
    return tuple(col[keep] for col in columns)


def _q_of_subset(p_subset: np.ndarray, p_all: np.ndarray, n_tests: int) -> np.ndarray:
    """BH q-values of ``p_subset`` (drawn from ``p_all``) within a family of ``n_tests`` tests.

    q(p) = min over p' >= p of p' * m / rank(p'), so it depends only on the sorted p-values of the family.
    """
    q = np.ones(p_subset.size)
    inside = p_subset < 1.0  # p = 1 always has q = 1; such pairs may be absent from p_all
    if inside.any():
        sorted_p = np.sort(p_all)
        q_sorted = benjamini_hochberg(sorted_p, n_tests)  # sorted input, so q_sorted aligns with sorted_p
        # The largest rank holding a value <= p carries q(p) (ties share the step-up minimum).
        q[inside] = q_sorted[np.searchsorted(sorted_p, p_subset[inside], side="right") - 1]
    return q


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
    have p = 1). Pairs seen no more often than expected have p >= 0.5 and enter the BH family as p = 1,
    so every q-value below 0.5 is exact and larger ones are conservative. Sorted by NPMI descending. The listing grows with the number of co-occurring pairs; use
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
