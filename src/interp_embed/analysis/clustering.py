"""Directed clustering: cluster documents along an axis of features the user chooses, then describe clusters."""
from __future__ import annotations

import inspect
import logging
from collections.abc import Iterable
from typing import NamedTuple

import numpy as np
import pandas as pd
import scipy.sparse as sp

from .inputs import EncodedDataset, feature_counts, label_array, load_documents, presence
from .label_search import query_features
from ..validation import check_choice, check_features, check_int, check_threshold

logger = logging.getLogger(__name__)

METHODS = ("kmeans", "hdbscan")
# HDBSCAN needs dense input; beyond this many cells the axis is too wide for it.
MAX_DENSE_CELLS = 50_000_000
NO_AXIS_FEATURE = -1


class Clustering(NamedTuple):
    """``assignments``: one row per encoded document; ``clusters``: the describing features of each cluster."""

    assignments: pd.DataFrame
    clusters: pd.DataFrame


def cluster_matrix(X: sp.csr_matrix, n_clusters: int, method: str, random_state: int = 0,
                   min_cluster_size: int = 5) -> np.ndarray:
    """Cluster labels for the rows of X (already restricted to the axis features); rows with no active axis
    feature get -1, as do HDBSCAN's noise points."""
    from sklearn.cluster import HDBSCAN, KMeans  # imported where used: importing interp_embed stays fast
    from sklearn.preprocessing import normalize

    labels = np.full(X.shape[0], NO_AXIS_FEATURE, dtype=np.int64)
    active = np.flatnonzero(X.getnnz(axis=1) > 0)
    if active.size == 0:
        return labels
    # Unit rows: documents cluster by which axis features fire and in what proportion, not by overall scale.
    Z = normalize(X[active].astype(np.float64))
    if method == "kmeans":
        k = min(n_clusters, active.size)
        if Z.shape[1] < k:  # a narrow axis has few distinct directions: k-means cannot make more clusters than points
            distinct = len(np.unique(Z.toarray(), axis=0))
            if distinct < k:
                logger.warning("only %d distinct axis profiles among %d documents, so %d cluster(s), not %d: with rows "
                               "scaled to unit length, an axis of %d feature(s) puts documents at few points; add "
                               "features to the axis", distinct, active.size, distinct, k, Z.shape[1])
                k = distinct
        labels[active] = KMeans(n_clusters=k, n_init=4, random_state=random_state).fit_predict(Z)
    else:
        if Z.shape[0] * Z.shape[1] > MAX_DENSE_CELLS:
            raise ValueError(f"method='hdbscan' needs a dense matrix of {Z.shape[0]} × {Z.shape[1]}; choose fewer "
                             "axis features (features=... or a narrower query) or method='kmeans'.")
        # Z.toarray() is ours to overwrite; say so where scikit-learn asks (its `copy` default is changing).
        options = {"copy": False} if "copy" in inspect.signature(HDBSCAN).parameters else {}
        labels[active] = HDBSCAN(min_cluster_size=min_cluster_size, **options).fit_predict(Z.toarray())
    return labels


def describe_clusters(P: sp.csr_matrix, labels: np.ndarray, feature_labels: np.ndarray, top: int = 5,
                      min_count: int = 2) -> pd.DataFrame:
    """For each cluster, the features most over-represented in it: largest ``freq_in − freq_out``.

    No p-values: the clusters were formed from these same activations, so a test of "feature vs. cluster"
    would be circular and its p-value meaningless. ``lift`` is ``freq_in / freq_out``.
    """
    n = P.shape[0]
    total = feature_counts(P)
    rows = []
    for c in np.unique(labels):
        members = labels == c
        size = int(members.sum())
        count_in = feature_counts(P[members])
        count_out = total - count_in
        freq_in = count_in / size
        freq_out = count_out / max(n - size, 1)
        diff = np.where(count_in >= min_count, freq_in - freq_out, -np.inf)
        best = np.argsort(-diff, kind="stable")[:top]
        best = best[np.isfinite(diff[best]) & (diff[best] > 0)]
        with np.errstate(divide="ignore"):
            lift = freq_in[best] / freq_out[best]
        for rank, f in enumerate(best):
            rows.append((int(c), size, rank + 1, int(f), feature_labels[f], freq_in[f], freq_out[f],
                         freq_in[f] - freq_out[f], lift[rank]))
        if best.size == 0:
            rows.append((int(c), size, 0, -1, "", np.nan, np.nan, np.nan, np.nan))
    return pd.DataFrame(rows, columns=["cluster", "size", "rank", "feature_id", "label", "freq_in", "freq_out",
                                       "difference", "lift"])


def widen_axis(P: sp.csr_matrix, axis: np.ndarray, size: int, feature_labels: np.ndarray) -> np.ndarray:
    """``axis`` followed by the features that co-occur most specifically with it, up to ``size`` features in all:
    those most over-represented in the documents where an axis feature is active (largest ``freq_in −
    freq_out``, as :func:`describe_clusters` ranks a cluster's features; active in at least two of them)."""
    inside = (P[:, axis].getnnz(axis=1) > 0).astype(np.int64)
    described = describe_clusters(P, inside, feature_labels, top=size + axis.size)
    ranked = described.loc[(described.cluster == 1) & (described.feature_id >= 0), "feature_id"].to_numpy()
    return np.r_[axis, ranked[~np.isin(ranked, axis)][: size - axis.size]].astype(np.int64)


def cluster_documents(
    ds: EncodedDataset, features: Iterable[int] | None = None, query: str | None = None, n_clusters: int = 8,
    method: str = "kmeans", *, n_query_features: int = 20, top_features: int = 5, min_cluster_size: int = 5,
    aggregation: str = "max", activated_threshold: float = 0.0, random_state: int = 0,
) -> Clustering:
    """Cluster documents along a chosen axis and describe each cluster by its over-represented features.

    The axis is ``features`` (feature ids), or the ``n_query_features`` features of this dataset that best match
    ``query`` by what they do (see :func:`~interp_embed.analysis.label_search.match_features`), or every
    feature when both are None. With ``query``, only documents where its features fire are clustered, and an
    axis of fewer than ``n_clusters`` features is widened (:func:`widen_axis`) with the features that co-occur
    most specifically with them: scaled to unit length, documents on a one-feature axis are all one point,
    so k-means could only return one cluster. Documents are embedded by
    their pooled activations on the axis features (``aggregation`` (``max``, ``mean``, ``sum``, ``binarize`` or ``count``) pools each document's token activations, max by default), rows scaled to unit length, and clustered with k-means
    (``n_clusters``) or HDBSCAN (``min_cluster_size``; finds the number itself, noise = -1). Documents with
    no active axis feature get cluster -1. Each cluster is described over *all* features by
    :func:`describe_clusters` (frequency inside vs. outside, lift; no p-values, as the clusters come from
    the same data).

    Returns ``Clustering(assignments, clusters)``: ``assignments`` has ``document`` (position in ``ds``)
    and ``cluster``; ``clusters`` has ``cluster``, ``size`` and the ``top_features`` describing features
    with labels. ``clusters.attrs["axis"]`` lists the axis feature ids (``attrs["query_features"]`` those the
    query matched).

    Example::

        assignments, clusters = cluster_documents(ds, query="sentiment", n_clusters=4)
        clusters.query("rank == 1")[["cluster", "size", "label"]]
    """
    check_choice(method, "method", METHODS)
    check_int(n_clusters, "n_clusters", 1)
    check_int(top_features, "top_features", 1)
    check_int(min_cluster_size, "min_cluster_size", 2)
    check_threshold(activated_threshold)
    if features is not None and query is not None:
        raise ValueError("pass either features=[...] or query='...', not both.")
    labels = label_array(ds)
    docs = load_documents(ds, aggregation=aggregation)
    X = docs.activations
    if activated_threshold > 0:  # the axis embedding sees exactly the activations that count as active
        X = X.multiply(X > activated_threshold).tocsr()
    P = presence(docs.activations, activated_threshold)
    axis = check_features(features, ds.d_sae, sae=ds.encoder)
    if query is not None:
        matched = query_features(ds, docs, query, k=check_int(n_query_features, "n_query_features", 1))
        axis = matched["feature_id"].to_numpy()
        if method == "kmeans" and axis.size < n_clusters:
            axis = widen_axis(P, axis, n_clusters, labels)
            logger.warning("query %r matches %d feature(s), fewer than n_clusters=%d; one feature puts every document "
                           "at the same point, so the axis is widened with the features that co-occur most "
                           "specifically with them: %s", query, len(matched), n_clusters, axis[len(matched):].tolist())
        fires = P[:, matched["feature_id"].to_numpy()].getnnz(axis=1) > 0
        X = (sp.diags(fires.astype(X.dtype)) @ X).tocsr()  # only the documents where the query's features fire
        X.eliminate_zeros()
    X_axis = X if axis is None else X[:, axis]
    logger.info("clustering %d documents on %d axis features with %s", docs.n, X_axis.shape[1], method)
    cluster = cluster_matrix(X_axis, n_clusters, method, random_state, min_cluster_size)
    assignments = pd.DataFrame({"document": docs.rows, "cluster": cluster})
    clusters = describe_clusters(P, cluster, labels, top_features)
    clusters.attrs["axis"] = (np.arange(ds.d_sae) if axis is None else axis).tolist()
    if query is not None:
        clusters.attrs["query_features"] = matched["feature_id"].tolist()
    return Clustering(assignments, clusters)
