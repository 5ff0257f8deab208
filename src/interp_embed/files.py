"""File names and durable writes: every file interp_embed writes goes through here.

A write is atomic. The data goes to a temporary file (or folder) created exclusively beside its target —
never through a link planted under the temporary name — is fsynced, renamed over the target, and the
folder holding it is fsynced. A reader, or a run resumed after a crash or a power cut, sees the old
version or the new one, never half of one; a failed write leaves no temporary behind.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

# An SAE folder, in SAELens' layout plus our labels.
SAE_CONFIG = "cfg.json"
SAE_WEIGHTS = "sae_weights.safetensors"
SAE_ACTIVATION_SCALER = "activation_scaler.json"  # a SAELens checkpoint's input scaling factor
FEATURE_LABELS = "feature_labels.json"
FEATURE_SUMMARIES = "feature_summaries.json"
TRAINING_REPORT = "training.json"

# A dataset store (see interp_embed.store).
MANIFEST = "manifest.json"
DOCUMENTS = "documents.parquet"
CHUNKS = "chunks"
LABEL_RECORDS = "labels"
ADDED_COLUMNS = "columns"
WRITER_LOCK = ".lock"

# A training run folder (see interp_embed.train).
TRAINING_STATE = "state.json"
TRAINED_SAE = "sae"

# Temporary files and folders start with this, so that no reader mistakes them for data.
TEMPORARY_PREFIX = ".tmp-"

# What a plain open() would give a new file or folder: mkstemp/mkdtemp create them private (0600/0700).
_UMASK = os.umask(0)
os.umask(_UMASK)


def sha256_file(path: Path, block: int = 1 << 22) -> str:
    """Hex SHA-256 of a file's bytes, read in blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(block):
            digest.update(chunk)
    return digest.hexdigest()


def canonical_json(obj) -> str:
    """One spelling per value (sorted keys, no spaces, no NaN), so its hash identifies the content."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def sha256_json(obj) -> str:
    return hashlib.sha256(canonical_json(obj).encode()).hexdigest()


def fsync_path(path: Path) -> None:
    """Flush a file's bytes, or a folder's entries (a rename, a new file), to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomically(path: str | Path, data: bytes | str | Callable[[Path], None]) -> None:
    """Replace ``path`` by ``data`` (bytes, UTF-8 text, or a function that writes the file at the path it gets)."""
    path = Path(path)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f"{TEMPORARY_PREFIX}{path.name}-")
    tmp = Path(name)
    try:
        if callable(data):
            os.close(fd)
            data(tmp)
        else:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data.encode("utf-8") if isinstance(data, str) else data)
        os.chmod(tmp, 0o666 & ~_UMASK)
        fsync_path(tmp)
        os.replace(tmp, path)
        fsync_path(path.parent)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextmanager
def atomic_folder(target: str | Path, replace: bool = True) -> Iterator[Path]:
    """Build a folder in a temporary place and move it to ``target`` in one rename when the block ends.

    >>> with atomic_folder(store / "chunks" / "000-010") as tmp:      # doctest: +SKIP
    ...     np.save(tmp / "values.npy", values)

    ``replace=True``: an existing ``target`` (such as a leftover of a crash) is replaced.
    ``replace=False``: an existing ``target`` wins (another process built the same thing first) and the
    new folder is discarded. If the block raises, nothing is left behind.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f"{TEMPORARY_PREFIX}{target.name}-"))
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_UMASK)
        for path in sorted(tmp.rglob("*"), reverse=True):  # files before the folders holding them
            fsync_path(path)
        fsync_path(tmp)
        if target.exists() or target.is_symlink():
            if not replace:
                shutil.rmtree(tmp)
                return
            _remove(target)
        os.replace(tmp, target)
        fsync_path(target.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _remove(path: Path) -> None:
    """Delete a file, a link (not what it points to) or a folder tree."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()
