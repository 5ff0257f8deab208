"""Grouping redundant findings: features that fire on the same documents report one phenomenon, not many.

An SAE splits one thing in the text (a planted phrase, a language) over many features, so a diff or an
association can list hundreds of significant features for one phenomenon. Here the significant features
are grouped by the overlap of the documents they are present in: taking them from the strongest evidence
down, each feature not yet in a group starts one and is its representative, and every later significant
feature whose document set overlaps the representative's by at least ``min_overlap`` (Jaccard index) joins
it. A feature that is not significant is a group of its own. The flat table keeps one row per feature
and gains ``group``, ``representative`` and ``overlap``; :func:`one_row_per_group` keeps the
representatives, with their members.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp


def group_features(P: sp.spmatrix, features: np.ndarray, significant: np.ndarray,
                   min_overlap: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(group, representative, overlap)`` for ``features`` listed from the strongest evidence down.

    ``P`` is the document × feature presence matrix the evidence came from; ``significant`` marks the
    features that may share a group. Groups are numbered in order of their representatives.
    """
    features = np.asarray(features, dtype=np.int64)
    group = np.full(features.size, -1, dtype=np.int64)
    representative = features.copy()
    overlap = np.ones(features.size)
    which = np.flatnonzero(significant)
    C = sp.csc_matrix(P)[:, features[which]].astype(np.float64)
    size = np.asarray(C.sum(axis=0)).ravel()
    unassigned = np.ones(which.size, dtype=bool)
    next_group = 0
    for i in range(which.size):  # leaders in order of evidence
        if not unassigned[i]:
            continue
        rest = np.flatnonzero(unassigned)
        shared = np.asarray((C[:, [i]].T @ C[:, rest]).todense()).ravel()
        jaccard = shared / np.maximum(size[i] + size[rest] - shared, 1)
        members = rest[jaccard >= min_overlap]  # includes the leader itself (Jaccard 1)
        group[which[members]] = next_group
        representative[which[members]] = features[which[i]]
        overlap[which[members]] = jaccard[jaccard >= min_overlap]
        unassigned[members] = False
        next_group += 1
    alone = group < 0
    group[alone] = next_group + np.arange(int(alone.sum()))
    return group, representative, overlap


def one_row_per_group(table: pd.DataFrame) -> pd.DataFrame:
    """The representatives' rows of a grouped table, in its order, with ``n_members`` and ``members``."""
    members = table.groupby("group", sort=False)["feature_id"].agg(list)
    rows = table[table["feature_id"] == table["representative"]].copy()
    rows["members"] = rows["group"].map(members)
    rows["n_members"] = rows["members"].map(len)
    return rows.reset_index(drop=True)
