"""Hostile input, round two: a store whose files lie about their sizes, crafted table metadata and manifests, and
input files whose texts look like missing values. Every one is refused by name, or read as what it really holds;
where memory is the attack, the reader runs in a child process under an address-space cap (hostile.py)."""
import json
import os
import resource
import shutil
import signal
import struct
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from interp_embed import Dataset
from interp_embed.files import MANIFEST, TEMPORARY_PREFIX, sha256_json
from interp_embed.spec.plan import EncodePlan
from interp_embed.store import EncoderRecord, Store, StoreCorruptError

from hostile import cap_memory, manifest_body, reseal
from synthetic import D_SAE, encode_text, synthetic_store

TESTS = os.path.dirname(__file__)


@pytest.fixture()
def store(sample, tmp_path):
    return synthetic_store(tmp_path / "s.iembed", sample.head(12), chunk_chars=300)


def _in_a_child(script: str, cap: bool = True, **run) -> subprocess.CompletedProcess:
    """Run ``script`` in a fresh Python (under the address-space cap when ``cap``) so that a crash or a huge
    allocation fails the test instead of killing it."""
    code = f"import sys\nsys.path.insert(0, {TESTS!r})\n" + textwrap.dedent(script)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          preexec_fn=cap_memory if cap else None, **run)


def _refused_in_a_child(what: str, path) -> str:
    """``what`` (Python reading the store at ``path``) run under the memory cap: its StoreCorruptError's message."""
    done = _in_a_child(f"""
        from interp_embed import Dataset
        from interp_embed.store import StoreCorruptError
        path = {str(path)!r}
        try:
            {what}
        except StoreCorruptError as err:
            print("refused:", err)
        else:
            print("read")
    """)
    assert done.returncode == 0, f"the reader crashed: {done.stderr[-3000:]}"
    assert done.stdout.startswith("refused:"), done.stdout + done.stderr[-3000:]
    return done.stdout


# ---- a Parquet footer that claims rows the file does not hold (finding 4) ----------------------------------

def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        low, n = n & 0x7F, n >> 7
        out.append(low | 0x80 if n else low)
        if not n:
            return bytes(out)


def forge_row_count(path, rows: int, everywhere: bool) -> None:
    """Rewrite the Thrift footer of the Parquet file at ``path`` so that it claims ``rows`` rows: only the file's
    total, or (``everywhere``) every count of it, the row groups' and the column chunks' included."""
    data = path.read_bytes()
    size = struct.unpack("<I", data[-8:-4])[0]
    footer = data[-8 - size:-8]
    real = pq.ParquetFile(path).metadata.num_rows
    old, new = b"\x16" + _varint(real << 1), b"\x16" + _varint(rows << 1)  # an i64 field, zigzag varint
    footer = footer.replace(old, new) if everywhere else footer.replace(old, new, 1)
    path.write_bytes(data[:-8 - size] + footer + struct.pack("<I", len(footer)) + b"PAR1")
    forged = pq.ParquetFile(path).metadata
    assert forged.num_rows == rows and (forged.row_group(0).num_rows == rows) == everywhere


@pytest.mark.parametrize("everywhere", [False, True], ids=["file total", "every count"])
def test_a_forged_row_count_is_refused_before_anything_is_sized_by_it(store, everywhere):
    forge_row_count(store.path / "documents.parquet", 10**10, everywhere)
    body = manifest_body(store.path)
    body["n_documents"] = 10**10
    reseal(store.path, body)
    for what in ("Dataset.load_from_file(path).latents()", "Dataset.load_from_file(path).pandas()"):
        assert "documents.parquet" in _refused_in_a_child(what, store.path)
    done = _in_a_child(f"""
        from interp_embed.cli import app
        app(["info", {str(store.path)!r}])
    """)
    assert done.returncode == 1 and "documents.parquet" in done.stderr and "MemoryError" not in done.stderr, \
        done.stderr[-3000:]


def test_a_genuine_table_of_repeated_texts_is_read_as_it_is(tmp_path):
    """Rows the file really holds are never refused, however well they compress: counted where the footer alone
    cannot vouch for them (here a table in one row group, as stores were written before row groups were cut)."""
    table = pa.table({"text": ["the same short text"] * 100_000})  # streamed input keeps no index column
    encoder = EncoderRecord(source=None, reader=None, sae={"architecture": "synthetic", "d_sae": D_SAE}, sae_sha256=None)
    store = Store.create_from_batches(tmp_path / "s.iembed", table.schema, [(table, {})], "text", encoder,
                                      EncodePlan(chunk_tokens=None, chunk_chars=200_000), None)
    pq.write_table(table, store.path / "documents.parquet")
    reseal(store.path)
    assert (store.path / "documents.parquet").stat().st_size * 64 < table.num_rows  # more than the footer vouches for
    ds = Dataset.load_from_file(store.path)
    assert len(ds) == 100_000 and ds.pandas()["text"].nunique() == 1 and len(ds._store.pending_rows()) == 100_000


# ---- integer arrays widened before their lengths are checked (finding 5) ---------------------------------------

@pytest.mark.parametrize("name, what", [("pool_count", "Dataset.load_from_file(path).latents()"),
                                        ("act_features", "Dataset.load_from_file(path)[0].tokens()")])
def test_a_sparse_gigabyte_array_is_refused_by_its_length_before_it_is_widened(store, name, what):
    chunk = store.manifest.chunks[0].name
    file = store.path / "chunks" / chunk / f"{name}.npy"
    file.unlink()
    huge = np.lib.format.open_memmap(file, mode="w+", dtype=np.uint8, shape=(2**30,))  # sparse: no disk used
    del huge
    reseal(store.path)
    assert f"{name}.npy has {2**30} entries" in _refused_in_a_child(what, store.path)


# ---- crafted pandas metadata in the documents table (finding 12) -----------------------------------------------

def _pandas_metadata(case: str, meta: dict) -> bytes:
    if case == "deep nesting":
        return b'{"index_columns": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    if case == "index columns not a list":
        meta["index_columns"] = 5
    elif case == "missing index column":
        meta["index_columns"] = ["nowhere"]
    elif case == "bad range index":
        meta["index_columns"] = [{"kind": "range", "name": None, "start": "a", "stop": None, "step": [1]}]
    elif case == "bad datetime type":
        column = next(c for c in meta["columns"] if c["name"] == "language")
        column.update(pandas_type="datetime", numpy_type="datetime64[xx]")
    elif case == "columns not a list":
        meta["columns"] = {"a": 1}
    return json.dumps(meta).encode()


@pytest.mark.parametrize("case", ["deep nesting", "index columns not a list", "missing index column",
                                  "bad range index", "bad datetime type", "columns not a list"])
def test_crafted_pandas_metadata_is_refused_naming_the_table(store, tmp_path, case):
    path = store.path / "documents.parquet"
    table = pq.read_table(path)
    meta = json.loads(table.schema.metadata[b"pandas"])
    pq.write_table(table.replace_schema_metadata({b"pandas": _pandas_metadata(case, meta)}), path)
    reseal(store.path)
    ds = Dataset.load_from_file(store.path)
    for read in (ds.pandas, lambda: ds[:3].save_to_file(tmp_path / "part.iembed"), lambda: ds.report(tmp_path / "r.html")):
        with pytest.raises(StoreCorruptError, match="documents.parquet"):
            read()
    assert not (tmp_path / "part.iembed").exists()


# ---- a manifest with an integer of thousands of digits (finding 13) --------------------------------------------

def test_a_manifest_integer_of_thousands_of_digits_is_refused_naming_the_file(store):
    body = manifest_body(store.path)
    body["n_documents"] = 10**5000
    limit = sys.get_int_max_str_digits()
    sys.set_int_max_str_digits(0)  # only to write the attacker's file
    try:
        (store.path / MANIFEST).write_text(json.dumps({"body": body, "sha256": sha256_json(body)}))
    finally:
        sys.set_int_max_str_digits(limit)
    with pytest.raises(StoreCorruptError, match="manifest.json"):
        Store.open(store.path)


# ---- activations float16 cannot hold, and values that are no numbers (finding 10) -------------------------------

def _scaled(text: str, row: int, factor: float):
    doc = encode_text(text, row)
    doc.act_values = doc.act_values.astype(np.float32) * factor
    return doc


def test_activations_beyond_float16_are_stored_exactly_and_read_back(sample, tmp_path):
    texts = sample.text.head(12).tolist()
    big = synthetic_store(tmp_path / "big.iembed", sample.head(12), chunk_chars=300,
                          encode=lambda text, row: _scaled(text, row, 1e5 if row == 0 else 1.0))
    plain = synthetic_store(tmp_path / "plain.iembed", sample.head(12), chunk_chars=300)
    ds, reference = Dataset.load_from_file(big.path), Dataset.load_from_file(plain.path)
    first = encode_text(texts[0], 0)
    stored = ds[0].latents("all").toarray()
    assert np.isfinite(stored).all() and stored.max() > 65504
    np.testing.assert_array_equal(stored, reference[0].latents("all").toarray() * np.float32(1e5))
    assert ds.latents("max")[0].max() == np.float32(first.act_values.max()) * np.float32(1e5)
    np.testing.assert_array_equal(ds.latents("max")[1:].toarray(), reference.latents("max")[1:].toarray())
    assert np.isfinite(ds.latents("sum").data).all() and np.isfinite(ds.latents("mean").data).all()


def test_values_that_are_no_numbers_are_refused_when_written_naming_the_row(sample, tmp_path):
    frame = sample.head(12)
    store = Store.open(synthetic_store(tmp_path / "s.iembed", frame, chunk_chars=300, encode_chunks=0).path)
    start, stop = store.pending_chunks()[0]
    docs = [encode_text(frame.text.iloc[r], r) for r in range(start, stop)]
    docs[-1].act_values = docs[-1].act_values.astype(np.float32)
    docs[-1].act_values[1] = np.nan
    with store.writing(), pytest.raises(ValueError, match=f"row {stop - 1}: .*not finite"):
        store.commit_chunk(start, stop, docs)
    assert Store.open(store.path).manifest.chunks == [] and list((store.path / "chunks").iterdir()) == []


# ---- the writer lock and a full disk (finding 15) ----------------------------------------------------------------

def test_a_fifo_planted_as_the_writer_lock_is_refused_by_name(store):
    (store.path / ".lock").unlink(missing_ok=True)
    os.mkfifo(store.path / ".lock")
    with pytest.raises(StoreCorruptError, match=r"\.lock is not a regular file"):
        with store.writing():
            pass


def test_a_full_disk_says_so_and_keeps_what_was_committed(sample, tmp_path):
    store = synthetic_store(tmp_path / "s.iembed", sample.head(12), chunk_chars=300, encode_chunks=1)
    done = _in_a_child(f"""
        import resource, signal
        from interp_embed.store import Store
        from synthetic import encode_text
        import pandas as pd
        texts = {sample.text.head(12).tolist()!r}
        store = Store.open({str(store.path)!r})
        start, stop = store.pending_chunks()[0]
        docs = [encode_text(texts[r], r) for r in range(start, stop)]
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails as on a full disk
        resource.setrlimit(resource.RLIMIT_FSIZE, (200, 200))
        with store.writing():
            store.commit_chunk(start, stop, docs)
    """, cap=False)
    assert done.returncode == 1, done.stderr
    message = done.stderr.strip().splitlines()[-1]
    assert "disk" in message and "nothing committed" in message and str(store.path) in message, message
    reopened = Store.open(store.path)
    assert len(reopened.manifest.chunks) == 1 and reopened.latents().nnz == store.latents().nnz
    assert not [p for p in (store.path / "chunks").iterdir() if p.name.startswith(TEMPORARY_PREFIX)]


# ---- input files: texts that look like missing values, numbers written as text (finding 15) --------------------

def test_csv_texts_that_look_missing_are_documents(tmp_path):
    from interp_embed.cli.common import read_table

    path = tmp_path / "t.csv"
    path.write_text('text,score,code\nNA,1.5,0042\nnull,NA,007\nNone,,x\nn/a,2,y\n,3,z\n"Good morning!",4,w\n')
    table = read_table(path, "text")
    assert table["text"].tolist()[:4] == ["NA", "null", "None", "n/a"] and table["text"].tolist()[5] == "Good morning!"
    assert pd.isna(table["text"].iloc[4])  # an empty cell is a missing text
    assert table["score"].isna().tolist() == [False, True, True, False, False, False]  # other columns as pandas reads
    tsv = tmp_path / "t.tsv"
    tsv.write_text("text\tn\n0042\t1\nNA\t2\n")
    assert read_table(tsv, "text")["text"].tolist() == ["0042", "NA"]


def test_json_strings_stay_strings(tmp_path):
    from interp_embed.cli.common import read_table

    path = tmp_path / "t.json"
    path.write_text(json.dumps([{"text": "0042", "id": "007", "n": 3}, {"text": "NA", "id": "1e5", "n": 4}]))
    table = read_table(path, "text")
    assert table["text"].tolist() == ["0042", "NA"] and table["id"].tolist() == ["007", "1e5"]
    assert table["n"].tolist() == [3, 4]


@pytest.mark.reader
def test_an_sae_whose_activations_exceed_float16_encodes_a_store_its_reader_accepts(tiny_model_dir, tmp_path):
    """The encoder hands the store float32 activations; a chunk float16 cannot hold keeps them in float32."""
    import torch

    from interp_embed.architectures import SAEConfig, build_sae, save_sae
    from interp_embed.saes import LocalSAE

    torch.manual_seed(0)
    sae = build_sae(SAEConfig(architecture="relu", d_in=64, d_sae=128, hook_layer=1, model_name=str(tiny_model_dir)))
    with torch.no_grad():
        sae.W_enc.normal_(std=1e5)  # pre-activations far beyond 65504
    folder = save_sae(sae, tmp_path / "sae")
    frame = pd.DataFrame({"text": ["Good morning!", "Hello there, how are you?", "Guten Tag."]})
    Dataset(frame, sae=LocalSAE(path=folder, role="raw"), save_path=tmp_path / "s.iembed")
    ds = Dataset.load_from_file(tmp_path / "s.iembed")
    largest = ds.latents("max").max()
    assert np.isfinite(largest) and largest > 65504
    assert np.isfinite(ds[1].latents("all").toarray()).all() and len(ds[1].tokens()) > 3
