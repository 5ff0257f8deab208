"""Where a new store appears: at a free path, whole, by a rename that never replaces anything, so that of two
processes saving to one path exactly one wins; with ``overwrite=True`` in place of an existing store, swapped in
whole once complete, so that a kill at any moment leaves the old store or the new one. A half-made store never
blocks a path, and what a killed writer left is cleaned by the next one."""
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from interp_embed import Dataset
from interp_embed.data import demo_sample
from interp_embed.files import TEMPORARY_PREFIX
from interp_embed.store import Store, StoreError, StoreLockedError

from hostile import read_everything, same
from synthetic import NoModel, synthetic_store

TESTS = os.path.dirname(__file__)




def _part(i: int) -> pd.DataFrame:
    """Thirty fortunes, different ones for each ``i``."""
    return demo_sample().iloc[30 * i:30 * (i + 1)].reset_index(drop=True)


def _leftovers(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(TEMPORARY_PREFIX))


def _child(script: str) -> subprocess.Popen:
    code = f"import sys\nsys.path.insert(0, {TESTS!r})\n" + textwrap.dedent(script)
    return subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


# ---- two saves to one path: exactly one wins (finding 3) ------------------------------------------------------------

RACER = """
    import time
    from interp_embed import Dataset
    from interp_embed.data import demo_sample
    from synthetic import synthetic_store
    how, i, target, sources, start = {how!r}, {i}, {target!r}, {sources!r}, {start}
    if how != "create":
        ds = Dataset.load_from_file(sources[i])
        ds = ds if how == "copy" else ds[::2]
    time.sleep(max(0.0, start - time.time()))  # both begin at the same instant
    try:
        if how == "create":
            synthetic_store(target, demo_sample().iloc[30 * i:30 * (i + 1)].reset_index(drop=True), chunk_chars=300)
        else:
            ds.save_to_file(target)
    except FileExistsError as err:
        print("refused:", err)
    else:
        print("saved")
"""


@pytest.mark.parametrize("how", ["create", "copy", "subset"])
def test_of_two_saves_racing_to_one_path_exactly_one_wins(tmp_path, how):
    sources = [str(synthetic_store(tmp_path / f"source{i}.iembed", _part(i), chunk_chars=300).path) for i in (0, 1)]
    for attempt in range(3):
        target = tmp_path / f"race{attempt}.iembed"
        start = time.time() + 4
        racers = [_child(RACER.format(how=how, i=i, target=str(target), sources=sources, start=start)) for i in (0, 1)]
        said = [racer.communicate(timeout=120) for racer in racers]
        outcomes = [out.strip() for out, _ in said]
        assert sorted(o.split(":")[0] for o in outcomes) == ["refused", "saved"], said
        winner = outcomes.index("saved")
        assert str(target) in outcomes[1 - winner] and "overwrite=True" in outcomes[1 - winner]
        texts = Dataset.load_from_file(target).documents()
        expected = _part(winner).text.tolist()
        assert texts == (expected if how != "subset" else expected[::2])  # the winner's data, whole
        assert Store.open(target).is_complete() and _leftovers(tmp_path) == []


# ---- a subset save or a concat appears whole or not at all (finding 7) ------------------------------------------------

@pytest.mark.parametrize("how", ["subset", "concat"])
def test_a_failing_subset_save_or_concat_leaves_nothing_behind(tmp_path, monkeypatch, how):
    ds = Dataset.load_from_file(synthetic_store(tmp_path / "s.iembed", _part(0), chunk_chars=300).path)
    commit = Store.commit_chunk

    def commit_then_fail(self, *args):
        commit(self, *args)
        raise OSError("No space left on device")

    monkeypatch.setattr(Store, "commit_chunk", commit_then_fail)
    target = tmp_path / "part.iembed"
    with pytest.raises(OSError):
        ds[::2].save_to_file(target) if how == "subset" else Dataset.concat([ds[:10], ds[20:]], save_path=target)
    assert not target.exists() and _leftovers(tmp_path) == []
    monkeypatch.setattr(Store, "commit_chunk", commit)
    saved = ds[::2].save_to_file(target) if how == "subset" else Dataset.concat([ds[:10], ds[20:]], save_path=target).path
    assert Store.open(saved).is_complete()


def test_a_killed_save_leaves_no_store_and_the_next_writer_cleans_up_after_it(tmp_path):
    source = synthetic_store(tmp_path / "s.iembed", _part(0), chunk_chars=300)
    slow = _child(f"""
        import time
        from interp_embed import Dataset
        from interp_embed.store import Store
        commit = Store.commit_chunk
        def commit_slowly(self, *args):
            commit(self, *args)
            print("committed", flush=True)
            time.sleep(60)
        Store.commit_chunk = commit_slowly
        Dataset.load_from_file({str(source.path)!r})[::2].save_to_file({str(tmp_path / "part.iembed")!r})
    """)
    assert slow.stdout.readline().strip() == "committed"
    alive = _child(f"""
        from interp_embed.files import atomic_folder
        with atomic_folder({str(tmp_path / "other.iembed")!r}) as tmp:
            print("building", flush=True)
            input()
    """)
    assert alive.stdout.readline().strip() == "building"
    os.kill(slow.pid, signal.SIGKILL)
    slow.wait()
    assert not (tmp_path / "part.iembed").exists() and len(_leftovers(tmp_path)) == 2  # the dead one's and the live one's
    Dataset.load_from_file(source.path)[::3].save_to_file(tmp_path / "next.iembed")  # the next writer in the folder
    [kept] = _leftovers(tmp_path)  # the killed writer's folder is gone, the live writer's is left alone
    assert kept.startswith(f"{TEMPORARY_PREFIX}other.iembed-")
    alive.communicate("\n", timeout=60)
    assert (tmp_path / "other.iembed").is_dir() and _leftovers(tmp_path) == []


# ---- overwrite=True: replaced whole, or not at all (issue 23, part 5) --------------------------------------------------

@pytest.fixture()
def old(tmp_path) -> Store:
    return synthetic_store(tmp_path / "greetings.iembed", _part(0), chunk_chars=300)


def test_without_overwrite_an_existing_store_is_kept_and_both_ways_out_are_named(old):
    before = (old.path / "manifest.json").read_bytes()
    with pytest.raises(FileExistsError) as refused:
        Dataset(_part(1), sae=NoModel(), save_path=old.path, compute_activations=False)
    message = str(refused.value)
    assert f"Dataset.load_from_file({str(old.path)!r})" in message and "overwrite=True" in message
    with pytest.raises(FileExistsError, match="overwrite=True"):
        Dataset.load_from_file(old.path)[:3].save_to_file(old.path)
    assert (old.path / "manifest.json").read_bytes() == before


def test_overwrite_replaces_a_store_whole(old, tmp_path):
    ds = Dataset(_part(1), sae=NoModel(), save_path=old.path, compute_activations=False, overwrite=True)
    assert ds.documents() == _part(1).text.tolist() and ds.path == old.path
    assert Dataset.load_from_file(old.path).documents() == _part(1).text.tolist()
    assert _leftovers(tmp_path) == []
    other = synthetic_store(tmp_path / "other.iembed", _part(2), chunk_chars=300)
    source = Dataset.load_from_file(other.path)
    assert source[::2].save_to_file(old.path, overwrite=True) == old.path
    assert Dataset.load_from_file(old.path).documents() == _part(2).text.tolist()[::2]
    assert source.save_to_file(old.path, overwrite=True) == old.path
    assert same(read_everything(old.path), read_everything(other.path))
    both = Dataset.concat([source[:5], source[10:]], save_path=old.path, overwrite=True)
    assert len(both) == 25 and _leftovers(tmp_path) == []
    with pytest.raises(ValueError, match="is the store this dataset reads"):
        both[:3].save_to_file(old.path, overwrite=True)
    table = tmp_path / "t.parquet"
    _part(3).to_parquet(table)
    streamed = Dataset.from_parquet(table, sae=NoModel(), save_path=old.path, compute_activations=False, overwrite=True)
    assert streamed.documents() == _part(3).text.tolist()
    fresh = Dataset(_part(1), sae=NoModel(), save_path=tmp_path / "new.iembed", compute_activations=False, overwrite=True)
    assert fresh.documents() == _part(1).text.tolist()  # nothing to replace: created as without overwrite


@pytest.mark.parametrize("what", ["a folder of your own files", "a folder with another tool's manifest.json",
                                  "a store with your notes in it", "a file", "a link to a store"])
def test_overwrite_never_replaces_what_is_not_a_store(old, tmp_path, what):
    target = tmp_path / "target"
    if what == "a file":
        target.write_text("precious")
    elif what == "a link to a store":
        target.symlink_to(old.path)
    elif what == "a store with your notes in it":
        target = old.path
        (target / "notes.txt").write_text("precious")
    else:
        target.mkdir()
        (target / ("manifest.json" if "manifest" in what else "notes.txt")).write_text('{"name": "my web app"}')
    before = sorted(p.name for p in target.iterdir()) if target.is_dir() else None
    with pytest.raises(FileExistsError, match=r"not an interp_embed store|only a store|symbolic link|holds notes\.txt"):
        Dataset(_part(1), sae=NoModel(), save_path=target, compute_activations=False, overwrite=True)
    assert (sorted(p.name for p in target.iterdir()) if target.is_dir() else None) == before
    assert _leftovers(tmp_path) == []


def test_overwrite_waits_for_no_one_and_never_replaces_a_store_being_written(old):
    holder = _child(f"""
        import time
        from interp_embed.store import Store
        with Store.open({str(old.path)!r}).writing():
            print("holding", flush=True)
            time.sleep(60)
    """)
    try:
        assert holder.stdout.readline().strip() == "holding"
        with pytest.raises(StoreLockedError, match=f"process {holder.pid}"):
            Dataset(_part(1), sae=NoModel(), save_path=old.path, compute_activations=False, overwrite=True)
    finally:
        holder.kill()
        holder.wait()
    assert Dataset.load_from_file(old.path).documents() == _part(0).text.tolist()


def test_an_interrupted_overwrite_keeps_the_old_store(old, tmp_path, monkeypatch, caplog):

    def interrupted(store, sae, ray=None):  # as encoding does when Ctrl-C stops it
        from interp_embed.encode.session import log_how_to_resume

        log_how_to_resume(store, KeyboardInterrupt())
        raise KeyboardInterrupt

    monkeypatch.setattr("interp_embed.encode.session.encode_pending", interrupted)
    with pytest.raises(KeyboardInterrupt):
        Dataset(_part(1), sae=NoModel(), save_path=old.path, overwrite=True)
    assert Dataset.load_from_file(old.path).documents() == _part(0).text.tolist()
    assert _leftovers(tmp_path) == []


KILLED_OVERWRITER = """
    from interp_embed import Dataset
    sources = [Dataset.load_from_file(path) for path in {sources!r}]
    print("ready", flush=True)
    for i in range(10_000):
        sources[i % 2].save_to_file({target!r}, overwrite=True)
        print("replaced", flush=True)
"""


def test_a_kill_at_any_moment_of_an_overwrite_leaves_the_old_store_or_the_new_one(old, tmp_path):
    other = synthetic_store(tmp_path / "other.iembed", _part(1), chunk_chars=300)
    expected = [read_everything(old.path), read_everything(other.path)]
    target = tmp_path / "target.iembed"
    Dataset.load_from_file(old.path).save_to_file(target)
    rng, replaced = np.random.default_rng(0), 0
    for attempt in range(8):
        overwriter = _child(KILLED_OVERWRITER.format(sources=[str(old.path), str(other.path)], target=str(target)))
        assert overwriter.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.05, 3.0))
        os.kill(overwriter.pid, signal.SIGKILL)
        out, err = overwriter.communicate()
        assert "Error" not in err, err
        replaced += out.count("replaced")
        found = read_everything(target)  # whole, checksums and structure checked
        assert same(found, expected[0]) or same(found, expected[1]), f"attempt {attempt}: neither store"
    assert replaced >= 1  # the loop ran: every kill fell inside an overwrite, at one moment or another of it


# ---- the command line: --overwrite --------------------------------------------------------------------------------------

def test_encode_overwrite_on_the_command_line(old, tmp_path, monkeypatch):
    from interp_embed.cli import app

    monkeypatch.setattr("interp_embed.cli.store_commands.sae_of_option", lambda spec, device, dtype: NoModel())
    monkeypatch.setattr("interp_embed.encode.session.encode_pending", lambda store, sae, ray=None: None)
    table = tmp_path / "t.csv"
    _part(1).to_csv(table, index=False)
    refused = CliRunner().invoke(app, ["encode", str(table), "--out", str(old.path)])
    assert refused.exit_code == 1 and "--overwrite" in refused.output and "overwrite=True" not in refused.output
    done = CliRunner().invoke(app, ["encode", str(table), "--out", str(old.path), "--overwrite"])
    assert done.exit_code == 0, done.output
    assert Dataset.load_from_file(old.path).documents() == _part(1).text.tolist()

    def interrupted(store, sae, ray=None):  # as encoding does when Ctrl-C stops it
        from interp_embed.encode.session import log_how_to_resume

        log_how_to_resume(store, KeyboardInterrupt())
        raise KeyboardInterrupt

    monkeypatch.setattr("interp_embed.encode.session.encode_pending", interrupted)
    _part(2).to_csv(table, index=False)
    stopped = CliRunner().invoke(app, ["encode", str(table), "--out", str(old.path), "--overwrite"])
    assert stopped.exit_code == 130 and "is unchanged" in stopped.output and "--resume" not in stopped.output
    assert Dataset.load_from_file(old.path).documents() == _part(1).text.tolist()
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("precious")
    refused = CliRunner().invoke(app, ["encode", str(table), "--out", str(tmp_path / "mine"), "--overwrite"])
    assert refused.exit_code == 1 and "not an interp_embed store" in refused.output and "--resume" not in refused.output
    assert (tmp_path / "mine" / "notes.txt").read_text() == "precious"


@pytest.mark.parametrize("native", [True, False], ids=["renameat2", "lock and check"])
def test_a_rename_that_replaces_nothing_and_a_swap(tmp_path, monkeypatch, native):
    from interp_embed import files

    if native:
        assert files._renameat2() is not None  # Linux: one system call each
    else:  # as on a system without renameat2
        monkeypatch.setattr(files, "_renameat2", lambda: None)
    a, b, empty = tmp_path / "a", tmp_path / "b", tmp_path / "empty"
    for folder, text in ((a, "a"), (b, "b")):
        folder.mkdir()
        (folder / "x").write_text(text)
    empty.mkdir()
    for taken in (b, empty):  # not even an empty folder is replaced
        with pytest.raises(FileExistsError, match=str(taken)):
            files.rename_no_replace(a, taken)
    files.exchange(a, b)
    assert (a / "x").read_text() == "b" and (b / "x").read_text() == "a"
    files.rename_no_replace(a, tmp_path / "c")
    assert (tmp_path / "c" / "x").read_text() == "b" and sorted(p.name for p in tmp_path.iterdir()) == ["b", "c", "empty"]
