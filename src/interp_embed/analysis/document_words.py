"""A dataset's documents as bags of words, ranked beside its features, and the words a query's features stand for.

Search by query ranks documents two ways and fuses the rankings: by the SAE features the query fires (BM25 over
per-document feature counts, :mod:`~interp_embed.analysis.terms`) and by words. The words are the query's own
(stemmed, English stop words dropped, as label search reads them) and, grounded in this dataset, the words its
features fire on here (``fires_on``): the features translate the query into the documents' vocabulary ("questions"
→ "?", "ask"; "alcohol" → "drunk", "drink"). A word is a word the store reads under a token (``ds.document_words()``),
so a symbol such as "?" or "$" is one too; documents are scored by BM25 over which stems they hold.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ..store.words import FeatureWords
from .label_search import query_terms, stem
from .terms import Terms

# Each query feature brings its EXPANSION_WORDS most specific fired words, weighted by that specificity; all
# expansion words together weigh as much as the query's own words. Chosen on the development corpora of
# benchmarks/retrieval.py (5 and 20 words measured no better).
EXPANSION_WORDS = 10


@dataclass(frozen=True)
class DocumentWords:
    """Which word stems each encoded document of a dataset holds, ready for BM25."""

    terms: Terms
    """(documents, stems): 1 where a document holds a word of the stem, in the order of the encoded rows."""
    stems: dict
    """Stem → its column."""
    shown: np.ndarray
    """For each stem, the word shown for it: its form held by most documents."""
    stem_of_word: np.ndarray
    """For each word of the store's vocabulary (``FeatureWords.words``), the column of its stem."""

    @classmethod
    def of(cls, ds) -> "DocumentWords | None":
        """The words of ``ds``'s encoded documents, or None where the dataset cannot tell (no ``document_words``, or
        a store that keeps pooled activations only)."""
        if not hasattr(ds, "document_words") or not getattr(ds, "token_level", True):
            return None
        presence, words = ds.document_words()
        stems, stem_of_word = np.unique(np.array([stem(str(w)) for w in words], dtype=object), return_inverse=True)
        stem_of_word = stem_of_word.reshape(-1)
        to_stem = sp.csr_matrix((np.ones(len(words)), (np.arange(len(words)), stem_of_word)),
                                shape=(len(words), len(stems)))
        held = sp.csr_matrix(presence, dtype=np.float64) @ to_stem
        held.data[:] = 1
        frequency = np.asarray(presence.sum(axis=0)).ravel()  # documents holding each word
        shown = np.empty(len(stems), dtype=object)
        order = np.lexsort((-frequency, stem_of_word))  # by stem, the most frequent form first
        first = order[np.r_[True, stem_of_word[order][1:] != stem_of_word[order][:-1]]]
        shown[stem_of_word[first]] = words[first]
        return cls(terms=Terms.of(held), stems={s: i for i, s in enumerate(stems)}, shown=shown,
                   stem_of_word=stem_of_word)

    def of_query(self, query: str) -> np.ndarray:
        """Weights over stems: how often each stem is among ``query``'s meaningful words (stop words dropped)."""
        weight = np.zeros(len(self.shown))
        for term in query_terms(query):
            if term in self.stems:
                weight[self.stems[term]] += 1
        return weight

    def expansion(self, words: FeatureWords, feature_weights: np.ndarray) -> tuple[np.ndarray, list[list[int]]]:
        """(weights over stems, for each stem the features that brought it): each feature of ``feature_weights``
        (> 0) brings its EXPANSION_WORDS most specific words here (its ``fires_on`` words), shared in proportion to
        their specificity and times the feature's weight. The weights sum to 1 (0 if no feature fires on a word)."""
        weight = np.zeros(len(self.shown))
        brought: list[list[int]] = [[] for _ in range(len(self.shown))]
        for f in np.flatnonzero(feature_weights > 0):
            ids, specificity = words.specific_words(int(f), EXPANSION_WORDS)
            known = ids < len(self.stem_of_word)  # a word first read after these documents' words were collected
            ids, specificity = ids[known], specificity[known]
            if ids.size:
                columns = self.stem_of_word[ids]
                np.add.at(weight, columns, feature_weights[f] * specificity / specificity.sum())
                for c in np.unique(columns):
                    brought[c].append(int(f))
        total = weight.sum()
        return (weight / total if total > 0 else weight), brought

    def table(self, weight: np.ndarray, source: list[str]) -> pd.DataFrame:
        """The words of ``weight`` (> 0), heaviest first: ``word`` (the form shown), ``weight`` and ``source``."""
        used = np.flatnonzero(weight > 0)
        used = used[np.argsort(-weight[used], kind="stable")]
        return pd.DataFrame({"word": self.shown[used].astype(str), "weight": weight[used],
                             "source": [source[i] for i in used]})

    def matched(self, weight: np.ndarray, rows: np.ndarray) -> list[str]:
        """For each of ``rows`` (matrix rows), the words of ``weight`` it holds, heaviest first, comma-separated."""
        used = np.flatnonzero(weight > 0)
        used = used[np.argsort(-weight[used], kind="stable")]
        held = self.terms.counts[rows][:, used].toarray() > 0
        return [", ".join(self.shown[used[h]].astype(str)) for h in held]
