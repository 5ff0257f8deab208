"""Grouping redundant findings: one phenomenon in the text often moves many features; report it once.

An SAE splits one thing in the text (a planted phrase, a language) over many features, so a diff or an
association can list hundreds of significant features for one cause. Taking the significant features (``q_value``
below ``alpha``) in order of evidence (smallest p-value first), each feature not yet in a group starts one and is
its representative; every later significant feature with the same direction of effect joins it when

- ``rule="explained"`` (the default of the analyses): its difference is *explained* by the representative — once
  documents are compared only with documents that agree on the representative's presence, the feature's own
  relation to the comparison is no longer significant (a stratified test, see :func:`explained_p_values`, whose
  p-value is at least ``alpha``), and that comparison still holds at least :data:`MIN_INFORMATION` of the
  information of the unstratified one (else nothing is shown either way: where the representative separates the
  two sides almost perfectly, no document is left to compare); or, as with the overlap rule, it is present in
  mostly the same documents. A feature that fires on part of a planted phrase and on background text joins the
  phrase's group, though the documents it fires in overlap little with the phrase's; a second, independent cause
  stays apart;
- ``rule="overlap"``: the documents it is present in overlap the representative's by at least ``min_overlap``
  (Jaccard index: shared documents / documents of either).

A feature that is not significant is a group of its own.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

from .stats import stratified_score_test
from ..validation import Bool, Choice, Fraction, InvalidParameterError, validate_fields

logger = logging.getLogger(__name__)

MAX_WORK = 1_000_000_000
"""Presence entries the representatives may read in all (about ten seconds); bounds the worst case, where
many significant features are present in many documents and share none."""


RULES = ("explained", "overlap")
MIN_INFORMATION = 0.5
"""The share of a feature's information (the variance of its test statistic) that must be left once documents are
split by a representative's presence, for "no longer significant" to mean "explained" rather than "no documents
left to tell": a difference of independent cause, significant at z, is then still expected at z·√0.5 or more."""


class _MatrixOverlaps:
    """Shared documents of ``features`` (and the sums of the documents' scores) read from a presence matrix in
    memory, one leader at a time."""

    batch = 1

    def __init__(self, P: sp.spmatrix, features: np.ndarray, scores: np.ndarray | None = None):
        self.by_document = sp.csr_matrix(P)[:, features]
        self.by_feature = self.by_document.tocsc()
        self.size = np.diff(self.by_feature.indptr)
        self.scores = scores
        if scores is not None:
            self.score_totals = self.by_document.T @ scores

    def shared(self, leaders: np.ndarray) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
        """``(shared, score_sums, square_sums)``: per leader and feature, the documents holding both, and the sum of
        their scores; per leader, the sum of its documents' squared scores. Each leader reads the rows of its own
        documents only."""
        counts, sums, squares = [], [], []
        for leader in leaders:
            documents = self.by_feature.indices[self.by_feature.indptr[leader]:self.by_feature.indptr[leader + 1]]
            rows = self.by_document[documents]
            counts.append(np.bincount(rows.indices, minlength=self.size.size))
            if self.scores is not None:
                weights = np.repeat(self.scores[documents], np.diff(rows.indptr))
                sums.append(np.bincount(rows.indices, weights=weights, minlength=self.size.size))
                squares.append(float(np.square(self.scores[documents]).sum()))
        if self.scores is None:
            return np.array(counts, dtype=np.int64), None, None
        return np.array(counts, dtype=np.int64), np.array(sums), np.array(squares)


def explained_p_values(leader: int, shared: np.ndarray, score_sums: np.ndarray, square_sum: float,
                       size: np.ndarray, score_totals: np.ndarray, n: int, total_sum: float,
                       total_square: float) -> tuple[np.ndarray, np.ndarray]:
    """Per feature, ``(p, information)``: the p-value of its relation to the documents' scores once the documents
    are split by the presence of feature ``leader`` (a position among the features) — the stratified test of
    :func:`~interp_embed.analysis.stats.stratified_score_test` with two strata, the leader's documents and the rest
    — and the share of the unstratified test's variance that the stratified one keeps.

    ``shared``/``score_sums``: documents holding both the leader and each feature, and the sum of their scores;
    ``square_sum``: the sum of the squared scores of the leader's documents; ``size``/``score_totals``: each
    feature's documents and their scores' sum; ``total_sum``/``total_square``: the scores' and squared scores'
    sums over all ``n`` documents.
    """
    n_in = int(size[leader])
    sum_in = float(score_sums[leader])
    n_k = np.array([n_in, n - n_in], dtype=np.float64)
    mean_k = np.divide([sum_in, total_sum - sum_in], n_k, out=np.zeros(2), where=n_k > 0)
    square_k = np.divide([square_sum, total_square - square_sum], n_k, out=np.zeros(2), where=n_k > 0)
    var_k = square_k - mean_k**2
    var_k = np.where(var_k > 1e-12 * np.maximum(square_k, 1e-300), var_k, 0.0)  # rounding, not spread
    counts = np.vstack([shared, size - shared]).astype(np.float64)
    _, p = stratified_score_test(np.vstack([score_sums, score_totals - score_sums]), counts, n_k, mean_k, var_k)
    with np.errstate(divide="ignore", invalid="ignore"):
        kept = np.where(n_k[:, None] > 1, counts * (n_k[:, None] - counts) / (n_k[:, None] - 1) * var_k[:, None],
                        0.0).sum(axis=0)
        total_var = total_square / n - (total_sum / n) ** 2
        whole = size * (n - size) / max(n - 1, 1) * total_var
        information = np.where(whole > 0, kept / whole, 0.0)
    return p, information


def group_features(P, features: np.ndarray, direction: np.ndarray, min_overlap: float, scores: np.ndarray | None = None,
                   rule: str = "overlap", alpha: float = 0.05) -> tuple[np.ndarray, ...]:
    """``(group, representative, overlap, p_given_representative)`` for significant ``features`` listed from the
    strongest evidence down.

    ``P`` is the document × feature presence matrix the evidence came from (or presence blocks read from a
    store, see analysis/blockwise.py); ``direction`` the sign of each feature's effect (only features of one
    sign share a group). ``overlap`` is a member's Jaccard index with its representative (1 for the
    representative). ``scores`` (one per row of ``P``: 1 and 0 for the two sides of a diff or a binary target, the
    ranks of a numeric one) are needed by ``rule="explained"``, which groups a feature with the first
    representative that explains it (``p_given_representative`` >= ``alpha`` with enough information left, or
    overlapping it; module docstring); the p-values are NaN without scores. Groups are numbered 0, 1, ... in order of their representatives. The work grows with
    the number of groups, not with the square of the number of features: each representative reads the presence
    entries of its own documents; past :data:`MAX_WORK` entries read, the features left are groups of their own
    (a warning says how many).
    """
    if rule not in RULES:
        raise InvalidParameterError(f"grouping={rule!r} is not supported; use one of {', '.join(map(repr, RULES))}.")
    if rule == "explained" and scores is None:
        raise ValueError("grouping='explained' needs the documents' scores (the side of each document)")
    features = np.asarray(features, dtype=np.int64)
    if scores is not None:
        scores = np.asarray(scores, dtype=np.float64)
    overlaps = (P.overlaps(features, scores) if hasattr(P, "overlaps")
                else _MatrixOverlaps(P, features, scores))
    size = overlaps.size
    group = np.full(features.size, -1, dtype=np.int64)
    representative = features.copy()
    overlap = np.ones(features.size)
    given = np.full(features.size, np.nan)
    total_sum = float(scores.sum()) if scores is not None else 0.0
    total_square = float(np.square(scores).sum()) if scores is not None else 0.0
    n_groups, work, ahead = 0, 0, {}
    for leader in range(features.size):
        if group[leader] >= 0:
            continue
        if leader not in ahead:  # the shared counts of the next leaders to come, a batch per read
            batch = np.flatnonzero(group < 0)
            batch = batch[batch >= leader][:overlaps.batch]
            counts, sums, squares = overlaps.shared(batch)
            ahead = {b: (counts[i], None if sums is None else sums[i], None if squares is None else squares[i])
                     for i, b in enumerate(batch.tolist())}
        shared, score_sums, square_sum = ahead.pop(leader)
        work += int(shared.sum())  # the presence entries of the leader's documents
        if work > MAX_WORK:
            left = group < 0
            logger.warning("grouping stopped after %d groups to bound the work; the %d significant features left are "
                           "listed as groups of their own", n_groups, int(left.sum()))
            group[left] = n_groups + np.arange(int(left.sum()))
            break
        jaccard = shared / np.maximum(size[leader] + size - shared, 1)
        p, information = (None, None) if scores is None else explained_p_values(
            leader, shared, score_sums, square_sum, size, overlaps.score_totals, len(scores), total_sum, total_square)
        close = jaccard >= min_overlap
        if rule == "explained":
            close |= (p >= alpha) & (information >= MIN_INFORMATION)
        join = (group < 0) & (direction == direction[leader]) & close
        join[leader] = True
        group[join] = n_groups
        representative[join] = features[leader]
        overlap[join] = jaccard[join]
        overlap[leader] = 1.0
        if p is not None:
            given[join] = p[join]
            given[leader] = 1.0
        n_groups += 1
    return group, representative, overlap, given


def add_groups(table: pd.DataFrame, P, effect: str, alpha: float, min_overlap: float, first_group: int = 0,
               scores: np.ndarray | None = None, rule: str = "overlap") -> pd.DataFrame:
    """``table`` (one row per feature, with ``feature_id``, ``p_value``, ``q_value`` and the ``effect`` column)
    with ``group``, ``representative`` and ``overlap`` added — and ``p_given_representative`` when ``scores`` (one
    per row of ``P``) are given — by ``rule`` (see :func:`group_features`); group numbers start at
    ``first_group``."""
    table = table.copy()
    order = np.lexsort((table["feature_id"].to_numpy(), table["p_value"].to_numpy()))
    significant = order[table["q_value"].to_numpy()[order] < alpha]
    group = np.empty(len(table), dtype=np.int64)
    representative = table["feature_id"].to_numpy(dtype=np.int64).copy()
    overlap = np.ones(len(table))
    given = np.full(len(table), np.nan)
    if significant.size:
        group[significant], representative[significant], overlap[significant], given[significant] = group_features(
            P, representative[significant], np.sign(table[effect].to_numpy()[significant]), min_overlap, scores, rule,
            alpha)
    n_groups = int(group[significant].max()) + 1 if significant.size else 0
    alone = order[table["q_value"].to_numpy()[order] >= alpha]
    group[alone] = n_groups + np.arange(alone.size)
    table["group"], table["representative"], table["overlap"] = group + first_group, representative, overlap
    if scores is not None:
        table["p_given_representative"] = given
    return table


def one_row_per_group(table: pd.DataFrame) -> pd.DataFrame:
    """The representatives' rows of a grouped table, in its order, with ``n_members`` and ``members`` (feature
    ids, strongest evidence first); the table's ``attrs`` are kept."""
    members = table.sort_values(["p_value", "feature_id"]).groupby("group")["feature_id"].agg(list)
    rows = table[table["feature_id"] == table["representative"]].copy()
    rows["members"] = rows["group"].map(members)
    rows["n_members"] = rows["members"].map(len)
    rows = rows.drop(columns=["overlap", "p_given_representative"], errors="ignore").reset_index(drop=True)
    rows.attrs = dict(table.attrs)
    return rows


@dataclass(frozen=True)
class GroupingOptions:
    """How an analysis groups its significant findings: the ``grouped``, ``grouping``, ``alpha`` and ``min_overlap``
    keyword arguments that :func:`~interp_embed.analysis.diff.diff_features`, ``diff_many``, ``associate_features``
    and ``feature_trends`` share, checked once here.

    >>> GroupingOptions(alpha=0)
    Traceback (most recent call last):
    ...
    interp_embed.validation.InvalidParameterError: alpha must lie in (0, 1], got 0.
    """

    grouped: bool = False
    """Return one row per group (its representative's, with ``members`` and ``n_members``) instead of one per
    feature."""
    grouping: str = "explained"
    """How a significant feature joins a group (module docstring): ``"explained"`` or ``"overlap"``."""
    alpha: float = 0.05
    """Features with a q-value below it are significant and grouped; every other feature is a group of its own."""
    min_overlap: float = 0.5
    """The Jaccard index of their document sets at which a feature joins a representative's group."""

    def __post_init__(self) -> None:
        validate_fields(self, grouped=Bool(), grouping=Choice(RULES), alpha=Fraction(above_zero=True),
                        min_overlap=Fraction(above_zero=True))

    def add_groups(self, table: pd.DataFrame, P, effect: str, scores: np.ndarray | None = None,
                   first_group: int = 0) -> pd.DataFrame:
        """``table`` with its groups (see :func:`add_groups`)."""
        return add_groups(table, P, effect, self.alpha, self.min_overlap, first_group, scores, self.grouping)

    def rows(self, table: pd.DataFrame) -> pd.DataFrame:
        """A grouped ``table`` as asked for: one row per group when ``grouped``, else as it is."""
        return one_row_per_group(table) if self.grouped else table
