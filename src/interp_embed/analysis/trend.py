"""Trends: which features become more or less frequent along an ordered column (dates, versions, numbers)."""
from __future__ import annotations

import logging
import re
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from .association import MIN_NORMAL_GROUP
from .fires_on import add_fires_on, words_of
from .grouping import GroupingOptions
from .inputs import PRESENCE, Encoded, EncodedDataset, feature_counts, label_array, load_documents, presence
from .stats import benjamini_hochberg, permutation_p_values, rank_sum_p_values
from .targets import target_series
from ..validation import Int, validate_params

logger = logging.getLogger(__name__)


@validate_params(ds=Encoded(), max_levels=Int(min=2), min_count=Int(min=2), **PRESENCE, n_permutations=Int(min=100))
def feature_trends(
    ds: EncodedDataset, column, *, order: list | None = None, max_levels: int = 10, min_count: int = 2,
    aggregation: str = "max", activated_threshold: float = 0.0, n_permutations: int = 10_000, random_state: int = 0,
    grouped: bool = False, grouping: str = "explained", alpha: float = 0.05, min_overlap: float = 0.5,
) -> pd.DataFrame:
    """How the share of documents where each feature is active changes along an ordered ``column``.

    ``column`` is a column name or one value per document (as the target of
    :func:`~interp_embed.analysis.association.associate_features`). Its values are put in order: numbers and
    dates by value, a pandas ordered categorical by its categories, text in natural order (``v2`` before ``v10``),
    or as listed in ``order`` (every value must be there). Documents without a value are left out.

    Per feature (present in at least ``min_count`` documents and absent from as many): ``spearman``, the rank
    correlation between its presence and the documents' order (ties share their mid-rank); ``slope``, how much its
    frequency changes from one level to the next (least squares over the documents); ``freq_<level>``, its
    frequency at each level — at most ``max_levels`` of them: more distinct values are cut into ``max_levels``
    consecutive bins of about as many documents (named ``first–last``), for these columns and ``slope`` only;
    ``p_value`` (``p_method``): the two-sided test that its presence is unrelated to the order — the rank-sum
    (Mann–Whitney) test of the documents' order between documents with and without the feature, which is the
    Cochran–Armitage trend test with mid-rank scores: normal approximation with tie and continuity corrections
    (``rank-sum``) when both groups have at least 30 documents, else ``n_permutations`` random relabellings
    (``rank-sum permutation``, never below 1 / (n_permutations + 1)); ``q_value``: Benjamini–Hochberg over every
    tested feature. ``fires_on``: the words the feature fires on most specifically in these documents. Rows are
    sorted by p-value.

    Significant features that move the same way are grouped as in
    :func:`~interp_embed.analysis.diff.diff_features` (``grouping``, ``min_overlap``; analysis/grouping.py), the
    documents' order being what a representative must explain; ``grouped=True`` returns one row per group.
    ``attrs["levels"]``: each level's name, documents and the values it holds.

    Example::

        table = feature_trends(ds, "release_date")
        table.query("q_value < 0.05").head()
        plot_trends(table, path="trends.png")
    """
    options = GroupingOptions(grouped, grouping, alpha, min_overlap)
    docs = load_documents(ds, aggregation=aggregation)
    values, name = target_series(ds.pandas(), column)
    values = values.iloc[docs.rows].reset_index(drop=True)
    known = values.notna().to_numpy()
    levels = _ordered_levels(values[known], name, order)
    if len(levels) < 2:
        raise ValueError(f"column {name!r} has {len(levels)} distinct value(s) among the encoded documents; a trend "
                         "needs at least two.")
    code = pd.Categorical(values[known], categories=levels).codes.astype(np.int64)
    P = presence(docs.activations, activated_threshold)[known]
    n = P.shape[0]
    ranks = stats.rankdata(code)  # each document's place in the order; ties share their mid-rank
    bins, names = _bins(code, levels, max_levels)
    counts = feature_counts(P)
    tested = np.flatnonzero((counts >= min_count) & (n - counts >= min_count))
    k = counts[tested]
    rank_sums = (P.T @ ranks)[tested]
    p = rank_sum_p_values(rank_sums, k, n, np.unique(code, return_counts=True)[1])
    small = np.minimum(k, n - k) < MIN_NORMAL_GROUP
    if small.any():  # as in associate: the smaller group's rank sum, drawn at random
        rng = np.random.default_rng(random_state)
        smaller = (k <= n - k)[small]
        sums = np.where(smaller, rank_sums[small], ranks.sum() - rank_sums[small])
        p[small] = permutation_p_values(ranks, np.minimum(k, n - k)[small], sums, n_permutations, rng)
    centred = ranks - ranks.mean()
    spearman = (P.T @ centred)[tested] / np.sqrt(k * (n - k) / n * (centred @ centred))
    step = bins.astype(np.float64) - bins.mean()
    slope = (P.T @ step)[tested] / (step @ step) if step @ step > 0 else np.full(tested.size, np.nan)
    labels = label_array(ds)
    table = pd.DataFrame({"feature_id": tested, "label": labels[tested], "count_active": k, "spearman": spearman,
                          "slope": slope})
    per_bin = np.vstack([np.asarray(P[bins == b].sum(axis=0)).ravel()[tested] / max((bins == b).sum(), 1)
                         for b in range(len(names))])
    for b, level_name in enumerate(names):
        table[f"freq_{level_name}"] = per_bin[b]
    table["p_value"], table["p_method"] = p, np.where(small, "rank-sum permutation", "rank-sum")
    table["q_value"] = benjamini_hochberg(p)
    logger.info("trends of %d features along %r over %d documents in %d levels", tested.size, name, n, len(levels))
    table = table.sort_values(["p_value", "feature_id"], ignore_index=True)
    table = options.add_groups(table, P, "spearman", scores=ranks)
    table = add_fires_on(table, [words_of(ds, docs.rows[known])])
    table.attrs["levels"] = pd.DataFrame({
        "level": names, "n_documents": np.bincount(bins, minlength=len(names)),
        "values": [[_name(levels[i]) for i in np.unique(code[bins == b])] for b in range(len(names))]})
    table.attrs["column"] = name
    return options.rows(table)


def _ordered_levels(values: pd.Series, name: str, order: list | None) -> list:
    """The distinct values in order (see :func:`feature_trends`)."""
    distinct = pd.unique(values)
    if order is not None:
        order = list(order)
        missing = [v for v in distinct if v not in set(order)]
        if missing:
            raise ValueError(f"column {name!r} has values that order= does not list: {missing[:5]}; list every value.")
        if len(set(order)) != len(order):
            raise ValueError("order= lists a value twice; list each value once, first to last.")
        return [v for v in order if v in set(distinct)]
    if isinstance(values.dtype, pd.CategoricalDtype) and values.dtype.ordered:
        return [c for c in values.dtype.categories if c in set(distinct)]
    if pd.api.types.is_numeric_dtype(values) or pd.api.types.is_datetime64_any_dtype(values):
        return sorted(distinct)
    try:
        return sorted(distinct, key=_natural_key)
    except TypeError:
        raise TypeError(f"column {name!r} mixes values that cannot be put in order; pass order=[...] with every "
                        "value, first to last.") from None


def _natural_key(value: Any) -> tuple:
    """Text with its numbers compared as numbers: ``v2`` before ``v10``, ``1.9`` before ``1.10``."""
    if isinstance(value, (int, float, np.number)) and not isinstance(value, bool):
        return ((0, float(value), ""),)
    return tuple((0, int(part), "") if part.isdigit() else (1, 0, part)
                 for part in re.split(r"(\d+)", str(value)) if part)


def _bins(code: np.ndarray, levels: list, max_levels: int) -> tuple[np.ndarray, list[str]]:
    """``(bin of each document, bin names)``: the levels themselves, or with more than ``max_levels`` of them,
    runs of consecutive levels holding about as many documents each."""
    if len(levels) <= max_levels:
        return code, [_name(level) for level in levels]
    per_level = np.bincount(code, minlength=len(levels))
    # A level's bin: where the middle of its documents falls among max_levels equal shares of all documents.
    middle = np.cumsum(per_level) - per_level / 2
    level_bin = np.minimum((middle / per_level.sum() * max_levels).astype(np.int64), max_levels - 1)
    _, level_bin = np.unique(level_bin, return_inverse=True)  # no empty bins
    names = []
    for b in range(level_bin.max() + 1):
        inside = np.flatnonzero(level_bin == b)
        first, last = _name(levels[inside[0]]), _name(levels[inside[-1]])
        names.append(first if first == last else f"{first}–{last}")
    return level_bin[code], names


def _name(value: Any) -> str:
    """A level as a column name shows it: a date without its midnight, a whole number without its ``.0``."""
    if isinstance(value, pd.Timestamp | np.datetime64):
        stamp = pd.Timestamp(value)
        return stamp.date().isoformat() if stamp == stamp.normalize() else stamp.isoformat()
    if isinstance(value, float | np.floating) and float(value).is_integer():
        return str(int(value))
    return str(value)


def level_columns(table: pd.DataFrame) -> list[str]:
    """The ``freq_<level>`` columns of a :func:`feature_trends` table, in the column's order, as its
    ``attrs["levels"]`` names them (never guessed from column names)."""
    levels = table.attrs.get("levels")
    if not isinstance(levels, pd.DataFrame) or "level" not in levels.columns:
        raise ValueError("table has no attrs['levels'] naming its levels; pass the DataFrame returned by "
                         "feature_trends")
    return [f"freq_{level}" for level in levels["level"]]
