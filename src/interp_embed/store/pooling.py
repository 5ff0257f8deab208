"""How token activations become document activations: every aggregation, in one place.

Pooling a document's token activations gives, per active feature, their max, their sum and the number
of tokens where the feature fired (:class:`PooledStatistics`). A chunk stores these when it is written,
so ``latents()`` concatenates instead of recomputing. Every aggregation a user can ask for is a function
of them, registered once in :data:`AGGREGATIONS`; adding one is one decorated function.

``activated_threshold`` applies to token activations before pooling: a token activation at or below it
does not count (so ``count`` counts the tokens above it and ``binarize`` marks the features whose max is
above it). At the default 0 the stored statistics are used as they are.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from ..validation import InvalidParameterError


@dataclass(frozen=True)
class PooledStatistics:
    """Per document and active feature, the max, sum and count of its token activations, CSR over documents."""

    indptr: np.ndarray
    """int64 (n_documents + 1,): document i's entries are ``indptr[i]:indptr[i + 1]``."""
    features: np.ndarray
    """Feature id of each entry, ascending within a document."""
    max: np.ndarray
    """float32: the largest activation of the feature over the document's tokens."""
    sum: np.ndarray
    """float32: the sum of its activations."""
    count: np.ndarray
    """int32: the number of the document's tokens where it is active."""
    n_tokens: np.ndarray
    """int64 (n_documents,): the document's own tokens (0 for a document without activations)."""

    @property
    def n_documents(self) -> int:
        return len(self.n_tokens)

    def matrix(self, values: np.ndarray, d_sae: int) -> sp.csr_matrix:
        """A (documents × d_sae) float32 CSR matrix with ``values`` (one per entry) at the pooled entries."""
        return sp.csr_matrix((np.asarray(values, dtype=np.float32), self.features, self.indptr),
                             shape=(self.n_documents, d_sae))

    @classmethod
    def concatenate(cls, parts: list[tuple[np.ndarray, "PooledStatistics"]], n_documents: int) -> "PooledStatistics":
        """Statistics of ``n_documents`` rows from ``(rows, statistics of those rows)`` parts in row order;
        rows in no part have no entries."""
        entries = np.zeros(n_documents, dtype=np.int64)
        n_tokens = np.zeros(n_documents, dtype=np.int64)
        for rows, part in parts:
            entries[rows] = np.diff(part.indptr)
            n_tokens[rows] = part.n_tokens

        def joined(name: str, dtype) -> np.ndarray:
            return np.concatenate([np.asarray(getattr(p, name), dtype=dtype) for _, p in parts] or [np.zeros(0, dtype)])

        return cls(indptr=np.r_[0, np.cumsum(entries)].astype(np.int64), features=joined("features", np.int32),
                   max=joined("max", np.float32), sum=joined("sum", np.float32), count=joined("count", np.int32),
                   n_tokens=n_tokens)


def pool_tokens(token_counts: np.ndarray, activation_counts: np.ndarray, features: np.ndarray,
                values: np.ndarray, d_sae: int) -> PooledStatistics:
    """Pool CSR token activations: ``token_counts[i]`` tokens for document i, ``activation_counts[t]``
    (feature, value) entries for token t, all in order."""
    n_docs = len(token_counts)
    document_of_entry = np.repeat(np.repeat(np.arange(n_docs), token_counts), activation_counts)
    key = document_of_entry.astype(np.int64) * d_sae + np.asarray(features, dtype=np.int64)
    order = np.argsort(key, kind="stable")
    key, vals = key[order], np.asarray(values)[order].astype(np.float32)
    starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]]) if key.size else np.zeros(0, np.int64)
    docs, feats = np.divmod(key[starts], d_sae)
    return PooledStatistics(
        indptr=np.r_[0, np.cumsum(np.bincount(docs, minlength=n_docs))].astype(np.int64),
        features=feats,
        max=np.maximum.reduceat(vals, starts) if key.size else np.zeros(0, np.float32),  # exact: a max of values
        sum=np.add.reduceat(vals, starts) if key.size else np.zeros(0, np.float32),
        count=np.diff(np.r_[starts, key.size]).astype(np.int32),
        n_tokens=np.asarray(token_counts, dtype=np.int64),
    )


def above_threshold(token_counts: np.ndarray, activation_counts: np.ndarray, features: np.ndarray,
                    values: np.ndarray, threshold: float, d_sae: int) -> PooledStatistics:
    """:func:`pool_tokens` over only the token activations above ``threshold``."""
    keep = np.asarray(values) > threshold
    token_of_entry = np.repeat(np.arange(len(activation_counts)), activation_counts)
    kept_counts = np.bincount(token_of_entry[keep], minlength=len(activation_counts))
    return pool_tokens(token_counts, kept_counts, np.asarray(features)[keep], np.asarray(values)[keep], d_sae)


@dataclass(frozen=True)
class Aggregation:
    """One way to turn a document's token activations into one value per feature."""

    name: str
    """What users pass as ``aggregation_method`` (or ``aggregation``)."""
    description: str
    """One line for documentation and error messages."""
    values: Callable[[PooledStatistics], np.ndarray]
    """The value of each pooled entry."""


AGGREGATIONS: dict[str, Aggregation] = {}


def aggregation(name: str, description: str):
    """Register ``values(statistics) -> one value per pooled entry`` as the aggregation ``name``."""
    def register(values: Callable[[PooledStatistics], np.ndarray]) -> Callable[[PooledStatistics], np.ndarray]:
        AGGREGATIONS[name] = Aggregation(name, description, values)
        return values
    return register


@aggregation("max", "the largest activation over the document's tokens")
def _max(stats: PooledStatistics) -> np.ndarray:
    return stats.max


@aggregation("mean", "the sum of the activations divided by the document's number of tokens")
def _mean(stats: PooledStatistics) -> np.ndarray:
    return stats.sum / np.repeat(np.maximum(stats.n_tokens, 1), np.diff(stats.indptr)).astype(np.float32)


@aggregation("sum", "the sum of the activations over the document's tokens")
def _sum(stats: PooledStatistics) -> np.ndarray:
    return stats.sum


@aggregation("binarize", "1 where the feature is active on any token of the document")
def _binarize(stats: PooledStatistics) -> np.ndarray:
    return np.ones(stats.features.size, dtype=np.float32)


@aggregation("count", "the number of the document's tokens where the feature is active")
def _count(stats: PooledStatistics) -> np.ndarray:
    return stats.count


def check_aggregation(name: str) -> Aggregation:
    """The registered aggregation ``name``, or an :class:`~interp_embed.validation.InvalidParameterError` listing
    them."""
    if name not in AGGREGATIONS:
        listed = "; ".join(f"{a.name!r}: {a.description}" for a in AGGREGATIONS.values())
        raise InvalidParameterError(f"aggregation {name!r} is not known; use one of {listed}")
    return AGGREGATIONS[name]


def aggregate(stats: PooledStatistics, name: str, d_sae: int) -> sp.csr_matrix:
    """The (documents × d_sae) float32 matrix of aggregation ``name`` over pooled statistics."""
    return stats.matrix(check_aggregation(name).values(stats), d_sae)
