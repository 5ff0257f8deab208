"""Chunks sized by tokens (small enough that Ctrl-C loses little, cut the same way on resume), stores of the
older character plan resumed with their own plan, the resume call logged, quiet model loads, the demo's store."""
import logging
import tempfile

import pytest
from typer.testing import CliRunner

from interp_embed import Dataset
from interp_embed.data import demo_sample
from interp_embed.encode import session
from interp_embed.encode.config import EncodePlan, estimated_tokens
from interp_embed.store import Store
from hostile import manifest_body, reseal

runner = CliRunner()


def _interrupt_after_first_commit(monkeypatch) -> None:
    """Ctrl-C right after the first chunk is committed (as a person pressing it mid-run would)."""
    commit = Store.commit_chunk

    def commit_then_interrupt(self, *args):
        commit(self, *args)
        monkeypatch.setattr(Store, "commit_chunk", commit)
        raise KeyboardInterrupt

    monkeypatch.setattr(Store, "commit_chunk", commit_then_interrupt)


def _char_rule_ranges(texts, chunk_chars):
    """The older rule, written out independently: a chunk closes once its characters reach ``chunk_chars``."""
    ranges, start, size = [], 0, 0
    for row, text in enumerate(texts):
        size += len(text)
        if size >= chunk_chars:
            ranges.append((start, row + 1))
            start, size = row + 1, 0
    return ranges + ([(start, len(texts))] if start < len(texts) else [])


def test_token_chunks_are_deterministic_and_about_the_target_size():
    texts = demo_sample().text.tolist()
    plan = EncodePlan(chunk_tokens=1000)
    ranges = plan.chunk_ranges(texts)
    assert ranges == plan.chunk_ranges(list(texts)) == EncodePlan(chunk_tokens=1000).chunk_ranges(texts)
    assert ranges[0][0] == 0 and ranges[-1][1] == len(texts) and all(a[1] == b[0] for a, b in zip(ranges, ranges[1:]))
    longest = max(map(estimated_tokens, texts))
    for start, stop in ranges[:-1]:
        assert 1000 <= sum(map(estimated_tokens, texts[start:stop])) < 1000 + longest
    # The default plan commits the 240 documents at once; a table ten times larger in several chunks.
    assert len(EncodePlan().chunk_ranges(texts)) == 1 and len(EncodePlan().chunk_ranges(texts * 10)) == 4
    assert estimated_tokens("日本語") == 3 and estimated_tokens(None) == 0


@pytest.mark.reader
def test_the_token_estimate_is_close_to_the_readers_tokens(sae):
    reader = sae.load()[0]
    texts = demo_sample().text.tolist()
    real = sum(len(reader.document_tokens(t).ids) for t in texts)
    assert 0.8 < sum(map(estimated_tokens, texts)) / real < 1.25


def test_a_store_of_the_character_plan_resumes_with_its_own_chunks(sample, tmp_path):
    from synthetic import encode_text, synthetic_store

    store = synthetic_store(tmp_path / "old.iembed", sample.head(12), chunk_chars=300, encode_chunks=1)
    body = manifest_body(store.path)
    body["plan"] = {k: v for k, v in body["plan"].items() if k != "chunk_tokens"}  # as stores were written before
    reseal(store.path, body)
    old = Store.open(store.path)
    assert old.plan == EncodePlan(chunk_tokens=None, chunk_chars=300)
    texts = sample.head(12).text.tolist()
    expected = _char_rule_ranges(texts, 300)
    assert len(expected) > 3 and old.pending_chunks() == expected[1:]
    with old.writing():
        for start, stop in old.pending_chunks():
            old.commit_chunk(start, stop, [encode_text(texts[r], r) for r in range(start, stop)])
    finished = Store.open(store.path)
    assert [(c.start, c.stop) for c in finished.manifest.chunks] == expected and finished.plan == old.plan


@pytest.mark.reader
def test_an_old_plan_store_resumed_by_the_reader_matches_an_uninterrupted_run(sae, tmp_path, monkeypatch):
    frame = demo_sample().head(12)
    plan = EncodePlan(chunk_tokens=None, chunk_chars=300)
    reference = Dataset(frame, sae=sae, save_path=tmp_path / "ref.iembed", plan=plan)
    _interrupt_after_first_commit(monkeypatch)
    path = tmp_path / "old.iembed"
    with pytest.raises(KeyboardInterrupt):
        Dataset(frame, sae=sae, save_path=path, plan=plan)
    body = manifest_body(path)
    body["plan"] = {k: v for k, v in body["plan"].items() if k != "chunk_tokens"}
    reseal(path, body)
    resumed = Dataset.load_from_file(path, resume=True)
    chunks = [(c.start, c.stop) for c in resumed._store.manifest.chunks]
    assert chunks == _char_rule_ranges(frame.text.tolist(), 300)
    assert (resumed.latents() != reference.latents()).nnz == 0


@pytest.mark.reader
def test_an_interrupted_encoding_logs_the_call_that_resumes_it(sae, tmp_path, monkeypatch, caplog, capfd):
    path = tmp_path / "docs.iembed"
    _interrupt_after_first_commit(monkeypatch)
    with caplog.at_level(logging.WARNING), pytest.raises(KeyboardInterrupt):
        Dataset(demo_sample().head(12), sae=sae, save_path=path, plan=EncodePlan(chunk_tokens=100))
    assert f"Resume with: Dataset.load_from_file('{path}', resume=True)" in caplog.text
    capfd.readouterr()
    done = Dataset.load_from_file(str(path), resume=True)  # the logged call, as written
    assert done._store.is_complete()
    lines = capfd.readouterr().err.replace("\r", "\n").splitlines()
    assert sum("100%" in line for line in lines) == 1, lines  # the final line of the one bar, once
    caplog.clear()
    _interrupt_after_first_commit(monkeypatch)
    with caplog.at_level(logging.WARNING), pytest.raises(KeyboardInterrupt):
        Dataset(demo_sample().head(12), sae=sae, plan=EncodePlan(chunk_tokens=100))
    assert "temporary, so nothing is kept" in caplog.text and "load_from_file" not in caplog.text


@pytest.mark.reader
def test_loading_the_reader_logs_one_line_and_draws_no_transformers_bar(caplog, capfd):
    from transformers.utils import logging as transformers_logging

    from interp_embed.encode.config import ReaderSpec
    from interp_embed.encode.reader import Reader

    enabled = transformers_logging.is_progress_bar_enabled()
    with caplog.at_level(logging.INFO, logger="interp_embed"):
        Reader(ReaderSpec(), device="cpu")
    assert "Loading weights" not in capfd.readouterr().err
    assert [r.message.split(" on ")[0] for r in caplog.records] == [f"Loaded reader {ReaderSpec().model} up to layer 15"]
    assert transformers_logging.is_progress_bar_enabled() == enabled  # the user's setting is restored


@pytest.mark.reader
@pytest.mark.slow
def test_the_demo_writes_demo_iembed_here_and_reuses_it(tmp_path, monkeypatch):
    from interp_embed.cli import app

    temporary = tmp_path / "tmp"
    temporary.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temporary))
    monkeypatch.chdir(tmp_path)
    first = runner.invoke(app, ["demo"])
    assert first.exit_code == 0, first.output
    assert "Encoded 240 documents into demo.iembed" in first.output and "Reusing" not in first.output
    assert Store.open(tmp_path / "demo.iembed").is_complete() and list(temporary.iterdir()) == []

    def no_encoding(*args):
        raise AssertionError("the demo encoded again")

    monkeypatch.setattr(session, "encode_pending", no_encoding)
    second = runner.invoke(app, ["demo"])
    assert second.exit_code == 0, second.output
    assert "Reusing demo.iembed" in second.output and "Features most specific to language='de'" in second.output
