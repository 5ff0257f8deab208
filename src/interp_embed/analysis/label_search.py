"""Finding features by their labels: a lexical TF-IDF match a person can check by reading the labels."""
from __future__ import annotations

import numpy as np
import pandas as pd


def match_features(labels: np.ndarray, query: str, k: int = 10, min_score: float = 0.1) -> pd.DataFrame:
    """Features whose labels best match ``query``: cosine similarity of word TF-IDF vectors over the labels.

    Words are lower-cased unigrams and bigrams, with English stop words removed; features without a label
    never match. Returns ``feature_id``, ``label``, ``score`` (in [0, 1]) for at most ``k`` features scoring
    at least ``min_score``, best first; raises ValueError when none does.

    >>> labels = np.array(["German words", "code", "german compound nouns", ""], dtype=object)
    >>> match_features(labels, "German", k=2)["feature_id"].tolist()
    [0, 2]
    """
    from sklearn.feature_extraction.text import TfidfVectorizer  # imported where used: importing interp_embed stays fast

    if not isinstance(query, str) or not query.strip():
        raise ValueError("query must be a non-empty string describing the property, e.g. query='German'.")
    labelled = np.flatnonzero([bool(str(x).strip()) for x in labels])
    if labelled.size == 0:
        raise ValueError("no feature has a label, so a query cannot match any; label the features first or "
                         "pass feature ids with features=[...].")
    vectorizer = TfidfVectorizer(ngram_range=(1, 2), stop_words="english", sublinear_tf=True)
    try:
        L = vectorizer.fit_transform([str(labels[f]) for f in labelled])
    except ValueError:  # every label consisted of stop words only
        L = None
    q = vectorizer.transform([query]) if L is not None else None
    if q is None or q.nnz == 0:
        raise ValueError(f"no word of query {query!r} occurs in any feature label; try other words "
                         "(labels are matched word by word) or pass features=[...].")
    score = np.asarray((L @ q.T).todense()).ravel()
    order = np.argsort(-score, kind="stable")[:k]
    order = order[score[order] >= min_score]
    if order.size == 0:
        raise ValueError(f"no feature label matches {query!r} well enough; try other words or features=[...].")
    f = labelled[order]
    return pd.DataFrame({"feature_id": f, "label": labels[f], "score": score[order]})
