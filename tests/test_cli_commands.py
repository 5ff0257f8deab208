"""Every command on stores of real text with synthetic activations (no model): tables, files, exit codes and
one-line errors that speak the command line's language."""
import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from interp_embed import Dataset
from interp_embed.cli import app
from synthetic import D_SAE, synthetic_dataset

runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args], terminal_width=250)


@pytest.fixture(scope="module")
def stores(sample, tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli")
    frame = sample.assign(length=sample.text.str.len(), german=(sample.language == "de").astype(int))
    ds = synthetic_dataset(folder / "all.iembed", frame, chunk_chars=2000)
    german = ds[(sample.language == "de").to_numpy()].save_to_file(folder / "german.iembed")
    others = ds[(sample.language != "de").to_numpy()].save_to_file(folder / "others.iembed")
    return ds.path, german, others


def test_diff_prints_a_table_named_after_the_stores_and_writes_files(stores, tmp_path):
    _, german, others = stores
    done = run("diff", german, others, "--rows", 5, "--csv", tmp_path / "d.csv", "--json", tmp_path / "d.json")
    assert done.exit_code == 0, done.output
    assert "freq_german" in done.output and "5 of" in done.output
    table = pd.read_csv(tmp_path / "d.csv")
    assert {"freq_german", "freq_others", "q_value", "group"} <= set(table.columns)
    expected = Dataset.load_from_file(german).diff(Dataset.load_from_file(others))  # the same as the Python call
    np.testing.assert_allclose(table.q_value, expected.q_value)
    assert table.feature_id.tolist() == expected.feature_id.tolist()
    assert len(json.loads((tmp_path / "d.json").read_text())) == len(table)
    grouped = run("diff", german, others, "--grouped", "--csv", tmp_path / "g.csv")
    assert grouped.exit_code == 0 and "n_members" in pd.read_csv(tmp_path / "g.csv").columns


def test_correlate_associate_cluster_search(stores, tmp_path):
    path, _, _ = stores
    done = run("correlate", path, "--k", 5, "--min-count", 3)
    assert done.exit_code == 0 and "npmi" in done.output, done.output
    done = run("associate", path, "--target", "german", "--json", tmp_path / "a.json")
    assert done.exit_code == 0 and "fisher" in done.output and "held-out auc" in done.output, done.output
    written = pd.DataFrame(json.loads((tmp_path / "a.json").read_text()))
    expected = Dataset.load_from_file(path).associate("german")
    assert written.feature_id.tolist() == expected.feature_id.tolist()
    done = run("cluster", path, "--features", "1,2", "--n-clusters", 2, "--csv", tmp_path / "c.csv")
    assert done.exit_code == 0 and "lift" in done.output, done.output
    assert "cluster 0" in done.output and "document " in done.output  # each cluster with its typical documents
    per_document = pd.read_csv(tmp_path / "c.csv")  # one row per document, every one in a cluster
    assert len(per_document) == len(Dataset.load_from_file(path)) and (per_document.cluster >= 0).all()
    assert list(per_document.columns) == ["document", "cluster", "text"]
    done = run("search", path, "rabbits", "--k", 3)
    assert done.exit_code == 0 and "<<" in done.output and "features used" in done.output, done.output
    done = run("search", path, "--features", "1", "--k", 3)
    assert done.exit_code == 0 and "features used" in done.output and "given" in done.output, done.output


def test_label_against_a_local_server(stores, tmp_path, llm):
    path = Dataset.load_from_file(stores[0]).save_to_file(tmp_path / "copy.iembed")
    done = run("label", path, "--features", "5,6", "--base-url", llm.url, "--k", 5, "--n-score", 5)
    assert done.exit_code == 0, done.output
    assert done.output.count("labelled") == 2 and "requests" in done.output
    assert Dataset.load_from_file(path).label_sources().query("source == 'llm'").feature_id.tolist() == [5, 6]


def test_report_writes_the_explorer(stores, tmp_path):
    _, german, others = stores
    done = run("report", german, "--vs", others, "-o", tmp_path / "r.html", "--max-features", 5)
    assert done.exit_code == 0 and "open it in a browser" in done.output, done.output
    html = (tmp_path / "r.html").read_text()
    assert html.startswith("<!DOCTYPE html>") and "german" in html and "others" in html


def test_info_and_top(stores, tmp_path):
    path, _, _ = stores
    done = run("info", path)
    assert done.exit_code == 0 and "60 rows, 60 encoded, 0 skipped, 0 pending" in done.output
    done = run("top", path, "--feature", 1, "--k", 3, "--csv", tmp_path / "t.csv")
    assert done.exit_code == 0 and "<<" in done.output and "activation" in done.output
    top = pd.read_csv(tmp_path / "t.csv")
    assert list(top.columns) == ["row", "activation", "document"] and len(top) == 3 and (top.activation == 2.0).all()


@pytest.mark.parametrize("args, code, message", [
    (["top", "{store}", "--feature", 99999], 1, f"has {D_SAE} features"),
    (["top", "{store}", "--feature", 1, "--k", -3], 2, "greater than or equal to 1"),
    (["info", "{tmp}/nothing"], 1, "is not an interp_embed store"),
    (["diff", "{store}", "{tmp}/nothing"], 1, "nothing"),
    (["encode", "{csv}", "--out", "{tmp}/o.iembed", "--field", "body"], 1, "field 'body' is not a column"),
    (["encode", "{csv}", "--out", "{store}"], 1, "--resume"),
    (["encode", "{csv}", "--out", "{tmp}/o.iembed", "--on-error", "ignore"], 2, "is not one of 'raise'"),
    (["encode", "--out", "{store}", "--resume", "--field", "body"], 2, "drop --field"),
    (["encode", "--out", "{tmp}", "--resume"], 1, "is not an interp_embed store"),
    (["encode", "{csv}", "--out", "{tmp}/o.iembed", "--sae", "nowhere"], 2, "neither 'default'"),
    (["encode", "{bad_csv}", "--out", "{tmp}/o.iembed"], 1, "--on-error skip"),
    (["encode", "{broken}", "--out", "{tmp}/o.iembed"], 1, "broken.parquet cannot be read as a .parquet table"),
    (["cluster", "{store}"], 2, "exactly one of --features, --query or --example"),
    (["associate", "{store}", "--target", "nope"], 1, "columns are"),
    (["search", "{store}", "zzzzqqq"], 1, "--by example"),
])
def test_failures_are_one_line_in_the_command_lines_words(stores, tmp_path, args, code, message):
    path = stores[0]
    csv, bad_csv = tmp_path / "t.csv", tmp_path / "bad.csv"
    pd.DataFrame({"text": ["Hello there.", "Good morning!"]}).to_csv(csv, index=False)
    pd.DataFrame({"text": ["Hello there.", None]}).to_csv(bad_csv, index=False)
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(b"PAR1 not really parquet")
    args = [str(a).format(store=path, tmp=tmp_path, csv=csv, bad_csv=bad_csv, broken=broken) for a in args]
    done = run(*args)
    assert done.exit_code == code, done.output
    assert message in " ".join(done.output.split()), done.output
    assert "Traceback" not in done.output
    if code == 1:
        assert len(done.output.strip().splitlines()) == 1  # one line
        assert "Dataset.load_from_file" not in done.output and "on_error=" not in done.output


def test_debug_shows_the_traceback(tmp_path):
    done = runner.invoke(app, ["--debug", "info", str(tmp_path / "nothing")])
    assert done.exit_code != 0 and done.exception is not None and type(done.exception).__name__ == "StoreError"


def test_options_take_the_python_defaults():
    import inspect

    import typer

    from interp_embed.analysis import diff_features, top_correlations
    from interp_embed.labeling import LabelingConfig

    commands = typer.main.get_command(app).commands
    options = {name: {p.name: p.default for p in command.params} for name, command in commands.items()}
    assert options["diff"]["alpha"] == 0.05 and options["diff"]["metric"] == "absolute"
    correlate = inspect.signature(top_correlations).parameters
    assert options["correlate"]["min_count"] == 10 == correlate["min_count"].default
    assert options["correlate"]["max_coverage"] == 0.5 == correlate["max_coverage"].default
    assert options["diff"]["grouping"] == "explained" == diff_features.__kwdefaults__["grouping"]
    assert options["label"]["concurrency"] == LabelingConfig().concurrency
    assert options["label"]["model"] == LabelingConfig().model
    assert diff_features.__kwdefaults__["alpha"] == options["diff"]["alpha"]
    assert np.all([options["encode"][f] == getattr(__import__("interp_embed").encode.config.EncodePlan(), f)
                   for f in ("chunk_tokens", "batch_tokens")])
    assert "chunk_chars" not in options["encode"]  # the older rule, kept for old stores only
