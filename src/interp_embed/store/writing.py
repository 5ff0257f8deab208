"""The store's write side: a new store made whole, chunks and columns committed under the writer lock, and rows
copied or combined into a new store. ``Store`` (store.py) calls these from its methods of the same names; what
it reads lives there.

Every change of a store follows the commit protocol of store.py: files first (each under a temporary name, then
renamed), the manifest that lists them last, replaced atomically; a new or copied store is built under a
temporary name and appears whole (placing.py).
"""
from __future__ import annotations

import os
import shutil
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pyarrow as pa

from ..files import ADDED_COLUMNS, CHUNKS, DOCUMENTS, FEATURE_LABELS, LABEL_RECORDS, MANIFEST, canonical_json, \
    sha256_file, write_atomically
from ..spec.plan import EncodePlan
from ..validation import OVERWRITE, explained
from .checks import POOLED
from .chunk import ARRAYS, EncodedDocument, pooled_arrays, write_arrays, write_chunk
from .columns import added_column_file, write_added_column
from .documents import DocumentsWriter
from .errors import StoreCorruptError, StoreError
from .labels import write_dataset_labels, write_record
from .manifest import CHUNK_NAME, ChunkEntry, ColumnRecord, EncoderRecord, FileRecord, Manifest
from .paths import plain_folder
from .placing import building, is_temporary, replacing
from .pooling import PooledStatistics

if TYPE_CHECKING:
    from .store import Store

Batches = Iterable[tuple[pa.RecordBatch | pa.Table, dict[int, str]]]
"""A table's rows a batch at a time, each with its rows to skip (``{row in the table: why}``)."""


# ---- a new store ----------------------------------------------------------------------------------
def create(cls: type[Store], path: Path, documents: pd.DataFrame, field: str, encoder: EncoderRecord, plan: EncodePlan,
           skipped: dict[int, str], labels: dict[int, str] | None, dataset_description: str) -> Store:
    """:meth:`Store.create`."""
    table = _documents_table(_storable(documents, field, skipped))  # fails before anything is written
    return create_from_batches(cls, path, table.schema, [(table, skipped)], field, encoder, plan, labels,
                               dataset_description)


def create_from_batches(cls: type[Store], path: Path, schema: pa.Schema, batches: Batches, field: str,
                        encoder: EncoderRecord, plan: EncodePlan, labels: dict[int, str] | None,
                        dataset_description: str) -> Store:
    """:meth:`Store.create_from_batches`."""
    with building(path) as folder:
        store = _write(cls, folder, schema, batches, field, encoder, plan, labels, dataset_description)
    store.path = path  # renamed into place, whole; nothing of it was opened under the temporary name
    return store


def _write(cls: type[Store], folder: Path, schema: pa.Schema, batches: Batches, field: str, encoder: EncoderRecord,
           plan: EncodePlan, labels: dict[int, str] | None, dataset_description: str) -> Store:
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
    store._chunk_ranges, store.n_documents = writer.cutter.ranges(), writer.n_rows
    return store


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


# ---- under the writer lock ------------------------------------------------------------------------
def remove_leftovers(path: Path, manifest: Manifest) -> None:
    """Delete what crashed writers left in the store at ``path``: temporary files and folders, and chunk folders and
    added columns its ``manifest`` does not list. Only our own names are touched, and a link is removed, never
    followed."""
    committed = {c.name for c in manifest.chunks}
    leftovers = [e for e in os.scandir(path) if is_temporary(e.name)]
    leftovers += [e for e in os.scandir(plain_folder(path / CHUNKS))
                  if is_temporary(e.name) or (CHUNK_NAME.fullmatch(e.name) and e.name not in committed)]
    if os.path.lexists(path / LABEL_RECORDS):
        leftovers += [e for e in os.scandir(plain_folder(path / LABEL_RECORDS)) if is_temporary(e.name)]
    if os.path.lexists(path / ADDED_COLUMNS):  # temporaries, and columns replaced or never committed
        listed = {added_column_file(c) for c in manifest.columns}
        leftovers += [e for e in os.scandir(plain_folder(path / ADDED_COLUMNS)) if e.name not in listed]
    for entry in leftovers:
        if entry.is_dir(follow_symlinks=False):
            shutil.rmtree(entry.path)
        else:
            os.unlink(entry.path)


def commit_chunk(store: Store, start: int, stop: int, docs: list[EncodedDocument]) -> None:
    """:meth:`Store.commit_chunk`."""
    _require_writer(store, f"chunk {start}-{stop}")
    _commit(store, write_chunk(store.path / CHUNKS, start, stop, docs, store.d_sae, store.plan.token_level))


def commit_pooled(store: Store, start: int, stop: int, rows: np.ndarray, n_tokens: np.ndarray,
                  pooled: PooledStatistics) -> None:
    """:meth:`Store.commit_pooled`."""
    _require_writer(store, f"chunk {start}-{stop}")
    if store.plan.token_level:
        raise StoreError(f"{store.path} keeps token-level activations; commit_pooled writes compact stores only")
    _commit(store, write_arrays(store.path / CHUNKS, start, stop, pooled_arrays(rows, n_tokens, pooled, store.d_sae)))


def commit_written_chunk(store: Store, entry: ChunkEntry) -> None:
    """:meth:`Store.commit_written_chunk`."""
    _require_writer(store, f"chunk {entry.name}")
    expected = {f"{name}.npy" for name in (ARRAYS if store.plan.token_level else POOLED)}
    if set(entry.files) != expected:
        raise StoreCorruptError(f"chunk {entry.name} lists files {sorted(entry.files)}, not the arrays "
                                f"{sorted(expected)}")
    plain_folder(store.path / CHUNKS / entry.name)
    for name, record in entry.files.items():
        store._verified(f"{CHUNKS}/{entry.name}/{name}", record)
    _commit(store, entry)


def _commit(store: Store, entry: ChunkEntry) -> None:
    store.manifest.add_chunk(entry)
    write_manifest(store)
    store._forget()


def set_description(store: Store, text: str) -> None:
    """:meth:`Store.set_description`."""
    if not isinstance(text, str):
        raise TypeError(f"dataset_description must be a string, not {type(text).__name__}")
    with store.writing():
        store.manifest.dataset_description = text
        write_manifest(store)


def add_column(store: Store, name: str, values: pd.Series, overwrite: bool) -> None:
    """:meth:`Store.add_column`."""
    if not isinstance(name, str) or not name:
        raise TypeError(f"a column name must be a non-empty string, not {name!r}.")
    with store.writing():
        if name == store.field:
            raise ValueError(f"{name!r} is the text column the activations were computed from; it cannot be "
                             "replaced. Choose another name.")
        if name in store.documents().columns and not overwrite:
            raise explained(ValueError, f"column {name!r} exists in {store.path}; choose another name, or pass ",
                            OVERWRITE, " to replace it.")
        if len(values) != store.n_documents:
            raise ValueError(f"column {name!r} has {len(values)} values for {store.n_documents} documents.")
        table = _documents_table(pd.DataFrame({name: pd.Series(values).reset_index(drop=True)}))
        record = ColumnRecord(name, write_added_column(store.path / ADDED_COLUMNS, table))
        store.manifest.columns = [c for c in store.manifest.columns if c.name != name] + [record]
        write_manifest(store)
        store._forget()


def write_manifest(store: Store) -> None:
    """Replace the store's manifest, atomically, with ``store.manifest`` (under the writer lock)."""
    _require_writer(store, "the manifest")
    write_atomically(store.path / MANIFEST, store.manifest.to_bytes())


def _require_writer(store: Store, what: str) -> None:
    if not store._writers:
        raise RuntimeError(f"writing {what} of {store.path} needs the writer lock: use `with store.writing():`")


# ---- rows into a new store ------------------------------------------------------------------------
def copy_rows(store: Store, rows: np.ndarray, path: Path, overwrite: bool) -> None:
    """:meth:`Store.copy_rows`."""
    rows = np.asarray(rows, dtype=np.int64)
    if not np.array_equal(rows, np.arange(store.n_documents)):
        combine(type(store), [(store, rows)], path, overwrite)
        return
    if overwrite:
        _refuse_own_path([store], path)
    with replacing(path, overwrite) as folder:
        _copy_files(store, folder)


def combine(cls: type[Store], parts: list[tuple[Store, np.ndarray]], path: Path, overwrite: bool) -> None:
    """:meth:`Store.combine`."""
    first = parts[0][0]
    if overwrite:
        _refuse_own_path([store for store, _ in parts], path)
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
    with replacing(path, overwrite) as place, building(place) as folder:
        target = _write(cls, folder, table.schema, [(table, skipped)], first.field, first.encoder, first.plan,
                        first.shipped_labels(), "\n".join(descriptions))
        with target.writing():
            _copy_labels(first, target.path / LABEL_RECORDS, keep_examples=False)  # its rows are not ours
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


def _copy_files(store: Store, path: Path) -> None:
    """Copy the files the manifest lists (each checked first, never through a link) into a new store at ``path``,
    which appears there whole."""
    manifest = store.manifest
    listed = [(DOCUMENTS, manifest.documents)]
    listed += [(f"{ADDED_COLUMNS}/{added_column_file(c)}", c.file) for c in manifest.columns]
    if manifest.labels is not None:
        listed.append((FEATURE_LABELS, manifest.labels))
    listed += [(f"{CHUNKS}/{c.name}/{name}", record) for c in manifest.chunks for name, record in c.files.items()]
    with building(path) as folder:
        (folder / CHUNKS).mkdir()
        for name, record in listed:
            source = store._verified(name, record)
            (folder / name).parent.mkdir(exist_ok=True)
            shutil.copyfile(source, folder / name)
        _copy_labels(store, folder / LABEL_RECORDS, keep_examples=True)
        (folder / MANIFEST).write_bytes(manifest.to_bytes())


def _copy_labels(store: Store, folder: Path, keep_examples: bool) -> None:
    """Write ``store``'s later labels into another store's label ``folder``: each checked as it was read, written
    anew (dataset labels in their files; ``keep_examples=False`` drops the rows an LLM label names)."""
    for record in store.label_records():
        if record.source != "dataset":
            write_record(folder, record if keep_examples else replace(record, examples={}), store.d_sae)
    for labels in store.dataset_labels():
        write_dataset_labels(folder, labels, store.d_sae)


def _refuse_own_path(sources: list[Store], path: Path) -> None:
    """A store is never replaced by a copy of its own rows: the dataset read from it would be left reading another."""
    for source in sources:
        if os.path.lexists(path) and os.path.lexists(source.path) and os.path.samefile(source.path, path):
            raise ValueError(f"{path} is the store this dataset reads; save to another path")
