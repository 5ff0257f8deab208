"""Where a new store appears, and how it replaces an old one.

A new store is built in a temporary folder beside its path and appears there in one rename that never replaces
anything (:func:`~interp_embed.files.rename_no_replace`): whole, manifest included, or not at all. Of two
processes saving to one path exactly one wins; the other gets a ``FileExistsError`` naming the path, and its
data never appears there. With ``overwrite=True`` an existing store is replaced the same way: the new one is
built aside until complete, then swapped with the old one in one rename (:func:`~interp_embed.files.exchange`)
while the old store's writer lock is held, and the old one is removed after, so a kill at any moment leaves
the old store or the new one at the path, never neither and never half of one. Only a store is ever replaced:
a file, a link, or a folder holding anything but a store's own files is refused by name. Temporary folders that
killed writers left beside a store are removed by the next writer there.
"""
from __future__ import annotations

import errno
import json
import os
import shlex
import shutil
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..files import (ADDED_COLUMNS, CHUNKS, DOCUMENTS, FEATURE_LABELS, LABEL_RECORDS, MANIFEST, TEMPORARY_PREFIX,
                     WRITER_LOCK, exchange, fsync_path, make_durable, remove_dead_temporaries, rename_no_replace,
                     temporary_folder)
from ..validation import ANOTHER_PATH, OVERWRITE, Remedy, explained, resume_command
from .lock import writer_lock
from .manifest import FORMAT

STORE_NAMES = frozenset({MANIFEST, DOCUMENTS, FEATURE_LABELS, LABEL_RECORDS, CHUNKS, ADDED_COLUMNS, WRITER_LOCK})
"""What a store folder holds, besides temporaries of its own."""


def is_temporary(name: str) -> bool:
    """A temporary file or folder of ours (or of version 1, which named the manifest's ``.manifest.json.tmp-<pid>``)."""
    return name.startswith(TEMPORARY_PREFIX) or name.startswith(f".{MANIFEST}.tmp-")


def check_target(path: Path, overwrite: bool) -> bool:
    """Whether a new store for ``path`` replaces one there (only with ``overwrite``); False when the path is free
    (nothing there, or an empty folder). Anything else is a FileExistsError that names it and the ways out."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return False
    if stat.S_ISLNK(mode):
        raise explained(FileExistsError, f"{path} is a symbolic link; a store is never written through a link: ",
                        ANOTHER_PATH)
    if not stat.S_ISDIR(mode):
        raise explained(FileExistsError, f"{path} is a file, not an interp_embed store; ", ANOTHER_PATH)
    names = sorted(os.listdir(path))
    if not names:
        return False
    replaces_only = (OVERWRITE, " replaces only a store, never other files: ") if overwrite else ()
    if not holds_store(path):
        raise explained(FileExistsError, f"{path} already exists and is not an interp_embed store (it holds "
                        f"{_listed(names)}); ", *replaces_only, ANOTHER_PATH)
    if not overwrite:
        open_it = Remedy(f"Open it with Dataset.load_from_file({str(path)!r}) (resume=True finishes an interrupted run)",
                         f"Use it (interp-embed info {shlex.quote(str(path))}; `{resume_command(path)}` finishes an "
                         "interrupted run)")
        raise explained(FileExistsError, f"{path} already holds a store. ", open_it, ", or pass ", OVERWRITE,
                        " to replace it")
    others = [name for name in names if name not in STORE_NAMES and not is_temporary(name)]
    if others:
        raise explained(FileExistsError, f"{path} holds a store and other files ({_listed(others)}); ",
                        *replaces_only, "move them out first, or ", ANOTHER_PATH)
    return True


def holds_store(path: Path) -> bool:
    """Whether ``path`` is a folder with a store's manifest: a plain file naming our format, sealed or not (a
    damaged store is still one to replace)."""
    manifest = path / MANIFEST
    try:
        if not stat.S_ISREG(os.lstat(manifest).st_mode):
            return False
        body = json.loads(manifest.read_bytes()).get("body")
        return isinstance(body, dict) and body.get("format") == FORMAT
    except (OSError, ValueError, AttributeError, RecursionError):
        return False


def _listed(names: list[str]) -> str:
    return ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")


@contextmanager
def building(path: Path) -> Iterator[Path]:
    """A temporary folder beside ``path`` to build a new store in, placed at ``path`` whole when the block ends.

    ``path`` must be free; a store or anything else there is refused before the block runs, and one that appears
    meanwhile (another process saving there) when the block ends: the folder is removed and a FileExistsError
    names the path. If the block raises, nothing is left behind.
    """
    path = Path(path)
    check_target(path, overwrite=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_dead_temporaries(path.parent)
    with temporary_folder(path) as folder:
        yield folder
        make_durable(folder)
        _place(folder, path)


def _place(folder: Path, path: Path) -> None:
    for _ in range(3):
        check_target(path, overwrite=False)  # names what another process put there meanwhile
        try:
            os.rmdir(path)  # an empty folder is free: the new store takes its place
        except OSError as err:
            if err.errno not in (errno.ENOENT, errno.ENOTEMPTY, errno.EEXIST):
                raise
        try:
            rename_no_replace(folder, path)
        except FileExistsError:
            continue  # taken between the check and the rename: look again
        fsync_path(path.parent)
        return
    raise explained(FileExistsError, f"{path} keeps being taken by other processes; ", ANOTHER_PATH)


@contextmanager
def replacing(path: Path | None, overwrite: bool) -> Iterator[Path | None]:
    """Where to build a store meant for ``path``: ``path`` itself when there is nothing to replace (the store then
    appears there as soon as it is made, as without ``overwrite``); with ``overwrite=True`` and a store at
    ``path``, an empty temporary folder beside it, whose store is swapped in for the old one, whole, when the
    block ends. If the block raises, the temporary folder is removed and the old store stays as it was.

    >>> with replacing(Path("greetings.iembed"), overwrite=True) as folder:   # doctest: +SKIP
    ...     Store.create(folder, ...)
    """
    if path is None or not check_target(Path(path), overwrite):
        yield path
        return
    path = Path(path)
    remove_dead_temporaries(path.parent)
    with temporary_folder(path) as folder:
        yield folder
        with writer_lock(path):  # no writer of the old store is pulled from under its feet
            check_target(path, overwrite=True)
            exchange(folder, path)
        fsync_path(path.parent)
        shutil.rmtree(folder)  # the old store, now under the temporary name
