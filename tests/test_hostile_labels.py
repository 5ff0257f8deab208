"""Hostile input to labels and to the terminal: a server that echoes the key or sends malformed replies, label
records that cannot be read back (written by us or crafted), and store text that would act on a terminal. Each
is refused by name or shown as plain text; one bad feature or file never stops the rest. Stores are the bundled
fortunes with synthetic activations (no model); the server is tests/fake_llm.py over real HTTP."""
import hashlib
import json
import logging
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from interp_embed import Dataset
from interp_embed.analysis import diff_features
from interp_embed.cli import app
from interp_embed.cli.common import plain
from interp_embed.cli.store_commands import _summary
from interp_embed.files import LABEL_RECORDS
from interp_embed.labeling.provider import KEY_PIECE, Secret
from interp_embed.report import write_report
from interp_embed.store import StoreLockedError
from interp_embed.store.labels import DatasetLabels, InvalidLabelRecord, LabelRecord
from synthetic import D_SAE, synthetic_dataset

# The key's first and last 8 characters are the same, and its middle repeats: replacing one piece first would
# leave others behind.
KEY = "sk-or-v1-" + "ab12cd34" * 4 + "-sk-or-v1"
TERMINAL_ATTACK = "[link=https://e.example/]ok[/link] \x1b]0;pwned\x07 :smile: \u202eevil [blink]hid[/blink]"
runner = CliRunner()


def child_env(**extra) -> dict:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), *sys.path]), **extra}


@pytest.fixture(scope="module")
def store(sample, tmp_path_factory):
    """The fortunes, the first two rows replaced by texts written to act on a terminal."""
    frame = sample.copy()
    frame.loc[frame.index[:2], "text"] = [f"Hello {TERMINAL_ATTACK} end.", f"Second {TERMINAL_ATTACK} here."]
    frame[TERMINAL_ATTACK] = (frame.language == "de").astype(int)  # a column whose name would act too
    return synthetic_dataset(tmp_path_factory.mktemp("hostile") / "fortunes.iembed", frame, chunk_chars=4000)


@pytest.fixture
def ds(store, tmp_path):
    """A fresh copy of the store: labels are written into it."""
    return Dataset.load_from_file(store.save_to_file(tmp_path / "copy.iembed"))


def active_features(ds, n: int) -> list[int]:
    """``n`` features (of the hashed words) active in 20 to 120 documents."""
    counts = (ds.latents("binarize") > 0).sum(axis=0).A1
    return [f for f in range(3, D_SAE) if 20 <= counts[f] <= 120][:n]


def key_pieces(text: str) -> list[str]:
    """Every run of KEY_PIECE characters of the key found in ``text``."""
    return [KEY[i:i + KEY_PIECE] for i in range(len(KEY) - KEY_PIECE + 1) if KEY[i:i + KEY_PIECE] in text]


def good_record(**fields) -> dict:
    return {"feature": 5, "label": "fine", "source": "user", "created": "2024-01-01T00:00:00.000000+00:00",
            "brief_description": "", "detailed_explanation": "", "model": None, "prompt_version": None,
            "seed": None, "examples": {}, "score": None, "usage": {}, **fields}


def plant(ds, data: bytes) -> Path:
    """A record file with these bytes, named by their checksum as a real one is."""
    folder = ds.path / LABEL_RECORDS
    folder.mkdir(exist_ok=True)
    path = folder / (hashlib.sha256(data).hexdigest() + ".json")
    path.write_bytes(data)
    return path


# ---- 1. the key never leaves for the server's echo -------------------------------------------------------

def test_every_piece_of_the_key_is_scrubbed_whatever_surrounds_it():
    rng = random.Random(0)
    for key in (KEY, "a" * 40, "abcdefgh" * 3 + "abc", "0123456789abcdef", "k3y-" + "x" * 12 + "-k3y-" + "x" * 12):
        secret = Secret(key)
        for _ in range(300):  # texts of key pieces of every length and place, glued to each other and to filler
            parts = []
            for _ in range(rng.randint(1, 6)):
                start = rng.randrange(len(key))
                parts += [key[start:rng.randint(start + 1, len(key))], rng.choice(["", " ", "…", "--", "xyz"])]
            text = "".join(parts)
            scrubbed = secret.scrub(text)
            assert not [key[i:i + KEY_PIECE] for i in range(len(key) - KEY_PIECE + 1)
                        if key[i:i + KEY_PIECE] in scrubbed], (key, text, scrubbed)
        assert secret.scrub("nothing of it here") == "nothing of it here"
    assert Secret("short").scrub("a short key") == "a *** key"
    assert Secret("not-needed").scrub("not-needed") == "not-needed"  # what is sent when there is no key


@pytest.mark.parametrize("hash_seed", ["0", "1", "2", "3"])
def test_a_key_the_server_echoes_reaches_no_output_file_log_or_table(ds, llm, tmp_path, hash_seed):
    llm.echo = lambda key: (f"your key {key} (masked {key[:8]}…{key[-8:]}, cut {key[5:21]}, twice {key}{key}, "
                            f"as JSON \\u0073{key[1:]})")
    llm.script.append(("status", 401, None))  # the first feature's request fails with the key in the error
    features = active_features(ds, 3)
    done = subprocess.run(
        [sys.executable, "-m", "interp_embed", "label", str(ds.path), "--features", ",".join(map(str, features)),
         "--no-score", "--base-url", llm.url, "--concurrency", "1", "--max-retries", "0",
         "--csv", str(tmp_path / "t.csv"), "--json", str(tmp_path / "t.json")],
        capture_output=True, text=True, env=child_env(OPENAI_API_KEY=KEY, PYTHONHASHSEED=hash_seed), timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert all(r.authorization == f"Bearer {KEY}" for r in llm.requests) and len(llm.requests) == 3
    assert "AuthenticationError" in done.stderr and "failed" in done.stdout  # the error and its echo were shown
    outputs = {"stdout": done.stdout, "stderr (logs, progress bar)": done.stderr,
               "csv": (tmp_path / "t.csv").read_text(), "json": (tmp_path / "t.json").read_text()}
    outputs.update({str(p): p.read_bytes().decode("utf-8", "replace") for p in ds.path.rglob("*") if p.is_file()})
    leaks = {where: key_pieces(text) for where, text in outputs.items() if key_pieces(text)}
    assert not leaks
    records = Dataset.load_from_file(ds.path)._store.label_records()  # the echo arrived, scrubbed
    assert len(records) == 2 and all("***" in r.label and "***" in r.detailed_explanation for r in records)


# ---- 2 and 11. one schema for a label record, used when writing and when reading ---------------------------

BAD_FIELDS = [
    ({"label": "y" * 2_000_000}, "more than the 1,048,576"),
    ({"label": "a\ud800b"}, "label is not valid Unicode text"),
    ({"label": "  "}, "label is empty"),
    ({"seed": 2**70}, "seed is not an integer"),
    ({"feature": -1}, "feature is not an integer"),
    ({"score": {"balanced_accuracy": 10**400}}, "score.balanced_accuracy is not a number from 0 to 1"),
    ({"score": {"balanced_accuracy": float("nan")}}, "score.balanced_accuracy is not a number from 0 to 1"),
    ({"score": {"f1": float("inf")}}, "score.f1 is not a number from 0 to 1"),
    ({"score": {"true_positives": 1.5}}, "score.true_positives is not a whole number"),
    ({"score": {"secret sauce": 1}}, "score has 1 unknown entry"),
    ({"usage": {"prompt_tokens": -1000}}, "usage.prompt_tokens is not an integer"),
    ({"usage": {"prompt_tokens": 1.5}}, "usage.prompt_tokens is not an integer"),
    ({"examples": {"label_positives": [True]}}, "examples.label_positives is not an integer"),
    ({"source": "server"}, "source must be one of"),
    ({"created": "yesterday"}, "created is not an ISO 8601 time"),
]


@pytest.mark.parametrize("fields, message", BAD_FIELDS)
def test_the_writer_refuses_by_name_exactly_what_the_reader_skips(ds, caplog, fields, message):
    with pytest.raises(InvalidLabelRecord, match=message):
        LabelRecord(**good_record(**fields))
    ds.set_label(7, "a good label")
    data = json.dumps(good_record(**fields)).encode("utf-8", "surrogatepass")
    crafted = plant(ds, data)
    with caplog.at_level(logging.WARNING):
        reread = Dataset.load_from_file(ds.path)
        assert reread.feature_labels()[7] == "a good label"
        assert [r.feature for r in reread._store.label_records()] == [7]
    assert crafted.name in caplog.text and "skipped" in caplog.text
    if len(data) <= 1 << 20:  # a larger file is refused by its size before it is read
        assert message in caplog.text


@pytest.mark.parametrize("labels, scores, message", [
    ({3: "fine", 4: "a\ud800b"}, {}, "label is not valid Unicode text"),
    ({3: "fine", D_SAE: "beyond"}, {}, f"feature {D_SAE} is outside"),
    ({3: "fine"}, {3: {"keyword_recall": float("nan")}}, "score.keyword_recall is not a number from 0 to 1"),
    ({3: "fine"}, {4: {"keyword_recall": 0.5}}, "scores name a feature that has no label"),
    ({3: "y" * 600_000, 4: "z" * 600_000}, {}, "2 labels take"),
])
def test_a_file_of_dataset_labels_is_checked_label_by_label_both_ways(ds, caplog, labels, scores, message):
    fields = {"rows": "0" * 64, "seed": 0, "held_out": 0.3, "version": "dataset-words-1"}
    with pytest.raises(InvalidLabelRecord, match=message):
        ds._store.add_dataset_labels(DatasetLabels(labels=labels, scores=scores, **fields))
    ds.set_label(7, "a good label")
    body = {"dataset_labels": {**fields, "created": "2024-01-01T00:00:00+00:00",
                               "labels": {str(f): v for f, v in labels.items()},
                               "scores": {str(f): v for f, v in scores.items()}}}
    crafted = plant(ds, json.dumps(body).encode("utf-8", "surrogatepass"))
    with caplog.at_level(logging.WARNING):
        reread = Dataset.load_from_file(ds.path)
        assert [r.feature for r in reread._store.label_records()] == [7] and not reread._store.dataset_labels()
    assert crafted.name in caplog.text and "skipped" in caplog.text


def test_a_label_too_large_to_keep_is_refused_when_set_and_the_store_stays_readable(ds):
    with pytest.raises(ValueError, match=r"label is 2,000,000 characters"):
        ds.set_label(3, "y" * 2_000_000)
    with pytest.raises(ValueError, match="lone surrogate"):
        ds.set_label(3, "a\udcffb")
    assert not (ds.path / LABEL_RECORDS).exists() or not list((ds.path / LABEL_RECORDS).iterdir())
    ds.set_label(3, "y" * 1000)
    reread = Dataset.load_from_file(ds.path)
    assert reread.feature_labels()[3] == "y" * 1000
    assert "y" * 1000 in str(reread.describe_feature(3))
    diff_features(reread[:30], reread[30:])


CRAFTED = {
    "lone surrogate": json.dumps(good_record(label="a\ud800b")),
    "seed 2**70": json.dumps(good_record(seed=2**70)),
    "score 10**400": json.dumps(good_record(score={"balanced_accuracy": 10**400})),
    "NaN score": json.dumps(good_record(score={"balanced_accuracy": float("nan")})),
    "inf score": json.dumps(good_record(score={"balanced_accuracy": float("inf")})),
    "feature = d_sae": json.dumps(good_record(feature=D_SAE)),
    "feature 2**62": json.dumps(good_record(feature=2**62)),
    "an integer of 5,000 digits": json.dumps(good_record()).replace('"seed": null', '"seed": ' + "9" * 5000),
    "deep nesting": json.dumps(good_record()).replace('"examples": {}', '"examples": ' + "[" * 100_000 + "]" * 100_000),
}


@pytest.mark.parametrize("name", list(CRAFTED))
def test_a_crafted_record_is_skipped_by_name_and_every_later_operation_works(ds, tmp_path, caplog, name):
    ds.set_label(5, "the real label")
    crafted = plant(ds, CRAFTED[name].encode("utf-8", "surrogatepass"))
    with caplog.at_level(logging.WARNING):
        reread = Dataset.load_from_file(ds.path)
        assert reread.feature_labels()[5] == "the real label" and D_SAE not in reread.feature_labels()
        sources = reread.label_sources()
        assert sources.set_index("feature_id").loc[5, "label"] == "the real label"
        described = reread.describe_feature(5)
        assert "the real label" in str(described) and "the real label" in described._repr_html_()
        diff_features(reread[:30], reread[30:])
        write_report(reread, tmp_path / "r.html", features=[5])
        copy = Dataset.load_from_file(reread.save_to_file(tmp_path / "saved.iembed"))
        assert copy.feature_labels()[5] == "the real label"
        Dataset.concat([reread[:10], reread[10:20]])
    assert crafted.name in caplog.text and "skipped" in caplog.text


# ---- 8. a malformed reply fails its feature; the run and the store go on -----------------------------------

MALFORMED = [
    (("patch", {"usage": {"prompt_tokens": "12", "completion_tokens": 3}}), "usage.prompt_tokens is a str"),
    (("patch", {"usage": {"prompt_tokens": -1000, "completion_tokens": 3}}), "usage.prompt_tokens is -1000"),
    (("patch", {"usage": {"prompt_tokens": 1.5, "completion_tokens": 3}}), "usage.prompt_tokens is 1.5"),
    (("patch", {"usage": [1, 2]}), "'usage' is not an object"),
    (("patch", {"choices": "abc"}), "'choices' is not a list"),
    (("patch", {"choices": {"0": {"message": {"content": "{}"}}}}), "'choices' is not a list"),
    (("patch", {"choices": [{"message": 5}]}), "choices[0].message is not an object"),
    (("patch", {"choices": [{"message": {"content": 5}}]}), "content is not text"),
    (("raw", b'{"choices": [{"message": {"content": "\xff\xfe"}}]}'), "not UTF-8"),
    (("raw", b"<html>busy</html>"), "not JSON"),
    (("raw", b"[1, 2, 3]"), "not a JSON object"),
    (("text", '{"label": "a\\ud800b", "brief_description": "x"}'), "lone surrogate"),
    (("text", json.dumps({"label": "y" * 1_500_000, "brief_description": "x"})), "more than the 1,048,576"),
]


@pytest.mark.parametrize("step, reason", MALFORMED, ids=[r for _, r in MALFORMED])
def test_a_malformed_reply_fails_its_feature_only(ds, llm, step, reason):
    llm.script.append(step)
    features = active_features(ds, 3)
    table = ds.label_features_sync(features, base_url=llm.url, concurrency=1, score=False, progress=False)
    assert table.status.iloc[0].startswith("failed:") and reason in table.status.iloc[0], table.status.iloc[0]
    assert (table.status.iloc[1:] == "labelled").all()
    reread = Dataset.load_from_file(ds.path)  # the store reads back, with the other features' labels
    assert {r.feature for r in reread._store.label_records()} == set(features[1:])
    assert [reread.feature_labels()[f] for f in features[1:]] == table.label.iloc[1:].tolist()


def test_labelling_while_another_process_writes_the_store_is_refused_before_paying(ds, llm):
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom interp_embed.store import Store\n"
                               f"with Store.open({str(ds.path)!r}).writing():\n"
                               "    print('locked', flush=True)\n    time.sleep(120)\n"],
        stdout=subprocess.PIPE, text=True, env=child_env())
    try:
        assert holder.stdout.readline().strip() == "locked"
        features = active_features(ds, 2)
        with pytest.raises(StoreLockedError, match=f"being written by process {holder.pid}"):
            ds.label_features_sync(features, base_url=llm.url, progress=False)
        with pytest.raises(StoreLockedError, match=f"process {holder.pid}"):
            ds.label_feature_sync(features[0], base_url=llm.url)
        done = runner.invoke(app, ["label", str(ds.path), "--features", str(features[0]), "--base-url", llm.url])
        assert done.exit_code == 1 and f"being written by process {holder.pid}" in done.output
        assert not llm.requests  # nothing was paid for
        assert ds.label_feature_sync(features[0], base_url=llm.url, save=False).label  # a label not kept: no lock
    finally:
        holder.kill()
        holder.wait()
    table = ds.label_features_sync(features, base_url=llm.url, score=False, progress=False)
    assert (table.status == "labelled").all()


# ---- 6 and 15. the terminal shows store text as text -------------------------------------------------------

def assert_shown_as_text(output: str) -> None:
    assert "\x1b" not in output and "\x07" not in output and "\u202e" not in output, repr(output[-2000:])
    assert "[link=https://e.example/]ok[/link]" in output and "[blink]hid[/blink]" in output
    assert "\\x1b]0;pwned\\x07" in output and ":smile:" in output and "\\u202eevil" in output


def test_the_cli_prints_labels_documents_columns_and_paths_as_plain_text(ds, llm, tmp_path):
    ds.set_label(0, TERMINAL_ATTACK)
    unlabelled = active_features(ds, 1)[0]
    (tmp_path / "a[").mkdir()
    path = ds.path.rename(tmp_path / "a[/]b [bold].iembed")  # a folder "]b [bold].iembed" in a folder "a["
    (tmp_path / "[").mkdir()
    other = Dataset.load_from_file(path)[30:].save_to_file(tmp_path / "[/]other.iembed")
    for f in Dataset.load_from_file(path).diff(Dataset.load_from_file(other)).feature_id.head(5):
        Dataset.load_from_file(path).set_label(int(f), TERMINAL_ATTACK)
    llm.script.append(("text", json.dumps({"label": TERMINAL_ATTACK, "brief_description": TERMINAL_ATTACK})))
    commands = [["info", path], ["top", path, "--feature", 0, "--k", 2], ["search", path, "--features", 0, "--k", 2],
                ["diff", path, other, "--rows", 5], ["associate", path, "--target", TERMINAL_ATTACK, "--rows", 3],
                ["label", path, "--features", unlabelled, "--no-score", "--base-url", llm.url]]
    for command in commands:  # a terminal wide enough that no table cuts a text
        done = runner.invoke(app, [str(a) for a in command], terminal_width=250, env={"COLUMNS": "1000"})
        assert done.exit_code == 0, (command[0], done.output[-3000:])
        assert "\x1b" not in done.output, (command[0], done.output[-3000:])
        if command[0] != "info":  # info shows no label or document, only the path
            assert_shown_as_text(done.output)
    assert "a[/]b [bold].iembed" in runner.invoke(app, ["info", str(path)]).output


@pytest.mark.parametrize("name", ["a[/]b.iembed", "x\x1b]8;;https://e.example/\x07y.iembed", "\udcff[bold].iembed"])
def test_a_path_that_is_not_a_store_is_one_plain_error_line(tmp_path, name):
    done = runner.invoke(app, ["info", str(tmp_path / name)])
    assert done.exit_code == 1 and done.output.startswith("error:") and "Traceback" not in done.output
    assert "\x1b" not in done.output and "is not an interp_embed store" in done.output
    assert plain(tmp_path / name) in done.output  # the path as it is, its control characters escaped
    done = runner.invoke(app, ["encode", str(tmp_path / name), "--out", str(tmp_path / "out")])
    assert done.exit_code == 2 and "\x1b" not in done.output and "is not a file" in done.output


def test_a_warning_about_a_crafted_file_name_reaches_the_terminal_escaped(ds):
    ds.set_label(5, "kept")
    folder = ds.path / LABEL_RECORDS
    (folder / ("\x1b]0;pwned\x07".ljust(64, "0") + ".json")).write_text("{}")
    done = subprocess.run([sys.executable, "-m", "interp_embed", "info", str(ds.path)], capture_output=True,
                          text=True, env=child_env(), timeout=120)
    assert done.returncode == 0 and "1 written since" in done.stdout
    assert "WARNING" in done.stderr and "\\x1b]0;pwned\\x07" in done.stderr and "\x1b" not in done.stderr


def test_next_steps_quote_paths_a_shell_would_split(ds, sample, tmp_path, capsys):
    from synthetic import synthetic_store

    _summary(ds, Path("my store.iembed"), 1.0)
    assert "interp-embed info 'my store.iembed'" in capsys.readouterr().out
    out = tmp_path / "my out"
    synthetic_store(out, sample, encode_chunks=1)  # an unfinished store: the message says how to resume it
    (tmp_path / "t.csv").write_text("text\nhello\n")
    done = runner.invoke(app, ["encode", str(tmp_path / "t.csv"), "--out", str(out)], terminal_width=250)
    assert done.exit_code == 1 and f"`interp-embed encode --out '{out}' --resume`" in " ".join(done.output.split())


def test_a_long_error_from_the_server_is_cut_in_the_status_and_scrubbed(ds, llm):
    llm.echo = lambda key: "x" * 100_000 + key
    llm.script.append(("status", 400, None))
    table = ds.label_features_sync(active_features(ds, 2), base_url=llm.url, api_key=KEY, concurrency=1,
                                   score=False, progress=False)
    status = table.status.iloc[0]
    assert status.startswith("failed:") and "BadRequestError" in status and len(status) < 500
    assert not key_pieces(table.to_string()) and table.status.iloc[1] == "labelled"
