"""``LocalSAE(release=..., sae_id=...)``: SAELens' registry of releases, fetched from a local folder standing in
for the Hugging Face hub cache (offline).

``tests/fixtures/saelens_releases`` was written by ``scripts/make_saelens_fixtures.py`` with sae-lens: a
registry in SAELens' format (real entries, trimmed, and made-up releases), the made-up releases' files in the
hub cache's layout, and SAELens' own ``SAE.from_pretrained(release, sae_id).encode(x)`` of them.
"""
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import interp_embed
from interp_embed.saes import LocalSAE
from interp_embed.saes.releases import INSTALL, fetch_release, find_release

FIXTURES = Path(__file__).parent / "fixtures" / "saelens_releases"
REGISTRY = FIXTURES / "pretrained_saes.yaml"


def test_a_release_is_found_in_saelens_registry_format():
    found = find_release("gemma-scope-2b-pt-res-canonical", "layer_0/width_16k/canonical", REGISTRY)
    assert (found.repo_id, found.folder, found.conversion, found.model) == (
        "google/gemma-scope-2b-pt-res", "layer_0/width_16k/average_l0_105", "gemma_2", "gemma-2-2b")
    scope = find_release("llama_scope_lxa_8x", "l0a_8x", REGISTRY)
    assert scope.norm_scaling_factor == pytest.approx(112.21917808219177) and scope.conversion == "llama_scope"
    jb = find_release("gpt2-small-res-jb", "blocks.1.hook_resid_pre", REGISTRY)
    assert jb.conversion is None and jb.config_overrides == {"model_from_pretrained_kwargs":
                                                             {"center_writing_weights": True}}
    assert find_release("no-such-release", "x", REGISTRY) is None


def test_an_unknown_sae_id_lists_the_release_ids():
    with pytest.raises(ValueError, match=r"release 'gpt2-small-res-jb' of SAELens has no SAE 'blocks.9'; its ids "
                                         r"are 'blocks.0.hook_resid_pre', 'blocks.1.hook_resid_pre'"):
        find_release("gpt2-small-res-jb", "blocks.9", REGISTRY)


def test_a_release_neither_registered_nor_a_repository_is_refused(tmp_path):
    with pytest.raises(ValueError, match="'no-such-release' is neither in SAELens' registry nor a Hugging Face"):
        fetch_release("no-such-release", "x", tmp_path, registry=REGISTRY)


@pytest.mark.parametrize("sae_id", ["../../etc", "/abs/path", ""])
def test_an_sae_id_must_stay_inside_the_repository(sae_id, tmp_path):
    with pytest.raises(ValueError, match="sae_id must name a folder inside the release"):
        fetch_release("owner/repo", sae_id, tmp_path, registry=REGISTRY)


def test_without_the_extra_a_named_release_says_what_to_install(monkeypatch):
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *args: None if name == "sae_lens" else find_spec(name, *args))
    sae = LocalSAE(release="gemma-scope-2b-pt-res-canonical", sae_id="layer_0/width_16k/canonical")
    with pytest.raises(ImportError, match=r"need the sae-lens package: pip install 'interp_embed\[saelens\]'"):
        sae.sae_folder()


SCRIPT = r"""
import json, sys
from pathlib import Path
import pandas as pd, torch
from safetensors.torch import load_file
from interp_embed import Dataset, load_sae
from interp_embed.saes import LocalSAE
from interp_embed.saes import releases
from numerics import assert_same_latents

fixtures = Path(sys.argv[1])
releases.registry_path = lambda: fixtures / "pretrained_saes.yaml"   # the installed package's registry, in the test
parity = load_file(str(fixtures / "parity.safetensors"))
out = {}
for key in ("tiny-llama-res:blocks.1.hook_resid_post", "tiny-llama-res:blocks.2.hook_resid_post/topk",
            "tiny-llama-scope:l1r_2x"):
    release, sae_id = key.split(":")
    try:
        folder = LocalSAE(release=release, sae_id=sae_id).sae_folder()
    except ImportError as err:
        out[key] = {"refused": str(err)}
        continue
    with torch.no_grad():
        encoded = load_sae(folder).encode(parity["x"])
    try:  # SAELens encoded the fixture on another machine: equal up to rounding (tests/numerics.py)
        assert_same_latents(encoded, parity[key])
        same = True
    except AssertionError:
        same = False
    out[key] = {"same_latents": same, "max_difference": float((encoded - parity[key]).abs().max()),
                "active": int((encoded > 0).sum())}
sae = LocalSAE(release="tiny-llama-res", sae_id="blocks.1.hook_resid_post", role="raw")
ds = Dataset(pd.DataFrame({"text": ["Offline hubs are tidy.", "A tiny reader reads this."]}), sae=sae)
out["reader"], out["layer"] = sae.reader_spec().model, sae.reader_spec().layer
out["latents_shape"] = list(ds.latents().shape)
plain = LocalSAE(release="tiny-org/tiny-llama-saes", sae_id="resid_post_1")
out["plain_repository_folder"] = plain.sae_folder().name
print(json.dumps(out))
"""


@pytest.mark.reader
def test_releases_load_from_the_hub_cache_as_saelens_loads_them(tiny_model_dir, tmp_path):
    hub = tmp_path / "hub"
    shutil.copytree(FIXTURES / "hub", hub)
    # The release names a reader by its hub name; put the tiny random Llama there.
    reader = hub / "models--tiny-org--tiny-llama"
    shutil.copytree(tiny_model_dir, reader / "snapshots" / ("1" * 40))
    (reader / "refs").mkdir()
    (reader / "refs" / "main").write_text("1" * 40)
    src = Path(interp_embed.__file__).parents[1]
    env = dict(os.environ, HF_HUB_CACHE=str(hub), HF_HUB_OFFLINE="1", INTERP_EMBED_CACHE=str(tmp_path / "cache"),
               PYTHONPATH=os.pathsep.join([str(src), str(Path(__file__).parent), *sys.path]))
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(FIXTURES)], capture_output=True, text=True, env=env,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])

    for key in ("tiny-llama-res:blocks.1.hook_resid_post", "tiny-llama-res:blocks.2.hook_resid_post/topk"):
        # The second has normalize_activations="expected_average_only_in" with the registry's scaling factor.
        assert out[key]["same_latents"] and out[key]["max_difference"] <= 1e-4 and out[key]["active"] > 0, out[key]
    converted = out["tiny-llama-scope:l1r_2x"]
    if importlib.util.find_spec("sae_lens") is None:  # Llama Scope's format is converted by SAELens' own loader
        assert f"stored in the 'llama_scope' format, which SAELens converts on load: {INSTALL}" in converted["refused"]
    else:
        assert converted["same_latents"] and converted["max_difference"] <= 1e-4, converted
    assert (out["reader"], out["layer"]) == ("tiny-org/tiny-llama", 1)
    assert out["latents_shape"] == [2, 96] and out["plain_repository_folder"] == "resid_post_1"


def test_transformer_lens_names_become_hub_names():
    pytest.importorskip("transformer_lens", reason="TransformerLens comes with the saelens extra")
    from interp_embed.saes.releases import _hugging_face_name

    assert (_hugging_face_name("gpt2-small"), _hugging_face_name("gemma-2-2b")) == ("gpt2", "google/gemma-2-2b")
    assert _hugging_face_name("tiny-org/tiny-llama") == "tiny-org/tiny-llama"
