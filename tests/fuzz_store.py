"""Structural tampering, resealed, drawn by hypothesis: every case must be refused with a StoreCorruptError.

Run as a script in its own process (``python fuzz_store.py STORE EXAMPLES``) by
tests/test_hostile_store.py, so that a crash — a signal from reading out of bounds — fails that test
instead of killing the test run. Each mutation breaks the store's structure by construction (an id at
or above the SAE's width, a pointer that decreases or ends elsewhere, a span beyond its text, a name
that is a path, a size that disagrees, an entry listed twice); a mutation that happens to change nothing
must read back identical data.
"""
from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).parent))
from hostile import manifest_body, read_everything, replace_array, reseal, same  # noqa: E402

from interp_embed.store import StoreError  # noqa: E402

IDS = ("act_features", "pool_features")
POINTERS = ("token_ptr", "pool_ptr")


def _mutate_array(path: Path, data) -> None:
    body = manifest_body(path)
    chunk = data.draw(st.sampled_from([c["name"] for c in body["chunks"]]))
    folder = path / "chunks" / chunk
    kind = data.draw(st.sampled_from(["id beyond d_sae", "ids out of order", "pointer", "act_count", "doc_rows",
                                      "span"]))
    if kind == "id beyond d_sae":
        name = data.draw(st.sampled_from(IDS))
        ids = np.load(folder / f"{name}.npy").astype(np.int64)
        if not len(ids):
            return
        ids[data.draw(st.integers(0, len(ids) - 1))] = body["d_sae"] + data.draw(st.integers(0, 2**20))
        replace_array(path, chunk, name, ids)
    elif kind == "ids out of order":  # a row's ids repeated or descending: scipy would sum or misorder them
        name = data.draw(st.sampled_from(IDS))
        ids = np.load(folder / f"{name}.npy")
        ptr = (np.load(folder / "pool_ptr.npy") if name == "pool_features"
               else np.r_[0, np.cumsum(np.load(folder / "act_count.npy"), dtype=np.int64)])
        rows = [r for r in range(len(ptr) - 1) if ptr[r + 1] - ptr[r] >= 2]
        if not rows:
            return
        start = int(ptr[data.draw(st.sampled_from(rows))])
        ids[start + 1] = ids[start]  # equal neighbours
        replace_array(path, chunk, name, ids)
    elif kind == "pointer":
        name = data.draw(st.sampled_from(POINTERS))
        ptr = np.load(folder / f"{name}.npy").astype(np.int64)
        i = data.draw(st.integers(0, len(ptr) - 1))
        # decreasing where it should not, a first pointer that is not 0, or a last one that ends elsewhere
        ptr[i] = ptr[i - 1] - 1 if 0 < i < len(ptr) - 1 else ptr[i] + data.draw(st.integers(1, 2**40))
        replace_array(path, chunk, name, ptr)
    elif kind == "act_count":
        counts = np.load(folder / "act_count.npy").astype(np.int64)
        if not len(counts):
            return
        counts[data.draw(st.integers(0, len(counts) - 1))] += data.draw(st.integers(1, 2**31))
        replace_array(path, chunk, "act_count", counts)
    elif kind == "doc_rows":
        rows = np.load(folder / "doc_rows.npy").astype(np.int64)
        if not len(rows):
            return
        rows[data.draw(st.integers(0, len(rows) - 1))] = data.draw(st.sampled_from([-1, 10**12, int(rows[0]) - 1]))
        replace_array(path, chunk, "doc_rows", rows)
    else:
        lengths = np.load(folder / "char_len.npy").astype(np.int64)
        if not len(lengths):
            return
        lengths[data.draw(st.integers(0, len(lengths) - 1))] += 10_000  # longer than any document in the sample
        replace_array(path, chunk, "char_len", lengths)


def _mutate_manifest(path: Path, data) -> None:
    body = manifest_body(path)
    chunk = data.draw(st.sampled_from(body["chunks"]))
    kind = data.draw(st.sampled_from(["name", "file name", "n_documents", "d_sae", "n_encoded", "n_tokens", "bytes",
                                      "duplicate", "overlap", "skipped"]))
    if kind == "name":
        chunk["name"] = data.draw(st.sampled_from(["../elsewhere", "/etc", "000000000-000000001/../..", "x"]))
    elif kind == "file name":
        record = chunk["files"].pop("pool_max.npy")
        chunk["files"][data.draw(st.sampled_from(["../pool_max.npy", "/etc/passwd", "sub/pool_max.npy"]))] = record
    elif kind == "n_documents":
        body["n_documents"] += data.draw(st.sampled_from([-1, 1, 1_500_000_000]))
    elif kind == "d_sae":
        body["d_sae"] = body["encoder"]["sae"]["d_sae"] = data.draw(st.sampled_from([1, 2, 2**40]))
    elif kind in ("n_encoded", "n_tokens"):
        chunk[kind] += data.draw(st.sampled_from([-1, 1]))
    elif kind == "bytes":
        chunk["files"]["act_values.npy"]["bytes"] += data.draw(st.sampled_from([-1, 1]))
        (path / "manifest.json").write_text(json.dumps({"body": body, "sha256": _sha(body)}))
        return
    elif kind == "duplicate":
        body["chunks"].append(json.loads(json.dumps(chunk)))
    elif kind == "overlap":
        chunk["stop"] += 1
        chunk["name"] = f"{chunk['start']:09d}-{chunk['stop']:09d}"
    else:
        body["skipped"][str(body["n_documents"] + data.draw(st.integers(0, 5)))] = "empty"
    reseal(path, body)


def _sha(body: dict) -> str:
    from interp_embed.files import sha256_json

    return sha256_json(body)


def run(base: Path, examples: int) -> None:
    reference = read_everything(base)
    work = Path(tempfile.mkdtemp())

    @settings(max_examples=examples, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(data=st.data())
    def tampered_store_is_refused(data):
        copy = work / "copy.iembed"
        shutil.rmtree(copy, ignore_errors=True)
        shutil.copytree(base, copy)
        data.draw(st.sampled_from([_mutate_array, _mutate_manifest]))(copy, data)
        try:
            result = read_everything(copy)
        except StoreError as err:
            assert str(copy) in str(err), err
            return
        assert same(result, reference), "tampering gave different data without an error"

    tampered_store_is_refused()
    shutil.rmtree(work)
    print("ok")


if __name__ == "__main__":
    run(Path(sys.argv[1]), int(sys.argv[2]))
