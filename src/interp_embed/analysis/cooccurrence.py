"""Counting how many documents hold both features of every pair, one block of feature pairs at a time.

A block is the pairs (i, j > i) of the features i in [start, stop) against every later feature, as dense int64
counts. Rows of documents can be added to a block in any grouping — all at once in memory, or one row block of a
store after another (analysis/blockwise.py) — and the counts are the same integers.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp


@dataclass(frozen=True)
class FeatureOrder:
    """The entries of a binary document × feature CSR matrix (sorted indices) listed feature by feature."""

    colptr: np.ndarray
    """Feature f's entries are ``position[colptr[f]:colptr[f + 1]]``."""
    position: np.ndarray
    """Position of each entry in the matrix's ``indices``."""
    later: np.ndarray
    """How many later features the entry's document holds (the rest of its row)."""

    @classmethod
    def of(cls, S: sp.csr_matrix) -> "FeatureOrder":
        by_feature = sp.csr_matrix((np.arange(S.nnz, dtype=np.int64), S.indices, S.indptr), shape=S.shape).tocsc()
        position = by_feature.data
        return cls(by_feature.indptr, position, S.indptr[by_feature.indices + 1] - position - 1)


def feature_blocks(n_features: int, block_size: int, block_bytes: int) -> list[tuple[int, int]]:
    """The [start, stop) feature ranges of the blocks: at most ``block_size`` features and ``block_bytes`` of
    int64 counts each (one feature at least)."""
    blocks, start = [], 0
    while start < n_features:
        width = n_features - start
        stop = start + max(1, min(block_size, block_bytes // (8 * width), width))
        blocks.append((start, stop))
        start = stop
    return blocks


def add_pairs(S: sp.csr_matrix, order: FeatureOrder, start: int, stop: int, counts: np.ndarray,
              block_bytes: int) -> None:
    """Add to ``counts`` (the flat block of features [start, stop)) the pairs of the documents of ``S``.

    The features of a document that come after an entry are the rest of its row, so the pairs are enumerated
    from those row tails and counted with one ``bincount`` per slice of at most ``block_bytes / 32`` pairs
    (scipy's sparse product costs ~30 ns per co-occurrence here and builds a COO of every pair).
    """
    width = S.shape[1] - start
    item_limit = max(1, block_bytes // 32)  # four int64 arrays of enumerated pairs
    lo, hi = order.colptr[start], order.colptr[stop]
    if hi == lo:
        return
    row = np.repeat(np.arange(stop - start, dtype=np.int64) * width - start, np.diff(order.colptr[start:stop + 1]))
    later, position = order.later, order.position
    cum = np.cumsum(later[lo:hi])
    a = 0
    while a < hi - lo:  # entries a..b of the block enumerate at most item_limit pairs (or one entry's)
        b = max(a + 1, int(np.searchsorted(cum, (cum[a - 1] if a else 0) + item_limit, side="right")))
        k = later[lo + a:lo + b]
        first = np.cumsum(k) - k
        tail = np.repeat(position[lo + a:lo + b] + 1 - first, k) + np.arange(first[-1] + k[-1])
        counts += np.bincount(np.repeat(row[a:b], k) + S.indices[tail], minlength=counts.size)
        a = b
