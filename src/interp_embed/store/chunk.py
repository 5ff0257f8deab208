"""One chunk of a store: the encoded documents of a consecutive range of rows, as memory-mappable arrays.

Token level (CSR): ``token_ptr`` splits tokens by document; ``act_count`` splits activations by token;
``act_features`` / ``act_values`` hold the active features (narrowest unsigned type) and values (float16).
Each token keeps its id and the [start, start+len) character span in the original text, so highlights
are exact. Document level: pooled ``max`` / ``count`` per active feature, and the ``sum`` only where
the feature fired on more than one token (elsewhere the sum is the max: most entries of short
documents), written with the chunk so ``latents()`` only concatenates.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..files import atomic_folder, sha256_file
from .errors import StoreCorruptError

ARRAYS = (
    "doc_rows", "token_ptr", "token_ids", "char_start", "char_len", "act_count", "act_features", "act_values",
    "pool_ptr", "pool_features", "pool_max", "pool_count", "pool_sum_repeated",
)


@dataclass
class EncodedDocument:
    """What the encoder produced for one document: its tokens and their sparse activations."""

    row: int
    token_ids: np.ndarray  # (n,)
    spans: np.ndarray  # (n, 2) character [start, end) in the original text
    act_ptr: np.ndarray  # (n + 1,) CSR row pointers over tokens
    act_features: np.ndarray  # (nnz,)
    act_values: np.ndarray  # (nnz,) float16, > 0


def narrowest_uint(max_value: int) -> np.dtype:
    """The smallest unsigned integer type holding ``max_value`` (uint8 … uint64)."""
    return np.min_scalar_type(max(int(max_value), 0))


def _pool(doc_of_entry: np.ndarray, features: np.ndarray, values: np.ndarray, n_docs: int, d_sae: int):
    """Per-document max, sum and count of every active feature, as CSR over documents."""
    key = doc_of_entry.astype(np.int64) * d_sae + features.astype(np.int64)
    order = np.argsort(key, kind="stable")
    key, vals = key[order], values[order].astype(np.float32)
    if key.size == 0:
        empty = np.zeros(0)
        return np.zeros(n_docs + 1, np.int64), empty.astype(np.int64), empty.astype(np.float16), empty.astype(np.float32), empty.astype(np.int64)
    starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
    pool_max = np.maximum.reduceat(vals, starts).astype(np.float16)  # exact: a max of float16 values
    pool_sum = np.add.reduceat(vals, starts)
    pool_count = np.diff(np.r_[starts, key.size])
    docs, feats = np.divmod(key[starts], d_sae)
    ptr = np.r_[0, np.cumsum(np.bincount(docs, minlength=n_docs))].astype(np.int64)
    return ptr, feats, pool_max, pool_sum, pool_count


def build_arrays(docs: list[EncodedDocument], d_sae: int, vocab_size: int) -> dict[str, np.ndarray]:
    """All arrays of a chunk, pooled levels included, from the encoded documents (sorted by row)."""
    docs = sorted(docs, key=lambda d: d.row)
    n_tokens = np.array([len(d.token_ids) for d in docs], dtype=np.int64)
    token_ptr = np.r_[0, np.cumsum(n_tokens)].astype(np.int64)
    spans = np.concatenate([d.spans for d in docs]).reshape(-1, 2).astype(np.int64) if docs else np.zeros((0, 2), np.int64)
    act_count = np.concatenate([np.diff(d.act_ptr) for d in docs]) if docs else np.zeros(0, np.int64)
    features = np.concatenate([d.act_features for d in docs]) if docs else np.zeros(0, np.int64)
    values = np.concatenate([d.act_values for d in docs]).astype(np.float16) if docs else np.zeros(0, np.float16)
    token_doc = np.repeat(np.arange(len(docs)), n_tokens)
    entry_doc = np.repeat(token_doc, act_count)
    pool_ptr, pool_features, pool_max, pool_sum, pool_count = _pool(entry_doc, features, values, len(docs), d_sae)
    char_len = spans[:, 1] - spans[:, 0]
    return {
        "doc_rows": np.array([d.row for d in docs], dtype=np.int64),
        "token_ptr": token_ptr,
        "token_ids": np.concatenate([d.token_ids for d in docs]).astype(narrowest_uint(vocab_size)) if docs else np.zeros(0, np.uint32),
        "char_start": spans[:, 0].astype(narrowest_uint(spans[:, 0].max(initial=0))),
        "char_len": char_len.astype(narrowest_uint(char_len.max(initial=0))),
        "act_count": act_count.astype(narrowest_uint(act_count.max(initial=0))),
        "act_features": features.astype(narrowest_uint(d_sae - 1)),
        "act_values": values,
        "pool_ptr": pool_ptr,
        "pool_features": pool_features.astype(narrowest_uint(d_sae - 1)),
        "pool_max": pool_max,
        "pool_count": pool_count.astype(narrowest_uint(pool_count.max(initial=0))),
        "pool_sum_repeated": pool_sum[pool_count > 1].astype(np.float32),
    }


def write_chunk(folder: Path, arrays: dict[str, np.ndarray]) -> dict[str, dict]:
    """Write a chunk folder durably under a temporary name, then rename it into place.

    Returns ``{file name: {"sha256", "bytes"}}`` for the manifest. A folder of the same name left by a
    crash (never committed to the manifest) is replaced.
    """
    files = {}
    with atomic_folder(folder) as tmp:
        for name in ARRAYS:
            path = tmp / f"{name}.npy"
            np.save(path, np.ascontiguousarray(arrays[name]), allow_pickle=False)
            files[path.name] = {"sha256": sha256_file(path), "bytes": path.stat().st_size}
    return files


class Chunk:
    """Read side of a committed chunk: arrays are memory-mapped and checksum-verified on first access."""

    def __init__(self, folder: Path, entry: dict):
        self.folder = folder
        self.entry = entry
        self._arrays: dict[str, np.ndarray] = {}

    @property
    def start(self) -> int:
        return self.entry["start"]

    @property
    def stop(self) -> int:
        return self.entry["stop"]

    def array(self, name: str) -> np.ndarray:
        if name not in self._arrays:
            file_name = f"{name}.npy"
            path = self.folder / file_name
            expected = self.entry["files"].get(file_name)
            if expected is None:
                raise StoreCorruptError(f"{path}: not listed in the manifest; the manifest or the chunk is damaged")
            if not path.is_file():
                raise StoreCorruptError(f"{path} is missing; re-encode these rows with resume=True after deleting the chunk")
            if sha256_file(path) != expected["sha256"]:
                raise StoreCorruptError(
                    f"{path} does not match its checksum (truncated or altered). Its rows "
                    f"{self.start}..{self.stop - 1} cannot be trusted; remove the chunk from the store and resume."
                )
            try:
                self._arrays[name] = np.load(path, mmap_mode="r", allow_pickle=False)
            except ValueError as err:  # a checksummed file that numpy cannot read: written by something else
                raise StoreCorruptError(f"{path}: not a readable array ({err})") from err
        return self._arrays[name]

    def pooled(self) -> tuple[np.ndarray, ...]:
        """``(doc_rows, n_tokens, pool_ptr, pool_features, pool_max, pool_sum, pool_count)``."""
        pool_max, pool_count = self.array("pool_max"), self.array("pool_count")
        pool_sum = pool_max.astype(np.float32)
        repeated = pool_count > 1
        pool_sum[repeated] = self.array("pool_sum_repeated")
        return (self.array("doc_rows"), np.diff(self.array("token_ptr")), self.array("pool_ptr"),
                self.array("pool_features"), pool_max, pool_sum, pool_count)

    def document(self, row: int) -> dict[str, np.ndarray] | None:
        """Tokens, spans and per-token CSR activations of one row, or None if the row was skipped."""
        rows = self.array("doc_rows")
        pos = int(np.searchsorted(rows, row))
        if pos >= len(rows) or rows[pos] != row:
            return None
        token_ptr = self.array("token_ptr")
        t0, t1 = int(token_ptr[pos]), int(token_ptr[pos + 1])
        counts = self.array("act_count")
        # Activation offsets: a running sum over the chunk, computed once per chunk.
        if "_act_ptr" not in self._arrays:
            self._arrays["_act_ptr"] = np.r_[0, np.cumsum(counts, dtype=np.int64)]
        act_ptr = self._arrays["_act_ptr"]
        a0, a1 = int(act_ptr[t0]), int(act_ptr[t1])
        start = np.asarray(self.array("char_start")[t0:t1], dtype=np.int64)
        return {
            "token_ids": np.asarray(self.array("token_ids")[t0:t1], dtype=np.int64),
            "spans": np.stack([start, start + self.array("char_len")[t0:t1]], axis=1),
            "act_ptr": act_ptr[t0 : t1 + 1] - a0,
            "act_features": np.asarray(self.array("act_features")[a0:a1], dtype=np.int64),
            "act_values": np.asarray(self.array("act_values")[a0:a1], dtype=np.float32),
        }
