"""Target association (HypotheSAEs-style): which features separate the values of a metadata column."""
from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from .inputs import EncodedDataset, feature_counts, label_array, load_documents, metadata, presence
from .stats import benjamini_hochberg, fisher_two_sided, newcombe_interval, welch_t_test
from ..validation import check_fraction, check_int

logger = logging.getLogger(__name__)

# Regularisation strengths tried for the sparse model, strongest first; the best on a validation split wins.
L1_GRID = np.logspace(-3, 1, 5)


def encode_target(values: pd.Series, name: str) -> tuple[np.ndarray, bool, Any]:
    """Return (y as float with NaN for missing, is_binary, positive class) for a metadata column."""
    present = values.dropna()
    if present.empty:
        raise ValueError(f"target column {name!r} has no non-missing values among the encoded documents.")
    if pd.api.types.is_bool_dtype(present) or set(pd.unique(present)) <= {0, 1}:
        y = values.map(lambda v: np.nan if pd.isna(v) else float(v)).to_numpy(dtype=np.float64)
        return y, True, 1
    if pd.api.types.is_numeric_dtype(present):
        return values.to_numpy(dtype=np.float64), False, None
    classes = sorted(pd.unique(present), key=str)
    if len(classes) != 2:
        raise ValueError(
            f"target column {name!r} is neither numeric nor binary ({len(classes)} distinct values); "
            f"map it to numbers or to two classes first, e.g. df[{name!r}] == 'some value'."
        )
    positive = classes[1]
    y = values.map(lambda v: np.nan if pd.isna(v) else float(v == positive)).to_numpy(dtype=np.float64)
    return y, True, positive


def _univariate(P: sp.csr_matrix, y: np.ndarray, binary: bool, min_count: int, confidence: float):
    """Per-feature separation E[y|active] − E[y|inactive], its CI and p-value, for the testable features."""
    n = P.shape[0]
    k = feature_counts(P)
    sum_active = P.T @ y
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
    else:
        sq_active = P.T @ (y * y)
        var_1 = (sq_active[f] - k_f * mean_1**2) / np.maximum(k_f - 1, 1)
        var_0 = ((y * y).sum() - sq_active[f] - n_inactive * mean_0**2) / np.maximum(n_inactive - 1, 1)
        # Sums of squares minus squared means can dip below zero by rounding.
        p, lo, hi = welch_t_test(mean_1, np.maximum(var_1, 0), k_f, mean_0, np.maximum(var_0, 0), n_inactive,
                                 confidence)
    return f, k_f, mean_1, mean_0, lo, hi, p


def _l1_model(binary: bool, strength: float, random_state: int):
    import sklearn  # scikit-learn is imported where it is used: importing interp_embed stays fast
    from sklearn.linear_model import Lasso, LogisticRegression

    if not binary:
        return Lasso(alpha=strength, max_iter=5000)
    # scikit-learn 1.8 replaced penalty="l1" by l1_ratio=1; support both sides of that change.
    if tuple(int(x) for x in sklearn.__version__.split(".")[:2]) >= (1, 8):
        return LogisticRegression(l1_ratio=1.0, C=strength, solver="liblinear", random_state=random_state)
    return LogisticRegression(penalty="l1", C=strength, solver="liblinear", random_state=random_state)


def _score(model, X, y, binary: bool) -> float:
    from sklearn.metrics import r2_score, roc_auc_score

    if binary:
        return float(roc_auc_score(y, model.decision_function(X)))
    return float(r2_score(y, model.predict(X)))


def fit_sparse_model(
    P: sp.csr_matrix, y: np.ndarray, binary: bool, *, candidates: np.ndarray | None = None,
    test_size: float = 0.25, max_features: int = 2000, max_train_docs: int = 100_000, random_state: int = 0,
) -> dict[str, Any]:
    """Fit an L1 logistic (binary y) or Lasso (numeric y) model on presence and score it on held-out documents.

    Documents are split into train and test (stratified for binary y); the training part is split again to
    choose the regularisation strength from :data:`L1_GRID`. Features are screened to the ``max_features``
    most correlated with y *on the training documents only*, so the held-out score is not inflated by
    screening. ``candidates`` limits the features the model may use. Returns the held-out metric ("auc" or "r2"), its value, and the selected features with their
    coefficients.
    """
    from sklearn.model_selection import train_test_split

    n = P.shape[0]
    stratify = y if binary else None
    idx = np.arange(n)
    train, test = train_test_split(idx, test_size=test_size, random_state=random_state, stratify=stratify)
    rng = np.random.default_rng(random_state)
    if train.size > max_train_docs:
        train = rng.choice(train, max_train_docs, replace=False)
    X_train, y_train = P[train].astype(np.float64), y[train]
    # Screening by |covariance| with y on the training rows only.
    k = np.asarray(X_train.sum(axis=0)).ravel()
    cov = np.abs(X_train.T @ (y_train - y_train.mean()))
    pool = np.arange(P.shape[1]) if candidates is None else candidates
    candidates = pool[k[pool] > 0]
    screened = candidates[np.argsort(-cov[candidates], kind="stable")[:max_features]]
    X_train = X_train[:, screened]
    fit_idx, val_idx = train_test_split(np.arange(train.size), test_size=0.25, random_state=random_state,
                                        stratify=y_train if binary else None)
    grid = L1_GRID if binary else L1_GRID[::-1] / 100  # Lasso's alpha shrinks as C grows
    best_strength, best_score = grid[0], -np.inf
    for strength in grid:
        model = _l1_model(binary, strength, random_state).fit(X_train[fit_idx], y_train[fit_idx])
        score = _score(model, X_train[val_idx], y_train[val_idx], binary)
        if score > best_score:
            best_strength, best_score = strength, score
    model = _l1_model(binary, best_strength, random_state).fit(X_train, y_train)
    held_out = _score(model, P[test][:, screened].astype(np.float64), y[test], binary)
    coef = np.ravel(model.coef_)
    chosen = np.flatnonzero(coef)
    return {
        "metric": "auc" if binary else "r2",
        "held_out": held_out,
        "n_train": int(train.size),
        "n_test": int(test.size),
        "regularisation": float(best_strength),
        "selected": dict(zip(screened[chosen].tolist(), coef[chosen].tolist())),
    }


def associate_features(
    ds: EncodedDataset, target: str, *, min_count: int = 2, aggregation: str = "max", activated_threshold: float = 0.0,
    confidence: float = 0.95, test_size: float = 0.25, max_model_features: int = 2000, max_train_docs: int = 100_000, random_state: int = 0,
) -> pd.DataFrame:
    """Which features separate the values of a binary or numeric metadata column ``target``.

    Per feature (presence = pooled activation > ``activated_threshold``, where ``aggregation`` (``max``, ``mean``, ``sum``, ``binarize`` or ``count``) pools each document's token activations,
    max by default; encoded documents with a non-missing target only): ``mean_active``/``mean_inactive`` (E[y | active], E[y | inactive]), ``separation`` (their
    difference), ``ci_low``/``ci_high`` and ``p_value`` — for binary y the Newcombe interval and the
    two-sided Fisher exact test, for numeric y Welch's t interval and test — and ``q_value``
    (Benjamini–Hochberg over every tested feature). Tested features are those with at least ``min_count``
    documents both active and inactive; sorted by p-value.

    A sparse L1 model (logistic for binary y, Lasso for numeric y, scikit-learn) is also fitted on a
    train/test split: ``selected`` marks its features and ``coefficient`` their weights. Its held-out AUC
    (binary) or R² (numeric) and details are in ``table.attrs["model"]``.

    Example::

        table = associate_features(ds, target="is_spam")
        table.attrs["model"]["held_out"], table.query("selected").head()
    """
    check_int(min_count, "min_count", 2)
    confidence = check_fraction(confidence, "confidence", open_low=True)
    test_size = check_fraction(test_size, "test_size", open_low=True)
    check_int(max_model_features, "max_model_features", 1)
    check_int(max_train_docs, "max_train_docs", 10)
    docs = load_documents(ds, aggregation=aggregation)
    meta = metadata(ds, docs)
    if target not in meta.columns:
        raise KeyError(f"target {target!r} is not a column of the dataset; columns are {list(meta.columns)}.")
    y, binary, positive = encode_target(meta[target], target)
    infinite = docs.rows[np.isinf(y)]
    if infinite.size:
        raise ValueError(f"target {target!r} is infinite in {infinite.size} document(s) (positions "
                         f"{infinite[:5].tolist()} in the dataset); replace those values, e.g. with NaN to leave "
                         "them out.")
    known = ~np.isnan(y)
    P = presence(docs.activations, activated_threshold)[known]
    y = y[known]
    if binary and min(y.sum(), y.size - y.sum()) < 2:
        raise ValueError(f"target {target!r} needs at least 2 documents of each class; it has {int(y.sum())} "
                         f"positive of {y.size}.")
    if not binary and y.size < 4:
        raise ValueError(f"target {target!r} needs at least 4 documents with a value, got {y.size}.")
    f, k_f, mean_1, mean_0, lo, hi, p = _univariate(P, y, binary, min_count, confidence)
    labels = label_array(ds)
    table = pd.DataFrame({
        "feature_id": f, "label": labels[f], "count_active": k_f, "mean_active": mean_1,
        "mean_inactive": mean_0, "separation": mean_1 - mean_0, "ci_low": lo, "ci_high": hi,
        "p_value": p, "q_value": benjamini_hochberg(p),
    })
    logger.info("associating %d features with %r over %d documents", f.size, target, y.size)
    model = fit_sparse_model(P, y, binary, candidates=f, test_size=test_size, max_features=max_model_features,
                             max_train_docs=max_train_docs, random_state=random_state)
    model.update(target=target, positive_class=positive, n_documents=int(y.size))
    coefficient = pd.Series(model["selected"], dtype=np.float64)
    table["selected"] = table["feature_id"].isin(coefficient.index)
    table["coefficient"] = table["feature_id"].map(coefficient).fillna(0.0)
    table = table.sort_values(["p_value", "separation"], ascending=[True, False], ignore_index=True)
    table.attrs["model"] = model
    return table
