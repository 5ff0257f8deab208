"""File names and durable writes: every file interp_embed writes goes through here.

A write is atomic. The data goes to a temporary file (or folder) created exclusively beside its target —
never through a link planted under the temporary name — is fsynced, renamed over the target, and the
folder holding it is fsynced. A reader, or a run resumed after a crash or a power cut, sees the old
version or the new one, never half of one; a failed write leaves no temporary behind, and a full disk is
said to be one.

A temporary's name records the machine and the process that made it (:func:`temporary_prefix`), so what a
killed process left is recognised and removed by the next writer in that folder
(:func:`remove_dead_temporaries`). Renames that must not replace anything (a new store: of two processes
saving to one path, exactly one wins) or that swap two folders (a store replaced whole) are single system
calls where the system has them (:func:`rename_no_replace`, :func:`exchange`).
"""
from __future__ import annotations

import ctypes
import errno
import fcntl
import hashlib
import json
import os
import re
import shutil
import socket
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cache
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

# Tables of documents that can be encoded (interp-embed encode reads these).
TABLE_SUFFIXES = (".csv", ".tsv", ".json", ".jsonl", ".parquet", ".txt", ".md", ".text")

# A training run folder (see interp_embed.train).
TRAINING_STATE = "state.json"
TRAINED_SAE = "sae"

# Temporary files and folders start with this, so that no reader mistakes them for data.
TEMPORARY_PREFIX = ".tmp-"
_MACHINE = hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]
"""Names this machine in temporaries' names: on a folder shared by several machines, a process id is only
meaningful on the machine that made it."""
_OWNED = re.compile(rf"{re.escape(TEMPORARY_PREFIX)}.*-(?P<machine>[0-9a-f]{{8}})-(?P<pid>\d+)-[a-z0-9_]{{8}}")

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


def temporary_prefix(name: str) -> str:
    """The start of the name of a temporary made for ``name``: ours, and naming this machine and process."""
    return f"{TEMPORARY_PREFIX}{name}-{_MACHINE}-{os.getpid()}-"


def remove_dead_temporaries(folder: Path) -> None:
    """Remove what killed processes of this machine left in ``folder``: temporaries named by
    :func:`temporary_prefix` whose process is gone. A link is removed, never followed; anything else (another
    machine's, a live process's, a name that is not ours) is left alone."""
    try:
        entries = list(os.scandir(folder))
    except FileNotFoundError:
        return
    for entry in entries:
        owner = _OWNED.fullmatch(entry.name)
        if owner is None or owner["machine"] != _MACHINE or _alive(int(owner["pid"])):
            continue
        if entry.is_dir(follow_symlinks=False):
            shutil.rmtree(entry.path, ignore_errors=True)  # another writer may be removing it too
        else:
            with _suppressed(FileNotFoundError):
                os.unlink(entry.path)


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


@contextmanager
def _suppressed(*errors):
    try:
        yield
    except errors:
        pass


class DiskFullError(OSError):
    """A write ran out of room (a full disk, a quota, a file size limit); the message says what was kept."""


_PARTIAL_WRITE = re.compile(r"(\d+) requested and (\d+) written")  # how numpy reports a short write


def _explained(error: BaseException, path: Path) -> BaseException:
    """``error``, or for a write that ran out of room a :class:`DiskFullError` that says so in words."""
    if not isinstance(error, OSError) or isinstance(error, DiskFullError):
        return error
    partial = _PARTIAL_WRITE.fullmatch(str(error))
    if error.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG) and partial is None:
        return error
    detail = f"{int(partial[2]):,} of {int(partial[1]):,} bytes written" if partial else error.strerror
    return DiskFullError(error.errno or errno.ENOSPC,
                         f"{path} could not be written: the disk is full, or a file size limit was reached ({detail}). "
                         "The partial write was removed and nothing committed before it was lost: free some space, "
                         "then run again (an interrupted encoding resumes from its last committed chunk)")


def write_atomically(path: str | Path, data: bytes | str | Callable[[Path], None]) -> None:
    """Replace ``path`` by ``data`` (bytes, UTF-8 text, or a function that writes the file at the path it gets)."""
    path = Path(path)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=temporary_prefix(path.name))
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
    except BaseException as error:
        tmp.unlink(missing_ok=True)
        explained = _explained(error, path)
        if explained is error:
            raise
        raise explained from error


@contextmanager
def temporary_folder(target: Path) -> Iterator[Path]:
    """An empty folder created exclusively beside ``target`` under a temporary name of ours; removed, with all it
    holds, if the block raises (a full disk then raises a :class:`DiskFullError` that says so)."""
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=temporary_prefix(target.name)))
    try:
        yield tmp
    except BaseException as error:
        shutil.rmtree(tmp, ignore_errors=True)
        explained = _explained(error, target)
        if explained is error:
            raise
        raise explained from error


def make_durable(folder: Path) -> None:
    """Give a folder built under a temporary name the mode a plain mkdir would, and flush every file and folder
    in it to disk, before it is renamed into place."""
    os.chmod(folder, 0o777 & ~_UMASK)
    for path in sorted(folder.rglob("*"), reverse=True):  # files before the folders holding them
        fsync_path(path)
    fsync_path(folder)


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
    with temporary_folder(target) as tmp:
        yield tmp
        make_durable(tmp)
        if replace:
            if os.path.lexists(target):
                _remove(target)
            os.replace(tmp, target)
        else:
            try:
                rename_no_replace(tmp, target)
            except FileExistsError:
                shutil.rmtree(tmp)
                return
        fsync_path(target.parent)


def _remove(path: Path) -> None:
    """Delete a file, a link (not what it points to) or a folder tree."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()


# ---- renames that replace nothing, and swaps -----------------------------------------------------------------
_AT_FDCWD = -100  # Linux: a path relative to the working directory
_RENAME_NOREPLACE, _RENAME_EXCHANGE = 1, 2


@cache
def _renameat2():
    """Linux's renameat2 from the C library, or None where there is none (another system, an old C library)."""
    try:
        function = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    function.restype = ctypes.c_int
    return function


def _rename_with_flags(source: Path, target: Path, flags: int) -> bool:
    """Rename by renameat2 with ``flags``: True when done, False where the system or the file system cannot."""
    function = _renameat2()
    if function is None:
        return False
    if function(_AT_FDCWD, os.fsencode(source), _AT_FDCWD, os.fsencode(target), flags) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP):  # e.g. NFS, older kernels
        return False
    raise OSError(code, os.strerror(code), str(source), None, str(target))


def rename_no_replace(source: Path, target: Path) -> None:
    """Rename ``source`` to ``target`` unless something is at ``target`` (then a FileExistsError naming it): one
    system call on Linux, so that of two processes renaming to one name exactly one succeeds; elsewhere, a check
    and a rename under a lock on the folder (which every interp_embed process takes there)."""
    source, target = Path(source), Path(target)
    if _rename_with_flags(source, target, _RENAME_NOREPLACE):
        return
    with _folder_locked(target.parent):
        if os.path.lexists(target):
            raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), str(target))
        os.rename(source, target)


def exchange(first: Path, second: Path) -> None:
    """Swap what is at ``first`` and at ``second`` (both exist): one system call on Linux, so that whoever looks
    at either name at any moment sees one of the two, whole. Elsewhere ``second`` is renamed aside and ``first``
    into its place: a kill between those two renames leaves ``second``'s entry under a temporary name."""
    first, second = Path(first), Path(second)
    if _rename_with_flags(first, second, _RENAME_EXCHANGE):
        return
    aside = Path(tempfile.mktemp(dir=second.parent, prefix=temporary_prefix(second.name)))
    rename_no_replace(second, aside)
    try:
        os.rename(first, second)
    except BaseException:
        os.rename(aside, second)
        raise
    os.rename(aside, first)


@contextmanager
def _folder_locked(folder: Path) -> Iterator[None]:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
