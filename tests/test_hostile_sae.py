"""SAEs as hostile input: a store's record never chooses an SAE to download or a folder to read, and an SAE folder
someone sends you (a config claiming a huge width, weights that are not numbers, crafted label and summary files,
links) is refused by name before anything is allocated or read through it."""
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from interp_embed import Dataset
from interp_embed.architectures import SAEConfig, build_sae, load_sae, save_sae
from interp_embed.files import FEATURE_LABELS, FEATURE_SUMMARIES, SAE_CONFIG, SAE_WEIGHTS, sha256_file
from interp_embed.labeling.offline import load_summaries
from interp_embed.saes import DefaultSAE, GoodfireSAE, LocalSAE, sae_from_spec
from interp_embed.spec.plan import EncodePlan
from interp_embed.store import EncoderRecord, Store, StoreCorruptError, StoreError

from hostile import cap_memory, manifest_body, reseal
from synthetic import D_SAE, LABELS, encode_text

TESTS = os.path.dirname(__file__)
HOSTILE_SOURCES = {
    "a folder of the reader's machine": {"type": "local", "role": "raw", "path": "/etc", "release": None,
                                         "sae_id": None, "model": None},
    "a hub release of the sender's choosing": {"type": "local", "role": "raw", "path": None,
                                               "release": "attacker/saes", "sae_id": "layer_3", "model": None},
    "gigabytes of Goodfire weights": {"type": "goodfire", "role": "assistant",
                                      "variant_name": "Llama-3.3-70B-Instruct-SAE-l50", "quantize": False},
}


def _store(path, frame, source: dict | None, token_level: bool, encode_chunks: int | None = None) -> Store:
    """A synthetic store (see synthetic.py) whose manifest records ``source`` as the SAE that encoded it."""
    encoder = EncoderRecord(source=source, reader=None, sae={"architecture": "synthetic", "d_sae": D_SAE},
                            sae_sha256=None)
    plan = EncodePlan(chunk_tokens=None, chunk_chars=300, token_level=token_level)
    store = Store.create(path, frame, "text", encoder=encoder, plan=plan, skipped={}, labels=LABELS)
    with store.writing():
        for start, stop in store.pending_chunks()[:encode_chunks]:
            store.commit_chunk(start, stop, [encode_text(frame.text.iloc[r], r) for r in range(start, stop)])
    return store


@pytest.fixture()
def nothing_leaves(monkeypatch):
    """Make every way of fetching or reading an SAE's files fail the test."""
    def reached(*args, **kwargs):
        raise AssertionError("the store's record made the reader fetch or read an SAE")

    import huggingface_hub

    for name in ("hf_hub_download", "snapshot_download"):
        monkeypatch.setattr(huggingface_hub, name, reached)
    for source in (LocalSAE, GoodfireSAE):
        monkeypatch.setattr(source, "sae_folder", reached)


# ---- a store's record never chooses what is downloaded or read (finding 9) ----------------------------------------

@pytest.mark.parametrize("source", list(HOSTILE_SOURCES))
def test_a_compact_store_asks_for_its_sae_instead_of_fetching_the_one_it_names(sample, tmp_path, nothing_leaves, source):
    store = _store(tmp_path / "s.iembed", sample.head(12), HOSTILE_SOURCES[source], token_level=False)
    ds = Dataset.load_from_file(store.path)
    assert ds.latents().nnz > 0  # pooled activations need no SAE
    for recompute in (lambda: ds[0].token_activations(3), lambda: ds.top_documents_for_feature(3, k=2),
                      lambda: ds.features_of_text("Good morning")):
        with pytest.raises(StoreError, match=r"pass sae=.*Dataset\.load_from_file\(.*sae=") as refused:
            recompute()
        assert "synthetic architecture" in str(refused.value)  # what it was encoded with, named as text


@pytest.mark.parametrize("source", list(HOSTILE_SOURCES))
def test_resuming_and_describing_never_fetch_the_sae_a_store_names(sample, tmp_path, nothing_leaves, source):
    store = _store(tmp_path / "s.iembed", sample.head(12), HOSTILE_SOURCES[source], token_level=True, encode_chunks=1)
    with pytest.raises(StoreError, match=r"only the bundled default SAE is rebuilt .* pass sae="):
        Dataset.load_from_file(store.path, resume=True)
    described = Dataset.load_from_file(store.path).describe_feature(3, k=1)
    assert described.shipped_summary is None and described.feature == 3


@pytest.mark.parametrize("source", list(HOSTILE_SOURCES))
def test_search_and_clustering_by_default_match_labels_where_the_sae_must_be_asked_for(sample, tmp_path,
                                                                                      nothing_leaves, source):
    # By default a search reads the query through the models where the dataset can; a store naming any SAE but
    # the bundled default cannot say which to read with, so the default matches the features' words and labels.
    store = _store(tmp_path / "s.iembed", sample, HOSTILE_SOURCES[source], token_level=True)
    ds = Dataset.load_from_file(store.path)
    assert not ds.reads_text()
    hits = ds.search("rabbits", k=3)
    assert hits.attrs["by"] == "labels" and set(hits.attrs["features"].source) <= {"label match", "feedback"}
    assert ds.cluster(query="rabbits", n_clusters=2).clusters.attrs["by"] == "labels"
    with pytest.raises(StoreError, match="pass sae="):  # asked for by name, never guessed
        ds.search("rabbits", by="query")


def test_resuming_on_the_command_line_asks_for_the_sae_by_its_flag(sample, tmp_path, nothing_leaves):
    from typer.testing import CliRunner

    from interp_embed.cli import app

    source = HOSTILE_SOURCES["a folder of the reader's machine"]
    store = _store(tmp_path / "s.iembed", sample.head(12), source, token_level=True, encode_chunks=1)
    done = CliRunner().invoke(app, ["encode", "--out", str(store.path), "--resume"])
    assert done.exit_code == 1 and f"interp-embed encode --out {store.path} --resume --sae PATH" in done.output
    assert "sae=" not in done.output and "Traceback" not in done.output


def test_the_bundled_default_is_rebuilt_from_the_record_and_still_checked(sample, tmp_path):
    store = _store(tmp_path / "s.iembed", sample.head(12), DefaultSAE(role="user").spec(), token_level=False)
    with pytest.raises(ValueError, match="encoded by another reader or SAE"):  # rebuilt, then compared
        Dataset.load_from_file(store.path)[0].token_activations(3)


def test_unknown_keys_in_a_recorded_source_are_refused_by_name(sample, tmp_path):
    with pytest.raises(ValueError, match=r"'cache_dir'.* not a setting of a default SAE"):
        sae_from_spec({"type": "default", "role": "user", "cache_dir": "/etc"})
    with pytest.raises(ValueError, match=r"'trust_remote_code'"):
        sae_from_spec({"type": "local", "path": "/tmp", "trust_remote_code": True})
    store = _store(tmp_path / "s.iembed", sample.head(12), {"type": "default", "role": "user", "cache_dir": "/etc"},
                   token_level=True, encode_chunks=1)
    with pytest.raises(ValueError, match=r"'cache_dir'"):
        Dataset.load_from_file(store.path, resume=True)


# ---- SAE folders someone sends you (findings 10 and 14) -------------------------------------------------------------

@pytest.fixture()
def folder(tmp_path):
    torch.manual_seed(0)
    sae = build_sae(SAEConfig(architecture="relu", d_in=16, d_sae=32, hook_layer=1, model_name="some/model"))
    with torch.no_grad():
        sae.W_enc.normal_()
    return save_sae(sae, tmp_path / "sae")


def _edit_config(folder, **changes) -> None:
    cfg = json.loads((folder / SAE_CONFIG).read_text())
    cfg.update(changes)
    (folder / SAE_CONFIG).write_text(json.dumps(cfg))


@pytest.mark.parametrize("key", ["d_sae", "d_in"])
def test_a_config_claiming_a_huge_sae_is_refused_before_anything_is_allocated(folder, key):
    _edit_config(folder, **{key: 10**12})
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(f"""
        from interp_embed.architectures import load_sae
        try:
            load_sae({str(folder)!r})
        except ValueError as err:
            print("refused:", err)
    """)], capture_output=True, text=True, timeout=300, preexec_fn=cap_memory)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.startswith("refused:") and SAE_WEIGHTS in done.stdout and "W_enc" in done.stdout, done.stdout


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_weights_that_are_not_numbers_are_refused_when_loaded(folder, value):
    from safetensors.torch import load_file, save_file

    state = load_file(folder / SAE_WEIGHTS)
    state["b_enc"][5] = value
    save_file(state, folder / SAE_WEIGHTS)
    with pytest.raises(ValueError, match=rf"{SAE_WEIGHTS}: b_enc holds values that are not finite"):
        load_sae(folder)


@pytest.mark.parametrize("value, words", [(float("nan"), "d_in must be a whole number, not nan"),
                                          ("576", "d_in must be a whole number, not '576'"),
                                          (None, "d_in must be a whole number, not None")])
def test_a_config_whose_width_is_no_number_is_refused_naming_the_file(folder, value, words):
    _edit_config(folder, d_in=value)
    with pytest.raises(ValueError, match=rf"{SAE_CONFIG}: {words}"):
        load_sae(folder)
    with pytest.raises(ValueError, match=rf"{SAE_CONFIG}: {words}"):
        LocalSAE(path=folder).sae_config()


def test_a_deeply_nested_label_file_is_refused_by_name(folder):
    (folder / FEATURE_LABELS).write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(ValueError, match=f"{FEATURE_LABELS}: not a label file"):
        LocalSAE(path=folder).feature_labels()


@pytest.mark.parametrize("summary", [{"frequency": "often"}, {"max_activation": [1]}, {"top_words": "abc"},
                                     {"top_words": [["the", "x"]]}, {"top_contexts": [5]},
                                     {"script_or_language": 7}])
def test_a_crafted_summary_file_is_refused_by_name(folder, summary):
    (folder / FEATURE_SUMMARIES).write_text(json.dumps({"features": {"3": summary}}))
    with pytest.raises(ValueError, match=f"{FEATURE_SUMMARIES}: feature 3"):
        load_summaries(folder)


@pytest.mark.parametrize("name", [SAE_WEIGHTS, SAE_CONFIG, FEATURE_LABELS])
def test_a_linked_file_in_an_sae_folder_is_refused_not_followed(folder, tmp_path, name):
    (folder / FEATURE_LABELS).write_text(json.dumps({"0": "dogs"}))
    elsewhere = tmp_path / f"elsewhere-{name}"
    (folder / name).rename(elsewhere)
    (folder / name).symlink_to(elsewhere)
    sae = LocalSAE(path=folder)
    with pytest.raises(ValueError, match=f"{name} is a symbolic link"):
        sae.fingerprint() if name == SAE_WEIGHTS else sae.feature_labels() if name == FEATURE_LABELS else sae.sae_config()
    if name != FEATURE_LABELS:
        with pytest.raises(ValueError, match=f"{name} is a symbolic link"):
            load_sae(folder)


def test_a_fifo_in_an_sae_folder_never_blocks_the_reader(folder):
    (folder / SAE_WEIGHTS).unlink()
    os.mkfifo(folder / SAE_WEIGHTS)
    with pytest.raises(ValueError, match=f"{SAE_WEIGHTS} is not a regular file"):
        LocalSAE(path=folder).fingerprint()


@pytest.mark.parametrize("feature", ["32", "-1", "99999"])
def test_a_label_of_a_feature_the_sae_lacks_is_refused_by_name(folder, feature):
    (folder / FEATURE_LABELS).write_text(json.dumps({"0": "dogs", feature: "cats"}))
    with pytest.raises(ValueError, match=rf"{FEATURE_LABELS}: labels of features \[{feature}\] \(of 1\) outside "
                                         r"the SAE's 32 features \(ids 0 to 31\)"):
        LocalSAE(path=folder).feature_labels()


def test_a_plain_sae_folder_still_loads(folder):
    (folder / FEATURE_LABELS).write_text(json.dumps({"0": "dogs", "5": "cats"}))
    assert load_sae(folder).cfg.d_sae == 32 and LocalSAE(path=folder).feature_labels() == {0: "dogs", 5: "cats"}
    assert set(load_summaries(DefaultSAE().sae_folder())) == set(range(8192))


def test_a_store_whose_shipped_labels_name_features_it_lacks_is_refused_by_name(tmp_path, sample):
    store = _store(tmp_path / "s.iembed", sample.head(10), None, token_level=False)
    labels = store.path / FEATURE_LABELS  # written by hand, its checksum sealed: still refused when read
    labels.write_text(json.dumps({"0": "dogs", str(D_SAE + 7): "cats"}))
    body = manifest_body(store.path)
    body["labels"] = {"sha256": sha256_file(labels), "bytes": labels.stat().st_size}
    reseal(store.path, body)
    with pytest.raises(StoreCorruptError, match=rf"{FEATURE_LABELS}: labels of features \[{D_SAE + 7}\] \(of 1\) "
                                                rf"outside the SAE's {D_SAE} features"):
        Store.open(store.path).shipped_labels()
