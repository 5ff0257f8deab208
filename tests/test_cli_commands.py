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


def run(*args, columns: int = 250):
    """The command's result, printed as into a pipe with ``COLUMNS=columns``."""
    return runner.invoke(app, [str(a) for a in args], terminal_width=columns, env={"COLUMNS": str(columns)})


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


@pytest.mark.parametrize("clusters", ["1,2", "rabbits"])
def test_report_adds_clusters_and_titles(stores, tmp_path, clusters):
    from test_report import embedded

    path = stores[0]
    done = run("report", path, "-o", tmp_path / "r.html", "--max-features", 5, "--clusters", clusters,
               "--n-clusters", 2, "--title-column", "language")
    assert done.exit_code == 0, done.output
    data = embedded(tmp_path / "r.html")
    ds = Dataset.load_from_file(path)
    options = {"features": [1, 2]} if clusters == "1,2" else {"query": clusters}
    expected = ds.cluster(n_clusters=2, **options)
    assert data["clusters"]["axis"] == [int(f) for f in expected.clusters.attrs["axis"]]
    assert data["clusters"]["documents"] == len(expected.assignments)
    assert data["shown"]["title_column"] == "language"
    assert {data["names"][e["name"]]["title"] for e in data["features"][0]["top"]} <= {"en", "de", "es"}


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
    (["encode", "{csv}", "--out", "{store}"], 1, "already holds a complete store (60 of 60 rows encoded)"),
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


@pytest.fixture(scope="module")
def unfinished(sample, tmp_path_factory):
    """Stores whose encoding stopped: after no chunk, and after the first."""
    from synthetic import synthetic_store

    folder = tmp_path_factory.mktemp("unfinished")
    synthetic_store(folder / "none.iembed", sample, chunk_chars=1500, encode_chunks=0)
    synthetic_store(folder / "half.iembed", sample, chunk_chars=1500, encode_chunks=1)
    return folder


@pytest.mark.parametrize("args, says, never", [
    (["info", "{table}"], "is a table of documents, not an interp_embed store: encode it first with `interp-embed "
                          "encode {table} --out {tmp}/games.iembed`", "Pickle"),
    (["diff", "{store}", "{table}"], "encode it first with `interp-embed encode {table} --out", "Pickle"),
    (["encode", "{table}", "--out", "{tmp}/notes"], "{tmp}/notes already exists and is not an interp_embed store "
                                                     "(it holds notes.txt); choose another --out",
     "--resume"),
    (["report", "{unfinished}/none.iembed", "-o", "{tmp}/r.html"], "none.iembed has 0 of 60 rows encoded, so there "
     "is nothing to analyse yet; finish it with `interp-embed encode --out {unfinished}/none.iembed --resume`",
     "ds has"),
    (["top", "{unfinished}/none.iembed", "--feature", 1], "has 0 of 60 rows encoded", "active in no document"),
    (["encode", "{table}", "--out", "{unfinished}/half.iembed"], "holds an unfinished store (", "already exists."),
    (["label", "{store}", "--features", 5, "--model", "some/model"], "pass --api-key KEY; for a local server pass "
                                                                     "--base-url http://127.0.0.1:8000/v1",
     "api_key="),
    (["search", "{store}", "--features", "{silent}"], "no document of {store} has any of the features used active",
     "0 of 0 rows shown"),
])
def test_messages_say_what_to_do_on_the_command_line(stores, unfinished, tmp_path, monkeypatch, args, says, never):
    for key in ("OPENROUTER_API_KEY", "OPENAI_API_KEY", "OPENAI_BASE_URL"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.chdir(tmp_path)  # no .env here
    table = tmp_path / "games.csv"
    pd.DataFrame({"text": ["A game of chess.", "Tetris, the falling blocks game."]}).to_csv(table, index=False)
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "notes.txt").write_text("my notes")
    silent = int(np.flatnonzero(Dataset.load_from_file(stores[0]).latents("max").getnnz(axis=0) == 0)[0])
    names = {"store": stores[0], "table": table, "tmp": tmp_path, "unfinished": unfinished, "silent": silent}
    done = run(*[str(a).format(**names) for a in args])
    assert done.exit_code == 1, done.output
    output = " ".join(done.output.split())
    assert says.format(**names) in output and never not in output, done.output
    assert "Traceback" not in done.output


def test_an_unfinished_store_is_analysed_with_a_note(unfinished):
    done = run("top", unfinished / "half.iembed", "--feature", 1, "--k", 2)
    assert done.exit_code == 0, done.output
    store = Dataset.load_from_file(unfinished / "half.iembed")
    encoded = int(store.encoded_mask().sum())
    assert 0 < encoded < 60
    assert (f"note: {unfinished / 'half.iembed'} has {encoded} of 60 rows encoded; the other {60 - encoded} are left "
            f"out until you finish it with `interp-embed encode --out {unfinished / 'half.iembed'} --resume`"
            ) in " ".join(done.output.split())
    assert "resume=True" not in done.output  # the library's warning, in Python's words, is not repeated


def test_label_exits_non_zero_when_every_feature_failed(stores, tmp_path):
    import socket

    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    path = Dataset.load_from_file(stores[0]).save_to_file(tmp_path / "copy.iembed")
    done = run("label", path, "--features", 5, "--base-url", f"http://127.0.0.1:{port}/v1", "--max-retries", 0,
               "--timeout", 5)
    assert done.exit_code == 1, done.output
    assert "every feature failed (1), so nothing was labelled" in " ".join(done.output.split())
    assert "labels are kept in the store" not in done.output


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
    from interp_embed.encode.config import EncodePlan  # the public spelling

    assert np.all([options["encode"][f] == getattr(EncodePlan(), f) for f in ("chunk_tokens", "batch_tokens")])
    assert "chunk_chars" not in options["encode"]  # the older rule, kept for old stores only


def table(output: str) -> tuple[list[str], list[str], list[str]]:
    """A printed table's header lines, rows and the lines after it (the title must fit on one line)."""
    lines = output.splitlines()
    rule = next(i for i, line in enumerate(lines) if line.startswith("──"))
    rows = [i for i in range(rule + 1, len(lines)) if " of " in lines[i] and "rows shown" in lines[i]][0]
    return lines[1:rule], lines[rule + 1:rows], lines[rows:]


@pytest.fixture
def here(stores, monkeypatch):
    """The stores' folder as the working directory: commands name the stores briefly, as a user would."""
    monkeypatch.chdir(stores[0].parent)


def test_tables_fit_80_columns_keeping_ids_numbers_and_fires_on(stores, here):
    from rich.cells import cell_len

    done = run("diff", "german.iembed", "others.iembed", "--rows", 10, "--grouped", columns=80)
    assert done.exit_code == 0, done.output
    assert max(cell_len(line) for line in done.output.splitlines()) <= 80
    expected = Dataset.load_from_file(stores[1]).diff(Dataset.load_from_file(stores[2]), grouped=True).head(10)
    header, body, after = table(done.output)
    header = " ".join(header)
    assert "fires_on" in header and "q_value" in header and "freq_" in header and "german" in header
    assert [int(line.split()[0]) for line in body] == expected.feature_id.tolist()  # every id whole, in order
    for line, fires_on, q in zip(body, expected.fires_on, expected.q_value):
        assert fires_on.split(" · ")[0][:10] in line  # the words are there (the first one at least begun)
        assert f"{q:.3g}" in line or f"{q:.4f}".rstrip("0").rstrip(".") in line  # the q-value whole
    note = " ".join(after)
    assert "label" not in header and "label" in note and "left out to fit (--wide shows every column)" in note


def test_both_sides_of_a_pair_keep_their_words_at_80_columns(stores, here):
    from rich.cells import cell_len

    done = run("correlate", "all.iembed", "--k", 5, "--min-count", 3, columns=80)
    assert done.exit_code == 0, done.output
    assert max(cell_len(line) for line in done.output.splitlines()) <= 80, done.output
    header = " ".join(table(done.output)[0])
    assert "fires_on_a" in header and "fires_on_b" in header and "npmi" in header


def test_wide_prints_every_column_whole(stores, here):
    done = run("diff", "german.iembed", "others.iembed", "--rows", 3, "--wide", columns=80)
    assert done.exit_code == 0, done.output
    expected = Dataset.load_from_file(stores[1]).diff(Dataset.load_from_file(stores[2]))
    header, body, _ = table(done.output)
    assert header[0].split() == list(expected.columns)
    assert expected.label.iloc[0] in body[0] and expected.fires_on.iloc[0] in body[0]
    assert max(len(line) for line in body) > 80


def test_a_pipe_without_columns_gets_100(stores, here):
    from rich.cells import cell_len

    done = runner.invoke(app, ["diff", "german.iembed", "others.iembed", "--rows", 5], env={"COLUMNS": None})
    assert done.exit_code == 0, done.output
    assert max(cell_len(line) for line in done.output.splitlines()) <= 100
    header, body, _ = table(done.output)
    assert "fires_on" in " ".join(header) and max(cell_len(line) for line in body) > 80


def test_top_shows_each_document_on_one_line_around_its_mark(stores):
    from rich.cells import cell_len

    done = run("top", stores[0], "--feature", 1, "--k", 3, columns=80)
    assert done.exit_code == 0, done.output
    rows = table(done.output)[1]
    assert len(rows) == 3 and all("<<" in row and cell_len(row) <= 80 for row in rows)


def test_help_is_readable_at_80_columns():
    from rich.cells import cell_len

    done = runner.invoke(app, ["encode", "--help"], terminal_width=80, env={"COLUMNS": "80"})
    assert done.exit_code == 0, done.output
    assert max(cell_len(line) for line in done.output.splitlines()) <= 80
    text = " ".join(done.output.split())
    # Whole sentences, not words squeezed into a narrow column: an option's description reads on.
    assert "The store folder to write (or, with --resume, to finish)." in text
    assert "pip install 'interp_embed[ray]'" in text
    assert max(len(line.split("  ")[-1]) for line in done.output.splitlines()) >= 40


def test_docstring_examples():
    import doctest

    from interp_embed import validation
    from interp_embed.cli import tables

    for module in (tables, validation):
        result = doctest.testmod(module)
        assert result.attempted > 0 and result.failed == 0


def test_layout_drops_an_interval_whole_and_cuts_labels_from_their_start():
    from interp_embed.cli.tables import layout

    names = ["feature_id", "fires_on", "label", "difference", "ci_low", "ci_high", "q_value"]
    rows = [["6873", "daß · braucht · habe · fluchtarten · kann", "German words: 'werden' — “Netzwerks w<<arten>>”",
             "0.9625", "0.9004", "0.9827", "3.06e-53"]]
    numeric = [True, False, False, True, True, True, True]
    for width in range(60, 140, 5):  # narrower, numbers and words cannot all fit
        lines, dropped = layout(names, rows, numeric, width, optional=("ci_low", "ci_high"))
        assert max(len(line) for line in lines) <= width
        assert ("ci_low" in dropped) == ("ci_high" in dropped)  # an interval is shown whole or not at all
        assert "fires_on" not in dropped and "6873" in lines[-1] and "3.06e-53" in lines[-1]
        if "label" not in dropped:
            assert "German" in lines[-1]  # a label reads from its start, not from its excerpt's mark
        if "ci_low" not in dropped:
            assert "label" not in dropped or width < 100  # labels go before the interval
    assert layout(names, rows, numeric, 80, optional=("ci_low", "ci_high"))[1] == ["label"]
    assert layout(names, rows, numeric, 70, optional=("ci_low", "ci_high"))[1] == ["label", "ci_low", "ci_high"]
