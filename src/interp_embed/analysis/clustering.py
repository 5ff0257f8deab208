"""Directed clustering: cluster documents along an axis of features the user chooses, then describe clusters."""
from __future__ import annotations

import inspect
import logging
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import NamedTuple

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ..store.words import WORD, FeatureWords
from .terms import Terms
from .inputs import PRESENCE, Encoded, EncodedDataset, feature_counts, label_array, load_documents, presence
from .fires_on import fires_on
from .label_search import dataset_words, stop_words
from .retrieval import BY_WORDS, rank_documents, resolved_by
from ..validation import Choice, Features, Int, InvalidParameterError, validate_params

logger = logging.getLogger(__name__)

METHODS = ("kmeans", "hdbscan")
# HDBSCAN needs dense input; beyond this many cells the axis is too wide for it.
MAX_DENSE_CELLS = 50_000_000
NO_AXIS_FEATURE = -1
# Each part of a query or of examples brings the features most specific to the documents it finds first: on the
# development corpus of benchmarks/retrieval.py, 20 documents gave ARI 0.78 by examples where 10 gave 0.64.
PART_DOCUMENTS = 20


class Clustering(NamedTuple):
    """``assignments``: one row per encoded document; ``clusters``: the describing features of each cluster."""

    assignments: pd.DataFrame
    clusters: pd.DataFrame


def cluster_matrix(X: sp.csr_matrix, n_clusters: int, method: str, random_state: int = 0,
                   min_cluster_size: int = 5, init: np.ndarray | None = None) -> np.ndarray:
    """Cluster labels for the rows of X (already restricted to the axis features); rows with no active axis
    feature get -1, as do HDBSCAN's noise points. ``init`` (n_clusters × columns) starts k-means there."""
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
        if init is not None and k == len(init):
            from sklearn.preprocessing import normalize as unit

            model = KMeans(n_clusters=k, init=unit(init), n_init=1, random_state=random_state)
        else:
            model = KMeans(n_clusters=k, n_init=4, random_state=random_state)
        labels[active] = model.fit_predict(Z)
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


def cluster_words(P: sp.csr_matrix, labels: np.ndarray, words: FeatureWords, texts: Sequence[str],
                  n: int = 8) -> dict[int, list[str]]:
    """Each cluster's ``n`` most distinguishing words, by BERTopic's c-TF-IDF over the words its features fire on.

    A cluster's bag of words adds up, for each feature more frequent in the cluster than outside it (by the
    difference of the shares of documents where it fires), that feature's word distribution (``words``: where its
    strong activations fall); features as frequent everywhere add nothing. Only words found in at least two of the
    clustered documents' ``texts`` count (one document's word is an anecdote), English stop words and one-letter
    words left out. A word then weighs its share of
    the cluster's bag times ``log(1 + A / f)``, A the mean bag size and f the word's mass over all clusters, so
    words every cluster has say little."""
    from sklearn.preprocessing import normalize

    clusters = np.unique(labels)
    membership = sp.csr_matrix((np.ones(labels.size), (np.searchsorted(clusters, labels), np.arange(labels.size))),
                               shape=(clusters.size, labels.size))
    inside = (membership @ sp.csr_matrix(P, dtype=np.float64)).toarray()  # clusters × features: documents where it fires
    sizes = np.asarray(membership.sum(axis=1)).ravel()[:, None]
    outside = np.maximum(labels.size - sizes, 1)
    specific = np.maximum(inside / sizes - (inside.sum(axis=0) - inside) / outside, 0)
    distribution = normalize(sp.csr_matrix(words.mass, dtype=np.float64), norm="l1")  # feature → its words
    bag = (sp.csr_matrix(specific) @ distribution).toarray()
    document_frequency = Counter(w for text in texts for w in {m.lower() for m in WORD.findall(text)})
    keep = np.array([len(w) > 1 and document_frequency[w] >= 2 and w not in stop_words() for w in words.words],
                    dtype=bool)
    bag[:, ~keep] = 0
    total = bag.sum(axis=0)
    weight = normalize(bag, norm="l1") * np.log1p(bag.sum(axis=1).mean() / np.maximum(total, 1e-12))
    return {int(c): [str(words.words[i]) for i in np.argsort(-row, kind="stable")[:n] if row[i] > 0]
            for c, row in zip(clusters, weight)}


def typical_documents(profiles: sp.csr_matrix, labels: np.ndarray, n: int = 3) -> dict[int, list[int]]:
    """Matrix rows of each cluster's ``n`` most typical documents: those whose profile (unit rows) is closest
    (cosine) to the mean profile of the cluster."""
    out = {}
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        centre = np.asarray(profiles[members].mean(axis=0)).ravel()
        similarity = np.asarray(profiles[members] @ centre).ravel()
        out[int(c)] = members[np.argsort(-similarity, kind="stable")[:n]].tolist()
    return out


class Axis(NamedTuple):
    """The features documents are clustered on, each with a weight, and which part of the user's axis (a query
    term or a group of examples) each came from."""

    features: np.ndarray
    weights: np.ndarray
    parts: list[str]
    part_of: np.ndarray
    """For each feature, the index in ``parts`` of the part it is most specific to (-1 for features given)."""

    def table(self, ds: EncodedDataset, labels: np.ndarray) -> pd.DataFrame:
        """One row per axis feature, by part (in the user's order) and then heaviest first."""
        order = np.lexsort((-self.weights, self.part_of))
        f = self.features[order]
        part = [self.parts[i] if i >= 0 else "" for i in self.part_of[order]]
        return pd.DataFrame({"feature_id": f, "part": part, "weight": self.weights[order], "fires_on": fires_on(ds, f),
                             "label": labels[f]})


def query_parts(query: str) -> list[str]:
    """The parts of a query that each define a piece of the axis: its comma-separated parts, or, without commas,
    its words, where a run of capitalised words is one name (unless every word is capitalised) and English stop
    words are dropped (a part of its own, "and" would say nothing).

    >>> query_parts("computers, food, law and order")
    ['computers', 'food', 'law and order']
    >>> query_parts("computers food law and order Star Trek")
    ['computers', 'food', 'law', 'order', 'Star Trek']
    >>> query_parts("Computers Food")
    ['Computers', 'Food']
    """
    if "," in query:
        return [p.strip() for p in query.split(",") if p.strip()]
    words = [w for w in query.split() if w.lower() not in stop_words()] or query.split()
    capitalised = [w[:1].isupper() for w in words]
    if all(capitalised):
        return words
    parts: list[str] = []
    for i, word in enumerate(words):
        if i and capitalised[i] and capitalised[i - 1]:
            parts[-1] += " " + word  # a name of several words ("Star Trek", "New York") stays one part
        else:
            parts.append(word)
    return parts


def _axis(parts: list[str], weights: list[np.ndarray], n_query_features: int) -> Axis:
    """Each part's ``n_query_features`` heaviest features, its weights scaled to sum to 1 so that every part weighs the
    same on the axis; a feature of several parts adds up."""
    total = np.zeros(weights[0].size)
    best_part, best_weight = np.full(total.size, -1), np.zeros(total.size)
    for i, w in enumerate(weights):
        keep = np.argsort(-w, kind="stable")[:n_query_features]
        keep = keep[w[keep] > 0]
        if keep.size == 0:
            raise ValueError(f"no feature of this dataset is specific to the axis part {parts[i]!r}; drop it or "
                             "describe it in other words.")
        share = w[keep] / w[keep].sum()
        total[keep] += share
        better = share > best_weight[keep]
        best_part[keep[better]], best_weight[keep[better]] = i, share[better]
    features = np.flatnonzero(total > 0)
    return Axis(features, total[features], parts, best_part[features])


@validate_params(ds=Encoded(), features=Features(), n_clusters=Int(min=1), method=Choice(METHODS),
                 by=Choice(BY_WORDS), n_query_features=Int(min=1), top_features=Int(min=1), n_words=Int(min=1),
                 min_cluster_size=Int(min=2), **PRESENCE)
def cluster_documents(
    ds: EncodedDataset, features: Iterable[int] | None = None, query: str | None = None, n_clusters: int = 8,
    method: str = "kmeans", *, examples: Sequence[str | Sequence[str]] | None = None, by: str = "auto",
    n_query_features: int = 20, top_features: int = 5, n_words: int = 8, min_cluster_size: int = 5,
    aggregation: str = "max", activated_threshold: float = 0.0, random_state: int = 0,
) -> Clustering:
    """Cluster documents along a chosen axis and describe each cluster by its words, typical documents and
    over-represented features.

    The axis is one of:

    - ``features``: feature ids, each weighing 1;
    - ``query``: its comma-separated parts (without commas, its words: see :func:`query_parts`), each contributing
      the ``n_query_features`` features most specific to the first documents that part finds (``search(part, by=by)``
      with feedback: ``by="labels"`` matches the words features fire on, ``by="query"`` runs the models on the
      part, ``by="auto"`` (default) is ``"query"`` where ``ds`` can read text, else ``"labels"``). Every part
      weighs the same on the axis, so no term crowds out another; a feature's weight is how specific it is to its
      part;
    - ``examples``: a list of parts, each an example text or a list of them; a part contributes the
      ``n_query_features`` features weighing most in the examples' IDF-weighted profile (runs the models);
    - nothing: every feature, weighing 1.

    Documents are embedded by their pooled activations (``aggregation``, max by default) on the axis features
    times the weights, rows scaled to unit length, and clustered by k-means (``n_clusters``; started from the
    parts when there are as many parts as clusters, so cluster i is part i's) or HDBSCAN (``min_cluster_size``;
    finds the number itself, noise = -1). With k-means every document is assigned: a document where no axis
    feature fires joins the cluster whose documents it is most like on all features.

    Returns ``Clustering(assignments, clusters)``: ``assignments`` has ``document`` (position in ``ds``) and
    ``cluster``; ``clusters`` has, per cluster, ``size``, ``words`` (its ``n_words`` most distinguishing words by
    c-TF-IDF over the words its documents' features fire on, when the dataset can tell), ``examples`` (positions of
    its 3 most typical documents) and its ``top_features`` most over-represented features (``rank``,
    ``feature_id``, ``label``, ``fires_on``, ``freq_in``, ``freq_out``, ``difference``, ``lift``; no p-values: the
    clusters come from the same data). ``clusters.attrs["axis"]`` lists the axis feature ids and
    ``attrs["axis_table"]`` each with its weight, words and part (``attrs["query_features"]``: a query's, and
    ``attrs["by"]`` how it was read).

    Example::

        assignments, clusters = cluster_documents(ds, query="sports, food, law", n_clusters=3)
        clusters.query("rank == 1")[["cluster", "size", "words"]]
    """
    if sum(x is not None for x in (features, query, examples)) > 1:
        raise InvalidParameterError("pass one of features=[...], query='...' or examples=[...], not both.")
    labels = label_array(ds)
    docs = load_documents(ds, aggregation=aggregation)
    X = docs.activations
    if activated_threshold > 0:  # the axis embedding sees exactly the activations that count as active
        X = X.multiply(X > activated_threshold).tocsr()
    P = presence(docs.activations, activated_threshold)
    terms = Terms.of(load_documents(ds, aggregation="count").activations)
    axis = None
    if query is not None or examples is not None:
        if query is not None:
            if not isinstance(query, str) or not query.strip():
                raise InvalidParameterError("query must be a non-empty string naming the axis, e.g. "
                                            "query='sports, food, law'.")
            parts = query_parts(query)
            by = resolved_by(ds, by)
            # By query, an axis part is the part as the models read it: fusing in the features its words or
            # labels match (as a search does) lowered the ARI on both development corpora of
            # benchmarks/retrieval.py (package descriptions 0.80 -> 0.79, other fortunes 0.26 -> 0.21).
            searches = [dict(query=part, by=by, label_matches=False) for part in parts]
        else:
            if isinstance(examples, str) or not isinstance(examples, Sequence) or not examples:
                raise InvalidParameterError("examples must be a list of axis parts, each an example text or a list "
                                            "of them.")
            groups = [[e] if isinstance(e, str) else list(e) for e in examples]
            parts = [g[0][:40] if g and isinstance(g[0], str) else str(g) for g in groups]
            searches = [dict(examples=group, by="example") for group in groups]
        weights = []
        for part, search in zip(parts, searches):
            try:
                found = rank_documents(ds, aggregation=aggregation, **search)
            except ValueError as e:
                raise ValueError(f"the axis part {part!r} finds nothing: {e}") from None
            weights.append(terms.specific(terms.counts[found.ranking.found()[:PART_DOCUMENTS]], n_query_features))
        axis = _axis(parts, weights, n_query_features)
    elif features is not None:
        axis = Axis(features, np.ones(features.size), [], np.full(features.size, -1))
    X_axis = X if axis is None else (X[:, axis.features] @ sp.diags(axis.weights)).tocsr()
    init = None
    if axis is not None and axis.parts and len(axis.parts) == n_clusters and method == "kmeans":
        init = np.array([np.where(axis.part_of == i, axis.weights, 0.0) for i in range(n_clusters)])
    logger.info("clustering %d documents on %d axis features with %s", docs.n, X_axis.shape[1], method)
    cluster = cluster_matrix(X_axis, n_clusters, method, random_state, min_cluster_size, init=init)
    profiles = terms.profile(terms.counts)
    if method == "kmeans":
        cluster = _assign_the_rest(profiles, cluster)
    assignments = pd.DataFrame({"document": docs.rows, "cluster": cluster})
    clusters = describe_clusters(P, cluster, labels, top_features)
    clusters.insert(4, "fires_on", fires_on(ds, clusters.feature_id.clip(lower=0).to_numpy()))
    clusters.loc[clusters.feature_id < 0, "fires_on"] = ""
    words = dataset_words(ds)
    texts = ds.pandas().iloc[docs.rows][ds.field].astype(str).tolist() if words is not None else []
    described = cluster_words(P, cluster, words, texts, n_words) if words is not None else {}
    typical = typical_documents(profiles, cluster)
    clusters.insert(2, "words", [", ".join(described.get(int(c), [])) for c in clusters.cluster])
    clusters.insert(3, "examples", [docs.rows[typical[int(c)]].tolist() for c in clusters.cluster])
    clusters.attrs["axis"] = (np.arange(ds.d_sae) if axis is None else axis.features).tolist()
    if axis is not None:
        clusters.attrs["axis_table"] = axis.table(ds, labels)
    if query is not None:
        clusters.attrs["query_features"] = axis.features.tolist()
        clusters.attrs["by"] = by
    return Clustering(assignments, clusters)


def _assign_the_rest(profiles: sp.csr_matrix, cluster: np.ndarray) -> np.ndarray:
    """``cluster`` with each unassigned (-1) document put in the cluster whose mean profile it is closest to."""
    rest = np.flatnonzero(cluster < 0)
    if rest.size == 0 or rest.size == cluster.size:
        return cluster
    ids = np.unique(cluster[cluster >= 0])
    centres = np.vstack([np.asarray(profiles[cluster == c].mean(axis=0)).ravel() for c in ids])
    out = cluster.copy()
    out[rest] = ids[np.asarray(profiles[rest] @ centres.T).argmax(axis=1)]
    return out
