"""The on-disk dataset: a folder with a self-checksummed manifest, the documents table and committed chunks.

Layout::

    my_dataset.iembed/
      manifest.json          {"body": {...}, "sha256": <hash of body>} (see manifest.py); rewritten atomically per commit
      documents.parquet      every row and metadata column of the user's table
      feature_labels.json    {feature id: label} copied from the SAE (optional)
      labels/<sha256>.json   labels written later (LLM or user), one file each, named by its checksum (labels.py)
      columns/<sha256>.parquet  a column added after encoding (add_column), one file each, named by its checksum
      chunks/<start>-<stop>/ one folder of .npy arrays per committed range of rows (see chunk.py)

A new store is written under a temporary name and renamed into place once its manifest exists, by a rename that
never replaces anything; a store copied or replaced appears whole the same way (placing.py). Commit
protocol: one writer at a time holds ``.lock`` (``Store.writing()``, lock.py); a chunk folder is written under a
temporary name, fsynced and renamed; then the manifest, which lists every committed chunk with the
checksum of each file, is replaced atomically. Anything not in the manifest is a leftover of a crash: it
is ignored, and removed by the next writer. Opening a store reads the manifest only; the documents table is checked against it on first use.

A store may come from someone else, so it is read as data and never trusted: no link inside it is
followed (paths.py), every file is checked against its recorded size and checksum before its data is
used, and every array's structure is checked before use (checks.py). Whatever is wrong is a
``StoreCorruptError`` naming the file. Nothing here imports torch: a saved store is analysed without
the model.

What writes a store (creating one, committing, adding a column, copying and combining rows) is in writing.py;
the methods of :class:`Store` that do it call it.
"""
from __future__ import annotations

import bisect
import json
import shlex
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import scipy.sparse as sp

from ..spec.plan import ChunkCutter, EncodePlan
from ..files import ADDED_COLUMNS, CHUNKS, DOCUMENTS, FEATURE_LABELS, LABEL_RECORDS, MANIFEST, TABLE_SUFFIXES, sha256_file
from ..validation import with_command_line
from . import writing as write  # the write side (writing.py); `writing()` below is the writer lock
from .chunk import Chunk, EncodedDocument
from .columns import added_column_file, read_added_column
from .documents import DocumentTexts, check_row_count
from .errors import StoreCorruptError, StoreError
from .labels import DatasetLabels, LabelRecord, read_labels, write_dataset_labels, write_record
from .lock import writer_lock
from .manifest import ChunkEntry, EncoderRecord, FileRecord, Manifest
from .paths import plain_file, plain_folder
from .pooling import PooledStatistics, aggregate
from .words import FeatureWords, WordIndex, document_words, feature_words


KEPT_WORD_SETS = 4  # feature words of this many sets of rows are kept (a diff reads two, its union a third)

READ_ONCE = frozenset({"n_documents", "_texts", "_chunk_ranges"})
"""The cached views of a store that :meth:`Store._forget` keeps: they are read from the documents table, written
once with the store and never changed (a column added later is a file of its own). Keeping them spares encoding a
new check of the whole table after each chunk it commits."""


class Store:
    """A dataset folder on disk. Create it with :meth:`create`, open it with :meth:`open`; write to it only
    inside ``with store.writing():``.

    What is read from the store's files is kept (each a ``cached_property``) until :meth:`_forget` drops it.

    >>> store = Store.open("greetings.iembed")   # doctest: +SKIP
    >>> store.latents("max").shape               # doctest: +SKIP
    (3, 8192)
    """

    def __init__(self, path: Path, manifest: Manifest):
        self.path = path
        self.manifest = manifest
        self._writers = 0  # depth of nested writing() blocks in this object

    # ---- creation and opening -------------------------------------------------------------------
    @classmethod
    def create(cls, path: str | Path, documents: pd.DataFrame, field: str, encoder: EncoderRecord, plan: EncodePlan,
               skipped: dict[int, str], labels: dict[int, str] | None, dataset_description: str = "") -> "Store":
        """Write a new, empty store (documents table, labels, manifest) and return it.

        It is built under a temporary name and appears at ``path`` whole, manifest included, so a kill or
        a full disk never leaves a half-made store. ``path`` must not exist, or be an empty folder; if another
        process makes a store there first, this one is a ``FileExistsError`` naming it (see placing.py).
        """
        return write.create(cls, Path(path), documents, field, encoder, plan, skipped, labels, dataset_description)

    @classmethod
    def create_from_batches(cls, path: str | Path, schema: pa.Schema,
                            batches: Iterable[tuple[pa.RecordBatch | pa.Table, dict[int, str]]], field: str,
                            encoder: EncoderRecord, plan: EncodePlan, labels: dict[int, str] | None,
                            dataset_description: str = "") -> "Store":
        """:meth:`create` for a table that arrives in batches of rows, each with its rows to skip (``{row in the
        table: why}``): the documents table is written a batch at a time and is never whole in memory.

        Whatever the batches raise (a check that refuses a bad row) leaves nothing at ``path``.
        """
        return write.create_from_batches(cls, Path(path), schema, batches, field, encoder, plan, labels,
                                         dataset_description)

    @classmethod
    def open(cls, path: str | Path) -> "Store":
        """Open a store by reading its manifest only; no array is read until it is needed."""
        path = Path(path)
        if path.is_file() and path.suffix.lower() in TABLE_SUFFIXES:
            store = str(path.with_suffix(".iembed"))
            raise with_command_line(
                StoreError(f"{path} is a table of documents, not an interp_embed store (a folder with {MANIFEST}): "
                           f"encode it first, e.g. Dataset(table, save_path={store!r}), and open the store."),
                f"{path} is a table of documents, not an interp_embed store: encode it first with "
                f"`interp-embed encode {shlex.quote(str(path))} --out {shlex.quote(store)}`, then use {store}.")
        if path.is_file():
            raise StoreError(
                f"{path} is a file, not an interp_embed store (a folder with {MANIFEST}). Pickle files of the "
                "original interp_embed are never loaded, because unpickling can run arbitrary code: "
                "re-encode the documents with Dataset(..., save_path=...)."
            )
        manifest = path / MANIFEST
        if not (manifest.exists() or manifest.is_symlink()):
            raise StoreError(f"{path} is not an interp_embed store: {manifest} is missing")
        return cls(path, Manifest.from_bytes(plain_file(manifest).read_bytes(), manifest))

    # ---- writing --------------------------------------------------------------------------------
    @contextmanager
    def writing(self) -> Iterator["Store"]:
        """Hold the store's writer lock for the block: one writer at a time, across processes.

        A second writer gets a ``StoreLockedError`` naming the holder's process; readers never wait. On
        entry the manifest is read again (another writer may have committed since this store was opened)
        and leftovers of crashed writers are removed. The lock is released when the block ends or the
        process dies.
        """
        if self._writers:  # already held by this object
            self._writers += 1
            try:
                yield self
            finally:
                self._writers -= 1
            return
        plain_folder(self.path)
        with writer_lock(self.path):
            try:
                self._writers = 1
                self._reload()
                write.remove_leftovers(self.path, self.manifest)
                yield self
            finally:
                self._writers = 0

    def _reload(self) -> None:
        """Read the manifest again, and forget what was read: another writer may have changed anything."""
        self.manifest = Store.open(self.path).manifest
        self._forget()

    def _forget(self, labels_only: bool = False) -> None:
        """Drop every cached view of what a writer changes (the chunks, the added columns, the labels; all but
        :data:`READ_ONCE`): each is read again when next used. With ``labels_only``, the labels alone: a label
        this object wrote changes nothing else, and keeping the chunks spares checking their files again."""
        forgotten = [Store._labels.attrname] if labels_only else [
            name for name, value in vars(Store).items() if isinstance(value, cached_property) and name not in READ_ONCE]
        for name in forgotten:
            self.__dict__.pop(name, None)

    def commit_chunk(self, start: int, stop: int, docs: list[EncodedDocument]) -> None:
        """Durably add the encoded documents of rows [start, stop) (skipped rows simply absent)."""
        write.commit_chunk(self, start, stop, docs)

    def commit_pooled(self, start: int, stop: int, rows: np.ndarray, n_tokens: np.ndarray,
                      pooled: PooledStatistics) -> None:
        """Durably add rows [start, stop) of a compact store from pooled statistics made elsewhere (one document
        per entry of ``rows``, ascending, with ``n_tokens`` tokens each), written as :meth:`commit_chunk` writes
        them; structure is checked when they are read, as for any chunk."""
        write.commit_pooled(self, start, stop, rows, n_tokens, pooled)

    def commit_written_chunk(self, entry: ChunkEntry) -> None:
        """Durably add a chunk that another process wrote into ``chunks/`` with :func:`~.chunk.write_chunk` (a Ray
        worker, see encode/distributed.py), once every file of it matches ``entry``: a folder that is incomplete,
        altered or written for other rows is a ``StoreCorruptError`` and is not committed."""
        write.commit_written_chunk(self, entry)

    def set_description(self, text: str) -> None:
        """Record what the dataset is (kept in the manifest)."""
        write.set_description(self, text)

    def add_column(self, name: str, values: pd.Series, overwrite: bool = False) -> None:
        """Keep ``values`` (one per row, in row order) as the documents table's column ``name``, durably and at once;
        the activations are not touched. A column that exists (from the encoded table or added) is replaced only
        with ``overwrite``; the text column never is.

        The values go to a file of their own, named by its checksum, and the manifest, rewritten atomically, lists
        it: a crash at any moment leaves the table as it was or with the column, never a mismatch (what a crash
        leaves unlisted is removed by the next writer)."""
        write.add_column(self, name, values, overwrite)

    def add_label(self, record: LabelRecord) -> None:
        """Keep ``record`` (durably, at once); it becomes its feature's label."""
        with self.writing():
            write_record(self.path / LABEL_RECORDS, record, self.d_sae)
        self._forget(labels_only=True)

    def add_dataset_labels(self, labels: DatasetLabels) -> None:
        """Keep ``labels`` (durably, at once, in one file); they become their features' labels."""
        with self.writing():
            write_dataset_labels(self.path / LABEL_RECORDS, labels, self.d_sae)
        self._forget(labels_only=True)

    def copy_rows(self, rows: np.ndarray, path: str | Path, overwrite: bool = False) -> "Store":
        """A new store at ``path`` holding ``rows`` of this one, in that order, with their activations; with
        ``overwrite`` it replaces the store at ``path``, whole (see placing.py).

        The whole store is copied file by file — only the files its manifest lists, each checked first,
        never through a link. A subset is written as :meth:`combine` writes it.
        """
        write.copy_rows(self, rows, Path(path), overwrite)
        return Store.open(path)

    @classmethod
    def combine(cls, parts: list[tuple["Store", np.ndarray]], path: str | Path, overwrite: bool = False) -> "Store":
        """A new store at ``path`` holding, in order, the given rows of each store, with their activations; with
        ``overwrite`` it replaces the store at ``path``. It appears there whole, once every chunk is copied: a kill
        or a full disk on the way leaves nothing at ``path`` (see placing.py).

        The stores must share one encoder and text field (the caller checks); the documents tables are
        stacked (a column that one lacks is missing in its rows), the feature labels and plan are the first
        store's. The rows are cut into chunks by that plan, exactly as encoding them anew would cut them; a
        chunk is copied when every row of it that can be encoded has activations, and is left pending (to be
        encoded by ``resume``) otherwise.
        """
        write.combine(cls, parts, Path(path), overwrite)
        return cls.open(path)

    # ---- reading --------------------------------------------------------------------------------
    @property
    def field(self) -> str:
        return self.manifest.field

    @property
    def d_sae(self) -> int:
        return self.manifest.d_sae

    @cached_property
    def n_documents(self) -> int:
        """Rows of the documents table; checked against the table's bytes on first use (see
        documents.check_row_count), because arrays are sized by it and a manifest could claim billions."""
        check_row_count(self._verified(DOCUMENTS, self.manifest.documents), self.field, self.manifest.n_documents)
        return self.manifest.n_documents

    @property
    def skipped(self) -> dict[int, str]:
        return self.manifest.skipped

    @property
    def encoder(self) -> EncoderRecord:
        return self.manifest.encoder

    @property
    def plan(self) -> EncodePlan:
        return self.manifest.plan

    @property
    def dataset_description(self) -> str:
        return self.manifest.dataset_description

    def chunks(self) -> list[Chunk]:
        """The committed chunks, in row order."""
        return self._chunks

    @cached_property
    def _chunks(self) -> list[Chunk]:
        # One object per chunk for the store's life: each checks its files' checksums once, when first read.
        folder = plain_folder(self.path / CHUNKS)
        return [Chunk(plain_folder(folder / entry.name), entry, self.d_sae) for entry in self.manifest.chunks]

    def pending_rows(self) -> np.ndarray:
        """Rows neither in a committed chunk nor skipped: exactly what ``resume`` still has to encode."""
        todo = np.ones(self.n_documents, dtype=bool)
        for entry in self.manifest.chunks:
            todo[entry.start : entry.stop] = False
        todo[list(self.skipped)] = False
        return np.flatnonzero(todo)

    def is_complete(self) -> bool:
        return self.pending_rows().size == 0

    def pending_chunks(self) -> list[tuple[int, int]]:
        """The [start, stop) ranges of the plan's chunks not committed yet, in order."""
        ranges = self.chunk_ranges()
        committed = {(e.start, e.stop) for e in self.manifest.chunks}
        unknown = committed - set(ranges)
        if unknown:
            raise StoreError(f"{self.path}: committed chunks {sorted(unknown)[:3]} do not match the chunk plan of "
                             "its documents; the documents table was changed after the chunks were written")
        return [r for r in ranges if r not in committed]

    def chunk_ranges(self) -> list[tuple[int, int]]:
        """Every [start, stop) range of rows the plan cuts, committed or not; from the text column read a batch at
        a time, once per store object (a store just created knows them from writing its table)."""
        return self._chunk_ranges

    @cached_property
    def _chunk_ranges(self) -> list[tuple[int, int]]:
        cutter = ChunkCutter(self.plan)
        for texts in self._texts.batches():
            cutter.add(texts)
        return cutter.ranges()

    def encoded_mask(self) -> np.ndarray:
        """True for rows with activations: every encoded row has at least one token (empty texts are skipped)."""
        return self.pooled().n_tokens > 0

    def _verified(self, name: str, record: FileRecord) -> Path:
        path = plain_file(self.path / name)
        if record.bytes is not None and path.stat().st_size != record.bytes:
            raise StoreCorruptError(f"{path} has {path.stat().st_size} bytes; the manifest says {record.bytes}")
        if sha256_file(path) != record.sha256:
            raise StoreCorruptError(f"{path} does not match its checksum (truncated or altered)")
        return path

    def documents(self) -> pd.DataFrame:
        """The user's table as given (index and every column) with the columns added since (:meth:`add_column`),
        read once and verified."""
        return self._documents

    @cached_property
    def _documents(self) -> pd.DataFrame:
        n_documents = self.n_documents  # checked before the table is read
        path = self.path / DOCUMENTS
        try:
            documents = pq.read_table(path).to_pandas()
        # The table's pandas metadata (index, column types) is data of the file, however crafted.
        except (pa.ArrowException, OSError, ValueError, KeyError, TypeError, IndexError, AttributeError,
                RecursionError) as err:
            raise StoreCorruptError(f"{path}: not a readable Parquet file, or its pandas metadata is damaged "
                                    f"({type(err).__name__}: {str(err)[:200]})") from err
        if len(documents) != n_documents or self.field not in documents.columns:
            raise StoreCorruptError(f"{path} does not hold the manifest's {n_documents} rows with the text "
                                    f"column {self.field!r}")
        for column in self.manifest.columns:
            file = self._verified(f"{ADDED_COLUMNS}/{added_column_file(column)}", column.file)
            documents[column.name] = read_added_column(file, column.name, n_documents).set_axis(documents.index)
        return documents

    def texts(self, start: int, stop: int) -> list:
        """The texts of rows [start, stop) (None where a skipped row has none), reading only the row groups of
        the documents table that hold them."""
        return self._texts.between(start, stop)

    @cached_property
    def _texts(self) -> DocumentTexts:
        # One reader for the store's life: it keeps the row group read last (encoding reads consecutive rows).
        self.n_documents  # the table's row count is checked before it is read
        return DocumentTexts(self.path / DOCUMENTS, self.field)

    def feature_labels(self) -> dict[int, str]:
        """Each feature's newest label: a label written later (LLM or user) over the one shipped with the SAE."""
        labels = self.shipped_labels()
        labels.update({r.feature: r.label for r in self.label_records()})  # oldest first: the newest wins
        return labels

    def label_records(self) -> list[LabelRecord]:
        """Every label written after encoding (see labels.py), oldest first; read once per store object."""
        return list(self._labels[0])

    def dataset_labels(self) -> list[DatasetLabels]:
        """The files of labels written from the dataset's own words (see labels.py), oldest first."""
        return list(self._labels[1])

    @cached_property
    def _labels(self) -> tuple[list[LabelRecord], list[DatasetLabels]]:
        return read_labels(self.path / LABEL_RECORDS, self.d_sae)

    def shipped_labels(self) -> dict[int, str]:
        """The labels that came with the SAE ({} if none)."""
        if self.manifest.labels is None:
            return {}
        path = self._verified(FEATURE_LABELS, self.manifest.labels)
        try:
            labels = {int(k): str(v) for k, v in json.loads(path.read_text("utf-8")).items()}
        except (UnicodeDecodeError, json.JSONDecodeError, ValueError, AttributeError, RecursionError) as err:
            raise StoreCorruptError(f"{path}: not a label file ({type(err).__name__})") from err
        outside = sorted(f for f in labels if not 0 <= f < self.d_sae)
        if outside:
            raise StoreCorruptError(f"{path}: labels of features {outside[:5]} (of {len(outside)}) outside the SAE's "
                                    f"{self.d_sae} features (ids 0 to {self.d_sae - 1})")
        return labels

    def pooled(self, activated_threshold: float = 0.0) -> PooledStatistics:
        """Pooled statistics of every row (see pooling.py): the stored ones, or at a threshold > 0 those of
        the token activations above it, pooled again from the token level."""
        n_documents = self.n_documents  # checked before any chunk is read
        if activated_threshold > 0:
            self.require_tokens("activated_threshold > 0 (a threshold on token activations)")
            parts = [(c.rows, c.pooled_above(activated_threshold)) for c in self.chunks()]
            return PooledStatistics.concatenate(parts, n_documents)
        return self._pooled

    @cached_property
    def _pooled(self) -> PooledStatistics:
        # Every analysis starts from these; concatenating the chunks' statistics reads every chunk.
        return PooledStatistics.concatenate([(c.rows, c.pooled()) for c in self.chunks()], self.n_documents)

    def latents(self, aggregation: str = "max", activated_threshold: float = 0.0) -> sp.csr_matrix:
        """The (n_documents × d_sae) float32 matrix of an aggregation (see pooling.AGGREGATIONS), all rows."""
        return aggregate(self.pooled(activated_threshold), aggregation, self.d_sae)

    def feature_words(self, rows: np.ndarray | None = None) -> FeatureWords:
        """The words each feature fires on strongly (see words.py) in the encoded rows among ``rows`` (ascending
        positions; None for every row). Each chunk's words are read from the token level once per store object;
        the last few results are kept."""
        self.require_tokens("feature_words (the words each feature fires on, read from every token)")
        key = None if rows is None else np.asarray(rows, dtype=np.int64).tobytes()
        if key not in self._feature_words:
            pooled = self.latents("max")
            counted = pooled if rows is None else pooled[rows]
            peak = counted.max(axis=0).toarray().ravel() if counted.shape[0] else np.zeros(self.d_sae, np.float32)
            found = feature_words(self.chunks(), lambda c: self.texts(c.entry.start, c.entry.stop), self._word_index,
                                  peak, self.d_sae, rows)
            if len(self._feature_words) >= KEPT_WORD_SETS:
                self._feature_words.pop(next(iter(self._feature_words)))
            self._feature_words[key] = found
        return self._feature_words[key]

    @cached_property
    def _feature_words(self) -> dict[bytes | None, FeatureWords]:
        """The last :data:`KEPT_WORD_SETS` results of :meth:`feature_words`, by the rows they were read from (None:
        all), oldest first."""
        return {}

    @cached_property
    def _word_index(self) -> WordIndex:
        # The words of each chunk, read from its tokens once: feature_words and document_words share them.
        return WordIndex()

    def document_words(self, rows: np.ndarray) -> tuple[sp.csr_matrix, np.ndarray]:
        """``(presence, words)``: which words (and symbols) each of ``rows`` (ascending encoded positions) holds, as
        a (len(rows), n_words) 0/1 matrix, and the words (see words.py)."""
        self.require_tokens("document_words (the words of each document, read from its tokens)")
        presence = document_words(self.chunks(), lambda c: self.texts(c.entry.start, c.entry.stop), self._word_index,
                                  np.asarray(rows, dtype=np.int64))
        return presence, self._word_index.words

    def require_tokens(self, what: str) -> None:
        """Refuse ``what`` on a compact store (one that keeps pooled activations only), saying why."""
        if not self.plan.token_level:
            raise StoreError(f"{what} needs token-level activations, and {self.path} keeps pooled activations only "
                             "(it was encoded with EncodePlan(token_level=False)); encode the documents again "
                             "without token_level=False to use it")

    def pooled_blocks(self, max_entries: int) -> Iterator[tuple[np.ndarray, PooledStatistics]]:
        """``(rows, statistics)`` chunk by chunk, in row order, each chunk's arrays memory-mapped and unmapped again
        after its block, so a pass over the store holds one chunk at a time. A chunk of more than ``max_entries``
        pooled entries is refused (a ValueError naming it) rather than read past the caller's memory bound."""
        self.n_documents  # the documents table is checked before any chunk is read
        for chunk in self.chunks():
            entries = chunk.entry.pooled_entries
            if entries > max_entries:
                raise ValueError(f"chunk {chunk.entry.name} of {self.path} holds about {entries:,} pooled entries, "
                                 f"more than the {max_entries:,} the memory limit allows per block; raise memory_limit")
            try:
                yield chunk.rows, chunk.pooled()
            finally:
                chunk.release()

    def _chunk_of(self, row: int) -> Chunk | None:
        """The committed chunk whose range holds ``row``, or None."""
        entries = self.manifest.chunks
        i = bisect.bisect_right([e.start for e in entries], row) - 1
        return self.chunks()[i] if i >= 0 and row < entries[i].stop else None

    def row_latents(self, row: int, aggregation: str) -> sp.csr_matrix:
        """The 1 × d_sae matrix of an aggregation for one row, reading only its chunk's pooled arrays."""
        chunk = self._chunk_of(row)
        rows = chunk.rows if chunk is not None else np.zeros(0, np.int64)
        pos = int(np.searchsorted(rows, row))
        if pos == len(rows) or rows[pos] != row:
            return sp.csr_matrix((1, self.d_sae), dtype=np.float32)
        return aggregate(chunk.pooled(), aggregation, self.d_sae)[pos]

    def document(self, row: int) -> EncodedDocument | None:
        """Tokens, character spans and token activations of a row; None if it is not encoded."""
        self.require_tokens(f"the tokens of row {row}")
        chunk = self._chunk_of(row)
        doc = chunk.document(row) if chunk is not None else None
        if doc is not None:
            [text] = self.texts(row, row + 1)
            if not isinstance(text, str) or (len(doc.spans) and (doc.spans[:, 1].max() > len(text))):
                raise StoreCorruptError(f"{chunk.folder / 'char_len.npy'}: the spans of row {row} reach "
                                        f"beyond its text; the chunk cannot be trusted")
        return doc

