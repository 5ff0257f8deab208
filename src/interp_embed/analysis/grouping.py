"""Grouping redundant findings: features that fire on the same documents report one phenomenon, not many.

An SAE splits one thing in the text (a planted phrase, a language) over many features, so a diff or an
association can list hundreds of significant features for one phenomenon. Here the significant features
(``q_value`` below ``alpha``) are grouped by the overlap of the documents they are present in: taking them in
order of evidence (smallest p-value first), each feature not yet in a group starts one and is its
representative, and every later significant feature with the same direction of effect whose document set
overlaps the representative's by at least ``min_overlap`` (Jaccard index: shared documents / documents of
either) joins it. A feature that is not significant is a group of its own.
"""
from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import scipy.sparse as sp

logger = logging.getLogger(__name__)

MAX_WORK = 1_000_000_000
"""Presence entries the representatives may read in all (about ten seconds); bounds the worst case, where
many significant features are present in many documents and share none."""


class _MatrixOverlaps:
    """Shared documents of ``features`` read from a presence matrix in memory, one leader at a time."""

    batch = 1

    def __init__(self, P: sp.spmatrix, features: np.ndarray):
        self.by_document = sp.csr_matrix(P)[:, features]
        self.by_feature = self.by_document.tocsc()
        self.size = np.diff(self.by_feature.indptr)

    def shared(self, leaders: np.ndarray) -> np.ndarray:
        """Each leader reads the rows of its own documents only."""
        rows = []
        for leader in leaders:
            documents = self.by_feature.indices[self.by_feature.indptr[leader]:self.by_feature.indptr[leader + 1]]
            rows.append(np.bincount(self.by_document[documents].indices, minlength=self.size.size))
        return np.array(rows, dtype=np.int64)


def group_features(P, features: np.ndarray, direction: np.ndarray,
                   min_overlap: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(group, representative, overlap)`` for significant ``features`` listed from the strongest evidence down.

    ``P`` is the document × feature presence matrix the evidence came from (or presence blocks read from a
    store, see analysis/blockwise.py); ``direction`` the sign of each feature's effect (only features of one
    sign share a group). ``overlap`` is a member's Jaccard index with its representative (1 for the
    representative). Groups are numbered 0, 1, ... in order of their representatives. The work grows with the
    number of groups, not with the square of the number of features: each representative reads the presence
    entries of its own documents; past :data:`MAX_WORK` entries read, the features left are groups of their own
    (a warning says how many).
    """
    features = np.asarray(features, dtype=np.int64)
    overlaps = P.overlaps(features) if hasattr(P, "overlaps") else _MatrixOverlaps(P, features)
    size = overlaps.size
    group = np.full(features.size, -1, dtype=np.int64)
    representative = features.copy()
    overlap = np.ones(features.size)
    n_groups, work, ahead = 0, 0, {}
    for leader in range(features.size):
        if group[leader] >= 0:
            continue
        if leader not in ahead:  # the shared counts of the next leaders to come, a batch per read
            batch = np.flatnonzero(group < 0)
            batch = batch[batch >= leader][:overlaps.batch]
            ahead = dict(zip(batch.tolist(), overlaps.shared(batch)))
        shared = ahead.pop(leader)
        work += int(shared.sum())  # the presence entries of the leader's documents
        if work > MAX_WORK:
            left = group < 0
            logger.warning("grouping stopped after %d groups to bound the work; the %d significant features left are "
                           "listed as groups of their own", n_groups, int(left.sum()))
            group[left] = n_groups + np.arange(int(left.sum()))
            break
        jaccard = shared / np.maximum(size[leader] + size - shared, 1)
        join = (group < 0) & (direction == direction[leader]) & (jaccard >= min_overlap)
        join[leader] = True
        group[join] = n_groups
        representative[join] = features[leader]
        overlap[join] = jaccard[join]
        overlap[leader] = 1.0
        n_groups += 1
    return group, representative, overlap


def add_groups(table: pd.DataFrame, P, effect: str, alpha: float, min_overlap: float,
               first_group: int = 0) -> pd.DataFrame:
    """``table`` (one row per feature, with ``feature_id``, ``p_value``, ``q_value`` and the ``effect`` column)
    with ``group``, ``representative`` and ``overlap`` added; group numbers start at ``first_group``."""
    table = table.copy()
    order = np.lexsort((table["feature_id"].to_numpy(), table["p_value"].to_numpy()))
    significant = order[table["q_value"].to_numpy()[order] < alpha]
    group = np.empty(len(table), dtype=np.int64)
    representative = table["feature_id"].to_numpy(dtype=np.int64).copy()
    overlap = np.ones(len(table))
    if significant.size:
        group[significant], representative[significant], overlap[significant] = group_features(
            P, representative[significant], np.sign(table[effect].to_numpy()[significant]), min_overlap)
    n_groups = int(group[significant].max()) + 1 if significant.size else 0
    alone = order[table["q_value"].to_numpy()[order] >= alpha]
    group[alone] = n_groups + np.arange(alone.size)
    table["group"], table["representative"], table["overlap"] = group + first_group, representative, overlap
    return table


def one_row_per_group(table: pd.DataFrame) -> pd.DataFrame:
    """The representatives' rows of a grouped table, in its order, with ``n_members`` and ``members`` (feature
    ids, strongest evidence first)."""
    members = table.sort_values(["p_value", "feature_id"]).groupby("group")["feature_id"].agg(list)
    rows = table[table["feature_id"] == table["representative"]].copy()
    rows["members"] = rows["group"].map(members)
    rows["n_members"] = rows["members"].map(len)
    return rows.drop(columns=["overlap"]).reset_index(drop=True)
