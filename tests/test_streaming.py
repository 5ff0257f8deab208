"""Files larger than memory: Dataset.from_parquet / from_jsonl and the command line read the input a batch of rows
at a time, write the documents table in row groups, and encode each chunk from its own rows only."""
import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from interp_embed import Dataset
from interp_embed.cli import app
from interp_embed.data import demo_sample
from interp_embed.saes import LocalSAE
from interp_embed.spec.plan import EncodePlan
from interp_embed.store import Store
from synthetic import NoModel

PLAN = EncodePlan(chunk_tokens=400)




@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    """120 real fortunes with two bad texts, numbers (one missing) and an index of labels."""
    df = demo_sample().iloc[::2].copy()
    df["n"] = np.arange(len(df))
    df["score"] = np.where(df["n"] % 7 == 0, np.nan, df["n"] / 4)
    df.loc[df.index[5], "text"] = ""
    df.loc[df.index[70], "text"] = None
    return df.set_axis([f"fortune-{i}" for i in df.index])


def _same_store(streamed: Dataset, expected: Dataset) -> None:
    pd.testing.assert_frame_equal(streamed.pandas(), expected.pandas())
    assert streamed.columns == expected.columns and streamed.skipped_rows() == expected.skipped_rows()
    assert streamed._store.pending_chunks() == expected._store.pending_chunks()
    assert Store.open(streamed.path).pending_chunks() == expected._store.pending_chunks()  # cut again from the file


def test_a_parquet_file_makes_the_store_its_dataframe_makes(table, tmp_path, monkeypatch):
    monkeypatch.setattr("interp_embed.store.documents.ROWS_PER_GROUP", 16)
    table.to_parquet(tmp_path / "t.parquet")
    options = dict(sae=NoModel(), on_error="skip", plan=PLAN, compute_activations=False)
    expected = Dataset(pd.read_parquet(tmp_path / "t.parquet"), save_path=tmp_path / "a.iembed", **options)
    streamed = Dataset.from_parquet(tmp_path / "t.parquet", batch_rows=7, save_path=tmp_path / "b.iembed", **options)
    _same_store(streamed, expected)
    assert streamed.skipped_rows() == {5: "empty", 70: "missing (None/NaN)"}
    assert streamed.pandas().index[0] == "fortune-0" and len(streamed._store.chunk_ranges()) > 5
    # Batches of 7 rows are held until they fill a row group; a range of rows reads the groups that hold it.
    groups = pq.ParquetFile(streamed.path / "documents.parquet").metadata
    sizes = [groups.row_group(i).num_rows for i in range(groups.num_row_groups)]
    assert sizes == [16] * 7 + [8]
    texts = [text if isinstance(text, str) else None for text in table["text"]]
    store = Store.open(streamed.path)
    for start, stop in [(0, 1), (68, 72), (15, 17), (10, 60), (119, 120), (110, 200), (40, 40)]:
        assert store.texts(start, stop) == texts[start:stop], (start, stop)
    with store.writing():  # the manifest's checksum is the file's
        assert store.pending_rows().size == len(table) - 2


def test_a_jsonl_file_makes_the_store_its_dataframe_makes(table, tmp_path):
    table.reset_index(drop=True).to_json(tmp_path / "t.jsonl", orient="records", lines=True, force_ascii=False)
    options = dict(sae=NoModel(), on_error="skip", plan=PLAN, compute_activations=False)
    expected = Dataset(pd.read_json(tmp_path / "t.jsonl", lines=True), save_path=tmp_path / "a.iembed", **options)
    streamed = Dataset.from_jsonl(tmp_path / "t.jsonl", batch_rows=16, save_path=tmp_path / "b.iembed", **options)
    _same_store(streamed, expected)
    assert streamed.pandas()["score"].isna().sum() == (table["n"] % 7 == 0).sum()


def test_bad_texts_are_named_by_their_row_in_the_file(tmp_path):
    texts = demo_sample().text.tolist()[:40]
    texts[3], texts[25], texts[38] = "", None, "  \n"
    pd.DataFrame({"text": texts}).to_parquet(tmp_path / "t.parquet")
    with pytest.raises(ValueError, match=r"column 'text' has 3 value\(s\) that cannot be encoded: row 3: empty, "
                                         r"row 25: missing \(None/NaN\), row 38: empty\. Fix them, or pass "
                                         r"on_error='skip'"):
        Dataset.from_parquet(tmp_path / "t.parquet", sae=NoModel(), batch_rows=10, save_path=tmp_path / "x")
    assert not (tmp_path / "x").exists()
    with pytest.raises(KeyError, match=r"'body' is not a column; available columns: \['text'\]"):
        Dataset.from_parquet(tmp_path / "t.parquet", field="body", sae=NoModel(), save_path=tmp_path / "x")
    (tmp_path / "t.jsonl").write_text('{"text": "not parquet"}\n')
    with pytest.raises(ValueError, match="t.jsonl cannot be read as a .parquet table"):
        Dataset.from_parquet(tmp_path / "t.jsonl", sae=NoModel())


@pytest.mark.parametrize("lines, message", [
    ('{"text": "fine"}\n{"text": 42}\n', r"t.jsonl, line 2: 'text' holds 42, not a string"),
    ('{"text": "fine"}\n\n{"text": "ok"\n', r"t.jsonl, line 3: not JSON"),
    ('{"text": "fine"}\n["a list"]\n', r"t.jsonl, line 2: a JSON list, not an object"),
    ('{"text": "a", "n": 1}\n{"text": "b", "n": "two"}\n', r"t.jsonl, lines 2-2: a column holds values of another type"),
    ('\n\n', r"t.jsonl holds no JSON object"),
])
def test_a_malformed_jsonl_file_is_refused_by_its_line(tmp_path, lines, message):
    (tmp_path / "t.jsonl").write_text(lines)
    with pytest.raises(ValueError, match=message):
        Dataset.from_jsonl(tmp_path / "t.jsonl", sae=NoModel(), batch_rows=1, compute_activations=False)


def test_jsonl_columns_are_united_over_the_whole_file(tmp_path):
    rows = [{"text": "first"}, {"text": "second", "n": 2}, {"text": None, "n": 2.5, "tag": "x"}]
    (tmp_path / "t.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    ds = Dataset.from_jsonl(tmp_path / "t.jsonl", sae=NoModel(), batch_rows=1, on_error="skip",
                            compute_activations=False)
    assert ds.columns == ["text", "n", "tag"] and ds.skipped_rows() == {2: "missing (None/NaN)"}
    assert ds.pandas()["n"].tolist()[1:] == [2.0, 2.5] and ds.pandas()["tag"].tolist()[2] == "x"


def test_the_command_line_streams_parquet_and_jsonl(table, tmp_path, monkeypatch):
    """``interp-embed encode`` hands the file to the store a batch at a time (the table is never read whole)."""
    monkeypatch.setattr(pd, "read_parquet", None)
    monkeypatch.setattr(pd, "read_json", None)
    monkeypatch.setattr("interp_embed.cli.store_commands.sae_of_option", lambda spec, device, dtype: NoModel())
    monkeypatch.setattr("interp_embed.encode.session.encode_pending", lambda store, sae, ray=None: None)
    table.to_parquet(tmp_path / "t.parquet")
    table.to_json(tmp_path / "t.jsonl", orient="records", lines=True)
    for name in ("t.parquet", "t.jsonl"):
        out = tmp_path / f"{name}.iembed"
        done = CliRunner().invoke(app, ["encode", str(tmp_path / name), "--out", str(out), "--on-error", "skip"])
        assert done.exit_code == 0, done.output
        assert Store.open(out).n_documents == len(table) and len(Store.open(out).skipped) == 2
    done = CliRunner().invoke(app, ["encode", str(tmp_path / "t.jsonl"), "--out", str(tmp_path / "x.iembed")])
    assert done.exit_code == 1 and "row 5: empty, row 70: missing" in done.output
    # Resuming with the input checks that it is the store's table, a batch at a time.
    table.iloc[:100].to_parquet(tmp_path / "shorter.parquet")
    table.assign(text=table["text"].str.upper()).to_parquet(tmp_path / "other.parquet")
    for name in ("shorter.parquet", "other.parquet"):
        done = CliRunner().invoke(app, ["encode", str(tmp_path / name), "--out", str(out), "--resume"])
        assert done.exit_code == 1 and "is not the table" in done.output, done.output
    done = CliRunner().invoke(app, ["encode", str(tmp_path / "t.parquet"), "--out", str(out), "--resume"])
    assert "is not the table" not in done.output and "does not record which SAE" in done.output


@pytest.mark.reader
def test_a_streamed_file_encodes_and_resumes_as_its_dataframe(tiny_model_dir, table, tmp_path, monkeypatch):
    """Bit for bit the activations of ``Dataset(pd.read_parquet(path))``, the run interrupted and resumed, and
    the whole documents table never read while encoding or reading a row's tokens."""
    from interp_embed.encode.pipeline import Encoder

    sae = LocalSAE(path=_random_sae(tmp_path / "sae", tiny_model_dir), role="raw")
    path, plan = tmp_path / "t.parquet", EncodePlan(chunk_tokens=300)
    table.iloc[:60].to_parquet(path)
    expected = Dataset(pd.read_parquet(path), sae=sae, save_path=tmp_path / "a.iembed", on_error="skip", plan=plan)

    def whole_table(store):
        raise AssertionError("the whole documents table was read")

    encode_rows, chunks = Encoder.encode_rows, []

    def two_chunks_then_stop(encoder, rows, texts, progress=None):
        chunks.append(rows)
        if len(chunks) > 2:
            raise KeyboardInterrupt
        return encode_rows(encoder, rows, texts, progress)

    monkeypatch.setattr(Store, "documents", whole_table)
    monkeypatch.setattr(Encoder, "encode_rows", two_chunks_then_stop)
    with pytest.raises(KeyboardInterrupt):
        Dataset.from_parquet(path, sae=sae, save_path=tmp_path / "b.iembed", on_error="skip", plan=plan, batch_rows=16)
    assert len(Store.open(tmp_path / "b.iembed").manifest.chunks) == 2
    monkeypatch.setattr(Encoder, "encode_rows", encode_rows)
    resumed = Dataset.load_from_file(tmp_path / "b.iembed", resume=True, sae=sae)
    for row in (0, 7, 59):
        ours, theirs = resumed._store.document(row), expected._store.document(row)
        for name in ("token_ids", "spans", "act_ptr", "act_features", "act_values"):
            np.testing.assert_array_equal(getattr(ours, name), getattr(theirs, name))
    monkeypatch.undo()
    for aggregation in ("max", "sum", "count"):
        assert (resumed.latents(aggregation) != expected.latents(aggregation)).nnz == 0
    _same_store(resumed, expected)
    assert resumed.skipped_rows() == {5: "empty"} and resumed._store.is_complete()


def _random_sae(folder, model_dir):
    """A ReLU SAE with random weights on layer 1 of the tiny random reader."""
    import torch

    from interp_embed.architectures import SAEConfig, build_sae, save_sae

    torch.manual_seed(0)
    sae = build_sae(SAEConfig(architecture="relu", d_in=64, d_sae=128, hook_layer=1, model_name=str(model_dir)))
    with torch.no_grad():
        sae.W_enc.normal_()
    return save_sae(sae, folder)


MEASURE = """
import json, sys
from interp_embed import Dataset
from interp_embed.encode.pipeline import encode_chunks
from interp_embed.store import Store
from synthetic import encode_text
from synthetic import NoModel

class Enough(Exception):
    pass

class ThreeChunks:
    tokens_done = 0
    def __init__(self):
        self.chunks = 0
    def encode_rows(self, rows, texts, progress=None):
        self.chunks += 1
        if self.chunks > 3:
            raise Enough
        return [encode_text(text, row) for row, text in zip(rows, texts)]

def peak():  # the peak resident memory since the last reset, in bytes
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmHWM:"))

path, way = sys.argv[1:]
out, parquet = f"{path}-{way}.iembed", path.endswith(".parquet")
with open("/proc/self/clear_refs", "w") as clear:
    clear.write("5")  # the peak so far (importing) is forgotten: only what the work adds is measured
before = peak()
if way == "streamed":
    (Dataset.from_parquet if parquet else Dataset.from_jsonl)(path, sae=NoModel(), save_path=out,
                                                              compute_activations=False)
else:
    import pandas as pd
    table = pd.read_parquet(path) if parquet else pd.read_json(path, lines=True)
    Dataset(table, sae=NoModel(), save_path=out, compute_activations=False)
    del table
store = Store.open(out)  # reopened: its chunks are cut again from the text column, a batch at a time
with store.writing():
    try:
        encode_chunks(store, ThreeChunks())
    except Enough:
        pass
assert len(store.manifest.chunks) == 3 and store.document(store.n_documents - 1) is None
print(json.dumps({"growth": peak() - before, "rows": store.n_documents}))
"""


@pytest.mark.slow
@pytest.mark.skipif(not os.path.exists("/proc/self/clear_refs"), reason="measures peak memory with Linux's clear_refs")
@pytest.mark.parametrize("kind", ["parquet", "jsonl"])
def test_peak_memory_does_not_grow_with_the_file(tmp_path, kind):
    """Real fortunes (each made unique, so that no format keeps one copy of a repeated text), 30,000 and 300,000
    rows: making the store, cutting its chunks again and encoding its first chunks takes about the same memory
    for both, and less than half of what reading the larger file whole into a DataFrame takes
    (benchmarks/streaming_memory.py prints the figures)."""
    fortunes = demo_sample()
    # Arrow's default allocator (mimalloc) keeps a reserve that varies by ±20 MiB from run to run, which would drown
    # what is measured here; the system's does not (benchmarks/streaming_memory.py measures with the default).
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([os.path.dirname(__file__), *sys.path]),
               ARROW_DEFAULT_MEMORY_POOL="system")

    def growth(path, way) -> int:
        done = subprocess.run([sys.executable, "-c", MEASURE, str(path), way], capture_output=True, text=True,
                              env=env, timeout=900)
        assert done.returncode == 0, done.stderr[-3000:]
        return json.loads(done.stdout.splitlines()[-1])["growth"]

    streamed = {}
    for n in (30_000, 300_000):
        table = fortunes.iloc[np.arange(n) % len(fortunes)].reset_index(drop=True)
        table["text"] = table["text"] + " (" + table.index.astype(str) + ")"
        path = tmp_path / f"{n}.{kind}"
        if kind == "parquet":
            table.to_parquet(path)  # one row group: reading it must not take the group whole
        else:
            table.to_json(path, orient="records", lines=True, force_ascii=False)
        streamed[n] = growth(path, "streamed")
    whole = growth(path, "whole")
    texts_in_memory = sum(sys.getsizeof(text) for text in table["text"])  # as a list of str: ~50 MiB
    figures = {f"streamed {n}": f"{g / 2**20:.1f} MiB" for n, g in streamed.items()} | {
        "whole 300000": f"{whole / 2**20:.1f} MiB", "texts 300000": f"{texts_in_memory / 2**20:.1f} MiB"}
    # Ten times the rows add less than half of what their texts alone take: nothing holds the texts. (What is
    # added, 12-16 MiB here depending on the allocator's reserve, is per-row bookkeeping of about 60 bytes a row.)
    assert streamed[300_000] - streamed[30_000] < texts_in_memory / 2, figures
    assert streamed[300_000] < whole / 2, figures
