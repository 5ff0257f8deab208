"""Documents as bags of terms — SAE features or words — scored the way search engines score words.

The store keeps, per document, how many tokens each feature fires on (``latents("count")``): a bag of
"feature terms". Search then works as with words (the "latent terms" idea): BM25 ranks documents for a weighted
set of features, with an IDF that makes a feature firing in most documents count for little and a length
normalisation that keeps long documents from winning by length alone; and a set of texts (examples, or the
documents a first search found) is turned into the features most *specific* to them relative to this dataset.
The same scoring serves a document's words (:mod:`~interp_embed.analysis.document_words`), so the two rankings
can be fused.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

# BM25's usual constants: how fast repeated firing saturates, and how much a document's length discounts it.
K1, B = 1.2, 0.75
# A term in more than this share of the documents says nothing specific about any of them.
MAX_COVERAGE = 0.5


@dataclass(frozen=True)
class Terms:
    """Per-document term counts of one dataset's encoded documents, with the statistics scoring needs. The terms
    are SAE features (counts: the tokens each fires on) or words (counts: 1 where a document holds the word)."""

    counts: sp.csr_matrix
    """(documents, terms): how often each term occurs in each document."""
    length: np.ndarray
    """Each document's total count (for features: its tokens times the features firing per token)."""
    document_frequency: np.ndarray
    """Documents in which each term occurs."""

    @classmethod
    def of(cls, counts: sp.spmatrix) -> "Terms":
        counts = sp.csr_matrix(counts, dtype=np.float64)
        counts.eliminate_zeros()
        return cls(counts=counts, length=np.asarray(counts.sum(axis=1)).ravel(),
                   document_frequency=np.bincount(counts.indices, minlength=counts.shape[1]))

    @property
    def n(self) -> int:
        return self.counts.shape[0]

    @property
    def dense(self) -> np.ndarray:
        """True for the terms too common here to tell documents apart (in > MAX_COVERAGE of them)."""
        return self.document_frequency > MAX_COVERAGE * self.n

    def strongest(self, counts: np.ndarray, n_terms: int) -> np.ndarray:
        """``counts`` (one text's, one per term) kept for its ``n_terms`` terms of highest count × IDF, dense terms
        and terms absent here left out (0): what is most specific in a short text such as a query, whose every
        token also fires general features (position, punctuation, the word "and")."""
        weight = np.where(self.dense | (self.document_frequency == 0), 0.0, counts * self.idf())
        keep = np.argsort(-weight, kind="stable")[:n_terms]
        out = np.zeros(len(weight))
        out[keep] = np.where(weight[keep] > 0, counts[keep], 0.0)
        return out

    def idf(self) -> np.ndarray:
        """BM25's inverse document frequency, ``log(1 + (n − df + 0.5) / (df + 0.5))``: always positive, largest for
        the rarest terms (a term that never occurs here matches nothing, whatever its weight)."""
        return np.log1p((self.n - self.document_frequency + 0.5) / (self.document_frequency + 0.5))

    def bm25(self, weights: np.ndarray) -> np.ndarray:
        """Each document's BM25 score for terms weighted by ``weights`` (one per term; the query's term
        frequencies, or any non-negative weights)."""
        used = np.flatnonzero(weights > 0)
        tf = self.counts[:, used].tocoo()
        norm = K1 * (1 - B + B * self.length / max(self.length.mean(), 1e-12))
        saturated = tf.data * (K1 + 1) / (tf.data + norm[tf.row])
        contrib = sp.csr_matrix((saturated, (tf.row, tf.col)), shape=(self.n, used.size))
        return np.asarray(contrib @ (weights[used] * self.idf()[used])).ravel()

    def bm25_contributions(self, weights: np.ndarray, documents: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(term ids, documents × those terms): what each weighted term adds to the BM25 score of ``documents``;
        for saying which feature (or word) found a document."""
        used = np.flatnonzero(weights > 0)
        tf = self.counts[documents][:, used].toarray()
        norm = K1 * (1 - B + B * self.length[documents] / max(self.length.mean(), 1e-12))
        return used, tf * (K1 + 1) / (tf + norm[:, None]) * (weights[used] * self.idf()[used])

    def specific(self, present: sp.spmatrix, n_features: int) -> np.ndarray:
        """Weights of the ``n_features`` features most specific to a set of texts (rows of ``present``, any
        values; > 0 is "fires"), relative to this dataset: ``p · log(p / q)``, where p is the share of the texts
        in which a feature fires and q its (smoothed) share of this dataset's documents — frequent in the
        texts *and* rarer in the dataset. Dense features and features less frequent in the texts than here
        weigh 0."""
        present = sp.csr_matrix(present)
        p = np.asarray((present > 0).mean(axis=0)).ravel()
        q = (self.document_frequency + 0.5) / (self.n + 1)
        with np.errstate(divide="ignore", invalid="ignore"):
            weight = np.where(p > 0, p * np.log(p / q), 0.0)
        weight[self.dense | (weight < 0)] = 0
        keep = np.argsort(-weight, kind="stable")[:n_features]
        out = np.zeros_like(weight)
        out[keep] = weight[keep]
        return out

    def profile(self, counts: sp.spmatrix) -> sp.csr_matrix:
        """Rows of ``counts`` (documents or texts × features) as unit vectors of IDF-weighted counts, dense
        features left out: comparing them by cosine asks which specific features fire, and how much, not how
        long a text is."""
        from sklearn.preprocessing import normalize  # imported where used: importing interp_embed stays fast

        weight = np.where(self.dense, 0.0, self.idf())
        return normalize(sp.csr_matrix(counts, dtype=np.float64).multiply(weight).tocsr())

    def like(self, examples: sp.spmatrix, negatives: sp.spmatrix | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(each document's score, each feature's weight) for documents like ``examples`` (texts × features, in the
        documents' measure: counts, or summed activations) and unlike ``negatives``: the cosine of a document's :meth:`profile` with the examples' summed
        profiles, each feature weighted by the square of the share of examples it fires in (what the examples
        share counts, what one of them happens to say counts little), minus the same of the negatives. Each text
        counts once whatever its length."""
        weight = self._shared(examples)
        if negatives is not None and negatives.shape[0]:
            weight -= self._shared(negatives)
        norm = np.linalg.norm(weight)
        if norm > 0:
            weight /= norm
        return np.asarray(self.profile(self.counts) @ weight).ravel(), weight

    def _shared(self, texts: sp.spmatrix) -> np.ndarray:
        """The summed profiles of ``texts``, each feature times the squared share of the texts it fires in."""
        texts = sp.csr_matrix(texts)
        share = np.asarray((texts > 0).mean(axis=0)).ravel()
        return np.asarray(self.profile(texts).sum(axis=0)).ravel() * share ** 2


def reciprocal_rank_fusion(*scores: np.ndarray, k: int = 60) -> np.ndarray:
    """One score from several rankings of the same documents: the sum of ``1 / (k + rank)`` over the rankings
    in which a document scores above 0 (rank 1 is the best). Rankings on different scales meet on ranks only.

    >>> reciprocal_rank_fusion(np.array([3.0, 2.0, 0.0]), np.array([0.0, 1.0, 5.0])).round(4).tolist()
    [0.0164, 0.0323, 0.0164]
    """
    total = np.zeros(len(scores[0]))
    for score in scores:
        order = np.argsort(-score, kind="stable")
        rank = np.empty(len(score))
        rank[order] = np.arange(1, len(score) + 1)
        total += np.where(score > 0, 1 / (k + rank), 0.0)
    return total
