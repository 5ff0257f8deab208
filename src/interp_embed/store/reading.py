"""The rows a dataset shows, read from its store: the one door through which analyses, labelling, describe, the
report and the CLI reach a dataset's store (never its private attributes).

Out-of-core reading lives here: a pass over the store reads its chunks memory-mapped, one block after another
(each unmapped after use), so an analysis with a ``memory_limit`` never holds a dataset's matrix, and
``latents()`` builds a matrix larger than the bound on disk (:meth:`StoredRows.latents_on_disk`).
"""
from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ..files import TEMPORARY_PREFIX
from .labels import DatasetLabels, LabelRecord
from .checks import POOLED
from .manifest import EncoderRecord, Manifest
from .pooling import PooledStatistics, aggregate
from .store import Store

BLOCK_SHARE = 4
"""Reading a block may use 1/BLOCK_SHARE of the memory limit; the statistics being summed use the rest."""
BYTES_PER_ENTRY = 64
"""Working memory per pooled entry of a block being read, an upper estimate: the structural check's int64 copies
(24 bytes), the float32 values and sums (8), the presence matrix (8), and their temporaries."""
MATERIALISED_BYTES_PER_ENTRY = 32
"""Peak memory per pooled entry of the store while ``latents()`` builds a matrix in memory: the statistics of
every row (16 bytes) and the aggregated CSR matrix (8), with its row selection. A matrix that would take more
than ``memory_limit`` is built on disk instead (:meth:`StoredRows.latents_on_disk`)."""


class StoredRows:
    """Rows of one store (``rows``, in a dataset's order; a row may appear twice) and what may be read from, or
    added to, that store: blocks of pooled statistics within a memory bound, the labels kept in it.

    ``Dataset.stored`` gives a dataset's; :meth:`with_rows` the same store with other rows.
    """

    def __init__(self, store: Store, rows: np.ndarray):
        self._store = store
        self.rows = np.asarray(rows, dtype=np.int64)
        """Each shown document's row in the store."""

    def with_rows(self, rows: np.ndarray) -> "StoredRows":
        """The same store showing ``rows`` instead."""
        return StoredRows(self._store, rows)

    @property
    def path(self) -> Path:
        return self._store.path

    @property
    def n_documents(self) -> int:
        """Rows in the whole store (shown here or not)."""
        return self._store.n_documents

    @property
    def d_sae(self) -> int:
        return self._store.d_sae

    @property
    def encoder(self) -> EncoderRecord:
        return self._store.encoder

    @property
    def manifest(self) -> Manifest:
        """The store's committed chunks and what encoded them, as its manifest records."""
        return self._store.manifest

    @property
    def skipped(self) -> dict[int, str]:
        """Store rows skipped when encoding, with the reason."""
        return self._store.skipped

    # Reading block by block.
    @staticmethod
    def max_entries(memory_limit: int) -> int:
        """The most pooled entries one block may hold under ``memory_limit`` bytes."""
        return memory_limit // BLOCK_SHARE // BYTES_PER_ENTRY

    def blocks(self, memory_limit: int) -> Iterator[tuple[np.ndarray, PooledStatistics]]:
        """``(store rows, their pooled statistics)`` one chunk of the whole store at a time, in row order, within
        ``memory_limit`` (a ValueError naming a chunk too large for it)."""
        return self._store.pooled_blocks(self.max_entries(memory_limit))

    def fits_in_memory(self, memory_limit: int | None) -> bool:
        """Whether building these rows' latents in memory stays within ``memory_limit`` (always, without one)."""
        if memory_limit is None:
            return True
        entries = sum(c.pooled_entries for c in self._store.manifest.chunks)
        return entries * MATERIALISED_BYTES_PER_ENTRY + 8 * self.n_documents <= memory_limit

    def latents_on_disk(self, aggregation: str, memory_limit: int) -> sp.csr_matrix:
        """These rows' latents (``aggregation``-pooled) as a CSR matrix whose values and feature ids are
        memory-mapped files, filled one chunk of the store at a time: it takes its size on disk, and in memory
        only the pages being read.

        The files are made in a temporary folder inside the store (on the disk that holds the store, sized for
        this data) and unlinked as soon as they are mapped, so they disappear with the matrix and nothing is left
        behind.
        """
        rows, d_sae = self.rows, self.d_sae
        per_row = np.zeros(self.n_documents, dtype=np.int64)
        for block_rows, stats in self.blocks(memory_limit):
            per_row[block_rows] = np.diff(stats.indptr)
        indptr = np.r_[0, np.cumsum(per_row[rows])]
        # scipy keeps arrays it is given only when indices and indptr share a dtype it would choose itself.
        index_dtype = np.int32 if indptr[-1] < 2**31 else np.int64
        folder = Path(tempfile.mkdtemp(dir=self.path, prefix=f"{TEMPORARY_PREFIX}latents-"))
        try:
            data = np.lib.format.open_memmap(folder / "data.npy", mode="w+", dtype=np.float32,
                                             shape=(int(indptr[-1]),))
            indices = np.lib.format.open_memmap(folder / "indices.npy", mode="w+", dtype=index_dtype,
                                                shape=(int(indptr[-1]),))
        finally:
            shutil.rmtree(folder)  # the mappings keep the files' space until the matrix is freed
        order = np.argsort(rows, kind="stable")  # the shown positions, by store row
        by_row = rows[order]
        for block_rows, stats in self.blocks(memory_limit):
            if not len(block_rows):  # a chunk whose rows were all skipped
                continue
            lo, hi = np.searchsorted(by_row, block_rows[0], "left"), np.searchsorted(by_row, block_rows[-1], "right")
            local = np.searchsorted(block_rows, by_row[lo:hi])
            encoded = block_rows[np.minimum(local, len(block_rows) - 1)] == by_row[lo:hi]
            positions, part = order[lo:hi][encoded], aggregate(stats, aggregation, d_sae)[local[encoded]]
            counts = np.diff(part.indptr)
            destination = np.repeat(indptr[positions] - part.indptr[:-1], counts) + np.arange(part.nnz)
            data[destination], indices[destination] = part.data, part.indices
        matrix = sp.csr_matrix((data, indices, indptr.astype(index_dtype)), shape=(len(rows), d_sae), copy=False)
        matrix.has_sorted_indices = True  # each row's ids come ascending from its chunk; checking would read them all
        return matrix

    def encoded_positions(self, memory_limit: int) -> np.ndarray:
        """Positions (in ``rows``) of the encoded rows, read chunk by chunk."""
        encoded = np.zeros(self.n_documents, dtype=bool)
        for block_rows, stats in self.blocks(memory_limit):
            encoded[block_rows[stats.n_tokens > 0]] = True
        return np.flatnonzero(encoded[self.rows])

    def n_tokens(self) -> np.ndarray:
        """Tokens read in each shown row (0 for one not encoded)."""
        return self._store.pooled().n_tokens[self.rows]

    # Texts and labels.
    def require_tokens(self, what: str) -> None:
        """Refuse ``what`` on a compact store (pooled activations only), saying why (a StoreError)."""
        self._store.require_tokens(what)

    def all_texts(self) -> pd.Series:
        """The text of every row of the store (not only the shown ones), by store row."""
        return self._store.documents()[self._store.field]

    def label_records(self) -> list[LabelRecord]:
        """Every label written after encoding, oldest first."""
        return self._store.label_records()

    def dataset_labels(self) -> list[DatasetLabels]:
        """The files of labels written from the dataset's own words, oldest first."""
        return self._store.dataset_labels()

    def add_label(self, record: LabelRecord) -> None:
        """Keep ``record`` in the store (durably, at once); it becomes its feature's label."""
        self._store.add_label(record)

    def add_dataset_labels(self, labels: DatasetLabels) -> None:
        """Keep ``labels`` in the store (durably, at once, in one file)."""
        self._store.add_dataset_labels(labels)

    def writing(self) -> AbstractContextManager:
        """The store's writer lock, held for a block (a StoreLockedError naming the writer, if another holds it)."""
        return self._store.writing()


def mode_sizes(store: Store) -> tuple[int, int]:
    """Bytes of ``store``'s chunks with token-level arrays and without (compact), from its own arrays.

    The compact size is that of the pooled arrays every chunk holds. A compact store's token-level size is
    estimated: each token activation (the pooled counts add up to their number) takes a feature id of the
    width the chunks use and a float16 value, and each token an id, a character span and an activation count
    (8 bytes, the widths of a typical store of short documents).
    """
    chunks = store.manifest.chunks
    compact = sum(r.bytes or 0 for c in chunks for name, r in c.files.items() if name[:-len(".npy")] in POOLED)
    if store.plan.token_level:
        return sum(c.bytes for c in chunks), compact
    activations = feature_bytes = 0
    for chunk in store.chunks():
        stats = chunk.pooled()
        activations += int(np.sum(stats.count, dtype=np.int64))
        feature_bytes = chunk.array("pool_features").dtype.itemsize
        chunk.release()
    return compact + activations * (feature_bytes + 2) + 8 * sum(c.n_tokens for c in chunks), compact
