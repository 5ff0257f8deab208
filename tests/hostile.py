"""Tools to tamper with a store the way an attacker would: change files, then reseal the manifest so every
checksum matches again (the manifest's own checksum detects accidents, not intent)."""
from __future__ import annotations

import json
import resource
from pathlib import Path

import numpy as np

from interp_embed.files import MANIFEST, sha256_file, sha256_json


MEMORY_CAP = 4 * 2**30
"""Address space a process reading a tampered store may use: a store that makes it allocate more (a manifest
claiming billions of rows) fails the test with a MemoryError on every machine, not only on small ones."""


def cap_memory() -> None:
    """Give the calling (child) process :data:`MEMORY_CAP` of address space; pass as ``preexec_fn``."""
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CAP, MEMORY_CAP))


def manifest_body(path: Path) -> dict:
    return json.loads((path / MANIFEST).read_text())["body"]


def reseal(path: Path, body: dict | None = None) -> None:
    """Record every chunk file's current checksum and size, then seal the manifest ``body`` (default: as on disk)."""
    body = manifest_body(path) if body is None else body
    for chunk in body["chunks"]:
        for name, record in chunk["files"].items():
            file = path / "chunks" / chunk["name"] / name
            if file.is_file() and not file.is_symlink():
                record.update(sha256=sha256_file(file), bytes=file.stat().st_size)
    if (path / "documents.parquet").is_file():
        body["documents"]["sha256"] = sha256_file(path / "documents.parquet")
    (path / MANIFEST).write_text(json.dumps({"body": body, "sha256": sha256_json(body)}))


def replace_array(path: Path, chunk: str, name: str, array: np.ndarray) -> None:
    """Write ``array`` as the chunk's ``name``.npy and reseal."""
    np.save(path / "chunks" / chunk / f"{name}.npy", array, allow_pickle=False)
    reseal(path)


def read_everything(path: Path) -> dict:
    """Everything a user can read from a store, as plain values."""
    from interp_embed import Dataset

    ds = Dataset.load_from_file(path)
    out = {name: ds.latents(name).toarray() for name in ("max", "sum", "count", "mean", "binarize")}
    out["count_above_1"] = ds.latents("count", activated_threshold=1.0).toarray()
    out["documents"] = ds.pandas().to_json()
    out["labels"] = ds.feature_labels()
    words = ds.feature_words()
    out["words"] = (words.mass.toarray(), words.words.tolist())
    out["tokens"] = [(row.tokens(), row.latents("all").toarray(), row.token_activations(0)) if encoded else None
                     for row, encoded in zip(ds, ds.encoded_mask())]
    return out


def same(a: dict, b: dict) -> bool:
    def equal(x, y):
        if isinstance(x, np.ndarray):
            return np.array_equal(x, y)
        if isinstance(x, (list, tuple)):
            return len(x) == len(y) and all(equal(i, j) for i, j in zip(x, y))
        return x == y
    return a.keys() == b.keys() and all(equal(a[k], b[k]) for k in a)
