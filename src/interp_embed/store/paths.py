"""Paths inside a store: plain files and folders only. A link is never followed, for reading or writing.

A store may come from someone else; a link planted in it (``chunks -> /home/you``, ``notes.txt ->
~/.ssh/id_rsa``) could make reading return another file's data or make writing land outside the store.
Every file and folder the store touches is checked here first; a link, or anything that is not a regular
file or folder (a FIFO would block a reader for ever), is a ``StoreCorruptError`` naming it.
"""
from __future__ import annotations

import os
import stat
from pathlib import Path

from .errors import StoreCorruptError


def _mode(path: Path) -> int | None:
    try:
        return os.lstat(path).st_mode
    except FileNotFoundError:
        return None


def _plain(path: Path, is_kind, kind: str) -> Path:
    """``path`` if it exists, is not a link and is a ``kind`` (``is_kind`` of its mode); else a StoreCorruptError."""
    mode = _mode(path)
    if mode is None:
        raise StoreCorruptError(f"{path} is missing")
    if stat.S_ISLNK(mode):
        raise StoreCorruptError(f"{path} is a symbolic link; a store holds only plain files and folders, and links "
                                "are never followed")
    if not is_kind(mode):
        raise StoreCorruptError(f"{path} is not a {kind}")
    return path


def plain_file(path: Path) -> Path:
    """``path`` if it is a regular file (not a link); a StoreCorruptError naming it otherwise."""
    return _plain(path, stat.S_ISREG, "regular file")


def plain_folder(path: Path) -> Path:
    """``path`` if it is a folder (not a link); a StoreCorruptError naming it otherwise."""
    return _plain(path, stat.S_ISDIR, "folder")
