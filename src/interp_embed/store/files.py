"""Durable file primitives: checksums, atomic replace, fsync, and the errors a damaged store raises."""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path


class StoreError(Exception):
    """A store cannot be used as it is; the message names the file and what to do."""


class StoreCorruptError(StoreError):
    """A file of a store is damaged (truncated, altered, missing): its data is never returned."""


def sha256_file(path: Path, block: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(block):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_json(obj) -> str:
    return hashlib.sha256(canonical_json(obj).encode()).hexdigest()


def canonical_json(obj) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_durably(path: Path, data: bytes) -> None:
    """Write a whole file and fsync it (the caller renames it into place)."""
    with open(path, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def replace_atomically(path: Path, data: bytes) -> None:
    """Readers see either the old file or the new one, never a mix, even after a power cut."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    write_durably(tmp, data)
    os.replace(tmp, path)
    fsync_dir(path.parent)
