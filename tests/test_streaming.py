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
from interp_embed.encode.config import EncodePlan
from interp_embed.store import EncoderRecord, Store
from synthetic import D_SAE

PLAN = EncodePlan(chunk_tokens=400)


class NoModel:
    """What creating a store asks of an SAE (nothing is encoded with it): a store is made in milliseconds."""

    def feature_labels(self) -> dict[int, str]:
        return {}

    def describe(self) -> EncoderRecord:
        return EncoderRecord(source=None, reader=None, sae={"architecture": "synthetic", "d_sae": D_SAE},
                             sae_sha256=None)


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


def test_a_parquet_file_makes_the_store_its_dataframe_makes(table, tmp_path):
    table.to_parquet(tmp_path / "t.parquet")
    options = dict(sae=NoModel(), on_error="skip", plan=PLAN, compute_activations=False)
    expected = Dataset(pd.read_parquet(tmp_path / "t.parquet"), save_path=tmp_path / "a.iembed", **options)
    streamed = Dataset.from_parquet(tmp_path / "t.parquet", batch_rows=7, save_path=tmp_path / "b.iembed", **options)
    _same_store(streamed, expected)
    assert streamed.skipped_rows() == {5: "empty", 70: "missing (None/NaN)"}
    assert streamed.pandas().index[0] == "fortune-0" and len(streamed._store.chunk_ranges()) > 5
    texts = [text if isinstance(text, str) else None for text in table["text"]]
    assert streamed._store.texts(68, 72) == texts[68:72] and streamed._store.texts(110, 200) == texts[110:]
    # Batches of 7 rows are written in row groups of many batches, and the manifest's checksum is the file's.
    assert pq.ParquetFile(streamed.path / "documents.parquet").num_row_groups == 1
    with streamed._store.writing():  # the writer checks the documents table against its checksum
        assert streamed._store.pending_rows().size == len(table) - 2


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
    monkeypatch.setattr("interp_embed.cli.store_commands.sae_from_spec", lambda spec, device: NoModel())
    monkeypatch.setattr("interp_embed.encode.session.encode_pending", lambda store, sae: None)
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


MEASURE = """
import json, resource, sys
import torch  # imported before the baseline: what reading the file adds is measured, not what importing does
from interp_embed import Dataset
from interp_embed.encode.pipeline import encode_chunks
from interp_embed.store import Store
from synthetic import encode_text
from test_streaming import NoModel

class Enough(Exception):
    pass

class ThreeChunks:
    tokens_done = 0
    def __init__(self):
        self.chunks = 0
    def encode_rows(self, rows, texts):
        self.chunks += 1
        if self.chunks > 3:
            raise Enough
        return [encode_text(text, row) for row, text in zip(rows, texts)]

def peak():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

def store_and_three_chunks(path, out):
    read = Dataset.from_parquet if path.endswith(".parquet") else Dataset.from_jsonl
    read(path, sae=NoModel(), save_path=out, compute_activations=False)
    store = Store.open(out)  # reopened: its chunks are cut again from the text column, a batch at a time
    with store.writing():
        try:
            encode_chunks(store, ThreeChunks())
        except Enough:
            pass
    assert len(store.manifest.chunks) == 3 and store.document(store.n_documents - 1) is None
    return store.n_documents

peaks = [peak()]
rows = [store_and_three_chunks(path, path + ".iembed") for path in sys.argv[1:] if not peaks.append(peak())]
print(json.dumps({"peaks": peaks + [peak()], "rows": rows}))
"""


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["parquet", "jsonl"])
def test_peak_memory_does_not_grow_with_the_file(tmp_path, kind):
    """Real fortunes (each made unique, so that no format keeps one copy of a repeated text), 30,000 rows, then
    300,000 in the same process: making the store, cutting its chunks and encoding its first chunks takes about
    the same memory for both. Reading the larger table whole as a DataFrame takes about 210 MiB more here
    (benchmarks/streaming_memory.py); streaming stays under 128 MiB, most of it a fixed cost (Arrow's allocator)."""
    fortunes = demo_sample()
    paths, sizes = [], (30_000, 300_000)
    for n in sizes:
        table = fortunes.iloc[np.arange(n) % len(fortunes)].reset_index(drop=True)
        table["text"] = table["text"] + " (" + table.index.astype(str) + ")"
        paths.append(str(tmp_path / f"{n}.{kind}"))
        if kind == "parquet":
            table.to_parquet(paths[-1])  # one row group: reading it must not take the group whole
        else:
            table.to_json(paths[-1], orient="records", lines=True, force_ascii=False)
    texts_in_memory = sum(sys.getsizeof(text) for text in table["text"])  # as a list of str, ~50 MiB
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([os.path.dirname(__file__), *sys.path]))
    done = subprocess.run([sys.executable, "-c", MEASURE, *paths], capture_output=True, text=True, env=env, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    measured = json.loads(done.stdout.splitlines()[-1])
    assert measured["rows"] == list(sizes)
    start, small, large = measured["peaks"][0], measured["peaks"][2], measured["peaks"][3]
    figures = {"small": (small - start) / 2**20, "larger adds": (large - small) / 2**20,
               "texts": texts_in_memory / 2**20}
    assert large - small < texts_in_memory / 4, figures  # ten times the rows, about the same memory
    assert large - start < 128 * 2**20, figures
