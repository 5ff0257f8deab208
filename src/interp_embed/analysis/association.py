"""Target association (HypotheSAEs-style): which features separate the values of a metadata column."""
from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy import stats

from .blockwise import GatheredRows, PresenceBlocks, check_blockwise
from .fires_on import add_fires_on, words_of
from .grouping import GroupingOptions
from .inputs import PRESENCE, Encoded, EncodedDataset, feature_counts, label_array, load_documents, presence
from .stats import (benjamini_hochberg, fisher_two_sided, newcombe_interval, permutation_p_values, rank_sum_p_values,
                    welch_t_test)
from .targets import encode_target, target_series
from ..store.reading import BLOCK_SHARE, BYTES_PER_ENTRY
from ..validation import Bool, Fraction, Int, MemorySize, validate_params

logger = logging.getLogger(__name__)


# Below this many documents on either side, the normal approximation of the rank-sum test is replaced by
# a permutation test: with a handful of documents only an exact-by-simulation null distribution holds.
MIN_NORMAL_GROUP = 30


def _univariate(k: np.ndarray, column_sums, y: np.ndarray, binary: bool, min_count: int, confidence: float,
                n_permutations: int, rng: np.random.Generator):
    """Per-feature separation E[y|active] − E[y|inactive], its CI, p-value and how the p-value was obtained.

    ``k``: the documents where each feature is present; ``column_sums(v)``: per feature, the sum of ``v`` (one
    value per document) over those documents.
    """
    n = y.size
    sum_active = column_sums(y)
    testable = (k >= min_count) & (n - k >= min_count)
    f = np.flatnonzero(testable)
    k_f, n_inactive = k[f], n - k[f]
    mean_1 = sum_active[f] / k_f
    mean_0 = (y.sum() - sum_active[f]) / n_inactive
    if binary:
        pos_active = sum_active[f].round().astype(np.int64)
        n_pos = int(y.sum())
        p = fisher_two_sided(pos_active, k_f, np.full(f.size, n_pos), np.full(f.size, n))
        lo, hi = newcombe_interval(pos_active, k_f, n_pos - pos_active, n_inactive, confidence)
        return f, k_f, mean_1, mean_0, lo, hi, p, np.full(f.size, "fisher")
    # The interval is Welch's, for the difference of means; the test uses ranks, which a skewed target
    # (lengths, counts, prices) cannot fool.
    sq_active = column_sums(y * y)
    var_1 = (sq_active[f] - k_f * mean_1**2) / np.maximum(k_f - 1, 1)
    var_0 = ((y * y).sum() - sq_active[f] - n_inactive * mean_0**2) / np.maximum(n_inactive - 1, 1)
    # Sums of squares minus squared means can dip below zero by rounding.
    _, lo, hi = welch_t_test(mean_1, np.maximum(var_1, 0), k_f, mean_0, np.maximum(var_0, 0), n_inactive, confidence)
    ranks = stats.rankdata(y)
    rank_sum = column_sums(ranks)[f]
    p = rank_sum_p_values(rank_sum, k_f, n, np.unique(y, return_counts=True)[1])
    small = np.minimum(k_f, n_inactive) < MIN_NORMAL_GROUP
    if small.any():  # the smaller group's rank sum decides the test: draw its null distribution
        active_smaller = (k_f <= n_inactive)[small]
        sizes = np.minimum(k_f, n_inactive)[small]
        sums = np.where(active_smaller, rank_sum[small], ranks.sum() - rank_sum[small])
        p[small] = permutation_p_values(ranks, sizes, sums, n_permutations, rng)
        lo[small] = hi[small] = np.nan  # too few documents for an interval worth reporting
    return f, k_f, mean_1, mean_0, lo, hi, p, np.where(small, "rank-sum permutation", "rank-sum")


def _l1_model(binary: bool, strength: float, random_state: int):
    import sklearn  # scikit-learn is imported where it is used: importing interp_embed stays fast
    from sklearn.linear_model import Lasso, LogisticRegression

    if not binary:
        return Lasso(alpha=strength, max_iter=5000)
    # scikit-learn 1.8 replaced penalty="l1" by l1_ratio=1; support both sides of that change.
    if tuple(int(x) for x in sklearn.__version__.split(".")[:2]) >= (1, 8):
        return LogisticRegression(l1_ratio=1.0, C=strength, solver="liblinear", random_state=random_state)
    return LogisticRegression(penalty="l1", C=strength, solver="liblinear", random_state=random_state)


def _strengths(X: sp.csr_matrix, y: np.ndarray, binary: bool) -> np.ndarray:
    """Regularisation strengths to try, the simplest model (fewest features) first.

    X and y are standardised, so one grid fits every target: the Lasso's largest alpha is the one at which
    no feature enters; the logistic model's C grows from a model of the intercept alone.
    """
    if binary:
        return np.logspace(-3.5, 1, 12)
    alpha_max = float(np.abs(X.T @ (y - y.mean())).max()) / len(y)
    return max(alpha_max, 1e-12) * np.logspace(0, -2.5, 12)


def _fold_score(model, X, y, binary: bool) -> float:
    """Higher is better: minus the log loss (binary) or minus the mean squared error (numeric)."""
    from sklearn.metrics import log_loss, mean_squared_error

    if binary:
        return -float(log_loss(y, model.predict_proba(X)[:, 1], labels=[0, 1]))
    return -float(mean_squared_error(y, model.predict(X)))


def _screen(X: sp.csr_matrix, y: np.ndarray, max_features: int) -> np.ndarray:
    """Columns of the ``max_features`` features most correlated with y (X is standardised)."""
    return np.argsort(-np.abs(X.T @ (y - y.mean())), kind="stable")[:max_features]


def _fit_one_standard_error(X: sp.csr_matrix, y: np.ndarray, binary: bool, max_features: int, folds: int,
                            random_state: int):
    """(strength, screened columns, model fitted on them): the simplest model whose cross-validated score is
    within one standard error of the best (Breiman's rule: prefer fewer features when the data cannot tell).

    Screening is part of the procedure, so it is repeated inside every fold: screened on all the rows, the
    validation rows would already agree with the chosen features and any target, noise included, would
    look predictable.
    """
    from sklearn.model_selection import KFold, StratifiedKFold

    columns = _screen(X, y, max_features)
    strengths = _strengths(X[:, columns], y, binary)
    splitter = (StratifiedKFold if binary else KFold)(folds, shuffle=True, random_state=random_state)
    scores = np.empty((folds, strengths.size))
    for i, (fit, val) in enumerate(splitter.split(X, y)):
        kept = _screen(X[fit], y[fit], max_features)
        X_fit, X_val = X[fit][:, kept], X[val][:, kept]
        model = _l1_model(binary, strengths[0], random_state).set_params(warm_start=True)
        for j, strength in enumerate(strengths):  # simplest first: each fit starts from the previous one
            model.set_params(**{"C" if binary else "alpha": strength}).fit(X_fit, y[fit])
            scores[i, j] = _fold_score(model, X_val, y[val], binary)
    mean, se = scores.mean(axis=0), scores.std(axis=0, ddof=1) / np.sqrt(folds)
    best = int(np.argmax(mean))
    chosen = strengths[int(np.argmax(mean >= mean[best] - se[best]))]  # the first (simplest) within one SE
    return float(chosen), columns, _l1_model(binary, chosen, random_state).fit(X[:, columns], y)


def _held_out(model, X: sp.csr_matrix, y: np.ndarray, binary: bool, y_centre: float, y_scale: float) -> float:
    from sklearn.metrics import r2_score, roc_auc_score

    if binary:
        return float(roc_auc_score(y, model.decision_function(X)))
    return float(r2_score(y, model.predict(X) * y_scale + y_centre))


def fit_sparse_model(
    P: sp.csr_matrix, y: np.ndarray, binary: bool, *, candidates: np.ndarray | None = None,
    test_size: float = 0.25, max_features: int = 2000, max_train_docs: int = 20_000, folds: int = 5,
    random_state: int = 0, max_test_docs: int | None = None,
) -> dict[str, Any]:
    """Fit an L1 logistic (binary y) or Lasso (numeric y) model on presence and score it on held-out documents.

    Documents are split into train and test (stratified for binary y). On the training documents only
    (at most ``max_train_docs`` of them): features are standardised (and a numeric y too, so the penalty
    does not depend on the target's units), screened to the ``max_features`` most correlated with y, and
    the penalty is chosen by ``folds``-fold cross-validation with the one-standard-error rule, the
    screening repeated inside every fold. The held-out
    AUC (binary) or R² (numeric) comes with a permutation baseline: the same procedure fitted to the
    training targets shuffled, scored on the same held-out documents — what a model of noise scores.
    ``candidates`` limits the features the model may use; ``max_test_docs`` scores on a random sample of that
    many held-out documents when there are more (a memory bound). ``P`` may be any object whose ``P[rows]`` is
    the CSR presence of those documents (analysis/blockwise.py gathers them from a store). Returns the metric,
    both scores, the penalty and the selected features with their coefficients (per unit of presence, in the
    target's units for Lasso).
    """
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler

    n = P.shape[0]
    train, test = train_test_split(np.arange(n), test_size=test_size, random_state=random_state,
                                   stratify=y if binary else None)
    rng = np.random.default_rng(random_state)
    if train.size > max_train_docs:
        train = np.sort(rng.choice(train, max_train_docs, replace=False))
    if max_test_docs is not None and test.size > max_test_docs:
        logger.warning("the model is scored on %d of its %d held-out documents, to stay within memory_limit",
                       max_test_docs, test.size)
        test = np.sort(rng.choice(test, max_test_docs, replace=False))
    pool = np.arange(P.shape[1]) if candidates is None else candidates
    P_train = P[train]
    pool = pool[np.asarray(P_train[:, pool].sum(axis=0)).ravel() > 0]
    X_train, y_train = P_train[:, pool].astype(np.float64), y[train]
    scaler = StandardScaler(with_mean=False).fit(X_train)  # keeps the matrix sparse
    X_fit, X_test = scaler.transform(X_train), scaler.transform(P[test][:, pool].astype(np.float64))
    centre, scale = (0.0, 1.0) if binary else (float(y_train.mean()), float(y_train.std()) or 1.0)
    y_fit = y_train if binary else (y_train - centre) / scale
    strength, columns, model = _fit_one_standard_error(X_fit, y_fit, binary, max_features, folds, random_state)
    _, noise_columns, noise = _fit_one_standard_error(X_fit, rng.permutation(y_fit), binary, max_features, folds,
                                                      random_state)
    coef = np.ravel(model.coef_) / scaler.scale_[columns] * scale
    chosen = np.flatnonzero(coef)
    return {
        "metric": "auc" if binary else "r2",
        "held_out": _held_out(model, X_test[:, columns], y[test], binary, centre, scale),
        "permutation_baseline": _held_out(noise, X_test[:, noise_columns], y[test], binary, centre, scale),
        "n_train": int(train.size),
        "n_test": int(test.size),
        "regularisation": strength,
        "selected": dict(zip(pool[columns[chosen]].tolist(), coef[chosen].tolist())),
    }


@validate_params(ds=Encoded(), min_count=Int(min=2), **PRESENCE,
                 confidence=Fraction(above_zero=True), n_permutations=Int(min=100), test_size=Fraction(above_zero=True),
                 max_model_features=Int(min=1), max_train_docs=Int(min=10), memory_limit=MemorySize(), model=Bool())
def associate_features(
    ds: EncodedDataset, target, *, min_count: int = 2, aggregation: str = "max", activated_threshold: float = 0.0,
    confidence: float = 0.95, n_permutations: int = 10_000, test_size: float = 0.25, max_model_features: int = 2000,
    max_train_docs: int = 20_000, random_state: int = 0, grouped: bool = False, grouping: str = "explained",
    alpha: float = 0.05, min_overlap: float = 0.5, memory_limit: int | str | None = None, model: bool = True,
) -> pd.DataFrame:
    """Which features separate the values of ``target``: a column of the dataset, or values you computed.

    ``target`` is a column name, or one value per document of ``ds`` — a NumPy array, a list, a boolean mask, a
    pandas Series (matched by its index when that holds exactly the labels of ``ds.pandas()``, else taken in row
    order); another length is refused (analysis/targets.py). Its kind decides the tests:

    - binary (booleans, 0/1, or two distinct values: the one sorted last is the positive class);
    - numeric (numbers);
    - categorical (more than two distinct values that are not numbers): each level is tested against all the other
      documents, as a binary target of its own. The table then has a ``level`` column first, the
      Benjamini–Hochberg family is every level × feature test, groups are formed within each level, and
      ``attrs["levels"]`` summarises each level (see below).

    A feature is present in a document when its pooled activation exceeds ``activated_threshold``
    (``aggregation``: ``max``, ``mean``, ``sum``, ``binarize`` or ``count`` of its token activations; max by
    default). Over the encoded documents with a non-missing target, per feature: ``mean_active`` and
    ``mean_inactive`` (E[y | present], E[y | absent]), ``separation`` (their difference), ``ci_low``/``ci_high``,
    ``p_value``, ``p_method`` (how that p-value was obtained) and ``q_value`` (Benjamini–Hochberg over every
    tested feature). Tested features are present in at least ``min_count`` documents and absent from as
    many; rows are sorted by p-value (by level first). ``fires_on``: the words the feature fires on most
    specifically, in the documents of the class (or level) it points to — for a feature that points away from a
    level, in the other documents — or, for a numeric y, in all of them.

    - Binary y (``p_method="fisher"``): the two-sided Fisher exact test, exact at any size, with a
      Newcombe interval for the difference of proportions.
    - Numeric y (``"rank-sum"``): the two-sided Mann–Whitney U (rank-sum) test, which depends on the order
      of the values only, so a skewed target cannot fool it; normal approximation with tie and continuity
      corrections when both groups have at least 30 documents; Welch's interval for the difference of
      means.
    - Numeric y, a smaller group (``"rank-sum permutation"``): the same statistic's null distribution drawn
      by ``n_permutations`` random relabellings (valid at any size; the p-value is never below
      1 / (n_permutations + 1), so a few documents can never look overwhelming); no interval (NaN).

    A sparse L1 model (logistic for binary y, Lasso for numeric y, scikit-learn; see
    :func:`fit_sparse_model`) is fitted on a train/test split: ``selected`` marks its features and
    ``coefficient`` their weights. ``table.attrs["model"]`` holds its held-out AUC (binary) or R² (numeric)
    beside a permutation baseline (the same procedure fitted to shuffled targets), and the details; for a
    categorical target, one model per level, by level. ``model=False`` fits none (the tests alone, several times
    faster): the table has no ``selected`` and ``coefficient`` columns and ``attrs["model"]`` is None.

    ``attrs["levels"]`` (categorical targets): per level, ``n_documents``, ``n_significant`` (features with
    ``q_value < alpha`` that point to the level), ``n_groups`` (groups among them), the strongest such feature and
    its ``fires_on``, and the level's model's held-out AUC beside its baseline; a level with fewer than two
    documents (or all but one) is not tested, and its ``status`` says so.

    Significant features (``q_value < alpha``) with the same sign of ``separation`` are grouped as in
    :func:`~interp_embed.analysis.diff.diff_features` (``grouping="explained"``: a feature joins the group of the
    first feature that explains its association, ``"overlap"``: of the first present in mostly the same documents,
    Jaccard index at least ``min_overlap``; analysis/grouping.py), giving ``group``, ``representative``,
    ``overlap`` and ``p_given_representative``; ``grouped=True`` returns one row per group with its ``members``.

    ``memory_limit`` (bytes, or a string such as ``"4GB"``) reads the store block by block within that bound
    instead of building the matrix in memory (analysis/blockwise.py). The table is the same — exactly for a
    binary target; for a numeric one the means and intervals agree to rounding (their sums are added in store
    order), the rank-sum p-values exactly — except that the model is scored on a random sample of the held-out
    documents when all of them would not fit the bound (a warning says so; ``attrs["model"]["n_test"]`` gives
    how many were used). A target given as values must then have one value per document of the store: a view
    that shows a document twice must give it the same value both times.

    Example::

        table = associate_features(ds, target="is_spam")
        table.attrs["model"]["held_out"], table.query("selected").head()
        associate_features(ds, ds.pandas()["section"] == "games")      # values you computed
        associate_features(ds, "section").attrs["levels"]              # each section against the rest
    """
    grouping_options = GroupingOptions(grouped, grouping, alpha, min_overlap)
    limit = check_blockwise(ds, memory_limit)
    if limit is None:
        docs = load_documents(ds, aggregation=aggregation)
        rows = docs.rows
    else:
        rows = ds.stored.encoded_positions(limit)
        if not rows.size:
            raise ValueError("ds has no encoded documents; encode it first (the analyses skip rows not encoded).")
    values, name = target_series(ds.pandas(), target)
    encoded = encode_target(values.iloc[rows].reset_index(drop=True), name)
    y = encoded.y
    infinite = rows[np.isinf(y)]
    if infinite.size:
        raise ValueError(f"target {name!r} is infinite in {infinite.size} document(s) (positions "
                         f"{infinite[:5].tolist()} in the dataset); replace those values, e.g. with NaN to leave "
                         "them out.")
    known = ~np.isnan(y)
    counted, y = rows[known], y[known]
    if limit is None:
        P = presence(docs.activations, activated_threshold)[known]
        counts, column_sums, block_order = feature_counts(P), (lambda v: P.T @ v), None
        P_model, max_test_docs = P, None
    else:
        store_rows = ds.store_rows[counted]
        _check_one_value_per_row(store_rows, y, name)
        stored = ds.stored.with_rows(store_rows)
        P = PresenceBlocks.of_rows(stored, aggregation, activated_threshold, limit)
        by_row = np.zeros(stored.n_documents)

        def column_sums(v: np.ndarray) -> np.ndarray:
            by_row[store_rows] = v  # one value per store row (checked above)
            return P.column_sums(by_row)

        counts, P_model, block_order = P.counts, GatheredRows(P, store_rows), np.argsort(store_rows, kind="stable")
        mean_entries = max(counts.sum() / max(len(store_rows), 1), 1.0)
        max_test_docs = max(10, int(limit // BLOCK_SHARE // (BYTES_PER_ENTRY * mean_entries)))
    study = _Study(ds, counted, counts, column_sums, P, P_model, block_order, label_array(ds), dict(
        min_count=min_count, confidence=confidence, n_permutations=n_permutations, test_size=test_size,
        max_model_features=max_model_features, max_train_docs=max_train_docs, random_state=random_state,
        max_test_docs=max_test_docs, grouping=grouping_options, model=model))
    if encoded.kind == "categorical":
        table = study.categorical(y, encoded.levels, name)
    else:
        binary = encoded.kind == "binary"
        if binary and min(y.sum(), y.size - y.sum()) < 2:
            raise ValueError(f"target {name!r} needs at least 2 documents of each class; it has {int(y.sum())} "
                             f"positive of {y.size}.")
        if not binary and y.size < 4:
            raise ValueError(f"target {name!r} needs at least 4 documents with a value, got {y.size}.")
        logger.info("associating features with %r over %d documents", name, y.size)
        table, fitted = study.table(y, binary)
        if fitted is not None:
            fitted.update(target=name, positive_class=encoded.positive, n_documents=int(y.size))
        table["q_value"] = benjamini_hochberg(table["p_value"].to_numpy())
        table = study.grouped_and_grounded(table, y, binary)
        table.attrs["model"] = fitted
    return grouping_options.rows(table)


def _check_one_value_per_row(store_rows: np.ndarray, y: np.ndarray, name: str) -> None:
    """Under memory_limit the target is summed per store row: a row a view shows twice needs one value."""
    order = np.argsort(store_rows, kind="stable")
    rows, values = store_rows[order], y[order]
    repeated = (rows[1:] == rows[:-1]) & (values[1:] != values[:-1])
    if repeated.any():
        raise ValueError(f"target {name!r} gives store row {int(rows[1:][repeated][0])} two different values (the view "
                         "shows it twice); with memory_limit each document needs one value. Leave memory_limit=None.")


class _Study:
    """What the tests of one association share: the documents, their presence and the options."""

    def __init__(self, ds, counted, counts, column_sums, P, P_model, block_order, labels, options):
        self.ds, self.counted, self.counts, self.column_sums = ds, counted, counts, column_sums
        self.P, self.P_model, self.block_order, self.labels, self.options = P, P_model, block_order, labels, options

    def table(self, y: np.ndarray, binary: bool) -> tuple[pd.DataFrame, dict | None]:
        """The per-feature statistics (no q-values yet) and the sparse model (if asked for) of one binary or numeric
        y."""
        o = self.options
        rng = np.random.default_rng(o["random_state"])
        f, k_f, mean_1, mean_0, lo, hi, p, method = _univariate(self.counts, self.column_sums, y, binary,
                                                                o["min_count"], o["confidence"], o["n_permutations"],
                                                                rng)
        table = pd.DataFrame({
            "feature_id": f, "label": self.labels[f], "count_active": k_f, "mean_active": mean_1,
            "mean_inactive": mean_0, "separation": mean_1 - mean_0, "ci_low": lo, "ci_high": hi,
            "p_value": p, "p_method": method,
        })
        model = None
        if o["model"]:
            model = fit_sparse_model(self.P_model, y, binary, candidates=f, test_size=o["test_size"],
                                     max_features=o["max_model_features"], max_train_docs=o["max_train_docs"],
                                     random_state=o["random_state"], max_test_docs=o["max_test_docs"])
            coefficient = pd.Series(model["selected"], dtype=np.float64)
            table["selected"] = table["feature_id"].isin(coefficient.index)
            table["coefficient"] = table["feature_id"].map(coefficient).fillna(0.0)
        return table.sort_values(["p_value", "separation"], ascending=[True, False], ignore_index=True), model

    def grouped_and_grounded(self, table: pd.DataFrame, y: np.ndarray, binary: bool,
                             first_group: int = 0) -> pd.DataFrame:
        """``table`` (with q-values) with its groups and ``fires_on``: a binary y's words from the class a feature
        points to, a numeric y's from all documents."""
        o = self.options
        scores = y if binary else stats.rankdata(y)
        if self.block_order is not None:
            scores = scores[self.block_order]  # the blocks list the documents by store row
        table = o["grouping"].add_groups(table, self.P, "separation", scores=scores, first_group=first_group)
        if binary:
            sides = [words_of(self.ds, self.counted[y == 1]), words_of(self.ds, self.counted[y == 0])]
        else:
            sides = [words_of(self.ds, self.counted)]
        return add_fires_on(table, sides, side=(table["separation"] < 0) if binary else None)

    def categorical(self, codes: np.ndarray, levels: tuple, name: str) -> pd.DataFrame:
        """Each level against the rest: one table, a ``level`` column first, one BH family, ``attrs["levels"]``."""
        o = self.options
        parts, models, summary, ys = [], {}, [], {}
        for i, level in enumerate(levels):
            y = (codes == i).astype(np.float64)
            n_level = int(y.sum())
            if min(n_level, y.size - n_level) < 2:
                summary.append({"level": level, "n_documents": n_level,
                                "status": "not tested: fewer than 2 documents on one side"})
                continue
            logger.info("associating features with %s == %r over %d documents", name, level, y.size)
            table, model = self.table(y, binary=True)
            if model is not None:
                model.update(target=name, positive_class=level, n_documents=int(y.size))
            table.insert(0, "level", level)
            parts.append(table)
            models[level], ys[level] = model, y
            summary.append({"level": level, "n_documents": n_level, "status": "tested"})
        if not parts:
            raise ValueError(f"target {name!r}: no level has at least 2 documents on each side of the comparison.")
        q = benjamini_hochberg(np.concatenate([t["p_value"].to_numpy() for t in parts]))
        done, start = [], 0
        for table in parts:
            level = table["level"].iloc[0]
            table["q_value"] = q[start:start + len(table)]
            start += len(table)
            done.append(self.grouped_and_grounded(table, ys[level], True, sum(len(t) for t in done)))
        table = pd.concat(done, ignore_index=True)
        table.attrs["model"] = models if o["model"] else None
        table.attrs["levels"] = _level_summary(table, summary, models, o["grouping"].alpha)
        return table


def _level_summary(table: pd.DataFrame, summary: list[dict], models: dict, alpha: float) -> pd.DataFrame:
    """One row per level: documents, features pointing to it at ``q_value < alpha`` and their groups, the strongest
    such feature, and the level's model."""
    rows = []
    for entry in summary:
        level = entry["level"]
        found = table[(table["level"] == level) & (table["q_value"] < alpha) & (table["separation"] > 0)]
        best = found.sort_values(["p_value", "feature_id"]).head(1)
        model = models.get(level)
        rows.append({**entry, "n_significant": len(found), "n_groups": found["group"].nunique(),
                     "top_feature": int(best["feature_id"].iloc[0]) if len(best) else -1,
                     "fires_on": best["fires_on"].iloc[0] if len(best) else "",
                     "label": best["label"].iloc[0] if len(best) else "",
                     "held_out_auc": model["held_out"] if model else np.nan,
                     "permutation_baseline": model["permutation_baseline"] if model else np.nan})
    columns = ["level", "n_documents", "n_significant", "n_groups", "top_feature", "fires_on", "label",
               "held_out_auc", "permutation_baseline", "status"]
    return pd.DataFrame(rows, columns=columns)
