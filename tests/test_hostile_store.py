"""A store someone sends you is data, never a weapon: every way found to make one crash the process, lie, or
write outside its folder is refused by name. Stores are synthetic (real text, no model); tampering is
resealed into the manifest, as an attacker would."""
import json
import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest

from interp_embed import Dataset, analysis
from interp_embed.files import MANIFEST, TEMPORARY_PREFIX, sha256_json
from interp_embed.store import Store, StoreCorruptError, StoreLockedError

from hostile import cap_memory, manifest_body, read_everything, replace_array, reseal, same
from synthetic import D_SAE, encode_text, synthetic_store


@pytest.fixture()
def store(sample, tmp_path):
    return synthetic_store(tmp_path / "s.iembed", sample.head(12), chunk_chars=300)


def _first_chunk(store) -> str:
    return store.manifest.chunks[0].name


# ---- 1. nothing is written or read through a link ----------------------------------------------------

def test_a_link_planted_at_the_manifests_temporary_name_is_never_written_through(store, tmp_path):
    victim = tmp_path / "victim.sh"
    victim.write_text("#!/bin/sh\necho safe\n")
    for pid in range(os.getpid() - 2, os.getpid() + 3):  # the names the first format's writer used
        (store.path / f".{MANIFEST}.tmp-{pid}").symlink_to(victim)
    store.set_description("written under the writer lock")  # rewrites the manifest
    assert victim.read_text() == "#!/bin/sh\necho safe\n"
    assert not any(p.name.startswith(f".{MANIFEST}.tmp-") for p in store.path.iterdir())  # removed, not followed


def test_a_linked_chunks_folder_is_refused_and_the_folder_it_points_to_is_untouched(store, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "precious").mkdir()
    (elsewhere / "precious" / "data.txt").write_text("mine")
    shutil.rmtree(store.path / "chunks")
    (store.path / "chunks").symlink_to(elsewhere)
    with pytest.raises(StoreCorruptError, match="chunks is a symbolic link"):
        with Store.open(store.path).writing():
            pass
    with pytest.raises(StoreCorruptError, match="chunks is a symbolic link"):
        Dataset.load_from_file(store.path).latents()
    assert (elsewhere / "precious" / "data.txt").read_text() == "mine" and len(list(elsewhere.iterdir())) == 1


@pytest.mark.parametrize("file", ["documents.parquet", "feature_labels.json", "manifest.json", "chunk"])
def test_a_file_replaced_by_a_link_to_an_identical_copy_is_refused(store, tmp_path, file):
    target = store.path / "chunks" / _first_chunk(store) / "pool_max.npy" if file == "chunk" else store.path / file
    copy = tmp_path / "copy"
    shutil.copyfile(target, copy)  # same bytes, same checksum: only the link gives it away
    target.unlink()
    target.symlink_to(copy)
    with pytest.raises(StoreCorruptError, match="symbolic link"):
        read_everything(store.path)


def test_save_to_file_copies_only_the_listed_files_never_through_links(store, tmp_path):
    secret = tmp_path / "id_rsa"
    secret.write_text("PRIVATE KEY")
    (store.path / "notes.txt").symlink_to(secret)
    (store.path / "chunks" / _first_chunk(store) / "extra.npy").symlink_to(secret)
    copy = Dataset.load_from_file(store.path).save_to_file(tmp_path / "copy.iembed")
    copied = {p.relative_to(copy).as_posix() for p in copy.rglob("*") if p.is_file()}
    assert "notes.txt" not in copied and not any("extra" in p for p in copied)
    assert not any("PRIVATE KEY" in p.read_text(errors="ignore") for p in copy.rglob("*") if p.is_file())
    assert same(read_everything(copy), read_everything(store.path))


# ---- 2. crafted arrays and manifests are refused before use ---------------------------------------------

def _reads_in_a_child(path) -> subprocess.CompletedProcess:
    """Read everything in a fresh process, so that a crash (a signal) fails the test instead of killing it."""
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {os.path.dirname(__file__)!r})
        from hostile import read_everything
        from interp_embed.store import StoreCorruptError
        try:
            read_everything({str(path)!r})
        except StoreCorruptError as err:
            print("refused:", err)
        else:
            print("read")
    """)
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          preexec_fn=cap_memory)


@pytest.mark.parametrize("case", ["d_sae below the ids", "feature id >= d_sae", "negative ids", "duplicated chunk",
                                  "huge n_documents", "indptr decreasing", "span beyond the text", "2-d array",
                                  "float ids", "nan value", "wrong n_encoded", "file size"])
def test_crafted_arrays_and_manifests_are_refused_never_crash(store, case):
    chunk = _first_chunk(store)
    folder = store.path / "chunks" / chunk
    body = manifest_body(store.path)
    if case == "d_sae below the ids":
        body["d_sae"] = body["encoder"]["sae"]["d_sae"] = 3
        reseal(store.path, body)
    elif case == "feature id >= d_sae":
        ids = np.load(folder / "act_features.npy").astype(np.uint16)
        ids[0] = D_SAE + 5
        replace_array(store.path, chunk, "act_features", ids)
    elif case == "negative ids":
        ids = np.load(folder / "pool_features.npy").astype(np.int64)
        ids[1] = -1
        replace_array(store.path, chunk, "pool_features", ids)
    elif case == "duplicated chunk":
        body["chunks"].append(dict(body["chunks"][0]))
        reseal(store.path, body)
    elif case == "huge n_documents":
        body["n_documents"] = 1_500_000_000
        reseal(store.path, body)
    elif case == "indptr decreasing":
        ptr = np.load(folder / "pool_ptr.npy")
        ptr[1], ptr[2] = ptr[2], ptr[1]
        replace_array(store.path, chunk, "pool_ptr", ptr)
    elif case == "span beyond the text":
        lengths = np.load(folder / "char_len.npy").astype(np.uint32)
        lengths[-1] = 10_000
        replace_array(store.path, chunk, "char_len", lengths)
    elif case == "2-d array":
        replace_array(store.path, chunk, "pool_max", np.load(folder / "pool_max.npy").reshape(1, -1))
    elif case == "float ids":
        replace_array(store.path, chunk, "act_features", np.load(folder / "act_features.npy").astype(np.float32))
    elif case == "nan value":
        values = np.load(folder / "act_values.npy")
        values[3] = np.nan
        replace_array(store.path, chunk, "act_values", values)
    elif case == "wrong n_encoded":
        body["chunks"][0]["n_encoded"] += 1
        reseal(store.path, body)
    elif case == "file size":
        body["chunks"][0]["files"]["pool_max.npy"]["bytes"] += 1
        (store.path / MANIFEST).write_text(json.dumps({"body": body, "sha256": sha256_json(body)}))
    done = _reads_in_a_child(store.path)
    assert done.returncode == 0, f"the reader crashed: {done.stderr[-2000:]}"
    assert done.stdout.startswith("refused:") and str(store.path) in done.stdout, done.stdout + done.stderr[-2000:]


def test_resealed_structural_tampering_is_always_refused_and_never_crashes(sample, tmp_path):
    frame = pd.concat([sample.head(14), pd.DataFrame({"text": ["", None], "language": ["en", "en"]})], ignore_index=True)
    store = synthetic_store(tmp_path / "s.iembed", frame, chunk_chars=300)
    done = subprocess.run([sys.executable, os.path.join(os.path.dirname(__file__), "fuzz_store.py"), str(store.path),
                           "80"], capture_output=True, text=True, timeout=600, preexec_fn=cap_memory)
    assert done.returncode == 0 and done.stdout.strip().endswith("ok"), done.stdout[-3000:] + done.stderr[-3000:]


# ---- 3. one writer at a time -----------------------------------------------------------------------

def test_a_second_writer_is_refused_naming_the_first_and_readers_never_wait(store):
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import time
        from interp_embed.store import Store
        with Store.open({str(store.path)!r}).writing():
            print("holding", flush=True)
            time.sleep(600)
    """)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "holding"
        with pytest.raises(StoreLockedError, match=f"being written by process {holder.pid}"):
            with Store.open(store.path).writing():
                pass
        assert Dataset.load_from_file(store.path).latents().nnz > 0
        assert holder.poll() is None  # read while the writer still holds the lock: the reader did not wait for it
    finally:
        holder.kill()
        holder.wait()
    with Store.open(store.path).writing():  # the lock died with its process
        pass


def test_a_writer_works_from_the_manifest_on_disk_not_a_stale_copy(sample, tmp_path):
    frame = sample.head(12)
    store = synthetic_store(tmp_path / "s.iembed", frame, chunk_chars=300, encode_chunks=1)
    stale, current = Store.open(store.path), Store.open(store.path)
    with current.writing():  # another writer commits a chunk after `stale` was opened
        start, stop = current.pending_chunks()[0]
        current.commit_chunk(start, stop, [encode_text(frame.text.iloc[r], r) for r in range(start, stop)])
    stale.set_description("written by the second writer")
    reread = Store.open(store.path).manifest
    assert len(reread.chunks) == 2 and reread.dataset_description == "written by the second writer"


# ---- 4. encodings of different encoders are never compared ------------------------------------------------

def test_diff_refuses_datasets_of_different_encoders(sample, tmp_path):
    a = synthetic_store(tmp_path / "a.iembed", sample.head(10))
    b = synthetic_store(tmp_path / "b.iembed", sample.tail(10))
    body = manifest_body(b.path)
    body["encoder"]["sae"]["hook_layer"] = 10  # same width, another layer: feature ids mean other things
    reseal(b.path, body)
    ds_a, ds_b = Dataset.load_from_file(a.path), Dataset.load_from_file(b.path)
    with pytest.raises(ValueError, match="encoded differently .*hook_layer None vs 10"):
        analysis.diff_features(ds_a, ds_b)
    with pytest.raises(ValueError, match="encoded differently"):
        analysis.diff_many({"a": ds_a, "b": ds_b})
    assert len(analysis.diff_features(ds_a, Dataset.load_from_file(a.path))) > 0


# ---- 5. leftovers and half-made stores ------------------------------------------------------------------

def test_a_writer_removes_leftovers_of_crashes_but_nothing_else(store):
    (store.path / f"{TEMPORARY_PREFIX}manifest.json-abc").write_text("half")
    (store.path / "chunks" / f"{TEMPORARY_PREFIX}000000090-000000091-x").mkdir()
    (store.path / "chunks" / "000000090-000000091").mkdir()  # renamed into place, never committed
    (store.path / "notes.txt").write_text("the user's own file")
    with store.writing():
        pass
    names = {p.name for p in store.path.iterdir()} | {p.name for p in (store.path / "chunks").iterdir()}
    assert not any(n.startswith(TEMPORARY_PREFIX) or n == "000000090-000000091" for n in names)
    assert (store.path / "notes.txt").read_text() == "the user's own file"


def test_a_store_appears_whole_or_not_at_all(sample, tmp_path, monkeypatch):
    def crash(self):
        raise OSError("disk full")

    monkeypatch.setattr("interp_embed.store.manifest.Manifest.to_bytes", crash)
    with pytest.raises(OSError, match="disk full"):
        synthetic_store(tmp_path / "s.iembed", sample.head(3))
    assert list(tmp_path.iterdir()) == []  # neither the store nor a temporary folder
    monkeypatch.undo()
    assert synthetic_store(tmp_path / "s.iembed", sample.head(3)).n_documents == 3  # the name is free to use


# ---- 7. smaller findings ------------------------------------------------------------------------------

def test_unstorable_text_skipped_on_request_is_kept_as_missing(tmp_path):
    from interp_embed.encode.session import as_frame, rows_to_skip

    frame = pd.DataFrame({"text": ["fine", "\ud800 lone surrogate", 42, 3.5, None], "n": range(5)})
    store = synthetic_store(tmp_path / "s.iembed", frame)
    ds = Dataset.load_from_file(store.path)
    assert ds.skipped_rows() == rows_to_skip(frame, "text", "skip") and len(ds.skipped_rows()) == 4
    assert ds.pandas()["text"].tolist()[0] == "fine" and ds.pandas()["text"].isna().tolist()[1:] == [True] * 4
    assert ds.pandas()["n"].tolist() == list(range(5))
    with pytest.raises(ValueError, match=r"columns \['text'\] appear more than once"):
        as_frame(pd.DataFrame([["a", "b"]], columns=["text", "text"]))
    with pytest.raises(TypeError, match=r"column names must be strings, but \[5\]"):
        as_frame(pd.DataFrame({"text": ["a"], 5: [1]}))


def test_an_infinite_target_is_named(tmp_path, sample):
    frame = sample.head(12).assign(score=np.r_[np.arange(11.0), np.inf])
    ds = Dataset.load_from_file(synthetic_store(tmp_path / "s.iembed", frame).path)
    with pytest.raises(ValueError, match=r"target 'score' is infinite in 1 document\(s\) \(positions \[11\]"):
        ds.associate("score")
