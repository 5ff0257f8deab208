"""Analyses of stores larger than memory: the presence matrix read one chunk of rows at a time.

With ``memory_limit`` set, :func:`~interp_embed.analysis.diff.diff_features`,
:func:`~interp_embed.analysis.correlations.top_correlations` and
:func:`~interp_embed.analysis.association.associate_features` never hold a dataset's matrix: they read the
store's chunks memory-mapped, one block after another (each unmapped after use), and add up the statistics they
need — per-feature document counts, co-occurrence counts of feature pairs, sums of the target over the documents
of each feature. Those are sums of integers, so the results are the in-memory ones exactly (sums of a numeric
target are added in store order, so they agree to rounding). Co-occurrence counts that do not fit the bound are
made in several passes over the store, one block of feature pairs per pass. Reading the store block by block is
the store's own work (:class:`~interp_embed.store.reading.StoredRows`); the statistics are summed here.
"""
from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import scipy.sparse as sp

from .cooccurrence import FeatureOrder, add_pairs, feature_blocks
from .inputs import presence
from ..store.pooling import aggregate
from ..store.reading import BLOCK_SHARE, StoredRows
from ..validation import InvalidParameterError


def check_blockwise(ds, limit: int | None) -> int | None:
    """``limit`` (a ``memory_limit`` in bytes, checked by :class:`~interp_embed.validation.MemorySize`), after
    checking that ``ds`` is a dataset over a store (its ``stored`` rows), which the blockwise analyses read."""
    if limit is not None and not isinstance(getattr(ds, "stored", None), StoredRows):
        raise InvalidParameterError(f"memory_limit needs an interp_embed Dataset (whose store is read block by block), "
                                    f"not a {type(ds).__name__}; leave memory_limit=None to analyse it in memory.")
    return limit


class PresenceBlocks:
    """The presence matrix (see :func:`~interp_embed.analysis.inputs.presence`) of the encoded rows of one or
    more datasets, read block by block from their stores and never held whole.

    Its rows are those the in-memory analyses use (each encoded row of a dataset as many times as the dataset
    shows it), in store order rather than the dataset's: every statistic summed here ignores the order.
    """

    def __init__(self, sources: list[tuple[StoredRows, np.ndarray]], aggregation: str, activated_threshold: float,
                 memory_limit: int, d_sae: int):
        self.sources, self.aggregation, self.threshold = sources, aggregation, activated_threshold
        self.memory_limit, self.d_sae = memory_limit, d_sae
        self.counts = np.zeros(d_sae, dtype=np.int64)
        n = 0
        for P in self.blocks():
            self.counts += np.bincount(P.indices, minlength=d_sae)
            n += P.shape[0]
        self.shape = (n, d_sae)

    @classmethod
    def of(cls, ds, name: str, aggregation: str, activated_threshold: float, memory_limit: int) -> "PresenceBlocks":
        """The presence blocks of ``ds`` (named ``name`` in errors); a ValueError if it has no encoded row."""
        blocks = cls.of_rows(ds.stored, aggregation, activated_threshold, memory_limit)
        if blocks.shape[0] == 0:
            raise ValueError(f"{name} has no encoded documents; encode it first (the analyses skip rows not encoded).")
        return blocks

    @classmethod
    def of_rows(cls, stored: StoredRows, aggregation: str, activated_threshold: float,
                memory_limit: int) -> "PresenceBlocks":
        """The presence blocks of the encoded ones among ``stored.rows`` (a row listed twice counts twice)."""
        multiplicity = np.bincount(stored.rows, minlength=stored.n_documents).astype(np.int32)
        return cls([(stored, multiplicity)], aggregation, activated_threshold, memory_limit,
                   stored.d_sae)

    @classmethod
    def stack(cls, parts: list["PresenceBlocks"]) -> "PresenceBlocks":
        """The rows of ``parts`` one after another (their counts added, nothing read again)."""
        stacked = cls.__new__(cls)
        stacked.sources = [source for part in parts for source in part.sources]
        stacked.aggregation, stacked.threshold = parts[0].aggregation, parts[0].threshold
        stacked.memory_limit, stacked.d_sae = parts[0].memory_limit, parts[0].d_sae
        stacked.counts = sum(part.counts for part in parts)
        stacked.shape = (sum(part.shape[0] for part in parts), parts[0].d_sae)
        return stacked

    def row_blocks(self) -> Iterator[tuple[np.ndarray, np.ndarray, sp.csr_matrix]]:
        """``(store rows, times each is shown, their presence)`` one block at a time: the encoded rows of the
        sources that their datasets show, each once."""
        for stored, multiplicity in self.sources:
            for rows, stats in stored.blocks(self.memory_limit):
                keep = np.flatnonzero((multiplicity[rows] > 0) & (stats.n_tokens > 0))
                P = presence(aggregate(stats, self.aggregation, self.d_sae)[keep], self.threshold)
                yield rows[keep], multiplicity[rows[keep]], P

    def blocks(self, columns: np.ndarray | None = None) -> Iterator[sp.csr_matrix]:
        """The presence matrix one block of rows at a time, each row as many times as its dataset shows it (only
        ``columns``, in that order, when given; sorted indices either way)."""
        for rows, times, P in self.row_blocks():
            if (times > 1).any():
                P = P[np.repeat(np.arange(len(rows)), times)]
            if columns is not None:
                P = P[:, columns].tocsr()
                P.sort_indices()
            yield P

    def column_sums(self, values: np.ndarray) -> np.ndarray:
        """Per feature, the sum of ``values`` (one per store row) over the rows where it is present, each row
        counted as many times as its dataset shows it."""
        total = np.zeros(self.d_sae)
        for rows, times, P in self.row_blocks():
            total += P.T @ (values[rows] * times)
        return total

    def co_occurrence_blocks(self, features: np.ndarray, block_size: int, block_bytes: int):
        """As :func:`~interp_embed.analysis.correlations._co_occurrence_blocks` over the columns ``features``:
        one pass over the store per block of feature pairs."""
        F = len(features)
        for start, stop in feature_blocks(F, block_size, block_bytes):
            counts = np.zeros((stop - start) * (F - start), dtype=np.int64)
            for S in self.blocks(features):
                add_pairs(S, FeatureOrder.of(S), start, stop, counts, block_bytes)
            yield start, counts.reshape(stop - start, F - start)

    def overlaps(self, features: np.ndarray, scores: np.ndarray | None = None) -> "BlockOverlaps":
        """Shared documents of ``features`` (see grouping.group_features), counted block by block; ``scores`` (one
        per row, in the order of :meth:`blocks`) are summed too."""
        return BlockOverlaps(self, np.asarray(features, dtype=np.int64), scores)


class BlockOverlaps:
    """How many documents each of a few leading features shares with each of ``features`` (and the sums of those
    documents' scores): what grouping reads, computed for a batch of leaders per pass over the store."""

    def __init__(self, blocks: PresenceBlocks, features: np.ndarray, scores: np.ndarray | None = None):
        self.blocks, self.features, self.scores = blocks, features, scores
        self.size = blocks.counts[features]
        self.batch = max(1, blocks.memory_limit // BLOCK_SHARE // (8 * max(features.size, 1) * (1 if scores is None
                                                                                               else 2)))
        if scores is not None:
            self.score_totals = np.zeros(features.size)
            for P, s in self._scored_blocks():
                self.score_totals += P.T @ s

    def _scored_blocks(self):
        """Each block of the features' columns with the scores of its rows."""
        start = 0
        for P in self.blocks.blocks(self.features):
            yield P, self.scores[start:start + P.shape[0]]
            start += P.shape[0]

    def shared(self, leaders: np.ndarray) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
        """(len(leaders), len(features)) int64: documents holding both ``features[leader]`` and each feature; with
        scores, also the sums of those documents' scores and, per leader, of its documents' squared scores."""
        out = np.zeros((len(leaders), self.features.size), dtype=np.int64)
        if self.scores is None:
            for P in self.blocks.blocks(self.features):
                out += (P[:, leaders].T.astype(np.int64) @ P).toarray()
            return out, None, None
        sums, squares = np.zeros(out.shape), np.zeros(len(leaders))
        for P, s in self._scored_blocks():
            lead = P[:, leaders].T.tocsr()
            out += (lead.astype(np.int64) @ P).toarray()
            sums += (lead.multiply(s[None, :]).tocsr() @ P).toarray()
            squares += lead @ np.square(s)
        return out, sums, squares


class GatheredRows:
    """The presence rows of chosen documents, gathered from the blocks on demand: ``rows[i]`` is document i's
    store row, and ``gathered[[i, j, ...]]`` is the CSR matrix of those documents in that order (one pass)."""

    def __init__(self, blocks: PresenceBlocks, rows: np.ndarray):
        self.blocks, self.rows = blocks, np.asarray(rows, dtype=np.int64)
        self.shape = (len(self.rows), blocks.d_sae)

    def __getitem__(self, index) -> sp.csr_matrix:
        wanted = self.rows[index]
        order = np.argsort(wanted, kind="stable")
        ranked = wanted[order]
        parts, where = [], []
        for rows, _, P in self.blocks.row_blocks():
            lo, hi = np.searchsorted(ranked, [rows[0], rows[-1] + 1]) if rows.size else (0, 0)
            if hi > lo:
                parts.append(P[np.searchsorted(rows, ranked[lo:hi])])
                where.append(order[lo:hi])
        if not parts:
            return sp.csr_matrix((0, self.shape[1]), dtype=np.int32)
        gathered = sp.vstack(parts, format="csr")
        back = np.empty(len(wanted), dtype=np.int64)
        back[np.concatenate(where)] = np.arange(len(wanted))
        return gathered[back]
