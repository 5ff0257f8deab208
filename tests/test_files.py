"""Durable writes: the old file or the new one, never half; nothing left behind; links never written through."""
import os
import stat

import pytest

from interp_embed.files import TEMPORARY_PREFIX, atomic_folder, write_atomically


def test_write_atomically_replaces_the_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "manifest.json"
    target.write_text("old")
    write_atomically(target, "new ünïcode")
    assert target.read_text("utf-8") == "new ünïcode"
    write_atomically(target, b"\x00bytes")
    assert target.read_bytes() == b"\x00bytes"
    write_atomically(target, lambda path: path.write_text("written by a function"))
    assert target.read_text() == "written by a function"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["manifest.json"]
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~umask  # as open() would make it, not private


def test_a_failed_write_keeps_the_old_file_and_cleans_up(tmp_path):
    target = tmp_path / "weights.safetensors"
    target.write_text("old")

    def fails(path):
        path.write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_atomically(target, fails)
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["weights.safetensors"]


def test_a_link_at_the_target_is_replaced_not_written_through(tmp_path):
    victim = tmp_path / "victim.sh"
    victim.write_text("#!/bin/sh\necho safe\n")
    (tmp_path / "store").mkdir()
    link = tmp_path / "store" / "manifest.json"
    link.symlink_to(victim)
    write_atomically(link, "{}")
    assert victim.read_text() == "#!/bin/sh\necho safe\n"
    assert not link.is_symlink() and link.read_text() == "{}"


def test_atomic_folder_appears_whole_or_not_at_all(tmp_path):
    target = tmp_path / "chunks" / "000-010"
    with pytest.raises(RuntimeError):
        with atomic_folder(target) as tmp:
            (tmp / "a.npy").write_bytes(b"1")
            raise RuntimeError("killed halfway")
    assert not target.exists() and list((tmp_path / "chunks").iterdir()) == []

    target.mkdir()
    (target / "leftover.npy").write_bytes(b"crash")
    with atomic_folder(target) as tmp:
        assert tmp.name.startswith(TEMPORARY_PREFIX) and tmp.parent == target.parent
        (tmp / "a.npy").write_bytes(b"new")
    assert [p.name for p in target.iterdir()] == ["a.npy"]
    assert [p.name for p in target.parent.iterdir()] == ["000-010"]


def test_atomic_folder_without_replace_keeps_what_another_process_made(tmp_path):
    target = tmp_path / "cache"
    target.mkdir()
    (target / "config.json").write_text("first")
    with atomic_folder(target, replace=False) as tmp:
        (tmp / "config.json").write_text("second")
    assert (target / "config.json").read_text() == "first"
    assert [p.name for p in tmp_path.iterdir()] == ["cache"]
