"""``load_sae(folder).encode(x)`` equals SAELens' own on folders SAELens itself wrote, or the folder is refused by name.

The fixtures in ``tests/fixtures/saelens`` were written by ``scripts/make_saelens_fixtures.py`` with the
sae-lens version named in ``sae_lens_version.txt``; each holds SAELens' encoding of a few inputs, so
these tests need no SAELens.
"""
import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from interp_embed.architectures import load_sae, save_sae
from interp_embed.files import sha256_file
from interp_embed.saes import LocalSAE
from interp_embed.train.evaluate import reconstruction_quality
from numerics import assert_equal_up_to_rounding, assert_same_latents

pytestmark = pytest.mark.numerics  # SAEs computed with torch, compared with saved results

FIXTURES = Path(__file__).parent / "fixtures" / "saelens"
FOLDERS = sorted(p.name for p in FIXTURES.iterdir() if p.is_dir())

# Fixture -> what the refusal must say.
REFUSED = {
    "abstopk": r"architecture 'abstopk' is not supported: its activations may be negative",
    "batchtopk_training_checkpoint": r"architecture 'batchtopk' is not supported: it is a training checkpoint",
    "standard_covariance_whitening": r"normalize_activations='covariance_whitening' is not supported",
    "standard_expected_average_no_factor": r"expected_average_only_in.*activation_scaler.json is missing",
}
MATCHED = [name for name in FOLDERS if name not in REFUSED]


def parity(name: str) -> dict[str, torch.Tensor]:
    return load_file(str(FIXTURES / name / "parity.safetensors"))


def copy_fixture(name: str, tmp_path: Path) -> Path:
    return Path(shutil.copytree(FIXTURES / name, tmp_path / name))


def edit_config(folder: Path, **changes) -> None:
    cfg = json.loads((folder / "cfg.json").read_text())
    cfg.update(changes)
    (folder / "cfg.json").write_text(json.dumps(cfg))


def test_every_fixture_is_either_matched_or_refused():
    assert len(FOLDERS) == 18 and set(REFUSED) <= set(FOLDERS)
    assert all("encoded" in parity(name) for name in MATCHED)
    assert (FIXTURES / "sae_lens_version.txt").read_text().startswith("6.")


@pytest.mark.parametrize("name", MATCHED)
def test_encoding_and_reconstruction_equal_saelens(name):
    sae, expected = load_sae(FIXTURES / name), parity(name)
    with torch.no_grad():
        encoded, reconstructed = sae.encode(expected["x"]), sae(expected["x"])
    # The same latents fire, with the same values up to rounding: SAELens ran on another machine, and folded
    # settings differ from SAELens' by rounding only.
    assert_same_latents(encoded, expected["encoded"])
    assert 0 < int((encoded > 0).sum()) < encoded.numel()
    assert_equal_up_to_rounding(reconstructed, expected["reconstructed"])
    # Encoding in blocks of 5 rows multiplies matrices of other shapes than encoding all 12, which a CPU's BLAS
    # may round differently: the same latents, values equal up to rounding (never compared bit for bit).
    sparse = sae.encode_sparse(expected["x"], token_block=5)
    rows = torch.repeat_interleave(torch.arange(len(encoded)), sparse.ptr.diff())
    from_blocks = torch.zeros_like(encoded)
    from_blocks[rows, sparse.features.long()] = sparse.values
    assert_same_latents(from_blocks, encoded)


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_what_is_not_built_is_refused_with_the_reason(name):
    with pytest.raises(ValueError, match=REFUSED[name]) as err:
        load_sae(FIXTURES / name)
    assert str(FIXTURES / name) in str(err.value)


@pytest.mark.parametrize("architecture,reason", [
    ("matching_pursuit", "iterative matching pursuit"), ("temporal", "attends over earlier tokens"),
    ("transcoder", "predicts another hook's output"), ("skip_transcoder", "predicts another hook's output"),
    ("jumprelu_transcoder", "predicts another hook's output"),
    ("jumprelu_skip_transcoder", "predicts another hook's output"),
    ("matryoshka_batchtopk", "training checkpoint"),
])
def test_other_saelens_architectures_are_refused_with_the_reason(architecture, reason, tmp_path):
    folder = copy_fixture("standard", tmp_path)
    edit_config(folder, architecture=architecture)
    with pytest.raises(ValueError, match=f"architecture {architecture!r} is not supported: .*{reason}"):
        load_sae(folder)


@pytest.mark.parametrize("name", ["topk_rescale", "topk_expected_average"])
def test_folded_settings_change_the_encoding(name, tmp_path):
    """Read without the setting, the folder encodes differently: the setting is applied, not ignored."""
    folder = copy_fixture(name, tmp_path)
    edit_config(folder, rescale_acts_by_decoder_norm=False, normalize_activations="none")
    x = parity(name)["x"]
    with torch.no_grad():
        plain = load_sae(folder).encode(x)
    assert not torch.equal(plain > 0, parity(name)["encoded"] > 0)


@pytest.mark.parametrize("name", ["gated", "standard_layer_norm", "topk_rescale", "topk_expected_average"])
def test_a_loaded_sae_saved_again_encodes_the_same(name, tmp_path):
    sae = load_sae(FIXTURES / name)
    save_sae(sae, tmp_path / "again")
    cfg = json.loads((tmp_path / "again" / "cfg.json").read_text())
    assert cfg["normalize_activations"] == ("layer_norm" if name == "standard_layer_norm" else "none")
    x = parity(name)["x"]
    with torch.no_grad():
        # The same weights and the same input shapes on the same machine: bit for bit.
        assert torch.equal(load_sae(tmp_path / "again").encode(x), sae.encode(x))


@pytest.mark.parametrize("change,message", [
    ({"sparsity_target": 0.1}, r"config keys 'sparsity_target' are not known here and may change the encoding"),
    ({"normalize_activations": "unit_variance"}, r"normalize_activations='unit_variance' is not supported"),
    ({"rescale_acts_by_decoder_norm": True}, r"rescale_acts_by_decoder_norm is only read for topk SAEs"),
    ({"finetuning_scaling_factor": True}, r"finetuning_scaling_factor is not supported"),
])
def test_encoding_settings_not_built_are_refused_by_name(change, message, tmp_path):
    folder = copy_fixture("standard", tmp_path)
    edit_config(folder, **change)
    with pytest.raises(ValueError, match=message) as err:
        load_sae(folder)
    assert str(folder / "cfg.json") in str(err.value)


def test_training_settings_in_a_checkpoint_are_known_to_be_harmless():
    cfg = json.loads((FIXTURES / "jumprelu_training_checkpoint" / "cfg.json").read_text())
    assert {"l0_coefficient", "jumprelu_bandwidth", "decoder_init_norm"} <= set(cfg)
    assert load_sae(FIXTURES / "jumprelu_training_checkpoint").cfg.architecture == "jumprelu"


def test_a_weights_file_with_an_unknown_tensor_is_refused(tmp_path):
    folder = copy_fixture("standard", tmp_path)
    weights = load_file(str(folder / "sae_weights.safetensors"))
    save_file({**weights, "scaling_factor": torch.full((64,), 2.0)}, str(folder / "sae_weights.safetensors"))
    with pytest.raises(ValueError, match=r"sae_weights.safetensors: expected tensors .* found .*scaling_factor"):
        load_sae(folder)
    # A scaling_factor of ones changes nothing: some releases carry one, and SAELens drops it too.
    save_file({**weights, "scaling_factor": torch.ones(64)}, str(folder / "sae_weights.safetensors"))
    x = parity("standard")["x"]
    with torch.no_grad():
        assert_same_latents(load_sae(folder).encode(x), parity("standard")["encoded"])


@pytest.mark.parametrize("content,message", [
    ("not json", "not a JSON object with a scaling_factor"),
    (json.dumps({"scaling_factor": None}), "gives scaling_factor=None, not a positive number"),
    (json.dumps({"scaling_factor": -2.0}), "gives scaling_factor=-2.0, not a positive number"),
])
def test_a_malformed_scaling_factor_file_is_refused_by_name(content, message, tmp_path):
    folder = copy_fixture("topk_expected_average", tmp_path)
    (folder / "activation_scaler.json").write_text(content)
    with pytest.raises(ValueError, match=message) as err:
        load_sae(folder)
    assert "activation_scaler.json" in str(err.value)


def test_flat_configs_read_a_true_normalize_activations_as_the_scaling_factor(tmp_path):
    """SAELens ≤ 5 wrote ``normalize_activations: true`` for what is now ``expected_average_only_in``."""
    folder = copy_fixture("topk_expected_average", tmp_path)
    cfg = json.loads((folder / "cfg.json").read_text())
    flat = {"architecture": "standard", "activation_fn_str": "topk", "activation_fn_kwargs": {"k": cfg["k"]},
            "d_in": 16, "d_sae": 64, "hook_name": cfg["metadata"]["hook_name"], "normalize_activations": True,
            "lr": 3e-4, "wandb_project": "old-run-settings"}
    (folder / "cfg.json").write_text(json.dumps(flat))
    x = parity("topk_expected_average")["x"]
    with torch.no_grad():
        assert_same_latents(load_sae(folder).encode(x), parity("topk_expected_average")["encoded"])


@pytest.mark.parametrize("name", ["standard_layer_norm", "standard_constant_norm_rescale"])
def test_reconstruction_quality_compares_at_the_input_scale(name):
    """An SAE that normalizes its input is judged on SAELens' reconstruction of the input itself."""
    expected = parity(name)
    x = expected["x"]
    fvu = float((x - expected["reconstructed"]).pow(2).sum() / (x - x.mean(0)).pow(2).sum())
    assert reconstruction_quality(load_sae(FIXTURES / name), [(None, x)]).fvu == pytest.approx(fvu, rel=1e-5)


def test_the_scaling_factor_is_part_of_the_sae_identity(tmp_path):
    """The factor is folded into the weights on load, so a store must not accept an SAE whose factor changed."""
    folder = copy_fixture("topk_expected_average", tmp_path)
    plain = copy_fixture("topk", tmp_path)
    before = LocalSAE(path=folder, model="unused").fingerprint()
    # Without a factor it is the weights' hash, as every store made before factors were read recorded it.
    assert LocalSAE(path=plain, model="unused").fingerprint() == sha256_file(plain / "sae_weights.safetensors")
    (folder / "activation_scaler.json").write_text(json.dumps({"scaling_factor": 3.5}))
    assert LocalSAE(path=folder, model="unused").fingerprint() != before


@pytest.mark.parametrize("content", ["[1, 2]", "not json", "\xff"])
def test_a_config_that_is_not_a_json_object_is_refused_by_name(content, tmp_path):
    folder = copy_fixture("topk", tmp_path)
    (folder / "cfg.json").write_bytes(content.encode("latin-1"))
    with pytest.raises(ValueError, match=r"cfg\.json: (cannot read the SAE config|the SAE config is not a JSON)"):
        load_sae(folder)
    with pytest.raises(ValueError, match=r"cfg\.json"):
        LocalSAE(path=folder, model="unused").sae_config()
