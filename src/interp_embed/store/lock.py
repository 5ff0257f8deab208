"""The writer lock of a store: one process writes a store at a time, across processes; readers never wait.

The lock is ``fcntl.flock`` on the store's ``.lock`` file, which records the holder's process id. It dies with
its process, so a crash never leaves a stale lock. A store may come from someone else, so the lock file is
opened without following a link and must be a regular file (a FIFO or a device planted under its name is
refused by name).
"""
from __future__ import annotations

import fcntl  # POSIX
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..files import WRITER_LOCK
from .errors import StoreCorruptError, StoreLockedError


@contextmanager
def writer_lock(folder: Path) -> Iterator[None]:
    """Hold the writer lock of the store ``folder`` for the block; a StoreLockedError naming the holder's process
    if another process holds it."""
    lock = Path(folder) / WRITER_LOCK
    for _ in range(5):
        fd = _locked(lock, folder)
        try:
            current = os.lstat(lock)
        except FileNotFoundError:
            current = None
        if current is not None and (current.st_dev, current.st_ino) == (os.fstat(fd).st_dev, os.fstat(fd).st_ino):
            break
        os.close(fd)  # the store was replaced whole (overwrite) between opening its lock and taking it: again
    else:
        raise StoreLockedError(f"{folder} keeps being replaced by other processes; try again when they are done")
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def _locked(lock: Path, folder: Path) -> int:
    """A descriptor of ``lock``, opened without following a link and locked exclusively."""
    try:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK, 0o644)
    except OSError as err:  # a link planted under the lock's name
        raise StoreCorruptError(f"{lock} cannot be opened as the writer lock ({err})") from err
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise StoreCorruptError(f"{lock} is not a regular file; a store's writer lock is a plain file: remove it, "
                                    "then try again")
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
            raise StoreLockedError(f"{folder} is being written by process {holder}; let it finish (or stop it), then "
                                   "resume") from None
    except BaseException:
        os.close(fd)
        raise
    return fd
