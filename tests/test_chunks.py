"""Chunks sized by tokens, the first ones small (so that Ctrl-C loses little), cut the same way on resume; stores of
older plans resumed with their own plan; the bar moving within a chunk; the resume call logged; quiet model loads;
the demo's store."""
import logging
import tempfile

import pytest
from typer.testing import CliRunner

from interp_embed import Dataset
from interp_embed.data import demo_sample
from interp_embed.encode import session
from interp_embed.saes import LocalSAE
from interp_embed.spec.plan import ChunkCutter, EncodePlan, estimated_tokens
from interp_embed.store import Store
from hostile import manifest_body, reseal
from synthetic import interrupt_after_first_commit

runner = CliRunner()


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
    assert estimated_tokens("日本語") == 3 and estimated_tokens(None) == 0


def _equal_chunks(texts, chunk_tokens):
    """The rule of stores made before first_chunk_tokens, written out independently: every chunk closes once its
    estimated tokens reach ``chunk_tokens``."""
    ranges, start, size = [], 0, 0
    for row, text in enumerate(texts):
        size += estimated_tokens(text)
        if size >= chunk_tokens:
            ranges.append((start, row + 1))
            start, size = row + 1, 0
    return ranges + ([(start, len(texts))] if start < len(texts) else [])


def test_the_first_chunks_are_small_and_double_up_to_chunk_tokens():
    texts = demo_sample().text.tolist() * 10  # about 86,000 estimated tokens
    plan = EncodePlan()
    ranges = plan.chunk_ranges(texts)
    sizes = [sum(map(estimated_tokens, texts[start:stop])) for start, stop in ranges]
    longest = max(map(estimated_tokens, texts))
    limits = [plan.chunk_limit(i) for i in range(len(ranges))]
    assert limits[:7] == [1000, 2000, 4000, 8000, 16000, 24000, 24000]
    assert all(limit <= size < limit + longest for size, limit in zip(sizes[:-1], limits))
    assert ranges[0][0] == 0 and ranges[-1][1] == len(texts) and all(a[1] == b[0] for a, b in zip(ranges, ranges[1:]))
    # The same cut whatever batches the texts arrive in (a streamed table), and on every call.
    cutter = ChunkCutter(plan)
    for start in range(0, len(texts), 7):
        cutter.add(texts[start:start + 7])
    assert cutter.ranges() == ranges == EncodePlan().chunk_ranges(list(texts))
    # The demo's 240 documents: committed in four chunks, the first after about a second's work.
    assert [stop - start for start, stop in EncodePlan().chunk_ranges(texts[:240])] == [26, 57, 110, 47]


def test_a_batch_is_closed_before_it_pads_its_windows_by_more_than_max_padding():
    import numpy as np

    from interp_embed.reading.activations import Window, pack_batches

    windows = [Window(row, 0, np.zeros(n, dtype=np.int64), 0) for row, n in enumerate([30, 10, 12, 11, 31, 100])]
    lengths = lambda batches: [[len(w.ids) for w in batch] for batch in batches]  # noqa: E731
    assert lengths(pack_batches(windows, 4096, 0.2)) == [[10, 11, 12], [30, 31], [100]]
    assert lengths(pack_batches(windows, 4096, None)) == [[10, 11, 12, 30, 31, 100]]
    assert lengths(pack_batches(windows, 62, None)) == [[10, 11, 12], [30, 31], [100]]
    assert lengths(pack_batches(windows, 4096, 0)) == [[10], [11], [12], [30], [31], [100]]
    for bad in (-0.1, "0.2", True):
        with pytest.raises(ValueError, match="max_padding"):
            EncodePlan(max_padding=bad)


def test_plans_recorded_before_small_first_chunks_cut_chunks_of_one_size():
    texts = demo_sample().text.tolist() * 4
    recorded = {"chunk_tokens": 5000, "chunk_chars": None, "batch_tokens": 4096, "window_tokens": 1024,
                "window_overlap": 128, "token_level": True}  # a manifest's plan from before first_chunk_tokens
    old = EncodePlan.from_json(recorded)
    assert old.first_chunk_tokens is None and old.max_padding is None  # and its batches are filled as they were
    assert old.chunk_ranges(texts) == _equal_chunks(texts, 5000)
    assert EncodePlan.from_json(old.to_json()) == old  # rewritten at the next commit, it stays the old plan
    assert EncodePlan.from_json(EncodePlan().to_json()) == EncodePlan()
    assert EncodePlan(chunk_tokens=None, chunk_chars=300).first_chunk_tokens is None  # the older rule never grows
    with pytest.raises(ValueError, match="first_chunk_tokens"):
        EncodePlan(first_chunk_tokens=0)


def test_a_store_of_the_one_size_plan_resumes_with_its_own_chunks(sample, tmp_path):
    """A store whose manifest predates small first chunks is finished with the chunks its first run cut."""
    from synthetic import encode_text

    frame = sample.head(40)
    texts = frame.text.tolist()
    plan = EncodePlan(chunk_tokens=400, first_chunk_tokens=None, max_padding=None)
    store = Store.create(tmp_path / "s.iembed", frame, "text", encoder=_synthetic_encoder(), plan=plan, skipped={},
                         labels={}, dataset_description="")
    with store.writing():
        start, stop = store.pending_chunks()[0]
        store.commit_chunk(start, stop, [encode_text(texts[r], r) for r in range(start, stop)])
    body = manifest_body(store.path)
    del body["plan"]["first_chunk_tokens"], body["plan"]["max_padding"]  # as such stores were written
    reseal(store.path, body)
    old = Store.open(store.path)
    expected = _equal_chunks(texts, 400)
    assert len(expected) > 3 and old.plan == plan and old.pending_chunks() == expected[1:]
    assert EncodePlan(chunk_tokens=400, first_chunk_tokens=100).chunk_ranges(texts) != expected  # growing: others


def _synthetic_encoder():
    from interp_embed.store.manifest import EncoderRecord
    from synthetic import D_SAE

    return EncoderRecord(source=None, reader=None, sae={"architecture": "synthetic", "d_sae": D_SAE}, sae_sha256=None)


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
    interrupt_after_first_commit(monkeypatch)
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
    interrupt_after_first_commit(monkeypatch)
    with caplog.at_level(logging.WARNING), pytest.raises(KeyboardInterrupt):
        Dataset(demo_sample().head(12), sae=sae, save_path=path, plan=EncodePlan(chunk_tokens=100))
    assert f"Resume with: Dataset.load_from_file('{path}', resume=True)" in caplog.text
    capfd.readouterr()
    done = Dataset.load_from_file(str(path), resume=True)  # the logged call, as written
    assert done._store.is_complete()
    lines = capfd.readouterr().err.replace("\r", "\n").splitlines()
    assert sum("100%" in line for line in lines) == 1, lines  # the final line of the one bar, once
    caplog.clear()
    interrupt_after_first_commit(monkeypatch)
    with caplog.at_level(logging.WARNING), pytest.raises(KeyboardInterrupt):
        Dataset(demo_sample().head(12), sae=sae, plan=EncodePlan(chunk_tokens=100))
    assert "temporary, so nothing is kept" in caplog.text and "load_from_file" not in caplog.text


@pytest.mark.reader
def test_loading_the_reader_logs_one_line_and_draws_no_transformers_bar(caplog, capfd):
    from transformers.utils import logging as transformers_logging

    from interp_embed.reading.reader import Reader
    from interp_embed.spec.reader import ReaderSpec

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
    assert second.output.startswith("Reusing demo.iembed (encoded by an earlier run; delete it to encode again).\n")
    assert "Encoded" not in second.output and "Features most specific to language='de'" in second.output


def _tiny_sae(folder, model_dir) -> LocalSAE:
    """A ReLU SAE with random weights on layer 1 of the tiny random reader, reading raw text."""
    import torch

    from interp_embed.architectures import SAEConfig, build_sae, save_sae

    torch.manual_seed(0)
    sae = build_sae(SAEConfig(architecture="relu", d_in=64, d_sae=128, hook_layer=1, model_name=str(model_dir)))
    with torch.no_grad():
        sae.W_enc.normal_()
    return LocalSAE(path=save_sae(sae, folder), role="raw", dtype="float32")


@pytest.mark.reader
def test_the_bar_moves_with_every_batch_inside_a_chunk(tiny_model_dir, tmp_path, monkeypatch):
    """One chunk of 40 documents in many small batches (long ones split into windows): the bar counts documents as
    their last window is done and the tokens read, batch after batch, long before the chunk is committed."""
    from interp_embed.encode import pipeline

    events = []
    advance, commit = pipeline.advance_bar, Store.commit_chunk

    def watched_advance(bar, documents, tokens, started):
        advance(bar, documents, tokens, started)
        events.append(("bar", bar.n, tokens))

    def watched_commit(self, start, stop, docs):
        commit(self, start, stop, docs)
        events.append(("commit", stop, None))

    monkeypatch.setattr(pipeline, "advance_bar", watched_advance)
    monkeypatch.setattr(Store, "commit_chunk", watched_commit)
    frame = demo_sample().head(40)
    plan = EncodePlan(chunk_tokens=100_000, first_chunk_tokens=None, batch_tokens=256, window_tokens=64, window_overlap=8)
    ds = Dataset(frame, sae=_tiny_sae(tmp_path / "sae", tiny_model_dir), save_path=tmp_path / "d.iembed", plan=plan)
    assert [event for event in events if event[0] == "commit"] == [("commit", 40, None)]
    before_commit = events[:events.index(("commit", 40, None))]
    counts, tokens = [n for _, n, _ in before_commit], [t for _, _, t in before_commit]
    assert len(before_commit) > 5 and counts == sorted(counts) and counts[-1] == 40 and 0 < counts[0] < 40
    stored = sum(c.n_tokens for c in ds._store.manifest.chunks)  # read: these and the windows' repeated context
    assert tokens == sorted(tokens) and stored <= tokens[-1] < 1.1 * stored
    long = [len(ds[i].tokens()) for i in range(len(ds))]
    assert max(long) > 64  # some documents were read in several windows
