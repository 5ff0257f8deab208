"""SAE architectures, the SAELens layout, and the SAE sources (hub) tested on locally made files (Goodfire: test_goodfire.py)."""
import json
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from safetensors.torch import load_file, save_file

from interp_embed.architectures import (BatchTopKConfig, SAEConfig, SparseAutoencoder, TopKConfig, build_sae, load_sae,
                                        save_sae)
from interp_embed.architectures import base
from interp_embed.saes import DefaultSAE, GoodfireSAE, LocalSAE, sae_from_spec
from interp_embed.saes.base import split_device

pytestmark = pytest.mark.numerics  # SAEs computed with torch, compared with expected values


def _random_sae(architecture, d_in=16, d_sae=64, k=None, seed=0):
    torch.manual_seed(seed)
    shape = dict(architecture=architecture, d_in=d_in, d_sae=d_sae, hook_layer=3)
    sae = build_sae(TopKConfig(**shape, k=k) if architecture == "topk" else SAEConfig(**shape))
    with torch.no_grad():
        for p in sae.parameters():
            p.normal_()
        if architecture == "jumprelu":
            sae.threshold.uniform_(0, 3)
    return sae


@pytest.mark.parametrize("architecture,k", [("relu", None), ("topk", 5), ("jumprelu", None)])
def test_sparse_encoding_equals_dense(architecture, k):
    sae = _random_sae(architecture, k=k)
    x = torch.randn(37, 16)
    acts = sae.encode_sparse(x, token_block=8)
    csr = sp.csr_matrix((acts.values.numpy(), acts.features.numpy(), acts.ptr.numpy()), shape=(37, 64))
    with torch.no_grad():
        dense = sae.encode(x).numpy()
    assert csr.has_sorted_indices and (csr.data > 0).all()
    np.testing.assert_allclose(csr.toarray(), dense, rtol=1e-5, atol=1e-5)
    if architecture == "topk":
        assert (np.diff(csr.indptr) <= k).all()
    if architecture == "jumprelu":
        pre = sae.pre_activations(x).detach().numpy()
        assert ((dense > 0) == (pre > sae.threshold.detach().numpy()) & (pre > 0)).all()


def test_save_and_load_round_trip(tmp_path):
    sae = _random_sae("topk", k=5)
    save_sae(sae, tmp_path / "s")
    cfg = json.loads((tmp_path / "s" / "cfg.json").read_text())
    assert cfg["architecture"] == "topk" and cfg["metadata"]["hook_name"] == "blocks.3.hook_resid_post"
    loaded = load_sae(tmp_path / "s")
    x = torch.randn(4, 16)
    with torch.no_grad():
        np.testing.assert_array_equal(loaded.encode(x).numpy(), sae.encode(x).numpy())


def test_reads_flat_saelens_configs_and_resid_pre(tmp_path):
    sae = _random_sae("topk", k=5)
    save_sae(sae, tmp_path / "s")
    flat = {"d_in": 16, "d_sae": 64, "hook_name": "blocks.4.hook_resid_pre", "activation_fn_str": "topk",
            "activation_fn_kwargs": {"k": 5}, "model_name": "gpt2", "architecture": "standard"}
    (tmp_path / "s" / "cfg.json").write_text(json.dumps(flat))
    loaded = load_sae(tmp_path / "s")
    assert (loaded.cfg.architecture, loaded.cfg.k, loaded.cfg.hook_layer, loaded.cfg.model_name) == ("topk", 5, 3, "gpt2")


@pytest.mark.parametrize("change,message", [
    ({"architecture": "sparse_coding"}, "not supported"),
    ({"metadata": {"hook_name": "blocks.3.mlp.hook_pre"}}, "hook 'blocks.3.mlp.hook_pre' is not supported"),
    ({"normalize_activations": "expected_average_only_in"}, "normalize_activations"),
    ({"d_sae": 65}, "expected tensors"),
])
def test_unsupported_or_inconsistent_configs_name_the_file(tmp_path, change, message):
    save_sae(_random_sae("relu"), tmp_path / "s")
    cfg = json.loads((tmp_path / "s" / "cfg.json").read_text())
    cfg.update(change)
    (tmp_path / "s" / "cfg.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match=message) as err:
        load_sae(tmp_path / "s")
    assert "s/cfg.json" in str(err.value) or "sae_weights.safetensors" in str(err.value)


def test_batchtopk_is_saved_as_the_jumprelu_sae_it_is_at_inference(tmp_path):
    torch.manual_seed(0)
    sae = build_sae(BatchTopKConfig(d_in=16, d_sae=64, hook_layer=3, k=4))
    with torch.no_grad():
        for p in sae.parameters():
            p.normal_()
        sae.threshold.fill_(1.5)
    save_sae(sae, tmp_path / "s")
    cfg = json.loads((tmp_path / "s" / "cfg.json").read_text())
    assert cfg["architecture"] == "jumprelu" and "k" not in cfg
    loaded = load_sae(tmp_path / "s")
    x = torch.randn(40, 16)
    with torch.no_grad():
        assert torch.equal(loaded.encode(x), sae.encode(x)) and (loaded.encode(x) > 0).any()
    assert (loaded.threshold == 1.5).all()


def test_a_topk_config_without_k_names_the_file_and_the_field(tmp_path):
    save_sae(_random_sae("topk", k=5), tmp_path / "s")
    cfg = json.loads((tmp_path / "s" / "cfg.json").read_text())
    del cfg["k"]
    (tmp_path / "s" / "cfg.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match=r"s/cfg.json: a topk SAE needs k"):
        load_sae(tmp_path / "s")
    cfg["k"] = 65
    (tmp_path / "s" / "cfg.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match=r"s/cfg.json: k must be an integer in \[1, d_sae\] = \[1, 64\], not 65"):
        load_sae(tmp_path / "s")


def test_jumprelu_reads_thresholds_saved_as_their_logarithm(tmp_path):
    sae = _random_sae("jumprelu")
    save_sae(sae, tmp_path / "s")
    weights = load_file(str(tmp_path / "s" / "sae_weights.safetensors"))
    weights["log_threshold"] = weights.pop("threshold").log()
    save_file(weights, str(tmp_path / "s" / "sae_weights.safetensors"))
    loaded = load_sae(tmp_path / "s")
    torch.testing.assert_close(loaded.threshold, sae.threshold)


@pytest.mark.parametrize("cfg,message", [
    (dict(architecture="topk", d_in=16, d_sae=64, hook_layer=3), "TopKSAE needs a TopKConfig"),
    (dict(architecture="sparse_coding", d_in=16, d_sae=64, hook_layer=3), "architecture must be one of"),
    (dict(architecture="relu", d_in=0, d_sae=64, hook_layer=3), "d_in must be an integer >= 1"),
    (dict(architecture="relu", d_in=16, d_sae=64, hook_layer=-1), "hook_layer must be an integer >= 0"),
])
def test_configs_are_checked_at_the_door(cfg, message):
    with pytest.raises(ValueError, match=message):
        build_sae(SAEConfig(**cfg))
    with pytest.raises(ValueError, match=r"k must be an integer in \[1, d_sae\]"):
        TopKConfig(d_in=16, d_sae=64, hook_layer=3, k=0)


def test_an_architecture_is_one_registered_class(tmp_path, monkeypatch):
    monkeypatch.setattr(base, "_REGISTRY", base.architectures())

    @base.register_architecture("abs_relu", saelens_names=("abs_relu_v1", "absrelu"))
    class AbsReLUSAE(SparseAutoencoder):
        def activation(self, pre):
            return pre.abs() * (pre > 0)

    sae = build_sae(SAEConfig(architecture="abs_relu", d_in=16, d_sae=64, hook_layer=3))
    with torch.no_grad():
        for p in sae.parameters():
            p.normal_()
    save_sae(sae, tmp_path / "s")
    assert json.loads((tmp_path / "s" / "cfg.json").read_text())["architecture"] == "abs_relu_v1"
    loaded = load_sae(tmp_path / "s")
    x = torch.randn(9, 16)
    assert isinstance(loaded, AbsReLUSAE)
    torch.testing.assert_close(loaded.encode(x), torch.relu(sae.pre_activations(x)))
    with pytest.raises(ValueError, match="already registered"):
        base.register_architecture("other", saelens_names=("absrelu",))(AbsReLUSAE)


def test_load_sae_is_public_and_reads_the_shipped_sae():
    import interp_embed

    sae = interp_embed.load_sae(DefaultSAE().sae_folder())
    codes = sae.encode_sparse(torch.randn(3, sae.cfg.d_in))
    assert codes.ptr.tolist() == [0, sae.cfg.k, 2 * sae.cfg.k, 3 * sae.cfg.k]


def test_local_sae_from_a_hub_release_uses_the_downloaded_folder(tmp_path, monkeypatch):
    save_sae(_random_sae("relu"), tmp_path / "repo" / "blocks.3.hook_resid_post")
    (tmp_path / "repo" / "blocks.3.hook_resid_post" / "feature_labels.json").write_text('{"0": "dogs", "5": "cats"}')
    calls = []

    def fake_snapshot_download(repo_id, allow_patterns):
        calls.append((repo_id, allow_patterns))
        return str(tmp_path / "repo")

    monkeypatch.setattr("huggingface_hub.snapshot_download", fake_snapshot_download)
    monkeypatch.setenv("INTERP_EMBED_CACHE", str(tmp_path / "cache"))
    sae = LocalSAE(release="someone/saes", sae_id="blocks.3.hook_resid_post", model="some/model")
    folder = sae.sae_folder()  # copied out of the hub's cache as plain files
    assert folder == tmp_path / "cache" / "saes" / "hub" / "someone" / "saes" / "blocks.3.hook_resid_post"
    assert not any(path.is_symlink() for path in folder.iterdir())
    assert calls == [("someone/saes", ["blocks.3.hook_resid_post/*"])]
    assert sae.feature_labels() == {0: "dogs", 5: "cats"}
    assert sae_from_spec(sae.spec()).spec() == sae.spec()
    with pytest.raises(ValueError, match="either path="):
        LocalSAE()


def test_specs_rebuild_only_known_front_doors():
    assert sae_from_spec(DefaultSAE(role="user").spec()).role == "user"
    assert sae_from_spec(GoodfireSAE().spec()).variant_name == "Llama-3.1-8B-Instruct-SAE-l19"
    with pytest.raises(ValueError, match="unknown SAE type"):
        sae_from_spec({"type": "os.system"})
    with pytest.raises(ValueError, match="variant_name"):
        GoodfireSAE(variant_name="nope")
    assert DefaultSAE(use_assistant_role=False).role == "user"


def test_device_configuration():
    assert split_device("cuda:0") == ("cuda:0", "cuda:0")
    assert split_device({"model": "cuda:0", "sae": "cpu"}) == ("cuda:0", "cpu")
    with pytest.raises(ValueError, match="model"):
        split_device({"gpu": 0})
