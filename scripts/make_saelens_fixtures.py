"""Write small SAEs with SAELens' own code, and SAELens' own encodings of a few inputs, for the parity tests.

Run it with a Python that has ``sae-lens`` installed (not the project's environment: the tests need no SAELens)::

    python -m venv /tmp/saelens-venv && /tmp/saelens-venv/bin/pip install torch sae-lens
    /tmp/saelens-venv/bin/python scripts/make_saelens_fixtures.py tests/fixtures

``<out>/saelens/<name>/`` holds what SAELens saved (``cfg.json``, ``sae_weights.safetensors`` and, for a training
checkpoint, ``activation_scaler.json``) plus ``parity.safetensors``: inputs ``x`` and, where SAELens encodes
the folder, ``encoded`` = SAELens' ``encode(x)`` after loading it as SAELens does (``SAE.load_from_disk``; for
``expected_average_only_in`` also folding the checkpoint's scaling factor, as ``SAE.from_pretrained`` does
with a release's), and ``reconstructed`` = SAELens' ``forward(x)``. ``<out>/saelens/sae_lens_version.txt``
names the version used.

``<out>/saelens_releases/`` holds a registry of releases in SAELens' format (``pretrained_saes.yaml``: a few
real entries, trimmed, and made-up releases), a Hugging Face hub cache (``hub/``) holding the made-up
releases' files (one in SAELens' layout, one in Llama Scope's, which SAELens converts on load), and
``parity.safetensors``: inputs ``x`` and SAELens' ``SAE.from_pretrained(release, sae_id).encode(x)``.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

# The hub cache of the made-up releases, read offline: set before huggingface_hub is imported.
OUT = Path(sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures")
HUB = OUT / "saelens_releases" / "hub"
os.environ.update(HF_HUB_CACHE=str(HUB.resolve()), HF_HUB_OFFLINE="1")

import sae_lens
import torch
import yaml
from sae_lens.loading import pretrained_saes_directory
from safetensors.torch import save_file
from sae_lens import SAE
from sae_lens.saes import (BatchTopKTrainingSAE, BatchTopKTrainingSAEConfig, GatedSAE, GatedSAEConfig, JumpReLUSAE,
                           JumpReLUSAEConfig, JumpReLUTrainingSAE, JumpReLUTrainingSAEConfig,
                           MatryoshkaBatchTopKTrainingSAE, MatryoshkaBatchTopKTrainingSAEConfig, StandardSAE,
                           StandardSAEConfig, TopKSAE, TopKSAEConfig, TopKTrainingSAE, TopKTrainingSAEConfig)
from sae_lens.saes.abstopk_sae import AbsTopKSAE, AbsTopKSAEConfig
from sae_lens.saes.sae import SAEMetadata
from sae_lens.training.activation_scaler import ActivationScaler

D_IN, D_SAE, K, TOKENS = 16, 64, 8, 12
SCALING_FACTOR = 2.5


def metadata() -> SAEMetadata:
    return SAEMetadata(model_name="HuggingFaceTB/SmolLM2-135M-Instruct", hook_name="blocks.3.hook_resid_post")


def randomise(sae: torch.nn.Module, generator: torch.Generator) -> None:
    """Random values for every tensor, so that biases, thresholds and decoder norms all matter."""
    with torch.no_grad():
        for name, tensor in [*sae.named_parameters(), *sae.named_buffers()]:
            if name == "threshold":
                tensor.copy_(torch.rand(tensor.shape, generator=generator) * 0.6)
            elif name == "topk_threshold":
                tensor.fill_(0.3)
            else:
                scale = 0.3 if name.startswith("b_") or name == "r_mag" else 1.0
                tensor.copy_(torch.randn(tensor.shape, generator=generator) * scale)
        # Decoder rows of unequal norms: rescale_acts_by_decoder_norm must change the selection.
        sae.W_dec.mul_(torch.rand(sae.W_dec.shape[0], 1, generator=generator) * 2 + 0.2)


def inference(cls, cfg_cls, **cfg) -> SAE:
    return cls(cfg_cls(d_in=D_IN, d_sae=D_SAE, metadata=metadata(), **cfg))


# name -> (how the SAE is built, how it is saved): "model" = save_model (an inference SAE, or a training
# checkpoint), "inference" = save_inference_model (what a finished training run saves).
CASES = {
    "standard": (lambda: inference(StandardSAE, StandardSAEConfig), "model"),
    "standard_no_b_dec": (lambda: inference(StandardSAE, StandardSAEConfig, apply_b_dec_to_input=False), "model"),
    "topk": (lambda: inference(TopKSAE, TopKSAEConfig, k=K), "model"),
    "topk_rescale": (lambda: inference(TopKSAE, TopKSAEConfig, k=K, rescale_acts_by_decoder_norm=True), "model"),
    "jumprelu": (lambda: inference(JumpReLUSAE, JumpReLUSAEConfig), "model"),
    "gated": (lambda: inference(GatedSAE, GatedSAEConfig), "model"),
    "standard_layer_norm": (lambda: inference(StandardSAE, StandardSAEConfig, normalize_activations="layer_norm"),
                            "model"),
    "standard_constant_norm_rescale": (
        lambda: inference(StandardSAE, StandardSAEConfig, normalize_activations="constant_norm_rescale"), "model"),
    "topk_expected_average": (
        lambda: inference(TopKSAE, TopKSAEConfig, k=K, normalize_activations="expected_average_only_in"), "model"),
    "standard_expected_average_no_factor": (
        lambda: inference(StandardSAE, StandardSAEConfig, normalize_activations="expected_average_only_in"),
        "model"),
    "standard_covariance_whitening": (
        lambda: inference(StandardSAE, StandardSAEConfig, normalize_activations="covariance_whitening"), "model"),
    "abstopk": (lambda: inference(AbsTopKSAE, AbsTopKSAEConfig, k=K), "model"),
    # Training runs: checkpoints (save_model) and the finished SAE (save_inference_model).
    "topk_training_checkpoint": (lambda: TopKTrainingSAE(TopKTrainingSAEConfig(
        d_in=D_IN, d_sae=D_SAE, k=K, metadata=metadata())), "model"),
    "jumprelu_training_checkpoint": (lambda: JumpReLUTrainingSAE(JumpReLUTrainingSAEConfig(
        d_in=D_IN, d_sae=D_SAE, metadata=metadata())), "model"),
    "batchtopk_training_checkpoint": (lambda: BatchTopKTrainingSAE(BatchTopKTrainingSAEConfig(
        d_in=D_IN, d_sae=D_SAE, k=K, metadata=metadata())), "model"),
    "batchtopk_final": (lambda: BatchTopKTrainingSAE(BatchTopKTrainingSAEConfig(
        d_in=D_IN, d_sae=D_SAE, k=K, metadata=metadata())), "inference"),
    "batchtopk_final_no_rescale": (lambda: BatchTopKTrainingSAE(BatchTopKTrainingSAEConfig(
        d_in=D_IN, d_sae=D_SAE, k=K, rescale_acts_by_decoder_norm=False, metadata=metadata())), "inference"),
    "matryoshka_batchtopk_final": (lambda: MatryoshkaBatchTopKTrainingSAE(MatryoshkaBatchTopKTrainingSAEConfig(
        d_in=D_IN, d_sae=D_SAE, k=K, matryoshka_widths=[16, 32, D_SAE], metadata=metadata())), "inference"),
}


def encode_as_saelens_loads(folder: Path, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """SAELens' encoding and reconstruction of ``x`` by the SAE in ``folder``, loaded as SAELens loads it
    (nothing if SAELens cannot load it)."""
    try:
        sae = SAE.load_from_disk(folder)
    except (KeyError, ValueError):  # e.g. a BatchTopK training checkpoint: no inference class
        return {}
    scaler = folder / "activation_scaler.json"
    if sae.cfg.normalize_activations == "expected_average_only_in" and scaler.is_file():
        sae.fold_activation_norm_scaling_factor(json.loads(scaler.read_text())["scaling_factor"])
    with torch.no_grad():
        return {"encoded": sae.encode(x).contiguous(), "reconstructed": sae(x).contiguous()}


def make_saes(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    generator = torch.Generator().manual_seed(0)
    for name, (build, how) in CASES.items():
        sae = build()
        randomise(sae, generator)
        folder = out / name
        (sae.save_inference_model if how == "inference" else sae.save_model)(folder)
        if name == "topk_expected_average":  # a checkpoint mid-training keeps its factor beside the weights
            ActivationScaler(scaling_factor=SCALING_FACTOR).save(str(folder / "activation_scaler.json"))
        # Inputs of the scale of a residual stream, off-centre, so layer norm and b_dec both matter.
        x = torch.randn(TOKENS, D_IN, generator=generator) * 3 + torch.randn(D_IN, generator=generator)
        outputs = encode_as_saelens_loads(folder, x)
        save_file({"x": x, **outputs}, str(folder / "parity.safetensors"))
        print(f"{name}: {'encoded' if outputs else 'SAELens cannot load it'}")
    (out / "sae_lens_version.txt").write_text(sae_lens.__version__ + "\n")


# Made-up releases, as the registry describes them; their files are written into the hub cache below.
READER = "tiny-org/tiny-llama"  # the tests put a tiny random Llama (hidden size 64, 3 layers) at this name
RELEASE_D_IN = 64
MADE_UP_RELEASES = {
    "tiny-llama-res": {
        "conversion_func": None, "model": READER, "repo_id": "tiny-org/tiny-llama-saes",
        "config_overrides": {"dataset_path": "made-up/for-tests"},
        "saes": [{"id": "blocks.1.hook_resid_post", "path": "resid_post_1"},
                 {"id": "blocks.2.hook_resid_post/topk", "path": "topk_scaled", "norm_scaling_factor": SCALING_FACTOR}],
    },
    "tiny-llama-scope": {
        "conversion_func": "llama_scope", "model": READER, "repo_id": "tiny-org/tiny-llama-scope",
        "saes": [{"id": "l1r_2x", "path": "Tiny-L1R-2x", "norm_scaling_factor": 4.0}],
    },
}
# Real entries, trimmed to two SAEs each: the registry lookup is tested on the registry's real shape.
REAL_RELEASES = ("gpt2-small-res-jb", "gemma-scope-2b-pt-res-canonical", "llama_scope_lxa_8x")


def hub_snapshot(repo_id: str) -> Path:
    """The snapshot folder of ``repo_id`` in the hub cache's layout (refs/main names the commit)."""
    repo = HUB / f"models--{repo_id.replace('/', '--')}"
    commit = "0" * 40
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(commit)
    return repo / "snapshots" / commit


def make_releases(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    generator = torch.Generator().manual_seed(1)
    shipped = pretrained_saes_directory.files("sae_lens").joinpath("pretrained_saes.yaml").read_text()
    real = yaml.safe_load(shipped)
    registry = {name: {**real[name], "saes": real[name]["saes"][:2]} for name in REAL_RELEASES}
    registry.update(MADE_UP_RELEASES)
    (out / "pretrained_saes.yaml").write_text(yaml.safe_dump(registry, sort_keys=True))

    own = hub_snapshot("tiny-org/tiny-llama-saes")
    for path, hook, build in [
        ("resid_post_1", "blocks.1.hook_resid_post", lambda meta: StandardSAE(StandardSAEConfig(
            d_in=RELEASE_D_IN, d_sae=96, metadata=meta))),
        ("topk_scaled", "blocks.2.hook_resid_post", lambda meta: TopKSAE(TopKSAEConfig(
            d_in=RELEASE_D_IN, d_sae=96, k=K, normalize_activations="expected_average_only_in", metadata=meta))),
    ]:
        sae = build(SAEMetadata(model_name=READER, hook_name=hook))
        randomise(sae, generator)
        sae.save_model(own / path)

    # Llama Scope's layout: hyperparams.json and checkpoints/final.safetensors with linear layers' weights.
    scope = hub_snapshot("tiny-org/tiny-llama-scope") / "Tiny-L1R-2x"
    (scope / "checkpoints").mkdir(parents=True, exist_ok=True)
    d_sae = 2 * RELEASE_D_IN
    (scope / "hyperparams.json").write_text(json.dumps({
        "d_model": RELEASE_D_IN, "d_sae": d_sae, "jump_relu_threshold": 0.2,
        "hook_point_in": "blocks.1.hook_resid_post",
        "dataset_average_activation_norm": {"in": 2.0}}))
    save_file({"encoder.weight": torch.randn(d_sae, RELEASE_D_IN, generator=generator),
               "encoder.bias": torch.randn(d_sae, generator=generator) * 0.3,
               "decoder.weight": torch.randn(RELEASE_D_IN, d_sae, generator=generator),
               "decoder.bias": torch.randn(RELEASE_D_IN, generator=generator) * 0.3},
              str(scope / "checkpoints" / "final.safetensors"))

    # SAELens reads the registry above instead of its own, and the hub cache above, offline.
    pretrained_saes_directory.files = lambda package: out
    pretrained_saes_directory.get_pretrained_saes_directory.cache_clear()
    x = torch.randn(TOKENS, RELEASE_D_IN, generator=generator) * 3 + torch.randn(RELEASE_D_IN, generator=generator)
    encoded = {}
    for release, entry in MADE_UP_RELEASES.items():
        for sae in entry["saes"]:
            with torch.no_grad():
                encoded[f"{release}:{sae['id']}"] = SAE.from_pretrained(release, sae["id"]).encode(x).contiguous()
    save_file({"x": x, **encoded}, str(out / "parity.safetensors"))
    print("releases:", ", ".join(encoded))


if __name__ == "__main__":
    make_saes(OUT / "saelens")
    make_releases(OUT / "saelens_releases")
