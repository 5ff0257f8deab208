"""Write small SAEs with SAELens' own code, and SAELens' own encodings of a few inputs, for the parity tests.

Run it with a Python that has ``sae-lens`` installed (not the project's environment: the tests need no SAELens)::

    python -m venv /tmp/saelens-venv && /tmp/saelens-venv/bin/pip install torch sae-lens
    /tmp/saelens-venv/bin/python scripts/make_saelens_fixtures.py tests/fixtures/saelens

Each ``<out>/<name>/`` holds what SAELens saved (``cfg.json``, ``sae_weights.safetensors`` and, for a training
checkpoint, ``activation_scaler.json``) plus ``parity.safetensors``: inputs ``x`` and, where SAELens encodes
the folder, ``encoded`` = SAELens' ``encode(x)`` after loading it as SAELens does (``SAE.load_from_disk``; for
``expected_average_only_in`` also folding the checkpoint's scaling factor, as ``SAE.from_pretrained`` does
with a release's), and ``reconstructed`` = SAELens' ``forward(x)``. ``<out>/sae_lens_version.txt`` names
the version used.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import sae_lens
import torch
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
        sae.W_dec.mul_(torch.rand(D_SAE, 1, generator=generator) * 2 + 0.2)


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


def main(out: Path) -> None:
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


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/saelens"))
