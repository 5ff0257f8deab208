"""LLM labelling against a chat-completions server started on 127.0.0.1 (tests/fake_llm.py), reached over real
HTTP by the real ``openai`` client. The server answers from the prompt (label: the word marked most often;
detection: is the label's word in the excerpt; fuzzing: is it inside a mark), so the prompts and the scoring
are checked, not only the plumbing. Stores are the bundled fortunes with synthetic activations (no model).
"""
import asyncio
import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import fake_llm
from interp_embed import Dataset
from interp_embed import analysis as A
from interp_embed.data import demo_sample
from interp_embed.files import LABEL_RECORDS
from interp_embed.labeling import LabelingConfig
from interp_embed.labeling.prompts import PROMPT_VERSION
from interp_embed.labeling.provider import OPENROUTER_URL, resolve_provider
from interp_embed.store import StoreCorruptError
from interp_embed.store import EncodedDocument
from synthetic import D_SAE, TOKEN, encode_text, synthetic_dataset

PLANTED = "zebra"
PLANTED_FEATURE = D_SAE - 1
KEY = "sk-planted-0123456789abcdefSECRET"


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """240 real fortunes with synthetic activations; every third English one ends with the planted word."""
    frame = demo_sample()
    planted = (frame.language == "en").to_numpy() & (np.arange(len(frame)) % 3 == 0)
    frame["text"] = [t + f" A {PLANTED} passed." if p else t for t, p in zip(frame.text, planted)]
    frame["planted"] = planted
    return synthetic_dataset(tmp_path_factory.mktemp("llm") / "fortunes.iembed", frame, chunk_chars=4000,
                             encode=encode_planted)


def encode_planted(text: str, row: int) -> EncodedDocument:
    """The synthetic encoding, with feature PLANTED_FEATURE firing on the planted word and nowhere else."""
    doc = encode_text(text, row)
    planted = [m.group().strip(" .,") == PLANTED for m in TOKEN.finditer(text)]
    features, values, counts = [], [], []
    for t, is_planted in enumerate(planted):
        span = slice(doc.act_ptr[t], doc.act_ptr[t + 1])
        keep = doc.act_features[span] != PLANTED_FEATURE
        features.append(np.r_[doc.act_features[span][keep], [PLANTED_FEATURE] * is_planted])
        values.append(np.r_[doc.act_values[span][keep], [3.0] * is_planted].astype(np.float16))
        counts.append(len(features[-1]))
    return EncodedDocument(row=row, token_ids=doc.token_ids, spans=doc.spans, act_ptr=np.r_[0, np.cumsum(counts)],
                           act_features=np.concatenate(features).astype(np.int64), act_values=np.concatenate(values))


@pytest.fixture
def ds(store, tmp_path):
    """A fresh copy of the store: labels are written into it."""
    return Dataset.load_from_file(store.save_to_file(tmp_path / "copy.iembed"))


def busy_features(ds, n: int) -> list[int]:
    """``n`` features (of the hashed words) active in 30 to 120 documents with activations of several sizes."""
    X = ds.latents().tocsc()
    counts = np.diff(X.indptr)
    spread = [len(np.unique(X.data[X.indptr[f]:X.indptr[f + 1]])) for f in range(ds.d_sae)]
    chosen = [f for f in range(3, ds.d_sae - 1) if 30 <= counts[f] <= 120 and spread[f] >= 5]
    return chosen[:n]


def test_a_label_is_written_from_marked_positives_and_kept_with_its_source(ds, llm):
    feature = PLANTED_FEATURE
    result = ds.label_feature_sync(feature, base_url=llm.url, api_key=KEY, k=10, seed=3)
    assert result.label == PLANTED and result.model == "google/gemini-2.5-flash" and result.score is None
    assert result.usage.calls == 1 and result.usage.prompt_tokens > 0
    prompt = llm.requests[0].prompt
    active, silent = prompt.split("\nACTIVE\n")[1].split("\nSILENT\n")
    active_lines = [line for line in active.splitlines() if line[:1].isdigit()]
    silent_lines = [line for line in silent.splitlines() if line[:1].isdigit()]
    assert len(active_lines) == 10 and all(f"<<{PLANTED}>>" in line for line in active_lines)
    assert len(silent_lines) == 10 and not any("<<" in line for line in silent_lines)
    assert llm.requests[0].authorization == f"Bearer {KEY}"
    # Kept: the feature's label in every table, with where it came from.
    assert ds.feature_labels()[feature] == PLANTED
    source = ds.label_sources().set_index("feature_id").loc[feature]
    assert (source.source, source.model, source.prompt_version, source.seed) == ("llm", result.model, PROMPT_VERSION, 3)
    planted = ds.pandas().planted.to_numpy()
    assert A.diff_features(ds[planted], ds[~planted]).set_index("feature_id").loc[feature, "label"] == PLANTED
    reloaded = Dataset.load_from_file(ds.path)
    assert reloaded.feature_labels()[feature] == PLANTED
    ds.set_label(feature, "the planted animal")
    assert Dataset.load_from_file(ds.path).label_sources().set_index("feature_id").loc[feature, "source"] == "user"


def test_positives_span_the_quantiles_and_negatives_include_hard_ones(ds, llm):
    feature = busy_features(ds, 1)[0]
    result = ds.label_feature_sync(feature, base_url=llm.url, k=10, n_score=10)
    column = ds.latents()[:, feature].toarray().ravel()
    shown = column[result.examples["label_positives"]]
    active = np.flatnonzero(column > 0)
    quintiles = np.array_split(active[np.argsort(-column[active], kind="stable")], 5)  # strongest first
    assert [len(set(q) & set(result.examples["label_positives"])) for q in quintiles] == [2] * 5
    assert shown.min() <= np.quantile(column[active], 0.25) < shown.max()
    negatives = result.examples["label_negatives"] + result.examples["score_negatives"]
    assert (column[negatives] == 0).all()
    prompt = llm.requests[0].prompt
    assert prompt.count("…") > 0  # long fortunes are cut into windows, never sent whole
    rows = [set(v) for v in result.examples.values()]
    assert all(a.isdisjoint(b) for i, a in enumerate(rows) for b in rows[i + 1:])  # no document in two roles


def test_scoring_uses_held_out_examples_and_measures_the_label(ds, llm):
    feature = PLANTED_FEATURE
    result = ds.label_feature_sync(feature, base_url=llm.url, score=True, k=8, n_score=12)
    score = result.score
    assert (score.balanced_accuracy, score.fuzzing) == (1.0, 1.0)  # the right word: every verdict right
    assert score.true_positives == 12 and score.true_negatives == 12 and score.f1 == 1.0
    shown = set(result.examples["label_positives"] + result.examples["label_negatives"])
    assert shown.isdisjoint(score.verdicts.row) and set(score.verdicts.row) <= set(
        result.examples["score_positives"] + result.examples["score_negatives"])
    scoring_prompts = [r.prompt for r in llm.requests if r.kind != "label"]
    assert all(len(fake_llm.NUMBERED.findall(p)) <= 10 for p in scoring_prompts)  # batched, batch_size excerpts
    assert len(scoring_prompts) == 3 + 3  # 24 detection and 24 fuzzing excerpts, 10 per request
    # A wrong label scores at chance, on held-out examples of the kept label.
    wrong = ds.score_feature_sync(feature, label="giraffe", base_url=llm.url, k=12)
    assert wrong.balanced_accuracy == 0.5 and wrong.recall == 0.0
    kept = ds.score_feature_sync(feature, base_url=llm.url, k=12)  # label=None: the kept one, its examples left out
    assert kept.balanced_accuracy == 1.0 and shown.isdisjoint(kept.verdicts.row)
    # The original interp_embed's keys.
    assert kept["score"] == 1.0 and kept["total_count"] == 24 and len(kept["responses"]) == 24


def test_metrics_agree_with_scikit_learn(ds, llm):
    from sklearn.metrics import balanced_accuracy_score, f1_score, precision_score, recall_score

    feature = busy_features(ds, 1)[0]
    score = ds.score_feature_sync(feature, label="the", base_url=llm.url, k=15)
    detection = score.verdicts[score.verdicts.test == "detection"]
    assert score.balanced_accuracy == pytest.approx(balanced_accuracy_score(detection.truth, detection.verdict))
    assert score.precision == pytest.approx(precision_score(detection.truth, detection.verdict, zero_division=0))
    assert score.recall == pytest.approx(recall_score(detection.truth, detection.verdict))
    assert score.f1 == pytest.approx(f1_score(detection.truth, detection.verdict))


@pytest.mark.parametrize("step, attempts", [(("status", 429, "1"), 2), (("status", 500, None), 2),
                                            (("status", 503, None), 2), (("hang", 5), 2)])
def test_rate_limits_server_errors_and_timeouts_are_retried(ds, llm, step, attempts):
    llm.script.append(step)
    started = time.perf_counter()
    # The hang outlasts the timeout by far; an ordinary reply comes well within it, even on a loaded machine.
    result = ds.label_feature_sync(PLANTED_FEATURE, base_url=llm.url, timeout=2.5, max_retries=2)
    assert result.label == PLANTED and len(llm.requests) == attempts
    if step[0] == "status" and step[2] == "1":
        assert time.perf_counter() - started >= 1.0  # Retry-After: 1 was honoured


def test_a_reply_that_is_not_json_is_repaired_once_then_the_feature_fails_alone(ds, llm):
    feature = PLANTED_FEATURE
    llm.script.append(("text", "Sure! The feature is about zebras."))
    assert ds.label_feature_sync(feature, base_url=llm.url).label == PLANTED
    assert len(llm.requests) == 2 and len(llm.requests[1].messages) == 4  # the bad reply and the repair request
    assert "could not be used" in llm.requests[1].messages[-1]["content"]
    llm.requests.clear()
    others = busy_features(ds, 2)
    llm.script += [("text", "no json"), ("text", "{\"label\": 3}")]
    table = ds.label_features_sync([feature, *others], base_url=llm.url, concurrency=1, score=False, progress=False)
    assert table.status.tolist()[0::2] == ["kept", "labelled"]  # labelled above: not asked again
    assert table.status.iloc[1].startswith("failed:") and "JSON" in table.status.iloc[1]


def test_a_server_that_keeps_failing_fails_features_not_the_batch(ds, llm):
    llm.script += [("status", 500, None)] * 3
    features = busy_features(ds, 3)
    table = ds.label_features_sync(features, base_url=llm.url, concurrency=1, max_retries=2, score=False,
                                   progress=False)
    assert table.status.str.startswith("failed:").sum() == 1 and (table.status == "labelled").sum() == 2
    assert "InternalServerError" in table.status[table.status.str.startswith("failed")].iloc[0]


def test_the_token_budget_stops_cleanly(ds, llm):
    features = busy_features(ds, 6)
    table = ds.label_features_sync(features, base_url=llm.url, concurrency=1, score=False, max_tokens_total=3000,
                                   progress=False)
    labelled = (table.status == "labelled").sum()
    assert 1 <= labelled < 6 and table.status.str.startswith("skipped: the token budget").sum() == 6 - labelled
    assert table.attrs["usage"].calls == labelled


def test_labelling_again_pays_nothing_and_concurrency_is_bounded(ds, llm):
    features = busy_features(ds, 6)
    llm.latency = 0.2
    first = ds.label_features_sync(features, base_url=llm.url, concurrency=3, progress=False)
    assert (first.status == "labelled").all() and first.attrs["usage"].calls == len(llm.requests)
    assert first.attrs["usage"].prompt_tokens == sum(len(r.prompt) // 4 for r in llm.requests)
    again = ds.label_features_sync(features, base_url=llm.url, concurrency=3, progress=False)
    assert (again.status == "kept").all() and len(llm.requests) == first.attrs["usage"].calls
    other_seed = ds.label_features_sync(features[:1], base_url=llm.url, seed=1, score=False, progress=False)
    assert other_seed.status.tolist() == ["labelled"]


def test_a_killed_run_resumes_without_paying_twice(ds, llm, tmp_path):
    features = busy_features(ds, 10)
    llm.latency = 0.25
    script = textwrap.dedent(f"""
        from interp_embed import Dataset
        ds = Dataset.load_from_file({str(ds.path)!r})
        ds.label_features_sync({features}, base_url={llm.url!r}, concurrency=2, progress=False)
    """)
    child = subprocess.Popen([sys.executable, "-c", script], env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    folder = ds.path / LABEL_RECORDS
    deadline = time.time() + 60
    while time.time() < deadline and (not folder.exists() or len(list(folder.glob("*.json"))) < 5):
        time.sleep(0.05)
    child.send_signal(signal.SIGKILL)
    child.wait()
    kept = Dataset.load_from_file(ds.path)._store.label_records()
    labelled = {r.feature for r in kept}
    scored = {r.feature for r in kept if r.score is not None}
    assert 0 < len(labelled) < len(features)
    llm.requests.clear()
    llm.latency = 0.0
    table = Dataset.load_from_file(ds.path).label_features_sync(features, base_url=llm.url, progress=False)
    assert table.status.isin(["labelled", "kept"]).all() and set(table.feature_id[table.status == "kept"]) == scored
    assert llm.count("label") == len(set(features) - labelled)  # no label paid twice
    labels = table.set_index("feature_id").label
    scored_again = {fake_llm.DESCRIBED.search(r.prompt).group(1) for r in llm.requests if r.kind != "label"}
    assert scored_again == set(labels[sorted(set(features) - scored)])  # only the unscored are scored


def test_a_planted_key_never_reaches_files_logs_or_errors(ds, llm, caplog, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text(f"OPENROUTER_API_KEY={KEY}\n")
    monkeypatch.delenv("OPENROUTER_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    provider = resolve_provider("meta-llama/llama-3-8b")
    assert provider.base_url == OPENROUTER_URL and provider.api_key.reveal() == KEY
    assert KEY not in repr(provider) and KEY not in str(provider.api_key)
    llm.script += [("status", 401, None), ("status", 500, None)]
    with caplog.at_level(logging.DEBUG):
        table = ds.label_features_sync(busy_features(ds, 3), base_url=llm.url, api_key=KEY, concurrency=1,
                                       max_retries=0, progress=False)
    assert table.status.str.startswith("failed").sum() == 2 and (table.status == "labelled").sum() == 1
    assert all(r.authorization == f"Bearer {KEY}" for r in llm.requests)  # it was sent, to the server only
    assert KEY not in caplog.text and KEY[:8] not in caplog.text and KEY not in table.to_string()
    for path in ds.path.rglob("*"):
        if path.is_file():
            assert KEY.encode() not in path.read_bytes(), path
    with pytest.raises(TypeError, match="cannot be pickled"):
        import pickle
        pickle.dumps(provider.api_key)


def test_where_requests_go(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    for name in ("OPENAI_API_KEY", "OPENAI_KEY", "OPENROUTER_API_KEY", "OPENAI_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ValueError, match="OPENROUTER_API_KEY"):
        resolve_provider("google/gemini-2.5-flash")
    with pytest.raises(ValueError, match="OPENAI_API_KEY"):
        resolve_provider("openai/gpt-4o-mini")
    monkeypatch.setenv("OPENAI_KEY", "k1")  # the original interp_embed's variable
    openai = resolve_provider("openai/gpt-4o-mini")
    assert (openai.base_url, openai.model, openai.api_key.reveal()) == (None, "gpt-4o-mini", "k1")
    (tmp_path / ".env").write_text("OPENAI_BASE_URL=http://127.0.0.1:9/v1\nOPENROUTER_API_KEY=from-file\n")
    local = resolve_provider("qwen2.5:7b")
    assert (local.base_url, local.model, local.api_key.reveal()) == ("http://127.0.0.1:9/v1", "qwen2.5:7b", "not-needed")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:8/v1")  # the environment wins over .env
    assert resolve_provider("m").base_url == "http://127.0.0.1:8/v1"
    assert resolve_provider("m", base_url="http://h/v1", api_key="k2").api_key.reveal() == "k2"


def test_the_original_calls_run(ds, llm):
    feature = PLANTED_FEATURE
    planted = ds.pandas().planted.to_numpy()

    async def notebook():  # a cell of a notebook: awaits inside a running loop, the sync wrapper works there too
        label = await ds.label_feature(feature, "google/gemini-2.5-flash", None, ds[planted], ds[~planted], 5)
        refined = await ds.label_feature(feature=feature, label_and_score=(label.label, 0.9), k=5, base_url=llm.url)
        score = await ds.score_feature(feature, label.label, "google/gemini-2.5-flash", ds[planted], ds[~planted], 5)
        return label, refined, score, ds.score_feature_sync(feature, label=label.label, base_url=llm.url, k=5)

    os.environ["OPENAI_BASE_URL"] = llm.url
    try:
        label, refined, score, synced = asyncio.run(notebook())
    finally:
        del os.environ["OPENAI_BASE_URL"]
    assert label.label == refined.label == PLANTED and label.brief_description and label.detailed_explanation
    assert "An earlier label for this feature was ('zebra', 0.9)" in llm.requests[1].prompt
    assert score["score"] == 1.0 and score["total_count"] == 10 and synced["score"] == 1.0


def test_describe_diff_states_validated_hypotheses(ds, llm):
    planted = ds.pandas().planted.to_numpy()
    table = asyncio.run(ds[planted].describe_diff(ds[~planted], k=3, base_url=llm.url))
    assert len(table) == 3 and (table.status == "labelled").all()
    top = table.iloc[0]
    assert top.hypothesis == PLANTED and top.validated and top.balanced_accuracy == 1.0 and top.freq_b == 0
    assert top.q_value < 1e-10 and top.n_members >= 1
    # Labels of a contrast are not the features' labels.
    assert ds.feature_labels().get(int(top.feature_id)) != PLANTED


def test_describe_association_labels_findings_against_the_contrast(ds, llm):
    planted = ds.pandas().planted.to_numpy()
    table = asyncio.run(ds.describe_association(planted, k=3, base_url=llm.url))  # a mask: values, not a column
    assert len(table) == 3 and (table.status == "labelled").all() and (table.source == "llm").all()
    top = table.iloc[0]
    assert top.feature_id == PLANTED_FEATURE and top.hypothesis == PLANTED and top.validated
    assert top.points_to == 1 and top.separation > 0 and top.q_value < 1e-10 and top.balanced_accuracy == 1.0
    # The positives were planted documents, the negatives the others: every ACTIVE excerpt of the label holds the word.
    label_prompts = [r.prompt for r in llm.requests if r.kind == "label"]
    first = next(p for p in label_prompts if "zebra" in p)
    active = first.split("\nACTIVE\n", 1)[1].split("\nSILENT\n", 1)[0]
    assert active.count("<<") >= 3 and "zebra" not in first.split("\nSILENT\n", 1)[1]
    assert ds.feature_labels().get(PLANTED_FEATURE) != PLANTED  # a contrast's label is not the feature's label


def test_describe_association_of_a_numeric_target_contrasts_high_and_low_values(ds, llm):
    planted = ds.pandas().planted.to_numpy()
    score = planted * 10.0 + np.random.default_rng(0).standard_normal(len(ds))
    table = asyncio.run(ds.describe_association(score, k=1, base_url=llm.url))
    top = table.iloc[0]
    assert top.feature_id == PLANTED_FEATURE and top.points_to == "higher" and top.hypothesis == PLANTED
    assert top.validated and "level" not in table.columns


def test_describe_association_offline_uses_the_dataset_labels(ds, llm, monkeypatch, caplog):
    for name in ("OPENROUTER_API_KEY", "OPENAI_API_KEY", "OPENAI_KEY", "OPENAI_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(ds.path.parent)  # no .env here
    ds.add_column("planted_mark", ds.pandas().planted.map({True: "zebra", False: "plain"}))
    with caplog.at_level("WARNING"):
        table = asyncio.run(ds.describe_association("planted_mark", k=2))  # no key: offline, and said
    assert "needs a key" in caplog.text and "offline" in caplog.text and not llm.requests
    top = table.iloc[0]
    assert top.feature_id == PLANTED_FEATURE and top.points_to == "zebra" and top.source == "dataset"
    assert "'zebra'" in top.hypothesis and top.balanced_accuracy == 1.0 and top.validated
    sources = ds.label_sources().set_index("feature_id")
    assert sources.loc[PLANTED_FEATURE, "source"] == "dataset"  # the dataset labels are kept, as label_features_offline keeps them
    assert asyncio.run(ds.describe_association("planted_mark", k=2, offline=True)).equals(table)


def test_bad_labelling_parameters_are_refused_by_name(ds, llm):
    with pytest.raises(TypeError, match="unknown labelling option"):
        ds.label_feature_sync(0, base_url=llm.url, windw_tokens=3)
    with pytest.raises(ValueError, match="k must be"):
        ds.label_feature_sync(0, base_url=llm.url, k=0)
    with pytest.raises(ValueError, match="outside"):
        ds.label_feature_sync(ds.d_sae, base_url=llm.url)
    with pytest.raises(ValueError, match="concurrency must be"):
        LabelingConfig(concurrency=0)
    with pytest.raises(ValueError, match="timeout must be positive"):
        LabelingConfig(timeout=0)
    with pytest.raises(ValueError, match="label must be a non-empty string"):
        ds.set_label(1, "  ")
    unplanted = ds[~ds.pandas().planted.to_numpy()]  # where the planted feature never fires
    table = unplanted.label_features_sync([PLANTED_FEATURE], base_url=llm.url, progress=False)
    assert table.status.iloc[0].startswith("failed: feature") and "never fires" in table.status.iloc[0]
    assert not llm.requests


def test_a_crafted_label_record_is_skipped_by_name_and_the_others_stay_readable(ds, llm, caplog):
    ds.label_feature_sync(PLANTED_FEATURE, base_url=llm.url)
    ds.set_label(5, "kept")
    folder = ds.path / LABEL_RECORDS
    good = next(p for p in folder.glob("*.json") if b"zebra" in p.read_bytes())
    body = json.loads(good.read_bytes())

    def read_with(path):
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            labels = Dataset.load_from_file(ds.path).feature_labels()
        assert labels[5] == "kept" and labels.get(PLANTED_FEATURE) != "zebra"
        assert path.name in caplog.text and "skipped" in caplog.text
        return caplog.text

    good.write_bytes(good.read_bytes().replace(b"zebra", b"zebrA"))
    assert "does not match its checksum" in read_with(good)
    good.unlink()
    import hashlib

    for crafted, message in (({**body, "feature": -1}, "feature is not"), ({**body, "extra": 1}, "unexpected fields"),
                             ({**body, "score": {"f1": "1"}}, "score.f1 is not"), ([1, 2], "unexpected fields")):
        data = json.dumps(crafted).encode()
        path = folder / (hashlib.sha256(data).hexdigest() + ".json")
        path.write_bytes(data)
        assert message in read_with(path)
        path.unlink()
    link = folder / ("0" * 64 + ".json")
    link.symlink_to("/etc/passwd")
    assert "symbolic link" in read_with(link)
