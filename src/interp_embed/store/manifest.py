"""The manifest of a store, typed: what it holds, what encoded it, and which chunks are committed.

On disk it is ``{"body": <Manifest.to_json()>, "sha256": <hash of body>}``. Reading checks the
checksum, the format and the version, and the type of every value; a store written by an older
version is read and upgraded in memory (it is written back in the current version at its next commit).
Nothing outside ``interp_embed.store`` reads the JSON itself.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..files import canonical_json, sha256_json
from ..spec.hook_point import SITE_NAMES
from ..spec.plan import EncodePlan
from .errors import StoreCorruptError, StoreError

FORMAT = "interp_embed.store"
VERSION = 3
"""1: the first format. 2: keeps ``dataset_description``; the SAE source is recorded under ``source``. 3: lists
``columns`` added after encoding. A store without such columns is still written as version 2, which older
versions of interp_embed read."""
READABLE_VERSIONS = (1, 2, 3)
CHUNK_NAME = re.compile(r"\d{9}-\d{9}")
ARRAY_FILE = re.compile(r"[a-z_]+\.npy")
SHA256 = re.compile(r"[0-9a-f]{64}")
MAX_FEATURES = 2**31 - 1  # feature ids are handled as int32 (scipy's index type)


def chunk_name(start: int, stop: int) -> str:
    """The folder name of the chunk holding rows [start, stop)."""
    return f"{start:09d}-{stop:09d}"


@dataclass(frozen=True)
class FileRecord:
    """A file of the store and the checksum its bytes must match before any of its data is used."""

    sha256: str
    """Hex SHA-256 of the file's bytes."""
    bytes: int | None = None
    """Size in bytes (recorded for chunk files, to report the store's size without reading them)."""

    def to_json(self) -> dict:
        return {"sha256": self.sha256} if self.bytes is None else {"sha256": self.sha256, "bytes": self.bytes}


@dataclass(frozen=True)
class ColumnRecord:
    """A column added to the documents table after encoding, kept in a file of its own (``columns/<sha256>.parquet``,
    named by its checksum, never by anything else the manifest says)."""

    name: str
    """The column's name in the documents table."""
    file: FileRecord
    """Its file's checksum and size."""

    def to_json(self) -> dict:
        return {"name": self.name, **self.file.to_json()}


@dataclass(frozen=True)
class ChunkEntry:
    """A committed chunk: the encoded documents of rows [start, stop), one file per array."""

    start: int
    """First row of the chunk."""
    stop: int
    """One past its last row."""
    n_encoded: int
    """Rows of the range that have activations (skipped rows have none)."""
    n_tokens: int
    """Document tokens stored for those rows."""
    files: dict[str, FileRecord]
    """Array file name (``token_ids.npy`` …) → its checksum and size."""

    @property
    def name(self) -> str:
        return chunk_name(self.start, self.stop)

    @property
    def bytes(self) -> int:
        return sum(record.bytes or 0 for record in self.files.values())

    @property
    def pooled_entries(self) -> int:
        """About how many (document, feature) pooled entries the chunk holds, from the size of its float16
        ``pool_max.npy`` alone: what sizes a read of the chunk before anything is read (over by a header's 64, and
        twice over for a chunk whose values needed float32)."""
        record = self.files.get("pool_max.npy")
        return (record.bytes or 0) // 2 if record is not None else 0

    def to_json(self) -> dict:
        return {"name": self.name, "start": self.start, "stop": self.stop, "n_encoded": self.n_encoded,
                "n_tokens": self.n_tokens, "files": {name: f.to_json() for name, f in self.files.items()}}

    @classmethod
    def from_json(cls, data: dict) -> "ChunkEntry":
        """The entry :meth:`to_json` wrote, checked as a manifest's entries are (a TypeError or ValueError if not)."""
        return _chunk(_typed(data, dict, "chunk"))


@dataclass(frozen=True)
class ReaderRecord:
    """The reader that encoded a store: enough to recognise it, and to explain its tokens."""

    model: str
    """Hugging Face name or folder of the model."""
    layer: int
    """Decoder block the SAE reads in."""
    role: str
    """Chat-template role the documents were wrapped in (``assistant``, ``user`` or ``raw``)."""
    d_model: int
    """Width of the hidden state."""
    vocab_size: int
    """Number of token ids of its tokenizer."""
    prefix_ids: tuple[int, ...]
    """Token ids of the template scaffolding fed before every document (never stored or pooled)."""
    site: str = "resid_post"
    """Where in the block the SAE reads (``resid_post``: the block's output; see ``HookPoint``)."""
    dtype: str = "float32"
    """The arithmetic the reader ran in, ``float32`` or ``bfloat16`` (the SAE always runs in float32)."""

    def to_json(self) -> dict:
        # Stores written before sites (or arithmetics) were recorded read the block's output in float32 and record
        # neither; a store that did the same still records neither.
        site = {} if self.site == "resid_post" else {"site": self.site}
        dtype = {} if self.dtype == "float32" else {"dtype": self.dtype}
        return {"model": self.model, "layer": self.layer, **site, "role": self.role, "d_model": self.d_model,
                "vocab_size": self.vocab_size, "prefix_ids": list(self.prefix_ids), **dtype}


def encoder_identity(reader: str | None, layer: int | None, role: str | None, arithmetic: str | None,
                     sae_config: dict, sae_sha256: str | None) -> dict:
    """The facts that decide activations: which reader, read at which layer, in which role and arithmetic, by an
    SAE of which configuration and weights. Provenance in the SAE's config (``model_name``, ``extra``) and unset
    settings do not count."""
    decisive = {k: v for k, v in sorted(sae_config.items()) if k not in ("model_name", "extra") and v is not None}
    return {"reader": reader, "layer": layer, "role": role, "reader arithmetic": arithmetic, "SAE config": decisive,
            "SAE weights (sha256)": sae_sha256}


@dataclass(frozen=True)
class EncoderRecord:
    """Everything that decides a store's activations: the reader, the SAE's config and the SAE's weights.

    Two encodings are comparable only if these agree (see :meth:`differences`).
    """

    source: dict | None
    """Plain JSON that rebuilds the SAE object (``{"type": "default", "role": "assistant"}`` …); None for a
    store written by code that names no SAE (such a store is analysed, never resumed)."""
    reader: ReaderRecord | None
    """The reader; None when ``source`` is None."""
    sae: dict
    """The SAE's configuration as its architecture writes it (architecture, d_in, d_sae, hook_layer …)."""
    sae_sha256: str | None
    """SHA-256 of the SAE's weights file."""

    @property
    def d_sae(self) -> int:
        return int(self.sae["d_sae"])

    def summary(self) -> str:
        """One line naming the SAE: architecture, where it came from and the reader layer it reads."""
        parts = [f"{self.sae.get('architecture', 'unknown')} architecture"]
        if self.source:
            parts.append(", ".join(f"{k}={v}" for k, v in self.source.items() if v is not None))
        if self.reader is not None:
            site = "" if self.reader.site == "resid_post" else f" ({self.reader.site})"
            parts.append(f"reading layer {self.reader.layer}{site} of {self.reader.model} in {self.reader.dtype}")
        return "; ".join(parts)

    def identity(self) -> dict:
        """What must be equal for two encodings to be the same (see :func:`encoder_identity`)."""
        reader = self.reader
        return encoder_identity(reader and reader.model, reader and reader.layer, reader and reader.role,
                                reader and reader.dtype, self.sae, self.sae_sha256)

    def differences(self, identity: dict) -> list[str]:
        """Human-readable differences between this encoder and another's :meth:`identity`, or []."""
        mine, found = self.identity(), []
        for key, value in mine.items():
            other = identity.get(key)
            if value == other:
                continue
            if isinstance(value, dict) and isinstance(other, dict):  # name only the settings that differ
                keys = sorted(k for k in value.keys() | other.keys() if value.get(k) != other.get(k))
                found.append(f"{key}: " + ", ".join(f"{k} {value.get(k)!r} vs {other.get(k)!r}" for k in keys))
            else:
                found.append(f"{key} {value!r} vs {other!r}")
        return found

    def to_json(self) -> dict:
        return {"source": self.source, "reader": self.reader and self.reader.to_json(), "sae": self.sae,
                "sae_sha256": self.sae_sha256}


@dataclass
class Manifest:
    """The typed content of ``manifest.json``; a commit rewrites it whole, atomically."""

    field: str
    """The column of the documents table that holds the text."""
    n_documents: int
    """Rows of the documents table, encoded or not."""
    encoder: EncoderRecord
    """What encoded (or will encode) the rows."""
    plan: EncodePlan
    """How the rows are cut into chunks and batches; resuming uses the same plan."""
    skipped: dict[int, str]
    """Rows kept without activations → why (``missing (None/NaN)``, ``empty`` …)."""
    documents: FileRecord
    """The documents table (``documents.parquet``)."""
    labels: FileRecord | None = None
    """The SAE's feature labels at encoding time (``feature_labels.json``), if it had any."""
    chunks: list[ChunkEntry] = field(default_factory=list)
    """Committed chunks, by first row."""
    dataset_description: str = ""
    """What the user said the dataset is."""
    columns: list[ColumnRecord] = field(default_factory=list)
    """Columns added after encoding, in the order they were added (a name appears once)."""

    @property
    def d_sae(self) -> int:
        return self.encoder.d_sae

    def add_chunk(self, entry: ChunkEntry) -> None:
        self.chunks = sorted([c for c in self.chunks if c.start != entry.start] + [entry], key=lambda c: c.start)

    def to_json(self) -> dict:
        added = {"columns": [c.to_json() for c in self.columns]} if self.columns else {}
        return {
            "format": FORMAT, "version": VERSION if self.columns else 2, "field": self.field,
            "n_documents": self.n_documents, "d_sae": self.d_sae, "encoder": self.encoder.to_json(),
            "plan": self.plan.to_json(), "skipped": {str(row): reason for row, reason in sorted(self.skipped.items())},
            "documents": self.documents.to_json(), "labels": self.labels and self.labels.to_json(),
            "chunks": [c.to_json() for c in self.chunks], "dataset_description": self.dataset_description, **added,
        }

    def to_bytes(self) -> bytes:
        body = self.to_json()
        return canonical_json({"body": body, "sha256": sha256_json(body)}).encode("utf-8")

    @classmethod
    def from_bytes(cls, data: bytes, path: Path) -> "Manifest":
        """Parse and check a manifest file's bytes; ``path`` names it in every error."""
        try:
            raw = json.loads(data.decode("utf-8"))
            body, checksum = raw["body"], raw["sha256"]
        # ValueError: not JSON, or a number JSON allows and Python will not read (an integer of 4,300+ digits).
        except (UnicodeDecodeError, ValueError, KeyError, TypeError, RecursionError) as err:
            raise StoreCorruptError(f"{path} is damaged ({type(err).__name__}); the store cannot be opened") from err
        try:
            sealed = isinstance(body, dict) and sha256_json(body) == checksum
        except (TypeError, ValueError, RecursionError):  # values JSON cannot write back (NaN …)
            sealed = False
        if not sealed:
            raise StoreCorruptError(f"{path} does not match its checksum: the file was altered or damaged")
        if body.get("format") != FORMAT:
            raise StoreError(f"{path}: not an interp_embed store (format {body.get('format')!r})")
        if body.get("version") not in READABLE_VERSIONS:
            raise StoreError(f"{path}: store format version {body.get('version')!r} needs another interp_embed "
                             f"version (this one reads versions {', '.join(map(str, READABLE_VERSIONS))})")
        try:
            return _parse(body)
        except (KeyError, TypeError, ValueError) as err:
            raise StoreCorruptError(f"{path}: unexpected content ({type(err).__name__}: {err})") from err


def _typed(value, kind: type, what: str):
    # bool is an int in Python, never a count here.
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise TypeError(f"{what} should be {kind.__name__}, not {type(value).__name__}")
    return value


def _file(data: dict, what: str) -> FileRecord:
    size = data.get("bytes")
    return FileRecord(sha256=_typed(data["sha256"], str, f"{what}.sha256"),
                      bytes=None if size is None else _typed(size, int, f"{what}.bytes"))


def _chunk(data: dict) -> ChunkEntry:
    start, stop = _typed(data["start"], int, "chunk start"), _typed(data["stop"], int, "chunk stop")
    if data.get("name", chunk_name(start, stop)) != chunk_name(start, stop):
        raise ValueError(f"chunk {data.get('name')!r} does not hold rows [{start}, {stop})")
    files = {_typed(name, str, "chunk file name"): _file(_typed(f, dict, name), name)
             for name, f in _typed(data["files"], dict, "chunk files").items()}
    if not all(ARRAY_FILE.fullmatch(name) for name in files):  # a bare file name: never a path
        raise ValueError(f"chunk {chunk_name(start, stop)} names files that are not its arrays: {sorted(files)[:5]}")
    return ChunkEntry(start=start, stop=stop, n_encoded=_typed(data["n_encoded"], int, "n_encoded"),
                      n_tokens=_typed(data["n_tokens"], int, "n_tokens"), files=files)


def _column(data: dict) -> ColumnRecord:
    name = _typed(data["name"], str, "column name")
    record = _file(data, f"column {name!r}")
    if not name or not SHA256.fullmatch(record.sha256):  # the checksum names the file: hex digits only
        raise ValueError(f"column {name!r} has no name or a checksum that is not 64 hex digits")
    return ColumnRecord(name=name, file=record)


def _encoder(data: dict, version: int) -> EncoderRecord:
    source = data["spec"] if version == 1 else data["source"]
    reader = data.get("reader")
    return EncoderRecord(
        source=None if source is None else _typed(source, dict, "encoder source"),
        reader=None if reader is None else ReaderRecord(
            model=_typed(reader["model"], str, "reader model"), layer=_typed(reader["layer"], int, "reader layer"),
            role=_typed(reader["role"], str, "reader role"), d_model=_typed(reader["d_model"], int, "d_model"),
            vocab_size=_typed(reader["vocab_size"], int, "vocab_size"),
            prefix_ids=tuple(_typed(i, int, "prefix id") for i in _typed(reader["prefix_ids"], list, "prefix_ids")),
            site=_site(reader.get("site", "resid_post")), dtype=_arithmetic(reader.get("dtype", "float32"))),
        sae=_typed(data["sae"], dict, "encoder sae"),
        sae_sha256=None if data.get("sae_sha256") is None else _typed(data["sae_sha256"], str, "sae_sha256"),
    )


def _site(value) -> str:
    if _typed(value, str, "reader site") not in SITE_NAMES:
        raise ValueError(f"reader site {value!r} is none of {', '.join(SITE_NAMES)}")
    return value


def _arithmetic(value) -> str:
    if _typed(value, str, "reader dtype") not in ("float32", "bfloat16"):
        raise ValueError(f"reader dtype {value!r} is neither float32 nor bfloat16")
    return value


def _check_structure(manifest: Manifest) -> None:
    """Sizes and ranges that must hold before anything is allocated or read by them."""
    n = manifest.n_documents
    if n < 0:
        raise ValueError(f"n_documents is {n}")
    if not 1 <= manifest.d_sae <= MAX_FEATURES:
        raise ValueError(f"d_sae must be in [1, {MAX_FEATURES}], not {manifest.d_sae}")
    outside = [row for row in manifest.skipped if not 0 <= row < n]
    if outside:
        raise ValueError(f"skipped rows {outside[:5]} are outside the table's {n} rows")
    previous_stop = 0
    for chunk in manifest.chunks:  # sorted by start: they must tile rows without overlap
        if not previous_stop <= chunk.start < chunk.stop <= n:
            raise ValueError(f"chunk {chunk.name} overlaps another chunk or lies outside the table's {n} rows")
        if not 0 <= chunk.n_encoded <= chunk.stop - chunk.start or chunk.n_tokens < 0:
            raise ValueError(f"chunk {chunk.name} claims {chunk.n_encoded} encoded rows and {chunk.n_tokens} tokens")
        if any(f.bytes is not None and f.bytes < 0 for f in chunk.files.values()):
            raise ValueError(f"chunk {chunk.name} records a negative file size")
        previous_stop = chunk.stop
    names = [c.name for c in manifest.columns]
    if len(set(names)) != len(names) or manifest.field in names:
        raise ValueError(f"the added columns {names[:5]} repeat a name or replace the text column {manifest.field!r}")


def _parse(body: dict) -> Manifest:
    version = body["version"]
    encoder = _encoder(_typed(body["encoder"], dict, "encoder"), version)
    if version == 1:  # the SAE's width was recorded beside the encoder, which then did not always carry it
        encoder = EncoderRecord(encoder.source, encoder.reader, {**encoder.sae, "d_sae": body["d_sae"]},
                                encoder.sae_sha256)
    _typed(encoder.sae.get("d_sae"), int, "d_sae")
    labels = body.get("labels")
    manifest = Manifest(
        field=_typed(body["field"], str, "field"),
        n_documents=_typed(body["n_documents"], int, "n_documents"),
        encoder=encoder,
        plan=EncodePlan.from_json(_typed(body["plan"], dict, "plan")),
        skipped={int(row): _typed(reason, str, "skipped reason")
                 for row, reason in _typed(body["skipped"], dict, "skipped").items()},
        documents=_file(_typed(body["documents"], dict, "documents"), "documents"),
        labels=None if labels is None else _file(_typed(labels, dict, "labels"), "labels"),
        chunks=sorted((_chunk(_typed(c, dict, "chunk")) for c in _typed(body["chunks"], list, "chunks")),
                      key=lambda c: c.start),
        dataset_description=_typed(body.get("dataset_description", ""), str, "dataset_description"),
        columns=[_column(_typed(c, dict, "column")) for c in _typed(body.get("columns", []), list, "columns")],
    )
    _check_structure(manifest)
    return manifest
