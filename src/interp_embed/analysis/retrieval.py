"""Property-based retrieval: documents ranked by the features (and words) a query names, with highlighted evidence."""
from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable, Sequence
from typing import NamedTuple

import numpy as np
import pandas as pd
import scipy.sparse as sp

from .document_words import DocumentWords
from .inputs import Documents, Encoded, EncodedDataset, label_array, load_documents
from .fires_on import fires_on
from .label_search import dataset_words, query_features
from .terms import Terms, reciprocal_rank_fusion
from ..store.pooling import AGGREGATIONS
from ..validation import (EXAMPLES, FEATURE_IDS, Bool, Choice, Features, Int, InvalidParameterError, OrNone, explained,
                          validate_params)

logger = logging.getLogger(__name__)


BY_WORDS = ("auto", "labels", "query")
"""How a query's words are read (see :func:`search_documents`); clustering's axis parts are read the same ways."""
BY = (*BY_WORDS, "example")
# How many features a query names: its best label matches (by="labels"), or its own features of highest count × IDF
# (by="query"; chosen on the development corpora of benchmarks/retrieval.py, where 20 to 30 measured alike and all
# of them — general features firing on "and" or on the query's position too — less well).
DEFAULT_N_FEATURES = {"labels": 5, "query": 25}
# Feedback: the features most specific to the first documents found rank the documents again. Chosen on the
# development corpus of benchmarks/retrieval.py (package descriptions), where it lifted topic queries by label
# from P@10 0.79 to 0.87 and by query from 0.87 to 0.93; by example it lifted P@10 from 0.78 to 0.83 (and from
# 0.65 to 0.66 on the development fortunes).
FEEDBACK_DOCUMENTS = 10
FEEDBACK_FEATURES = 50


@validate_params(ds=Encoded(), k=Int(min=1), by=Choice(BY), features=Features(), n_features=OrNone(Int(min=1)),
                 feedback=Bool(), aggregation=Choice(AGGREGATIONS), highlight=Bool())
def search_documents(
    ds: EncodedDataset, query: str | Sequence[str] | None = None, k: int = 10, *, by: str = "auto",
    features: Iterable[int] | None = None, n_features: int | None = None, examples: Sequence[str] | None = None,
    negatives: Sequence[str] | None = None, feedback: bool = True, aggregation: str = "max", highlight: bool = True,
    left_marker: str = "<<", right_marker: str = ">>",
) -> pd.DataFrame:
    """The ``k`` documents that most express a property, with the evidence highlighted.

    How the property is given:

    - ``by="auto"`` (default): ``"example"`` where ``examples`` are given, else ``"query"`` where ``ds`` can read
      text (:meth:`~interp_embed.Dataset.reads_text`: its SAE was given or is the bundled default), else
      ``"labels"``; ``table.attrs["by"]`` says which ran. By query ranked better than by labels on both
      development corpora of ``benchmarks/retrieval.py`` (P@10 on topic queries 0.91 and 0.68 against 0.86 and
      0.65, on property queries 0.54 and 0.66 against 0.40 and 0.55) and refuses no query; by labels runs no model.
    - ``by="labels"`` (no model runs): ``query``'s words are matched to the words features fire on in
      this dataset and to their labels (:func:`~interp_embed.analysis.label_search.match_features`); the
      ``n_features`` (5) best matches rank documents by their pooled activation (``aggregation``, max by
      default) over each feature's peak, weighted by the match score. Where the query's words occur in the
      documents, that ranking is fused (reciprocal rank fusion) with BM25 over the documents' words.
    - ``by="query"``: the reader and SAE that encoded ``ds`` read the query itself; its ``n_features`` (25) features
      of highest count × IDF rank documents by BM25 over per-document feature counts
      (:class:`~interp_embed.analysis.terms.Terms`: a feature firing in most documents counts for little, long
      documents do not win by length), fused with the features whose fired words or labels match the query (as
      ``by="labels"`` ranks them, where any does) and with BM25 over the documents' words: the query's own and
      those its features fire on here (:mod:`~interp_embed.analysis.document_words`). Stop words and negation
      ("not", "never") are read like any text; a query fails only where neither its features nor its words
      find anything.
    - ``by="example"``: ``examples`` (a list of texts; a ``query`` string counts as one more) are read by the
      models, and documents rank by the cosine of their IDF-weighted summed activations with the examples' (each
      example counts once whatever its length; a feature weighs by the squared share of examples it fires in),
      minus that with ``negatives`` (texts the documents should not be like).
    - ``features``: feature ids, each weighing 1, as ``by="labels"`` ranks its matches.

    With ``feedback`` (default; not for features given), the features most specific to the first
    ``FEEDBACK_DOCUMENTS`` (10) documents found — frequent there, rare in the dataset — rank the documents again
    (BM25), which finds documents that say the same thing in other words; documents the first search found that
    those features miss follow, in its order (with score 0), so feedback never loses a hit. A query that matches
    nothing raises a ValueError saying why and what to try.

    Columns: ``document`` (position in ``ds``), ``score``, ``feature_id``/``label``/``fires_on`` of the feature that
    adds most to the score, ``active_features`` (the ranking features active in it), ``words`` (when words were
    ranked: the query's words and its features' words it holds) and ``highlighted`` (the text with that feature's
    tokens between the markers). ``table.attrs["features"]`` lists the features used: ``feature_id``, ``label``,
    ``fires_on`` (the words it fires on here), ``score`` (its weight) and ``source`` (``label match``, ``query
    text``, ``examples``, ``feedback`` or ``given``); ``table.attrs["by"]`` how the property was read;
    ``table.attrs["words"]`` the words ranked: ``word``, ``weight``
    and ``source`` (``query``, or the features whose ``fires_on`` words brought it).

    Example::

        hits = search_documents(ds, query="games", k=5)
        search_documents(ds, "questions", by="query", k=3)
        search_documents(ds, by="example", examples=["Guten Morgen!", "Wie geht es?"], k=3)
    """
    by = resolved_by(ds, by, examples)
    found = rank_documents(ds, query, by=by, features=features, n_features=n_features, examples=examples,
                           negatives=negatives, feedback=feedback, aggregation=aggregation)
    docs, ranking, labels = found.documents, found.ranking, label_array(ds)
    hits = ranking.found()[:k]
    logger.info("query %r: %d features, %d matching documents", query, len(found.features), ranking.found().size)
    ids, contrib = ranking.contributions(hits)
    best = ids[contrib.argmax(axis=1)] if hits.size else np.zeros(0, dtype=np.int64)
    table = pd.DataFrame({
        "document": docs.rows[hits],
        "score": ranking.score[hits],
        "feature_id": best,
        "label": labels[best],
        "fires_on": fires_on(ds, best),
        "active_features": [ids[row > 0].tolist() for row in contrib],
    })
    if found.word_weight is not None:
        table["words"] = found.words.matched(found.word_weight, hits)
    if highlight:
        with getattr(ds, "recomputing", contextlib.nullcontext)():  # a compact store encodes its hits again
            table["highlighted"] = [
                ds[int(d)].token_activations(int(f), as_string=True, left_marker=left_marker, right_marker=right_marker)
                for d, f in zip(table["document"], table["feature_id"])
            ]
    table.attrs["by"] = by
    table.attrs["features"] = found.features.sort_values("score", ascending=False, kind="stable").reset_index(drop=True)
    if found.word_weight is not None:
        table.attrs["words"] = found.words.table(found.word_weight, found.word_source)
    return table


class Found(NamedTuple):
    """A ranking of a dataset's encoded documents for a query, with what it was made of."""

    documents: Documents
    """The encoded documents (pooled as asked), in the order of the ranking's scores."""
    ranking: _Ranking
    features: pd.DataFrame
    """The features used (``search_documents``' ``attrs["features"]``)."""
    words: DocumentWords | None
    """The documents' words, where they were ranked."""
    word_weight: np.ndarray | None
    """Each stem's weight in the word ranking (None where words were not ranked)."""
    word_source: list[str] | None
    """Where each weighted stem came from: ``query``, or the features whose fired words brought it."""


def resolved_by(ds: EncodedDataset, by: str, examples: Sequence[str] | None = None) -> str:
    """``by``, with ``"auto"`` replaced by what it means for ``ds`` (see :func:`search_documents`)."""
    if by != "auto":
        return by
    if examples is not None:
        return "example"
    return "query" if getattr(ds, "reads_text", lambda: False)() else "labels"


def rank_documents(
    ds: EncodedDataset, query: str | Sequence[str] | None = None, *, by: str = "labels",
    features: Iterable[int] | None = None, n_features: int | None = None, examples: Sequence[str] | None = None,
    negatives: Sequence[str] | None = None, feedback: bool = True, aggregation: str = "max",
    label_matches: bool = True,
) -> Found:
    """Every encoded document of ``ds`` scored for a property, as :func:`search_documents` describes (which shows
    the first ``k``); directed clustering compares these scores across the parts of its axis. Its callers check
    the options. ``label_matches=False`` leaves out, by query, the features whose words or labels match it."""
    if by == "example":
        texts = _texts(examples, "examples") + ([query] if isinstance(query, str) else _texts(query, "query"))
        if not texts:
            raise InvalidParameterError("by='example' needs example texts: examples=['...', ...] (or one as "
                                        "query='...').")
        if features is not None:
            raise InvalidParameterError("pass examples=[...] or features=[...], not both.")
    elif (query is None) == (features is None):
        raise InvalidParameterError("pass exactly one of query='...' or features=[...].")
    elif examples is not None or negatives is not None:
        raise InvalidParameterError("examples= and negatives= go with by='example'.")
    if n_features is None:
        n_features = DEFAULT_N_FEATURES.get(by, DEFAULT_N_FEATURES["labels"])
    labels = label_array(ds)
    docs = load_documents(ds, aggregation=aggregation)
    terms = Terms.of(load_documents(ds, aggregation="count").activations)
    words = word_weight = word_source = None
    if by == "example":
        # Compared on activation mass (summed activations), not token counts: on the development corpora of
        # benchmarks/retrieval.py this lifted P@10 by example on fortunes from 0.66 to 0.74 (packages 0.83 → 0.81).
        mass = Terms.of(load_documents(ds, aggregation="sum").activations)
        score, weight = mass.like(_read(ds, texts, "sum"),
                                  _read(ds, _texts(negatives, "negatives"), "sum") if negatives else None)
        used = _used(ds, labels, np.argsort(-weight, kind="stable")[:max(n_features, 50)], weight, "examples")
        used = used[used.score > 0]
        ranking = _Ranking(score, lambda rows: _profile_contributions(mass, weight, rows))
    elif features is not None:
        used = _used(ds, labels, features, np.ones(ds.d_sae), "given")
        ranking = _activation_ranking(docs, used)
    else:
        if not isinstance(query, str) or not query.strip():
            raise InvalidParameterError("query must be a non-empty string describing the property, e.g. "
                                        "query='questions'.")
        if by == "labels":
            used = query_features(ds, docs, query, k=n_features).assign(source="label match")
            rankings = [_activation_ranking(docs, used)]
            feature_weight = None
        else:
            feature_weight = terms.strongest(np.asarray(_read(ds, [query]).todense(), dtype=np.float64).ravel(),
                                             n_features)
            used = _used(ds, labels, np.flatnonzero(feature_weight), feature_weight, "query text")
            rankings = [_Ranking(terms.bm25(feature_weight), lambda rows: terms.bm25_contributions(feature_weight, rows))
                        ] if feature_weight.any() else []
            matched = _label_matches(ds, docs, query) if label_matches else None
            if matched is not None:
                rankings.append(_activation_ranking(docs, matched))
                used = pd.concat([used, matched.assign(source="label match")], ignore_index=True)
            if not rankings:
                raise explained(ValueError, f"the features the reader sees in {query!r} fire in none of this "
                                "dataset's documents (or in more than half of them, which says nothing), and no "
                                "feature's words or label match it; try other words, search by examples (",
                                EXAMPLES, "), or pass ", FEATURE_IDS, ".")
        words = DocumentWords.of(ds)
        if words is not None:
            word_weight, word_source = _query_words(ds, words, query, terms, feature_weight)
            if word_weight.any():
                rankings.append(_Ranking(words.terms.bm25(word_weight), _no_features))
            else:
                words = word_weight = word_source = None
        ranking = rankings[0] if len(rankings) == 1 else _fused(*rankings)
    if feedback and features is None and ranking.found().size:
        first = ranking.found()[:FEEDBACK_DOCUMENTS]
        weight = terms.specific(terms.counts[first], FEEDBACK_FEATURES)
        if weight.any():  # where what was found has nothing specific (all its features dense), it stays as found
            ranking = _Ranking(terms.bm25(weight), lambda rows: terms.bm25_contributions(weight, rows), then=ranking)
            used = pd.concat([used, _used(ds, labels, np.flatnonzero(weight), weight, "feedback")],
                             ignore_index=True)
    return Found(docs, ranking, used, words, word_weight, word_source)


def _label_matches(ds: EncodedDataset, docs: Documents, query: str) -> pd.DataFrame | None:
    """The features whose fired words or labels match ``query`` (as ``by="labels"`` finds them), or None where
    none does: then the query's own features rank alone."""
    try:
        return query_features(ds, docs, query, k=DEFAULT_N_FEATURES["labels"])
    except ValueError:  # query_features says why nothing matched; by query that is no error
        return None


def _no_features(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The contributions of a ranking by words: no feature adds to it."""
    return np.zeros(0, dtype=np.int64), np.zeros((len(rows), 0))


def _fused(*rankings: _Ranking) -> _Ranking:
    """Rankings fused by their ranks (:func:`reciprocal_rank_fusion`); a document's fused score is split among the
    features of each ranking by their shares of that ranking's score, so the evidence shown stays exact."""
    single = [reciprocal_rank_fusion(r.score) for r in rankings]  # what each ranking adds to the fused score

    def contributions(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        parts = [r.contributions(rows) for r in rankings]
        every = np.unique(np.concatenate([ids for ids, _ in parts]))
        out = np.zeros((len(rows), len(every)))
        for (ids, contrib), added in zip(parts, single):
            total = contrib.sum(axis=1, keepdims=True)
            share = np.divide(contrib, total, out=np.zeros_like(contrib), where=total > 0)
            np.add.at(out, (slice(None), np.searchsorted(every, ids)), share * added[rows, None])
        return every, out

    return _Ranking(np.sum(single, axis=0), contributions)


def _query_words(ds: EncodedDataset, words: DocumentWords, query: str, terms: Terms,
                 feature_weight: np.ndarray | None) -> tuple[np.ndarray, list[str]]:
    """The word ranking's weights over stems and where each came from: the query's words, and (by query) the words
    its features fire on here, all of those together weighing as much as the query's own words (1 if it has none
    here)."""
    own = words.of_query(query)
    weight, source = own.copy(), ["query" if w > 0 else "" for w in own]
    fired = dataset_words(ds) if feature_weight is not None else None
    if fired is not None:
        expansion, brought = words.expansion(fired, feature_weight * terms.idf())
        weight += expansion * max(own.sum(), 1.0)
        for i in np.flatnonzero((expansion > 0) & (own == 0)):
            source[i] = "fires_on of " + ", ".join(map(str, brought[i]))
    return weight, source


class _Ranking:
    """Documents' scores (one per encoded document) and how to split a score into its features' shares. A ranking
    made ``then`` another (feedback after a first search) keeps every document the other found: those it scores 0
    follow the rest, in the other's order, with the other's features as their evidence."""

    def __init__(self, score: np.ndarray, contributions, then: _Ranking | None = None):
        self.score, self._contributions, self.then = score, contributions, then

    def found(self) -> np.ndarray:
        """Matrix rows of the documents scoring above 0 (here or in ``then``), best first."""
        if self.then is None:
            order = np.argsort(-self.score, kind="stable")
            return order[self.score[order] > 0]
        found = np.flatnonzero(self.score > 0)
        found = found[np.argsort(-self.score[found], kind="stable")]
        rest = self.then.found()
        return np.concatenate([found, rest[self.score[rest] <= 0]])

    def contributions(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(feature ids, rows × features): each feature's share of those documents' scores (of ``then``'s scores
        for the documents only ``then`` found)."""
        ids, contrib = self._contributions(rows)
        earlier = self.score[rows] <= 0
        if self.then is None or not earlier.any():
            return ids, contrib
        then_ids, then_contrib = self.then.contributions(rows[earlier])
        every = np.union1d(ids, then_ids)
        out = np.zeros((len(rows), len(every)))
        out[np.ix_(~earlier, np.searchsorted(every, ids))] = contrib[~earlier]
        out[np.ix_(earlier, np.searchsorted(every, then_ids))] = then_contrib
        return every, out


def _texts(texts, name: str) -> list[str]:
    """``texts`` as a list of non-empty strings ([] for None)."""
    if texts is None:
        return []
    if isinstance(texts, str) or not isinstance(texts, Sequence):
        raise InvalidParameterError(f"{name} must be a list of texts, e.g. {name}=['first text', 'second text'].")
    bad = [i for i, t in enumerate(texts) if not isinstance(t, str) or not t.strip()]
    if bad:
        raise InvalidParameterError(f"{name}[{bad[0]}] is not a non-empty string; every entry of {name} must be a "
                                    "text.")
    return list(texts)


def _read(ds: EncodedDataset, texts: list[str], aggregation: str = "count") -> sp.csr_matrix:
    """Pooled features (feature counts by default) of ``texts`` as the reader and SAE that encoded ``ds`` see them."""
    if not hasattr(ds, "latents_of_texts"):
        raise TypeError(f"reading text needs a dataset that can encode with its models (interp_embed.Dataset), "
                        f"not {type(ds).__name__}; use by='labels' or features=[...].")
    return ds.latents_of_texts(texts, aggregation)


def _used(ds: EncodedDataset, labels: np.ndarray, ids: np.ndarray, weight: np.ndarray, source: str) -> pd.DataFrame:
    ids = np.asarray(ids, dtype=np.int64)
    return pd.DataFrame({"feature_id": ids, "label": labels[ids], "fires_on": fires_on(ds, ids),
                         "score": weight[ids].astype(np.float64), "source": source})


def _activation_ranking(docs: Documents, used: pd.DataFrame) -> _Ranking:
    """Documents by the weighted sum of their pooled activations on ``used``, each over its peak."""
    ids = used["feature_id"].to_numpy()
    A = docs.activations[:, ids].toarray().astype(np.float64)  # n_docs × (a handful of features)
    peak = A.max(axis=0)
    contrib = np.divide(A, peak, out=np.zeros_like(A), where=peak > 0) * used["score"].to_numpy(dtype=np.float64)
    return _Ranking(contrib.sum(axis=1), lambda rows: (ids, contrib[rows]))


def _profile_contributions(terms: Terms, weight: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ids = np.flatnonzero(weight > 0)
    return ids, terms.profile(terms.counts[rows])[:, ids].multiply(weight[ids]).toarray()
