"""Property-based retrieval: documents where the features named by a query fire, with highlighted evidence."""
from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable

import numpy as np
import pandas as pd

from .inputs import EncodedDataset, label_array, load_documents
from .label_search import query_features
from ..validation import check_choice, check_features, check_int

logger = logging.getLogger(__name__)


BY = ("labels", "example")
# How many features stand for a query by default: a few words name a few features, while an example text
# expresses many concepts at once and is matched better by many of its features (see the README's figures).
DEFAULT_N_FEATURES = {"labels": 5, "example": 50}


def search_documents(
    ds: EncodedDataset, query: str | None = None, k: int = 10, *, by: str = "labels",
    features: Iterable[int] | None = None, n_features: int | None = None, aggregation: str = "max", highlight: bool = True,
    left_marker: str = "<<", right_marker: str = ">>",
) -> pd.DataFrame:
    """The ``k`` documents that most express a property, with the evidence highlighted.

    The property's features are ``features`` (ids), or found from ``query``: with ``by="labels"`` the
    ``n_features`` (default 5) features of this dataset that best match its words by what they do — the
    words they fire on here and their labels (:func:`~interp_embed.analysis.label_search.match_features`;
    their match ``score`` weights them; a ValueError says so when none matches well); with ``by="example"``
    ``query`` is an example text, which the reader and SAE that encoded ``ds`` read, and its ``n_features``
    (default 50) most specific features are used (``ds.features_of_text``; works where words are poor, but
    runs the models). Features given or found by example weigh 1. A document's ``score`` is the weighted
    sum, over those features, of its pooled activation (``aggregation`` (``max``, ``mean``, ``sum``, ``binarize`` or ``count``) pools each document's token activations, max by default) divided by that feature's largest value in the
    dataset, so no single feature dominates by scale. Documents where none of them fires are not returned.

    Columns: ``document`` (position in ``ds``), ``score``, ``feature_id``/``label`` of the feature that
    contributes most to the score, ``active_features`` (all query features active in the document) and
    ``highlighted`` (the text with that feature's tokens between the markers, via
    ``ds[document].token_activations``). ``table.attrs["features"]`` holds the features used, their weights
    (``score``) and, when a query found them by label, the words they fire on here (``fires_on``).

    Example::

        hits = search_documents(ds, query="games", k=5)
        print(hits.loc[0, "highlighted"])
        search_documents(ds, "Guten Morgen, wie geht es?", by="example", k=3)
    """
    check_int(k, "k", 1)
    check_choice(by, "by", BY)
    if (query is None) == (features is None):
        raise ValueError("pass exactly one of query='...' or features=[...].")
    n_features = check_int(DEFAULT_N_FEATURES[by] if n_features is None else n_features, "n_features", 1)
    labels = label_array(ds)
    docs = load_documents(ds, aggregation=aggregation)
    if query is not None and by == "example":
        if not hasattr(ds, "features_of_text"):
            raise TypeError(f"by='example' needs a dataset that can read text with its encoder (interp_embed.Dataset), "
                            f"not {type(ds).__name__}")
        features = ds.features_of_text(query, n_features=n_features)
        if not features:
            raise ValueError(f"no feature of this dataset is specific to the example {query[:60]!r}; try a longer "
                             "or more typical example.")
    if features is None:
        used = query_features(ds, docs, query, k=n_features)
    else:
        ids = check_features(features, ds.d_sae, sae=ds.encoder)
        used = pd.DataFrame({"feature_id": ids, "label": labels[ids], "score": np.ones(ids.size)})
    ids = used["feature_id"].to_numpy()
    weights = used["score"].to_numpy(dtype=np.float64)
    A = docs.activations[:, ids].toarray().astype(np.float64)  # n_docs × (a handful of features)
    peak = A.max(axis=0)
    contrib = np.divide(A, peak, out=np.zeros_like(A), where=peak > 0) * weights
    score = contrib.sum(axis=1)
    hits = np.flatnonzero(score > 0)
    hits = hits[np.argsort(-score[hits], kind="stable")][:k]
    logger.info("query %r: %d features, %d matching documents", query, ids.size, int((score > 0).sum()))
    best = ids[contrib[hits].argmax(axis=1)] if hits.size else np.zeros(0, dtype=np.int64)
    table = pd.DataFrame({
        "document": docs.rows[hits],
        "score": score[hits],
        "feature_id": best,
        "label": labels[best],
        "active_features": [ids[A[h] > 0].tolist() for h in hits],
    })
    if highlight:
        with getattr(ds, "recomputing", contextlib.nullcontext)():  # a compact store encodes its hits again
            table["highlighted"] = [
                ds[int(d)].token_activations(int(f), as_string=True, left_marker=left_marker, right_marker=right_marker)
                for d, f in zip(table["document"], table["feature_id"])
            ]
    table.attrs["features"] = used
    return table
