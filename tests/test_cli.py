"""The interp-embed command line on real text."""
import dataclasses
import json
import logging

import pytest
import typer

from typer.testing import CliRunner

from interp_embed.architectures import load_sae
from interp_embed.cli import app
from interp_embed.data import demo_sample
from interp_embed.saes import LocalSAE
from interp_embed.train import HarvestConfig, TrainConfig

pytestmark = pytest.mark.reader

runner = CliRunner()


def test_encode_info_top_and_a_resumable_interrupt(tmp_path, monkeypatch, caplog):
    table = tmp_path / "docs.csv"
    demo_sample().head(12).to_csv(table, index=False)
    store = tmp_path / "docs.iembed"
    # Ctrl-C after the first chunk: what is committed stays, and the message says how to resume.
    from interp_embed.store import Store

    commit = Store.commit_chunk

    def commit_then_interrupt(self, *args):
        commit(self, *args)
        raise KeyboardInterrupt

    monkeypatch.setattr(Store, "commit_chunk", commit_then_interrupt)
    with caplog.at_level(logging.WARNING):
        stopped = runner.invoke(app, ["encode", str(table), "--out", str(store), "--chunk-tokens", "100"])
    # One message, in the command line's words: what is kept and the command that resumes.
    said = [line for line in stopped.output.splitlines() if "interrupted" in line]
    done_rows = Store.open(store).manifest.chunks[0].stop
    assert stopped.exit_code == 130 and said == [
        f"Encoding interrupted; {done_rows} of 12 rows are committed in {store}. Resume with: "
        f"interp-embed encode --out {store} --resume"], stopped.output
    assert "load_from_file" not in stopped.output + caplog.text and "WARNING" not in caplog.text
    monkeypatch.setattr(Store, "commit_chunk", commit)
    info = runner.invoke(app, ["info", str(store)])
    assert info.exit_code == 0 and "pending" in info.output and "--resume" in info.output
    unfinished = runner.invoke(app, ["encode", str(table), "--out", str(store)])  # forgot --resume: told to add it
    assert unfinished.exit_code == 1 and "holds an unfinished store (" in unfinished.output
    assert f"interp-embed encode --out {store} --resume" in " ".join(unfinished.output.split())
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        done = runner.invoke(app, ["encode", "--out", str(store), "--resume"])
    assert done.exit_code == 0, done.output
    assert "not encoded yet" not in done.output + caplog.text  # no warning about what it is doing
    assert "Encoded 12 of 12 rows" in done.output and "interp-embed report" in done.output
    info = runner.invoke(app, ["info", str(store)])
    assert info.exit_code == 0 and "12 rows, 12 encoded, 0 skipped, 0 pending" in info.output
    assert "bytes per token" in info.output and "layer 15" in info.output
    from interp_embed import Dataset

    feature = int(Dataset.load_from_file(store).latents()[0].indices[0])
    top = runner.invoke(app, ["top", str(store), "--feature", str(feature), "--k", "2"], terminal_width=250)
    assert top.exit_code == 0 and top.output.count("<<") >= 1 and "activation" in top.output
    again = runner.invoke(app, ["encode", str(table), "--out", str(store)])  # a complete store is never resumed
    assert again.exit_code == 1 and "already holds a complete store (12 of 12 rows encoded)" in again.output
    assert f"interp-embed info {store}" in again.output and "--overwrite" in again.output
    assert "--resume" not in again.output
    # Search reads the query through the store's models by default, and --example alone searches by example.
    found = runner.invoke(app, ["search", str(store), "good morning", "--k", "2"], terminal_width=250)
    assert found.exit_code == 0 and "features used (by query)" in found.output, found.output
    alike = runner.invoke(app, ["search", str(store), "--example", "Guten Morgen!", "--k", "2"], terminal_width=250)
    assert alike.exit_code == 0 and "features used (by example)" in alike.output, alike.output


def test_train_sae_writes_a_loadable_sae(tmp_path):
    corpus = tmp_path / "corpus.jsonl"
    texts = demo_sample().text.tolist()[:60]
    corpus.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    out = tmp_path / "run"
    done = runner.invoke(app, ["train-sae", str(corpus), "--out", str(out), "--d-sae", "256", "--k", "8",
                               "--batch-size", "256", "--buffer-tokens", "1024", "--device", "cpu"])
    assert done.exit_code == 0, done.output
    sae = load_sae(out / "sae")
    assert (sae.cfg.architecture, sae.cfg.d_sae, sae.cfg.k, sae.cfg.hook_layer) == ("topk", 256, 8, 15)
    # It is labelled at the end, so label search works on what it encodes.
    labels = LocalSAE(path=out / "sae").feature_labels()
    assert len(labels) > 50 and all(" — “" in label for label in labels.values())
    options = {p.name: p.default for p in typer.main.get_command(app).commands["train-sae"].params}
    for config in (HarvestConfig, TrainConfig):  # every config field is an option, with the config's default
        for field in dataclasses.fields(config):
            assert options[field.name] == field.default, field.name
