"""The on-disk dataset: a folder with a self-checksummed manifest, the documents table and committed chunks.

Layout::

    my_dataset.iembed/
      manifest.json          {"body": {...}, "sha256": <hash of body>}; rewritten atomically per commit
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
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import scipy.sparse as sp

from ..files import (CHUNKS, DOCUMENTS, FEATURE_LABELS, MANIFEST, canonical_json, fsync_path, sha256_file,
                     sha256_json, write_atomically)
from .chunk import Chunk, EncodedDocument, build_arrays, write_chunk
from .errors import StoreCorruptError, StoreError

FORMAT = "interp_embed.store"
VERSION = 1


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
    >>> store.pooled_latents("max").shape        # doctest: +SKIP
    (3, 8192)
    """

    def __init__(self, path: Path, body: dict):
        self.path = path
        self.body = body
        self._chunks: list[Chunk] | None = None
        self._documents: pd.DataFrame | None = None
        self._pooled: dict[str, np.ndarray] | None = None

    # ---- creation and opening -------------------------------------------------------------------
    @classmethod
    def create(cls, path: str | Path, documents: pd.DataFrame, field: str, encoder: dict, d_sae: int,
               skipped: dict[int, str], labels: dict[int, str] | None, plan: dict) -> "Store":
        """Write a new, empty store (documents table, labels, manifest) and return it."""
        path = Path(path)
        if path.exists() and any(path.iterdir()):
            raise FileExistsError(
                f"{path} already exists and is not empty. Open it with Dataset.load_from_file({str(path)!r}, "
                "resume=True), or choose another save_path."
            )
        path.mkdir(parents=True, exist_ok=True)
        (path / CHUNKS).mkdir(exist_ok=True)
        docs_path = path / DOCUMENTS
        write_atomically(docs_path, _documents_bytes(documents))
        body = {
            "format": FORMAT,
            "version": VERSION,
            "field": field,
            "n_documents": len(documents),
            "d_sae": int(d_sae),
            "encoder": encoder,
            "plan": plan,
            "skipped": {str(row): reason for row, reason in sorted(skipped.items())},
            "documents": {"file": DOCUMENTS, "sha256": sha256_file(docs_path)},
            "labels": None,
            "chunks": [],
        }
        if labels:
            write_atomically(path / FEATURE_LABELS, canonical_json({str(k): v for k, v in labels.items()}))
            body["labels"] = {"file": FEATURE_LABELS, "sha256": sha256_file(path / FEATURE_LABELS)}
        fsync_path(path)
        store = cls(path, body)
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
        try:
            raw = json.loads(manifest.read_bytes().decode("utf-8"))
            body, checksum = raw["body"], raw["sha256"]
        except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as err:
            raise StoreCorruptError(f"{manifest} is damaged ({err}); the store cannot be opened") from err
        if not isinstance(body, dict) or sha256_json(body) != checksum:
            raise StoreCorruptError(f"{manifest} does not match its checksum: the file was altered or damaged")
        if body.get("format") != FORMAT:
            raise StoreError(f"{manifest}: not an interp_embed store (format {body.get('format')!r})")
        if body.get("version") != VERSION:
            raise StoreError(f"{manifest}: store format version {body.get('version')} needs another interp_embed version "
                             f"(this one reads version {VERSION})")
        return cls(path, body)

    def _write_manifest(self) -> None:
        write_atomically(self.path / MANIFEST, canonical_json({"body": self.body, "sha256": sha256_json(self.body)}))

    # ---- writing --------------------------------------------------------------------------------
    def commit_chunk(self, start: int, stop: int, docs: list[EncodedDocument], vocab_size: int) -> None:
        """Durably add the encoded documents of rows [start, stop) (skipped rows simply absent)."""
        covered = {d.row for d in docs}
        if not all(start <= row < stop for row in covered):
            raise ValueError(f"documents outside rows [{start}, {stop})")
        name = f"{start:09d}-{stop:09d}"
        files = write_chunk(self.path / CHUNKS / name, build_arrays(docs, self.d_sae, vocab_size))
        entry = {"name": name, "start": start, "stop": stop, "n_encoded": len(covered),
                 "n_tokens": int(sum(len(d.token_ids) for d in docs)), "files": files}
        self.body["chunks"] = sorted(self.body["chunks"] + [entry], key=lambda e: e["start"])
        self._write_manifest()
        self._chunks, self._pooled = None, None

    # ---- reading --------------------------------------------------------------------------------
    @property
    def field(self) -> str:
        return self.body["field"]

    @property
    def d_sae(self) -> int:
        return int(self.body["d_sae"])

    @property
    def n_documents(self) -> int:
        return int(self.body["n_documents"])

    @property
    def skipped(self) -> dict[int, str]:
        return {int(row): reason for row, reason in self.body["skipped"].items()}

    def chunks(self) -> list[Chunk]:
        if self._chunks is None:
            self._chunks = [Chunk(self.path / CHUNKS / e["name"], e) for e in self.body["chunks"]]
        return self._chunks

    def pending_rows(self) -> np.ndarray:
        """Rows neither in a committed chunk nor skipped: exactly what ``resume`` still has to encode."""
        todo = np.ones(self.n_documents, dtype=bool)
        for entry in self.body["chunks"]:
            todo[entry["start"] : entry["stop"]] = False
        todo[list(self.skipped)] = False
        return np.flatnonzero(todo)

    def is_complete(self) -> bool:
        return self.pending_rows().size == 0

    def encoded_mask(self) -> np.ndarray:
        """True for rows with activations: every encoded row has at least one token (empty texts are skipped)."""
        return self.document_token_counts() > 0

    def _verified(self, entry: dict) -> Path:
        path = self.path / entry["file"]
        if not path.is_file():
            raise StoreCorruptError(f"{path} is missing")
        if sha256_file(path) != entry["sha256"]:
            raise StoreCorruptError(f"{path} does not match its checksum (truncated or altered)")
        return path

    def documents(self) -> pd.DataFrame:
        """The user's table as given (index and every column), read once and verified."""
        if self._documents is None:
            path = self._verified(self.body["documents"])
            try:
                self._documents = pq.read_table(path).to_pandas()
            except (pa.ArrowException, OSError) as err:
                raise StoreCorruptError(f"{path}: not a readable Parquet file ({err})") from err
            if len(self._documents) != self.n_documents:
                raise StoreCorruptError(f"{path} has {len(self._documents)} rows; the manifest says {self.n_documents}")
        return self._documents

    def feature_labels(self) -> dict[int, str]:
        entry = self.body.get("labels")
        if not entry:
            return {}
        path = self._verified(entry)
        try:
            return {int(k): str(v) for k, v in json.loads(path.read_text("utf-8")).items()}
        except (UnicodeDecodeError, json.JSONDecodeError, ValueError, AttributeError) as err:
            raise StoreCorruptError(f"{path}: not a label file ({err})") from err

    def _pooled_arrays(self) -> dict[str, np.ndarray]:
        """Global CSR (n_documents × d_sae) index arrays plus max/sum/count values and token counts."""
        if self._pooled is None:
            n = self.n_documents
            parts = [chunk.pooled() for chunk in self.chunks()]
            nnz_per_row = np.zeros(n, dtype=np.int64)
            n_tokens = np.zeros(n, dtype=np.int64)
            for rows, tokens, ptr, *_ in parts:
                nnz_per_row[rows] = np.diff(ptr)
                n_tokens[rows] = tokens
            cat = lambda i, dtype: np.concatenate([np.asarray(p[i], dtype=dtype) for p in parts]) if parts else np.zeros(0, dtype)
            self._pooled = {
                "indptr": np.r_[0, np.cumsum(nnz_per_row)].astype(np.int64),
                "indices": cat(3, np.int32),
                "max": cat(4, np.float32),
                "sum": cat(5, np.float32),
                "count": cat(6, np.float32),
                "n_tokens": n_tokens,
            }
        return self._pooled

    def pooled_latents(self, kind: str) -> sp.csr_matrix:
        """Document-level ``max``, ``sum`` or ``count`` (active tokens per feature), all rows, float32."""
        pooled = self._pooled_arrays()
        return sp.csr_matrix((pooled[kind], pooled["indices"], pooled["indptr"]), shape=(self.n_documents, self.d_sae))

    def document_token_counts(self) -> np.ndarray:
        """Number of the document's own tokens per row (0 for rows not encoded)."""
        return self._pooled_arrays()["n_tokens"]

    def document(self, row: int) -> dict[str, np.ndarray] | None:
        """Tokens, character spans and token activations of a row; None if it is not encoded."""
        starts = [e["start"] for e in self.body["chunks"]]
        i = bisect.bisect_right(starts, row) - 1
        if i < 0 or row >= self.body["chunks"][i]["stop"]:
            return None
        return self.chunks()[i].document(row)
