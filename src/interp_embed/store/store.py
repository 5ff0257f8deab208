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
"""
from __future__ import annotations

import bisect
import json
import os
import shlex
import shutil
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import scipy.sparse as sp

from ..spec.plan import ChunkCutter, EncodePlan
from ..files import (ADDED_COLUMNS, CHUNKS, DOCUMENTS, FEATURE_LABELS, LABEL_RECORDS, MANIFEST, TABLE_SUFFIXES,
                     canonical_json, sha256_file, write_atomically)
from ..validation import OVERWRITE, explained, with_command_line
from .checks import POOLED
from .chunk import ARRAYS, Chunk, EncodedDocument, pooled_arrays, write_arrays, write_chunk
from .columns import added_column_file, read_added_column, write_added_column
from .documents import DocumentTexts, DocumentsWriter, check_row_count
from .errors import StoreCorruptError, StoreError
from .labels import DatasetLabels, LabelRecord, read_labels, write_dataset_labels, write_record
from .lock import writer_lock
from .manifest import CHUNK_NAME, ChunkEntry, ColumnRecord, EncoderRecord, FileRecord, Manifest
from .paths import plain_file, plain_folder
from .placing import building, is_temporary, replacing
from .pooling import PooledStatistics, aggregate
from .words import FeatureWords, WordIndex, document_words, feature_words


KEPT_WORD_SETS = 4  # feature words of this many sets of rows are kept (a diff reads two, its union a third)


def _documents_table(documents: pd.DataFrame) -> pa.Table:
    """The table in Arrow; a column Arrow cannot store is named in the error."""
    try:
        return pa.Table.from_pandas(documents, preserve_index=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as err:
        for column in documents.columns:
            try:
                pa.Table.from_pandas(documents[[column]], preserve_index=False)
            except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as col_err:
                raise ValueError(
                    f"Column {column!r} cannot be stored ({col_err}). Convert it to one type "
                    f"(e.g. df[{column!r}] = df[{column!r}].astype(str)) or drop it."
                ) from col_err
        raise ValueError(f"The table cannot be stored: {err}") from err


def _storable(documents: pd.DataFrame, field: str, skipped: dict[int, str]) -> pd.DataFrame:
    """The table with the text of skipped rows that Parquet cannot hold as text (not a string, or a lone
    surrogate) kept as missing; the reason stays in the manifest's skipped rows."""
    texts = documents[field]
    unstorable = [row for row in skipped if not isinstance(texts.iloc[row], str) or not _utf8(texts.iloc[row])]
    if not unstorable:
        return documents
    documents = documents.copy()
    documents[field] = documents[field].astype(object)
    documents.iloc[unstorable, documents.columns.get_loc(field)] = None
    return documents


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


class Store:
    """A dataset folder on disk. Create it with :meth:`create`, open it with :meth:`open`; write to it only
    inside ``with store.writing():``.

    >>> store = Store.open("greetings.iembed")   # doctest: +SKIP
    >>> store.latents("max").shape               # doctest: +SKIP
    (3, 8192)
    """

    def __init__(self, path: Path, manifest: Manifest):
        self.path = path
        self.manifest = manifest
        self._chunks: list[Chunk] | None = None
        self._documents: pd.DataFrame | None = None
        self._texts: DocumentTexts | None = None
        self._chunk_ranges: list[tuple[int, int]] | None = None
        self._pooled: PooledStatistics | None = None
        self._feature_words: dict[bytes | None, FeatureWords] = {}  # by the rows they were read from (None: all)
        self._word_index = WordIndex()
        self._label_records: tuple[list[LabelRecord], list[DatasetLabels]] | None = None
        self._rows_checked = False
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
        table = _documents_table(_storable(documents, field, skipped))  # fails before anything is written
        return cls.create_from_batches(path, table.schema, [(table, skipped)], field, encoder, plan, labels,
                                       dataset_description)

    @classmethod
    def create_from_batches(cls, path: str | Path, schema: pa.Schema,
                            batches: Iterable[tuple[pa.RecordBatch | pa.Table, dict[int, str]]], field: str,
                            encoder: EncoderRecord, plan: EncodePlan, labels: dict[int, str] | None,
                            dataset_description: str = "") -> "Store":
        """:meth:`create` for a table that arrives in batches of rows, each with its rows to skip (``{row in the
        table: why}``): the documents table is written a batch at a time and is never whole in memory.

        Whatever the batches raise (a check that refuses a bad row) leaves nothing at ``path``.
        """
        with building(Path(path)) as folder:
            store = cls._write(folder, schema, batches, field, encoder, plan, labels, dataset_description)
        store.path = Path(path)  # renamed into place, whole; nothing of it was opened under the temporary name
        return store

    @classmethod
    def _write(cls, folder: Path, schema: pa.Schema, batches: Iterable[tuple[pa.RecordBatch | pa.Table, dict[int, str]]],
               field: str, encoder: EncoderRecord, plan: EncodePlan, labels: dict[int, str] | None,
               dataset_description: str) -> "Store":
        """Write a new store's documents table, labels and manifest into the empty ``folder``."""
        skipped: dict[int, str] = {}
        (folder / CHUNKS).mkdir()
        with DocumentsWriter(folder / DOCUMENTS, schema, field, plan) as writer:
            for batch, problems in batches:
                writer.write(batch)
                skipped.update(problems)
        label_record = None
        if labels:
            (folder / FEATURE_LABELS).write_text(canonical_json({str(k): v for k, v in labels.items()}), "utf-8")
            label_record = FileRecord(sha256_file(folder / FEATURE_LABELS))
        manifest = Manifest(field=field, n_documents=writer.n_rows, encoder=encoder, plan=plan, skipped=skipped,
                            documents=FileRecord(writer.sha256), labels=label_record,
                            dataset_description=dataset_description)
        (folder / MANIFEST).write_bytes(manifest.to_bytes())
        store = cls(folder, manifest)
        # Cut and counted while the table was written: neither needs a second reading of it.
        store._chunk_ranges, store._rows_checked = writer.cutter.ranges(), True
        return store

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
                self._remove_leftovers()
                yield self
            finally:
                self._writers = 0

    def _reload(self) -> None:
        columns = self.manifest.columns
        self.manifest = Store.open(self.path).manifest
        self._forget_activations()
        self._label_records = None  # another writer may have added labels
        if self.manifest.columns != columns:  # another writer added a column
            self._documents = None

    def _remove_leftovers(self) -> None:
        """Delete what crashed writers left: temporary files and folders, and chunk folders never committed.
        Only our own names are touched, and a link is removed, never followed."""
        committed = {c.name for c in self.manifest.chunks}
        leftovers = [e for e in os.scandir(self.path) if is_temporary(e.name)]
        leftovers += [e for e in os.scandir(plain_folder(self.path / CHUNKS))
                      if is_temporary(e.name) or (CHUNK_NAME.fullmatch(e.name) and e.name not in committed)]
        if os.path.lexists(self.path / LABEL_RECORDS):
            leftovers += [e for e in os.scandir(plain_folder(self.path / LABEL_RECORDS)) if is_temporary(e.name)]
        if os.path.lexists(self.path / ADDED_COLUMNS):  # temporaries, and columns replaced or never committed
            listed = {added_column_file(c) for c in self.manifest.columns}
            leftovers += [e for e in os.scandir(plain_folder(self.path / ADDED_COLUMNS)) if e.name not in listed]
        for entry in leftovers:
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path)
            else:
                os.unlink(entry.path)

    def _write_manifest(self) -> None:
        self._require_writer("the manifest")
        write_atomically(self.path / MANIFEST, self.manifest.to_bytes())

    def _require_writer(self, what: str) -> None:
        if not self._writers:
            raise RuntimeError(f"writing {what} of {self.path} needs the writer lock: use `with store.writing():`")

    def commit_chunk(self, start: int, stop: int, docs: list[EncodedDocument]) -> None:
        """Durably add the encoded documents of rows [start, stop) (skipped rows simply absent)."""
        self._require_writer(f"chunk {start}-{stop}")
        self._add_chunk(write_chunk(self.path / CHUNKS, start, stop, docs, self.d_sae, self.plan.token_level))

    def commit_pooled(self, start: int, stop: int, rows: np.ndarray, n_tokens: np.ndarray,
                      pooled: PooledStatistics) -> None:
        """Durably add rows [start, stop) of a compact store from pooled statistics made elsewhere (one document
        per entry of ``rows``, ascending, with ``n_tokens`` tokens each), written as :meth:`commit_chunk` writes
        them; structure is checked when they are read, as for any chunk."""
        self._require_writer(f"chunk {start}-{stop}")
        if self.plan.token_level:
            raise StoreError(f"{self.path} keeps token-level activations; commit_pooled writes compact stores only")
        arrays = pooled_arrays(rows, n_tokens, pooled, self.d_sae)
        self._add_chunk(write_arrays(self.path / CHUNKS, start, stop, arrays))

    def commit_written_chunk(self, entry: ChunkEntry) -> None:
        """Durably add a chunk that another process wrote into ``chunks/`` with :func:`~.chunk.write_chunk` (a Ray
        worker, see encode/distributed.py), once every file of it matches ``entry``: a folder that is incomplete,
        altered or written for other rows is a ``StoreCorruptError`` and is not committed."""
        self._require_writer(f"chunk {entry.name}")
        expected = {f"{name}.npy" for name in (ARRAYS if self.plan.token_level else POOLED)}
        if set(entry.files) != expected:
            raise StoreCorruptError(f"chunk {entry.name} lists files {sorted(entry.files)}, not the arrays "
                                    f"{sorted(expected)}")
        plain_folder(self.path / CHUNKS / entry.name)
        for name, record in entry.files.items():
            self._verified(f"{CHUNKS}/{entry.name}/{name}", record)
        self._add_chunk(entry)

    def _add_chunk(self, entry: ChunkEntry) -> None:
        self.manifest.add_chunk(entry)
        self._write_manifest()
        self._forget_activations()

    def _forget_activations(self) -> None:
        """Drop what was read from the chunks (their list, pooled statistics, words): the chunks changed."""
        self._chunks, self._pooled, self._feature_words, self._word_index = None, None, {}, WordIndex()

    def set_description(self, text: str) -> None:
        """Record what the dataset is (kept in the manifest)."""
        if not isinstance(text, str):
            raise TypeError(f"dataset_description must be a string, not {type(text).__name__}")
        with self.writing():
            self.manifest.dataset_description = text
            self._write_manifest()

    def add_column(self, name: str, values: pd.Series, overwrite: bool = False) -> None:
        """Keep ``values`` (one per row, in row order) as the documents table's column ``name``, durably and at once;
        the activations are not touched. A column that exists (from the encoded table or added) is replaced only
        with ``overwrite``; the text column never is.

        The values go to a file of their own, named by its checksum, and the manifest, rewritten atomically, lists
        it: a crash at any moment leaves the table as it was or with the column, never a mismatch (what a crash
        leaves unlisted is removed by the next writer)."""
        if not isinstance(name, str) or not name:
            raise TypeError(f"a column name must be a non-empty string, not {name!r}.")
        with self.writing():
            if name == self.field:
                raise ValueError(f"{name!r} is the text column the activations were computed from; it cannot be "
                                 "replaced. Choose another name.")
            if name in self.documents().columns and not overwrite:
                raise explained(ValueError, f"column {name!r} exists in {self.path}; choose another name, or pass ",
                                OVERWRITE, " to replace it.")
            if len(values) != self.n_documents:
                raise ValueError(f"column {name!r} has {len(values)} values for {self.n_documents} documents.")
            table = _documents_table(pd.DataFrame({name: pd.Series(values).reset_index(drop=True)}))
            record = ColumnRecord(name, write_added_column(self.path / ADDED_COLUMNS, table))
            self.manifest.columns = [c for c in self.manifest.columns if c.name != name] + [record]
            self._write_manifest()
            self._documents = None

    def copy_rows(self, rows: np.ndarray, path: str | Path, overwrite: bool = False) -> "Store":
        """A new store at ``path`` holding ``rows`` of this one, in that order, with their activations; with
        ``overwrite`` it replaces the store at ``path``, whole (see placing.py).

        The whole store is copied file by file — only the files its manifest lists, each checked first,
        never through a link. A subset is written as :meth:`combine` writes it.
        """
        rows = np.asarray(rows, dtype=np.int64)
        if np.array_equal(rows, np.arange(self.n_documents)):
            if overwrite:
                _refuse_own_path([self], Path(path))
            with replacing(Path(path), overwrite) as folder:
                self._copy_files(folder)
            return Store.open(path)
        return Store.combine([(self, rows)], path, overwrite)

    @staticmethod
    def combine(parts: list[tuple["Store", np.ndarray]], path: str | Path, overwrite: bool = False) -> "Store":
        """A new store at ``path`` holding, in order, the given rows of each store, with their activations; with
        ``overwrite`` it replaces the store at ``path``. It appears there whole, once every chunk is copied: a kill
        or a full disk on the way leaves nothing at ``path`` (see placing.py).

        The stores must share one encoder and text field (the caller checks); the documents tables are
        stacked (a column that one lacks is missing in its rows), the feature labels and plan are the first
        store's. The rows are cut into chunks by that plan, exactly as encoding them anew would cut them; a
        chunk is copied when every row of it that can be encoded has activations, and is left pending (to be
        encoded by ``resume``) otherwise.
        """
        first = parts[0][0]
        if overwrite:
            _refuse_own_path([store for store, _ in parts], Path(path))
        compact = [str(store.path) for store, _ in parts if not store.plan.token_level]
        if compact:
            raise StoreError(f"{compact[0]} keeps pooled activations only (a compact store), so its rows cannot be "
                             "copied into a new store; copy the whole store (save_to_file of the full dataset) or "
                             "encode the rows again")
        sources = [(store, int(row)) for store, rows in parts for row in np.asarray(rows, dtype=np.int64)]
        skipped = {new: store.skipped[row] for new, (store, row) in enumerate(sources) if row in store.skipped}
        documents = pd.concat([store.documents().iloc[np.asarray(rows, dtype=np.int64)] for store, rows in parts],
                              ignore_index=True)
        descriptions = dict.fromkeys(store.dataset_description for store, _ in parts if store.dataset_description)
        table = _documents_table(_storable(documents, first.field, skipped))
        with replacing(Path(path), overwrite) as place, building(place) as folder:
            target = Store._write(folder, table.schema, [(table, skipped)], first.field, first.encoder, first.plan,
                                  first.shipped_labels(), "\n".join(descriptions))
            with target.writing():
                first._write_labels_into(target.path / LABEL_RECORDS, keep_examples=False)  # its rows are not ours
                target._label_records = None
                for start, stop in target.pending_chunks():
                    docs = []
                    for new in range(start, stop):
                        if new in skipped:
                            continue
                        store, row = sources[new]
                        doc = store.document(row)
                        if doc is None:  # not encoded yet: resume encodes the whole chunk
                            break
                        docs.append(replace(doc, row=new))
                    else:
                        target.commit_chunk(start, stop, docs)
        return Store.open(path)

    def _copy_files(self, path: Path) -> None:
        """Copy the files the manifest lists (each checked first, never through a link) into a new store at ``path``,
        which appears there whole."""
        listed = [(DOCUMENTS, self.manifest.documents)]
        listed += [(f"{ADDED_COLUMNS}/{added_column_file(c)}", c.file) for c in self.manifest.columns]
        if self.manifest.labels is not None:
            listed.append((FEATURE_LABELS, self.manifest.labels))
        listed += [(f"{CHUNKS}/{c.name}/{name}", record) for c in self.manifest.chunks for name, record in c.files.items()]
        with building(path) as folder:
            (folder / CHUNKS).mkdir()
            for name, record in listed:
                source = self._verified(name, record)
                (folder / name).parent.mkdir(exist_ok=True)
                shutil.copyfile(source, folder / name)
            self._write_labels_into(folder / LABEL_RECORDS, keep_examples=True)
            (folder / MANIFEST).write_bytes(self.manifest.to_bytes())

    # ---- reading --------------------------------------------------------------------------------
    @property
    def field(self) -> str:
        return self.manifest.field

    @property
    def d_sae(self) -> int:
        return self.manifest.d_sae

    @property
    def n_documents(self) -> int:
        """Rows of the documents table; checked against the table itself on first use, because arrays are sized
        by it and a manifest could claim billions."""
        self._check_row_count()
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
        if self._chunks is None:
            folder = plain_folder(self.path / CHUNKS)
            self._chunks = [Chunk(plain_folder(folder / entry.name), entry, self.d_sae) for entry in self.manifest.chunks]
        return self._chunks

    def _check_row_count(self) -> None:
        """The documents table holds the manifest's number of rows: checked against the file's bytes before
        anything is sized by it (see documents.check_row_count)."""
        if not self._rows_checked:
            check_row_count(self._verified(DOCUMENTS, self.manifest.documents), self.field, self.manifest.n_documents)
            self._rows_checked = True

    def pending_rows(self) -> np.ndarray:
        """Rows neither in a committed chunk nor skipped: exactly what ``resume`` still has to encode."""
        self._check_row_count()
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
        if self._chunk_ranges is None:
            cutter = ChunkCutter(self.plan)
            for texts in self._document_texts().batches():
                cutter.add(texts)
            self._chunk_ranges = cutter.ranges()
        return self._chunk_ranges

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
        if self._documents is None:
            self._check_row_count()
            path = self.path / DOCUMENTS
            try:
                documents = pq.read_table(path).to_pandas()
            # The table's pandas metadata (index, column types) is data of the file, however crafted.
            except (pa.ArrowException, OSError, ValueError, KeyError, TypeError, IndexError, AttributeError,
                    RecursionError) as err:
                raise StoreCorruptError(f"{path}: not a readable Parquet file, or its pandas metadata is damaged "
                                        f"({type(err).__name__}: {str(err)[:200]})") from err
            if len(documents) != self.n_documents or self.field not in documents.columns:
                raise StoreCorruptError(f"{path} does not hold the manifest's {self.n_documents} rows with the text "
                                        f"column {self.field!r}")
            for column in self.manifest.columns:
                file = self._verified(f"{ADDED_COLUMNS}/{added_column_file(column)}", column.file)
                documents[column.name] = read_added_column(file, column.name, self.n_documents).set_axis(
                    documents.index)
            self._documents = documents
        return self._documents

    def texts(self, start: int, stop: int) -> list:
        """The texts of rows [start, stop) (None where a skipped row has none), reading only the row groups of
        the documents table that hold them."""
        return self._document_texts().between(start, stop)

    def _document_texts(self) -> DocumentTexts:
        if self._texts is None:
            self._check_row_count()
            self._texts = DocumentTexts(self.path / DOCUMENTS, self.field)
        return self._texts

    def feature_labels(self) -> dict[int, str]:
        """Each feature's newest label: a label written later (LLM or user) over the one shipped with the SAE."""
        labels = self.shipped_labels()
        labels.update({r.feature: r.label for r in self.label_records()})  # oldest first: the newest wins
        return labels

    def label_records(self) -> list[LabelRecord]:
        """Every label written after encoding (see labels.py), oldest first; read once per store object."""
        if self._label_records is None:
            self._label_records = read_labels(self.path / LABEL_RECORDS, self.d_sae)
        return list(self._label_records[0])

    def dataset_labels(self) -> list[DatasetLabels]:
        """The files of labels written from the dataset's own words (see labels.py), oldest first."""
        self.label_records()
        return list(self._label_records[1])

    def add_label(self, record: LabelRecord) -> None:
        """Keep ``record`` (durably, at once); it becomes its feature's label."""
        with self.writing():
            write_record(self.path / LABEL_RECORDS, record, self.d_sae)
        self._label_records = None

    def add_dataset_labels(self, labels: DatasetLabels) -> None:
        """Keep ``labels`` (durably, at once, in one file); they become their features' labels."""
        with self.writing():
            write_dataset_labels(self.path / LABEL_RECORDS, labels, self.d_sae)
        self._label_records = None

    def _write_labels_into(self, folder: Path, keep_examples: bool) -> None:
        """Write this store's later labels into another store's label folder: each checked as it was read, written
        anew (dataset labels in their files; ``keep_examples=False`` drops the rows an LLM label names)."""
        for record in self.label_records():
            if record.source != "dataset":
                write_record(folder, record if keep_examples else replace(record, examples={}), self.d_sae)
        for labels in self.dataset_labels():
            write_dataset_labels(folder, labels, self.d_sae)

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
        self._check_row_count()
        if activated_threshold > 0:
            self.require_tokens("activated_threshold > 0 (a threshold on token activations)")
            parts = [(c.rows, c.pooled_above(activated_threshold)) for c in self.chunks()]
            return PooledStatistics.concatenate(parts, self.n_documents)
        if self._pooled is None:
            self._pooled = PooledStatistics.concatenate([(c.rows, c.pooled()) for c in self.chunks()], self.n_documents)
        return self._pooled

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
        self._check_row_count()
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


def _refuse_own_path(sources: list[Store], path: Path) -> None:
    """A store is never replaced by a copy of its own rows: the dataset read from it would be left reading another."""
    for source in sources:
        if os.path.lexists(path) and os.path.lexists(source.path) and os.path.samefile(source.path, path):
            raise ValueError(f"{path} is the store this dataset reads; save to another path")
