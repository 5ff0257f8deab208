"""The on-disk dataset: a folder with a self-checksummed manifest, the documents table and committed chunks.

Layout::

    my_dataset.iembed/
      manifest.json          {"body": {...}, "sha256": <hash of body>} (see manifest.py); rewritten atomically per commit
      documents.parquet      every row and metadata column of the user's table
      feature_labels.json    {feature id: label} copied from the SAE (optional)
      chunks/<start>-<stop>/ one folder of .npy arrays per committed range of rows (see chunk.py)

Commit protocol: a chunk folder is written under a temporary name, fsynced and renamed; then the
manifest, which lists every committed chunk with the checksum of each file, is replaced atomically.
Anything not in the manifest is a leftover of a crash and is ignored. Opening a store reads the
manifest only; every other file is verified against its checksum before its data is used.
Nothing here imports torch: a saved store is analysed without the model.
"""
from __future__ import annotations

import bisect
import io
import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import scipy.sparse as sp

from ..encode.config import EncodePlan
from ..files import (CHUNKS, DOCUMENTS, FEATURE_LABELS, MANIFEST, TEMPORARY_PREFIX, canonical_json, fsync_path,
                     sha256_file, write_atomically)
from .chunk import Chunk, EncodedDocument, write_chunk
from .errors import StoreCorruptError, StoreError
from .manifest import EncoderRecord, FileRecord, Manifest
from .pooling import PooledStatistics, aggregate


def _documents_bytes(documents: pd.DataFrame) -> bytes:
    """The table as Parquet bytes; a column Arrow cannot store is named in the error."""
    try:
        table = pa.Table.from_pandas(documents, preserve_index=True)
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
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()


class Store:
    """A dataset folder on disk. Create it with :meth:`create`, open it with :meth:`open`.

    >>> store = Store.open("greetings.iembed")   # doctest: +SKIP
    >>> store.latents("max").shape               # doctest: +SKIP
    (3, 8192)
    """

    def __init__(self, path: Path, manifest: Manifest):
        self.path = path
        self.manifest = manifest
        self._chunks: list[Chunk] | None = None
        self._documents: pd.DataFrame | None = None
        self._pooled: PooledStatistics | None = None

    # ---- creation and opening -------------------------------------------------------------------
    @classmethod
    def create(cls, path: str | Path, documents: pd.DataFrame, field: str, encoder: EncoderRecord, plan: EncodePlan,
               skipped: dict[int, str], labels: dict[int, str] | None, dataset_description: str = "") -> "Store":
        """Write a new, empty store (documents table, labels, manifest) and return it."""
        path = Path(path)
        if path.exists() and any(path.iterdir()):
            raise FileExistsError(
                f"{path} already exists and is not empty. Open it with Dataset.load_from_file({str(path)!r}, "
                "resume=True), or choose another save_path."
            )
        path.mkdir(parents=True, exist_ok=True)
        (path / CHUNKS).mkdir(exist_ok=True)
        write_atomically(path / DOCUMENTS, _documents_bytes(documents))
        label_record = None
        if labels:
            write_atomically(path / FEATURE_LABELS, canonical_json({str(k): v for k, v in labels.items()}))
            label_record = FileRecord(sha256_file(path / FEATURE_LABELS))
        fsync_path(path)
        manifest = Manifest(field=field, n_documents=len(documents), encoder=encoder, plan=plan, skipped=dict(skipped),
                            documents=FileRecord(sha256_file(path / DOCUMENTS)), labels=label_record,
                            dataset_description=dataset_description)
        store = cls(path, manifest)
        store._write_manifest()
        return store

    @classmethod
    def open(cls, path: str | Path) -> "Store":
        """Open a store by reading its manifest only; no array is read until it is needed."""
        path = Path(path)
        if path.is_file():
            raise StoreError(
                f"{path} is a file, not an interp_embed store (a folder with {MANIFEST}). Pickle files of the "
                "original interp_embed are never loaded, because unpickling can run arbitrary code: "
                "re-encode the documents with Dataset(..., save_path=...)."
            )
        manifest = path / MANIFEST
        if not manifest.is_file():
            raise StoreError(f"{path} is not an interp_embed store: {manifest} is missing")
        return cls(path, Manifest.from_bytes(manifest.read_bytes(), manifest))

    def _write_manifest(self) -> None:
        write_atomically(self.path / MANIFEST, self.manifest.to_bytes())

    # ---- writing --------------------------------------------------------------------------------
    def commit_chunk(self, start: int, stop: int, docs: list[EncodedDocument]) -> None:
        """Durably add the encoded documents of rows [start, stop) (skipped rows simply absent)."""
        self.manifest.add_chunk(write_chunk(self.path / CHUNKS, start, stop, docs, self.d_sae))
        self._write_manifest()
        self._chunks, self._pooled = None, None

    def set_description(self, text: str) -> None:
        """Record what the dataset is (kept in the manifest)."""
        if not isinstance(text, str):
            raise TypeError(f"dataset_description must be a string, not {type(text).__name__}")
        self.manifest.dataset_description = text
        self._write_manifest()

    def copy_rows(self, rows: np.ndarray, path: str | Path) -> "Store":
        """A new store at ``path`` holding ``rows`` of this one, in that order, with their activations.

        The rows are cut into chunks by this store's plan, exactly as encoding them anew would cut them;
        a chunk is copied when every row of it that can be encoded has activations here, and is left
        pending (to be encoded by ``resume``) otherwise.
        """
        rows = np.asarray(rows, dtype=np.int64)
        path = Path(path)
        if np.array_equal(rows, np.arange(self.n_documents)):  # the whole store: copy its files as they are
            if path.exists():
                raise FileExistsError(f"{path} exists; choose a new path")
            shutil.copytree(self.path, path, ignore=shutil.ignore_patterns(f"{TEMPORARY_PREFIX}*", ".*.tmp-*"))
            return Store.open(path)
        old_skipped = self.skipped
        skipped = {new: old_skipped[int(old)] for new, old in enumerate(rows) if int(old) in old_skipped}
        target = Store.create(path, self.documents().iloc[rows], self.field, self.encoder, self.plan, skipped,
                              self.feature_labels(), self.dataset_description)
        for start, stop in target.pending_chunks():
            docs = []
            for new in range(start, stop):
                if new in skipped:
                    continue
                doc = self.document(int(rows[new]))
                if doc is None:  # not encoded yet: resume encodes the whole chunk
                    break
                docs.append(replace(doc, row=new))
            else:
                target.commit_chunk(start, stop, docs)
        return target

    # ---- reading --------------------------------------------------------------------------------
    @property
    def field(self) -> str:
        return self.manifest.field

    @property
    def d_sae(self) -> int:
        return self.manifest.d_sae

    @property
    def n_documents(self) -> int:
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
            self._chunks = [Chunk(self.path / CHUNKS / entry.name, entry) for entry in self.manifest.chunks]
        return self._chunks

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
        texts = self.documents()[self.field]
        lengths = [len(t) if isinstance(t, str) else 0 for t in texts]
        ranges = self.plan.chunk_ranges(lengths)
        committed = {(e.start, e.stop) for e in self.manifest.chunks}
        unknown = committed - set(ranges)
        if unknown:
            raise StoreError(f"{self.path}: committed chunks {sorted(unknown)[:3]} do not match the chunk plan of "
                             "its documents; the documents table was changed after the chunks were written")
        return [r for r in ranges if r not in committed]

    def encoded_mask(self) -> np.ndarray:
        """True for rows with activations: every encoded row has at least one token (empty texts are skipped)."""
        return self.pooled().n_tokens > 0

    def _verified(self, name: str, record: FileRecord) -> Path:
        path = self.path / name
        if not path.is_file():
            raise StoreCorruptError(f"{path} is missing")
        if sha256_file(path) != record.sha256:
            raise StoreCorruptError(f"{path} does not match its checksum (truncated or altered)")
        return path

    def documents(self) -> pd.DataFrame:
        """The user's table as given (index and every column), read once and verified."""
        if self._documents is None:
            path = self._verified(DOCUMENTS, self.manifest.documents)
            try:
                self._documents = pq.read_table(path).to_pandas()
            except (pa.ArrowException, OSError) as err:
                raise StoreCorruptError(f"{path}: not a readable Parquet file ({err})") from err
            if len(self._documents) != self.n_documents:
                raise StoreCorruptError(f"{path} has {len(self._documents)} rows; the manifest says {self.n_documents}")
        return self._documents

    def feature_labels(self) -> dict[int, str]:
        if self.manifest.labels is None:
            return {}
        path = self._verified(FEATURE_LABELS, self.manifest.labels)
        try:
            return {int(k): str(v) for k, v in json.loads(path.read_text("utf-8")).items()}
        except (UnicodeDecodeError, json.JSONDecodeError, ValueError, AttributeError) as err:
            raise StoreCorruptError(f"{path}: not a label file ({err})") from err

    def pooled(self, activated_threshold: float = 0.0) -> PooledStatistics:
        """Pooled statistics of every row (see pooling.py): the stored ones, or at a threshold > 0 those of
        the token activations above it, pooled again from the token level."""
        if activated_threshold > 0:
            parts = [(c.rows, c.pooled_above(activated_threshold, self.d_sae)) for c in self.chunks()]
            return PooledStatistics.concatenate(parts, self.n_documents)
        if self._pooled is None:
            self._pooled = PooledStatistics.concatenate([(c.rows, c.pooled()) for c in self.chunks()], self.n_documents)
        return self._pooled

    def latents(self, aggregation: str = "max", activated_threshold: float = 0.0) -> sp.csr_matrix:
        """The (n_documents × d_sae) float32 matrix of an aggregation (see pooling.AGGREGATIONS), all rows."""
        return aggregate(self.pooled(activated_threshold), aggregation, self.d_sae)

    def document(self, row: int) -> EncodedDocument | None:
        """Tokens, character spans and token activations of a row; None if it is not encoded."""
        entries = self.manifest.chunks
        i = bisect.bisect_right([e.start for e in entries], row) - 1
        if i < 0 or row >= entries[i].stop:
            return None
        return self.chunks()[i].document(row)
