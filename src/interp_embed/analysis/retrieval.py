"""Property-based retrieval: documents where the features named by a query fire, with highlighted evidence."""
from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd

from .inputs import label_array, load_documents
from .label_search import match_features
from .validation import check_features, check_int

logger = logging.getLogger(__name__)


def search_documents(
    ds: Any, query: str | None = None, k: int = 10, *, features: Any = None, n_features: int = 5,
    highlight: bool = True, left_marker: str = "<<", right_marker: str = ">>",
) -> pd.DataFrame:
    """The ``k`` documents that most express a property, found through feature labels.

    The property's features are ``features`` (ids) or the ``n_features`` features whose labels best match
    ``query`` (word TF-IDF over labels, :func:`match_features`; their match ``score`` weights them, explicit
    features weigh 1). A document's ``score`` is the weighted sum, over those features, of its max
    activation divided by that feature's largest max activation in the dataset, so no single feature
    dominates by scale. Documents where none of them fires are not returned.

    Columns: ``document`` (position in ``ds``), ``score``, ``feature_id``/``label`` of the feature that
    contributes most to the score, ``active_features`` (all query features active in the document) and
    ``highlighted`` (the text with that feature's tokens between the markers, via
    ``ds[document].token_activations``). ``table.attrs["features"]`` holds the features used and weights.

    Example::

        hits = search_documents(ds, query="German", k=5)
        print(hits.loc[0, "highlighted"])
    """
    check_int(k, "k", 1)
    if (query is None) == (features is None):
        raise ValueError("pass exactly one of query='...' or features=[...].")
    labels = label_array(ds)
    if query is not None:
        used = match_features(labels, query, k=check_int(n_features, "n_features", 1))
    else:
        ids = check_features(features, ds.d_sae)
        used = pd.DataFrame({"feature_id": ids, "label": labels[ids], "score": np.ones(ids.size)})
    ids = used["feature_id"].to_numpy()
    weights = used["score"].to_numpy(dtype=np.float64)
    docs = load_documents(ds)
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
        table["highlighted"] = [
            ds[int(d)].token_activations(int(f), as_string=True, left_marker=left_marker, right_marker=right_marker)
            for d, f in zip(table["document"], table["feature_id"])
        ]
    table.attrs["features"] = used
    return table
