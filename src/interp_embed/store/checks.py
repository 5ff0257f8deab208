"""Structural checks of a chunk's arrays before any of their data is used.

A checksum proves a file is the one the manifest lists, not that the manifest is honest: someone can
alter an array and reseal the manifest. So every array is checked for what the code relies on — shapes
and lengths that agree, pointers that start at 0, never decrease and end where the next array ends,
feature ids below the SAE's width and ascending, finite positive values — and a violation is a
``StoreCorruptError`` naming the file, never a crash, an out-of-bounds read or quietly wrong data.

The pooled group (what ``latents()`` reads) and the token group (what highlights read) are checked
separately, so reading one never costs reading the other. Arrays are checked in the type they are stored in,
and every length is checked before an array is widened or anything is sized by it: a file's length is what
its bytes hold, and a memory-mapped array costs nothing until it is read, while an int64 copy of a crafted one
would cost eight times its size.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .errors import StoreCorruptError
from .manifest import ChunkEntry

POOLED = ("doc_rows", "token_ptr", "pool_ptr", "pool_features", "pool_max", "pool_count", "pool_sum_repeated")
TOKENS = ("doc_rows", "token_ptr", "token_ids", "char_start", "char_len", "act_count", "act_features", "act_values")
_INTEGER = {"doc_rows", "token_ptr", "pool_ptr", "pool_features", "pool_count", "token_ids", "char_start", "char_len",
            "act_count", "act_features"}


class _Checker:
    def __init__(self, folder: Path, entry: ChunkEntry, d_sae: int, arrays: dict[str, np.ndarray]):
        self.folder, self.entry, self.d_sae = folder, entry, d_sae
        for name, array in arrays.items():
            kinds = "iu" if name in _INTEGER else "f"
            if array.ndim != 1 or array.dtype.kind not in kinds:
                self.fail(name, f"holds a {array.ndim}-d {array.dtype} array where a 1-d "
                                f"{'integer' if kinds == 'iu' else 'float'} array belongs")
        self.arrays = arrays  # as stored: nothing is copied before its length is checked

    def fail(self, name: str, what: str):
        raise StoreCorruptError(f"{self.folder / (name + '.npy')} {what}. Rows {self.entry.start}..{self.entry.stop - 1} "
                                "cannot be trusted: delete this chunk's folder and its manifest entry, then resume")

    def pointers(self, name: str, n: int, end: int) -> np.ndarray:
        """CSR pointers over ``n`` rows: n + 1 of them, from 0 to ``end``, never decreasing; as int64."""
        if len(self.arrays[name]) != n + 1:
            self.fail(name, f"has {len(self.arrays[name])} entries, not {n + 1} (a pointer over {n} rows)")
        # int64: differences of unsigned pointers would wrap around instead of going negative.
        ptr = np.asarray(self.arrays[name], dtype=np.int64)
        if ptr[0] != 0 or ptr[-1] != end or (np.diff(ptr) < 0).any():
            self.fail(name, f"is not a pointer array from 0 to {end} over {n} rows")
        return ptr

    def length(self, name: str, n: int) -> None:
        if len(self.arrays[name]) != n:
            self.fail(name, f"has {len(self.arrays[name])} entries, not {n}")

    def ascending_ids(self, name: str, ptr: np.ndarray) -> None:
        """Feature ids below d_sae and strictly ascending within each row of ``ptr`` (canonical CSR)."""
        ids = self.arrays[name]
        if len(ids) and (ids.min() < 0 or ids.max() >= self.d_sae):
            self.fail(name, f"holds feature ids outside [0, {self.d_sae})")
        starts_row = np.zeros(len(ids), dtype=bool)
        starts_row[ptr[:-1][ptr[:-1] < len(ids)]] = True
        if (ids[1:] <= ids[:-1])[~starts_row[1:]].any():  # compared as stored: no difference to wrap around
            self.fail(name, "holds feature ids that repeat or are out of order within a row")

    def positive_finite(self, name: str) -> None:
        values = self.arrays[name]
        if not (np.isfinite(values) & (values > 0)).all():
            self.fail(name, "holds values that are not finite and positive")

    def rows(self) -> int:
        rows = self.arrays["doc_rows"]
        if len(rows) != self.entry.n_encoded or (rows[1:] <= rows[:-1]).any() or (
                len(rows) and (rows[0] < self.entry.start or rows[-1] >= self.entry.stop)):
            self.fail("doc_rows", f"is not {self.entry.n_encoded} ascending rows in [{self.entry.start}, "
                                  f"{self.entry.stop})")
        return len(rows)


def check_pooled(folder: Path, entry: ChunkEntry, d_sae: int, arrays: dict[str, np.ndarray]) -> None:
    """The document-level arrays agree with each other and with the manifest entry."""
    c = _Checker(folder, entry, d_sae, arrays)
    n_docs = c.rows()
    tokens = c.pointers("token_ptr", n_docs, entry.n_tokens)
    ptr = c.pointers("pool_ptr", n_docs, len(c.arrays["pool_features"]))
    for name in ("pool_max", "pool_count"):
        c.length(name, ptr[-1])
    c.ascending_ids("pool_features", ptr)
    c.positive_finite("pool_max")
    count = c.arrays["pool_count"]
    filled = np.diff(ptr) > 0  # documents with pooled entries; each one's entries are one segment of the array
    most = np.maximum.reduceat(count, ptr[:-1][filled]) if filled.any() else np.zeros(0, np.int64)
    if (count < 1).any() or (most > np.diff(tokens)[filled]).any():
        c.fail("pool_count", "holds token counts below 1 or above the document's number of tokens")
    c.length("pool_sum_repeated", int(np.count_nonzero(count > 1)))
    if not np.isfinite(c.arrays["pool_sum_repeated"]).all():
        c.fail("pool_sum_repeated", "holds values that are not finite")


def check_tokens(folder: Path, entry: ChunkEntry, d_sae: int, arrays: dict[str, np.ndarray]) -> None:
    """The token-level arrays agree with each other and with the manifest entry."""
    c = _Checker(folder, entry, d_sae, arrays)
    n_docs = c.rows()
    n_tokens = c.pointers("token_ptr", n_docs, entry.n_tokens)[-1]
    for name in ("token_ids", "char_start", "char_len", "act_count"):
        c.length(name, n_tokens)
    counts = c.arrays["act_count"]
    if (counts < 0).any():
        c.fail("act_count", "holds negative counts")
    for name in ("act_features", "act_values"):
        c.length(name, int(counts.sum(dtype=np.int64)))
    c.ascending_ids("act_features", np.r_[0, np.cumsum(counts, dtype=np.int64)])
    c.positive_finite("act_values")
    if (c.arrays["token_ids"] < 0).any() or (c.arrays["char_start"] < 0).any() or (c.arrays["char_len"] < 0).any():
        c.fail("token_ids", "or a span array holds negative values")
