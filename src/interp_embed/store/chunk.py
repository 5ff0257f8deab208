"""One chunk of a store: the encoded documents of a consecutive range of rows, as memory-mappable arrays.

Token level (CSR): ``token_ptr`` splits tokens by document; ``act_count`` splits activations by token;
``act_features`` / ``act_values`` hold the active features (narrowest unsigned type) and values (float16, or
float32 for a chunk where float16 would turn a value into infinity or zero: see :func:`stored_values`).
Each token keeps its id and the [start, start+len) character span in the original text, so highlights
are exact. Document level: the pooled statistics (see pooling.py) — ``max`` and ``count`` per active
feature, and the ``sum`` only where the feature fired on more than one token (elsewhere the sum is the
max: most entries of short documents) — written with the chunk so ``latents()`` only concatenates.

A compact chunk (``EncodePlan(token_level=False)``) keeps the document-level arrays only (:data:`POOLED`): less
than half the bytes for short documents, less still for long ones (whose features repeat over tokens), at the
price of recomputing a document's tokens when its highlights are asked for.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..files import atomic_folder, sha256_file
from .checks import POOLED, TOKENS, check_pooled, check_tokens
from .errors import StoreCorruptError
from .manifest import ChunkEntry, FileRecord, chunk_name
from .paths import plain_file
from .pooling import PooledStatistics, above_threshold, pool_tokens

ARRAYS = (
    "doc_rows", "token_ptr", "token_ids", "char_start", "char_len", "act_count", "act_features", "act_values",
    "pool_ptr", "pool_features", "pool_max", "pool_count", "pool_sum_repeated",
)


@dataclass
class EncodedDocument:
    """One document's tokens and their sparse activations, as the encoder made them and a chunk keeps them."""

    row: int
    """Position of the document in the store's table."""
    token_ids: np.ndarray
    """(n,) the document's own token ids (template excluded)."""
    spans: np.ndarray
    """(n, 2) each token's character [start, end) in the original text."""
    act_ptr: np.ndarray
    """(n + 1,) CSR pointers: token t's activations are entries ``act_ptr[t]:act_ptr[t + 1]``."""
    act_features: np.ndarray
    """Feature id of each activation, ascending within a token."""
    act_values: np.ndarray
    """Value of each activation (> 0)."""


def stored_values(values: np.ndarray) -> np.ndarray:
    """Activations as a chunk keeps them: float16, unless float16 cannot hold one of them (a value beyond 65504
    would become infinite, one below 6e-8 zero), then float32 for all of them. A store never changes a value beyond
    float16's rounding."""
    values = np.asarray(values, dtype=np.float32)
    with np.errstate(over="ignore"):  # an overflow is what is looked for here
        half = values.astype(np.float16)
    return half if (np.isfinite(half) & ((half != 0) | (values == 0))).all() else values


def narrowest_uint(max_value: int) -> np.dtype:
    """The smallest unsigned integer type holding ``max_value`` (uint8 … uint64)."""
    return np.min_scalar_type(max(int(max_value), 0))


def pooled_arrays(rows: np.ndarray, n_tokens: np.ndarray, pooled: PooledStatistics,
                  d_sae: int) -> dict[str, np.ndarray]:
    """The document-level arrays of a chunk (:data:`POOLED`): ``rows`` ascending, each with ``n_tokens`` tokens and
    the pooled statistics of its token activations."""
    return {
        "doc_rows": np.asarray(rows, dtype=np.int64),
        "token_ptr": np.r_[0, np.cumsum(n_tokens)].astype(np.int64),
        "pool_ptr": np.asarray(pooled.indptr, dtype=np.int64),
        "pool_features": np.asarray(pooled.features).astype(narrowest_uint(d_sae - 1)),
        "pool_max": stored_values(pooled.max),  # exact: a max of stored values
        "pool_count": np.asarray(pooled.count).astype(narrowest_uint(np.max(pooled.count, initial=0))),
        "pool_sum_repeated": np.asarray(pooled.sum)[np.asarray(pooled.count) > 1].astype(np.float32),
    }


def build_arrays(docs: list[EncodedDocument], d_sae: int, token_level: bool = True) -> dict[str, np.ndarray]:
    """The arrays of a chunk from the encoded documents (sorted by row): the pooled ones, and the token-level
    ones unless ``token_level`` is False."""
    docs = sorted(docs, key=lambda d: d.row)
    for doc in docs:  # refused when written: a chunk whose values are not numbers is refused by every reader
        if not np.isfinite(doc.act_values).all():
            raise ValueError(f"row {doc.row}: the SAE gave activations that are not finite (NaN or infinite), which "
                             "cannot be stored; check the SAE's weights, and the reader's dtype (a float16 reader can "
                             "overflow)")
    n_tokens = np.array([len(d.token_ids) for d in docs], dtype=np.int64)
    spans = np.concatenate([d.spans for d in docs]).reshape(-1, 2).astype(np.int64) if docs else np.zeros((0, 2), np.int64)
    act_count = np.concatenate([np.diff(d.act_ptr) for d in docs]) if docs else np.zeros(0, np.int64)
    features = np.concatenate([d.act_features for d in docs]) if docs else np.zeros(0, np.int64)
    values = stored_values(np.concatenate([d.act_values for d in docs]) if docs else np.zeros(0))
    token_ids = np.concatenate([d.token_ids for d in docs]) if docs else np.zeros(0, np.int64)
    arrays = pooled_arrays([d.row for d in docs], n_tokens, pool_tokens(n_tokens, act_count, features, values, d_sae),
                           d_sae)
    if not token_level:
        return arrays
    char_len = spans[:, 1] - spans[:, 0]
    return {
        **arrays,
        "token_ids": token_ids.astype(narrowest_uint(token_ids.max(initial=0))),
        "char_start": spans[:, 0].astype(narrowest_uint(spans[:, 0].max(initial=0))),
        "char_len": char_len.astype(narrowest_uint(char_len.max(initial=0))),
        "act_count": act_count.astype(narrowest_uint(act_count.max(initial=0))),
        "act_features": features.astype(narrowest_uint(d_sae - 1)),
        "act_values": values,
    }


def write_chunk(chunks_folder: Path, start: int, stop: int, docs: list[EncodedDocument], d_sae: int,
                token_level: bool = True) -> ChunkEntry:
    """Write the chunk of rows [start, stop) durably under a temporary name, then rename it into place (token-level
    arrays included unless ``token_level`` is False).

    Returns its manifest entry. A folder of the same name left by a crash (never committed) is replaced.
    """
    if not all(start <= d.row < stop for d in docs):
        raise ValueError(f"documents outside rows [{start}, {stop})")
    return write_arrays(chunks_folder, start, stop, build_arrays(docs, d_sae, token_level))


def write_arrays(chunks_folder: Path, start: int, stop: int, arrays: dict[str, np.ndarray]) -> ChunkEntry:
    """Write a chunk's arrays (all of :data:`ARRAYS`, or the pooled ones of a compact chunk) as
    :func:`write_chunk` does, and return its manifest entry."""
    names = ARRAYS if TOKENS[-1] in arrays else POOLED
    files = {}
    with atomic_folder(chunks_folder / chunk_name(start, stop)) as tmp:
        for name in names:
            path = tmp / f"{name}.npy"
            np.save(path, np.ascontiguousarray(arrays[name]), allow_pickle=False)
            files[path.name] = FileRecord(sha256=sha256_file(path), bytes=path.stat().st_size)
    token_ptr = arrays["token_ptr"]
    return ChunkEntry(start=start, stop=stop, n_encoded=len(arrays["doc_rows"]), n_tokens=int(token_ptr[-1]),
                      files=files)


class Chunk:
    """Read side of a committed chunk: each array is memory-mapped after its file is checked (a plain file of
    the recorded size and checksum), and each group of arrays is checked for structure before first use."""

    def __init__(self, folder: Path, entry: ChunkEntry, d_sae: int):
        self.folder = folder
        self.entry = entry
        self.d_sae = d_sae
        self._arrays: dict[str, np.ndarray] = {}
        self._verified: set[str] = set()  # files whose size and checksum were checked (once per object)
        self._checked: set[str] = set()
        self._act_ptr: np.ndarray | None = None

    def array(self, name: str) -> np.ndarray:
        if name not in self._arrays:
            path = self.folder / f"{name}.npy"
            expected = self.entry.files.get(path.name)
            if expected is None:
                raise StoreCorruptError(f"{path}: not listed in the manifest; the manifest or the chunk is damaged")
            plain_file(path)
            size = path.stat().st_size
            if expected.bytes is not None and size != expected.bytes:
                raise StoreCorruptError(f"{path} has {size} bytes; the manifest says {expected.bytes}. Its rows "
                                        f"{self.entry.start}..{self.entry.stop - 1} cannot be trusted")
            if name not in self._verified and sha256_file(path) != expected.sha256:
                raise StoreCorruptError(
                    f"{path} does not match its checksum (truncated or altered). Its rows "
                    f"{self.entry.start}..{self.entry.stop - 1} cannot be trusted; remove the chunk from the store "
                    "and resume."
                )
            try:
                self._arrays[name] = np.load(path, mmap_mode="r", allow_pickle=False)
            except (ValueError, OSError, EOFError) as err:  # checksummed, yet not an array numpy can map
                raise StoreCorruptError(f"{path}: not a readable array ({err})") from err
            self._verified.add(name)
        return self._arrays[name]

    def release(self) -> None:
        """Unmap the arrays, so that the pages read stop counting against the process's memory; they are mapped
        again (without a second checksum) when next needed. Blockwise analyses call it after each block."""
        self._arrays.clear()
        self._act_ptr = None

    def _checked_group(self, group: tuple[str, ...], check) -> None:
        key = group[-1]
        if key not in self._checked:
            check(self.folder, self.entry, self.d_sae, {name: self.array(name) for name in group})
            self._checked.add(key)

    @property
    def compact(self) -> bool:
        """Whether the chunk keeps pooled arrays only (written with ``EncodePlan(token_level=False)``)."""
        return f"{TOKENS[-1]}.npy" not in self.entry.files

    @property
    def rows(self) -> np.ndarray:
        """The rows of this chunk that have activations, ascending (checked with either group of arrays)."""
        return self.array("doc_rows")

    def pooled(self) -> PooledStatistics:
        """The pooled statistics written with the chunk, one document per entry of :attr:`rows`."""
        self._checked_group(POOLED, check_pooled)
        pool_max, pool_count = self.array("pool_max"), self.array("pool_count")
        pool_sum = pool_max.astype(np.float32)
        pool_sum[pool_count > 1] = self.array("pool_sum_repeated")
        return PooledStatistics(indptr=self.array("pool_ptr"), features=self.array("pool_features"), max=pool_max,
                                sum=pool_sum, count=pool_count, n_tokens=np.diff(self.array("token_ptr")))

    def token_level(self) -> dict[str, np.ndarray]:
        """The token-level arrays (rows, tokens, spans, activations), checked for structure before first use."""
        self._checked_group(TOKENS, check_tokens)
        return {name: self.array(name) for name in TOKENS}

    def pooled_above(self, threshold: float) -> PooledStatistics:
        """The statistics of only the token activations above ``threshold``, pooled from the token level."""
        tokens = self.token_level()
        return above_threshold(np.diff(tokens["token_ptr"]), tokens["act_count"], tokens["act_features"],
                               tokens["act_values"], threshold, self.d_sae)

    def document(self, row: int) -> EncodedDocument | None:
        """Tokens, spans and per-token activations of one row, or None if the row has none (skipped)."""
        self._checked_group(TOKENS, check_tokens)
        rows = self.rows
        pos = int(np.searchsorted(rows, row))
        if pos >= len(rows) or rows[pos] != row:
            return None
        token_ptr = self.array("token_ptr")
        t0, t1 = int(token_ptr[pos]), int(token_ptr[pos + 1])
        if self._act_ptr is None:  # activation offsets: a running sum over the chunk, computed once
            self._act_ptr = np.r_[0, np.cumsum(self.array("act_count"), dtype=np.int64)]
        a0, a1 = int(self._act_ptr[t0]), int(self._act_ptr[t1])
        start = np.asarray(self.array("char_start")[t0:t1], dtype=np.int64)
        return EncodedDocument(
            row=row,
            token_ids=np.asarray(self.array("token_ids")[t0:t1], dtype=np.int64),
            spans=np.stack([start, start + self.array("char_len")[t0:t1]], axis=1),
            act_ptr=self._act_ptr[t0 : t1 + 1] - a0,
            act_features=np.asarray(self.array("act_features")[a0:a1], dtype=np.int64),
            act_values=np.asarray(self.array("act_values")[a0:a1], dtype=np.float32),
        )
