"""Dataset diffing: which features are active in more documents of one dataset than of another."""
from __future__ import annotations

import logging
from collections.abc import Mapping

import numpy as np
import pandas as pd
import scipy.sparse as sp

from .blockwise import PresenceBlocks, check_blockwise
from .fires_on import add_fires_on, words_of
from .grouping import GroupingOptions
from .inputs import (PRESENCE, Encoded, EncodedDataset, check_dataset, check_same_encoder, feature_counts,
                     label_array, load_documents, presence)
from .stats import benjamini_hochberg, fisher_two_sided, newcombe_interval
from ..validation import Choice, Fraction, InvalidParameterError, MemorySize, validate_params

logger = logging.getLogger(__name__)

METRICS = ("absolute", "relative")
CANONICAL_COLUMNS = "canonical_columns"
"""The key in a diff table's ``attrs`` of ``{shown column: canonical column}``: ``freq_german`` → ``freq_a``."""
STATISTICS = dict(metric=Choice(METRICS), min_coverage=Fraction(), max_coverage=Fraction(at_least="min_coverage"),
                  confidence=Fraction(above_zero=True))
"""What the statistics of every diff may be given (diff_counts, diff_features, diff_many)."""


def _diff_table(
    count_a: np.ndarray, n_a: int, count_b: np.ndarray, n_b: int, labels: np.ndarray,
    metric: str, min_coverage: float, max_coverage: float, confidence: float,
) -> pd.DataFrame:
    """Per-feature frequencies, effect, Newcombe CI and two-sided Fisher p for the tested features (no q yet)."""
    freq_a = count_a / n_a
    freq_b = count_b / n_b
    # Features active nowhere admit no test; the coverage bounds are the original interp_embed's filter.
    tested = (count_a + count_b > 0) & (np.minimum(freq_a, freq_b) >= min_coverage) & (
        np.maximum(freq_a, freq_b) <= max_coverage
    )
    f = np.flatnonzero(tested)
    fa, fb, ka, kb = freq_a[f], freq_b[f], count_a[f], count_b[f]
    if metric == "absolute":
        effect = fa - fb
    else:
        effect = (fa - fb) / np.maximum(fa, fb)
    ci_low, ci_high = newcombe_interval(ka, n_a, kb, n_b, confidence)
    p = fisher_two_sided(ka, np.full(f.size, n_a), ka + kb, np.full(f.size, n_a + n_b))
    return pd.DataFrame({
        "feature_id": f,
        "label": labels[f],
        "count_a": ka,
        "count_b": kb,
        "freq_a": fa,
        "freq_b": fb,
        "frequency_difference": effect,
        "ci_low": ci_low,
        "ci_high": ci_high,
        "p_value": p,
    })


@validate_params(**STATISTICS)
def diff_counts(
    count_a: np.ndarray, n_a: int, count_b: np.ndarray, n_b: int, labels: np.ndarray | None = None, *,
    metric: str = "absolute", min_coverage: float = 0.0, max_coverage: float = 1.0, confidence: float = 0.95,
) -> pd.DataFrame:
    """The statistics of :func:`diff_features` from per-feature document counts (``count_a[f]`` of ``n_a``).

    Useful when the counts come from elsewhere (a store's pooled counts, a database).

    >>> diff_counts(np.array([90, 5]), 100, np.array([10, 5]), 100)[["feature_id", "freq_a", "freq_b"]].values.tolist()
    [[0.0, 0.9, 0.1], [1.0, 0.05, 0.05]]
    """
    return _counts_table(count_a, n_a, count_b, n_b, labels, metric, min_coverage, max_coverage, confidence)


def _counts_table(count_a: np.ndarray, n_a: int, count_b: np.ndarray, n_b: int, labels: np.ndarray | None,
                  metric: str, min_coverage: float, max_coverage: float, confidence: float) -> pd.DataFrame:
    """:func:`diff_counts` of checked options."""
    count_a, count_b = np.asarray(count_a, dtype=np.int64), np.asarray(count_b, dtype=np.int64)
    if count_a.shape != count_b.shape or count_a.ndim != 1:
        raise InvalidParameterError(f"count_a and count_b must be 1-D of equal length, got {count_a.shape} and "
                                    f"{count_b.shape}.")
    if n_a < 1 or n_b < 1:
        raise InvalidParameterError(f"both datasets need at least one encoded document (got n_a={n_a}, n_b={n_b}).")
    if labels is None:
        labels = np.full(count_a.size, "", dtype=object)
    table = _diff_table(count_a, n_a, count_b, n_b, labels, metric, min_coverage, max_coverage, confidence)
    table["q_value"] = benjamini_hochberg(table["p_value"].to_numpy())
    return table.sort_values(["frequency_difference", "freq_a"], ascending=False, ignore_index=True)


@validate_params(ds_a=Encoded(), ds_b=Encoded(), **STATISTICS, **PRESENCE, memory_limit=MemorySize())
def diff_features(
    ds_a: EncodedDataset, ds_b: EncodedDataset, metric: str = "absolute", min_coverage: float = 0.0,
    max_coverage: float = 1.0, *, aggregation: str = "max", activated_threshold: float = 0.0, confidence: float = 0.95,
    grouped: bool = False, grouping: str = "explained", alpha: float = 0.05, min_overlap: float = 0.5,
    memory_limit: int | str | None = None,
) -> pd.DataFrame:
    """Compare how often each feature is active in the documents of two datasets.

    A feature is active in a document when its pooled activation exceeds ``activated_threshold``;
    ``aggregation`` (``max``, ``mean``, ``sum``, ``binarize`` or ``count``) pools each document's token activations (max by default). Only encoded documents count. Per feature: ``freq_a``/``freq_b`` (fraction of
    documents where it is active), ``frequency_difference`` (``freq_a − freq_b``, or divided by the larger
    of the two when ``metric="relative"``), ``ci_low``/``ci_high`` (Newcombe hybrid score interval for
    ``freq_a − freq_b`` at ``confidence``), ``p_value`` (two-sided Fisher exact test on the 2x2 table
    dataset × active) and ``q_value`` (Benjamini–Hochberg over every tested feature). ``fires_on`` shows what
    the feature does in these documents — the words it fires on most specifically, read from the dataset where it
    is more frequent — before its ``label``, which may describe the SAE's training text (analysis/fires_on.py).

    Tested features are those active in at least one document whose frequencies satisfy
    ``min(freq_a, freq_b) >= min_coverage`` and ``max(freq_a, freq_b) <= max_coverage`` (the original
    interp_embed's coverage filter); the others are left out of the table and of the BH family. Rows are
    sorted by ``frequency_difference`` descending.

    When both datasets have a ``name`` (``ds.name = "german"``) and the names differ, the columns ending in
    ``_a``/``_b`` end in the names instead (``freq_german``); ``attrs["canonical_columns"]`` maps them back, as
    :func:`canonical_diff` does.

    One cause often moves many features. Significant features (``q_value < alpha``) that differ in the same
    direction form groups (analysis/grouping.py), taken from the smallest p-value down: with
    ``grouping="explained"``, a feature joins the group of the first feature that explains its difference — among
    documents that agree on that feature's presence, its own difference is no longer significant
    (``p_given_representative >= alpha``, a Cochran–Mantel–Haenszel test); with ``grouping="overlap"``, of the
    first feature present in mostly the same documents (Jaccard index of their document sets at least
    ``min_overlap``). ``group`` numbers it (0 holds the smallest p-value), ``representative`` is its feature with
    the smallest p-value and ``overlap`` a member's Jaccard index with it; every other feature is a group of its
    own. ``grouped=True`` returns one row per group, the representative's (its ``fires_on`` too), with ``members``
    (feature ids) and ``n_members``.

    ``memory_limit`` (bytes, or a string such as ``"4GB"``) reads the stores block by block within that bound
    instead of building both matrices in memory (analysis/blockwise.py); the table is the same.

    Example::

        table = diff_features(english, german)
        table.query("q_value < 0.05").head(10)[["feature_id", "label", "freq_a", "freq_b", "q_value"]]
        diff_features(english, german, grouped=True).head(5)[["feature_id", "label", "n_members"]]
    """
    options = GroupingOptions(grouped, grouping, alpha, min_overlap)
    check_same_encoder({"ds_a": ds_a, "ds_b": ds_b})
    if ds_a.d_sae != ds_b.d_sae:
        raise InvalidParameterError(
            f"ds_a and ds_b were encoded with different SAEs ({ds_a.d_sae} vs {ds_b.d_sae} features); "
            "diff datasets encoded with the same SAE."
        )
    limit = check_blockwise(ds_a, memory_limit)
    check_blockwise(ds_b, memory_limit)
    if limit is None:
        docs_a, docs_b = load_documents(ds_a, "ds_a", aggregation), load_documents(ds_b, "ds_b", aggregation)
        P_a, P_b = presence(docs_a.activations, activated_threshold), presence(docs_b.activations, activated_threshold)
        count_a, count_b, n_a, n_b = feature_counts(P_a), feature_counts(P_b), docs_a.n, docs_b.n
        P = sp.vstack([P_a, P_b])
    else:
        P_a = PresenceBlocks.of(ds_a, "ds_a", aggregation, activated_threshold, limit)
        P_b = PresenceBlocks.of(ds_b, "ds_b", aggregation, activated_threshold, limit)
        count_a, count_b, n_a, n_b = P_a.counts, P_b.counts, P_a.shape[0], P_b.shape[0]
        P = PresenceBlocks.stack([P_a, P_b])
    logger.info("diffing %d vs %d encoded documents over %d features", n_a, n_b, count_a.size)
    labels = label_array(ds_a)
    table = _counts_table(count_a, n_a, count_b, n_b, labels, metric, min_coverage, max_coverage, confidence)
    side = np.r_[np.ones(n_a), np.zeros(n_b)]  # the rows of P: ds_a's, then ds_b's
    table = options.add_groups(table, P, "frequency_difference", scores=side)
    table = options.rows(add_fires_on(table, [words_of(ds_a), words_of(ds_b)], side=table["freq_a"] < table["freq_b"]))
    named = _named_columns(ds_a, ds_b)
    table = table.rename(columns=named)
    table.attrs[CANONICAL_COLUMNS] = {shown: canonical for canonical, shown in named.items()}
    return table


def canonical_diff(table: pd.DataFrame) -> pd.DataFrame:
    """A table of :func:`diff_features` with its canonical columns (``count_a``, ``freq_a``, ``count_b``,
    ``freq_b``) whatever the datasets are named: what code reading a diff relies on, while the table a person
    sees names its sides.

    >>> named = pd.DataFrame({"freq_german": [0.5]})
    >>> named.attrs[CANONICAL_COLUMNS] = {"freq_german": "freq_a"}
    >>> canonical_diff(named).columns.tolist()
    ['freq_a']
    """
    return table.rename(columns=table.attrs.get(CANONICAL_COLUMNS, {}))


def _named_columns(ds_a: EncodedDataset, ds_b: EncodedDataset) -> dict[str, str]:
    """``count_a`` → ``count_<name of ds_a>`` and so on, when both datasets have distinct names (for display)."""
    name_a, name_b = getattr(ds_a, "name", None), getattr(ds_b, "name", None)
    if not (isinstance(name_a, str) and isinstance(name_b, str) and name_a and name_b and name_a != name_b):
        return {}
    return {f"{column}_{side}": f"{column}_{name}" for column in ("count", "freq")
            for side, name in (("a", name_a), ("b", name_b))}


@validate_params(**STATISTICS, **PRESENCE)
def diff_many(
    datasets: Mapping[str, EncodedDataset], metric: str = "absolute", min_coverage: float = 0.0,
    max_coverage: float = 1.0, *, aggregation: str = "max", activated_threshold: float = 0.0, confidence: float = 0.95,
    grouped: bool = False, grouping: str = "explained", alpha: float = 0.05, min_overlap: float = 0.5,
) -> pd.DataFrame:
    """Compare each of several datasets against all the others pooled (one vs. rest).

    The statistics are those of :func:`diff_features` with ``a`` = the named dataset and ``b`` = the union of
    the rest, in columns ``freq_in``/``freq_rest``; one row per (dataset, tested feature). The
    Benjamini–Hochberg family is every test in the table (all datasets together), so a q-value below 0.05
    keeps the expected share of false discoveries in the whole table under 5%. Sorted by dataset, then
    ``frequency_difference`` descending. ``fires_on``: the words a feature fires on in the named dataset where it
    is more frequent there, else in the other dataset where it is most frequent. Significant features are grouped
    within each dataset as in
    :func:`diff_features` (group numbers are unique across the table); ``grouped=True`` keeps one row per group.

    Example::

        table = diff_many({"llama": ds_llama, "qwen": ds_qwen, "gemma": ds_gemma})
        table.groupby("dataset").head(5)
    """
    if not isinstance(datasets, Mapping) or len(datasets) < 2:
        raise InvalidParameterError("datasets must be a dict of at least two named datasets, e.g. "
                                    "{'a': ds_a, 'b': ds_b}.")
    options = GroupingOptions(grouped, grouping, alpha, min_overlap)
    names = list(datasets)
    for name in names:
        check_dataset(datasets[name], f"datasets[{name!r}]")
    check_same_encoder({f"datasets[{name!r}]": ds for name, ds in datasets.items()})
    d_sae = {name: ds.d_sae for name, ds in datasets.items()}
    if len(set(d_sae.values())) > 1:
        raise InvalidParameterError(f"all datasets must share one SAE; feature counts differ: {d_sae}.")
    counts, sizes, present = {}, {}, []
    for name in names:
        docs = load_documents(datasets[name], f"datasets[{name!r}]", aggregation)
        present.append(presence(docs.activations, activated_threshold))
        counts[name] = feature_counts(present[-1])
        sizes[name] = docs.n
    total_count, total_n = sum(counts.values()), sum(sizes.values())
    labels = label_array(datasets[names[0]])
    tables = []
    for name in names:
        t = _diff_table(counts[name], sizes[name], total_count - counts[name], total_n - sizes[name], labels,
                        metric, min_coverage, max_coverage, confidence)
        t.insert(0, "dataset", name)
        tables.append(t)
    table = pd.concat(tables, ignore_index=True).rename(columns={
        "count_a": "count_in", "count_b": "count_rest", "freq_a": "freq_in", "freq_b": "freq_rest"})
    table["q_value"] = benjamini_hochberg(table["p_value"].to_numpy())
    P, parts = sp.vstack(present).tocsc(), []
    owner = np.repeat(np.arange(len(names)), [sizes[name] for name in names])  # the dataset of each row of P
    for i, name in enumerate(names):
        part = options.add_groups(table[table["dataset"] == name], P, "frequency_difference",
                                  scores=(owner == i).astype(np.float64), first_group=sum(len(p) for p in parts))
        parts.append(part)
    # Words from the named dataset where the feature is more frequent there, else from the other dataset where it
    # is most frequent (the rest is several datasets, whose words are read one dataset at a time).
    frequency = np.array([counts[name] / sizes[name] for name in names])  # datasets × features
    table = pd.concat(parts)
    features, own = table["feature_id"].to_numpy(), table["dataset"].map({n: i for i, n in enumerate(names)}).to_numpy()
    elsewhere = np.where(np.arange(len(names))[:, None] == own, -1.0, frequency[:, features]).argmax(axis=0)
    side = np.where(table["freq_in"].to_numpy() >= table["freq_rest"].to_numpy(), own, elsewhere)
    table = add_fires_on(table, [words_of(datasets[name]) for name in names], side=side)
    order = {name: i for i, name in enumerate(names)}
    table = table.sort_values(["dataset", "frequency_difference"], ascending=[True, False],
                              key=lambda s: s.map(order) if s.name == "dataset" else s, ignore_index=True)
    return options.rows(table)
