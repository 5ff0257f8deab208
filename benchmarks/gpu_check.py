"""GPU check (not a test): the encoding pipeline on CUDA with the default device and dtype (bf16).

    PYTHONPATH=src python benchmarks/gpu_check.py --tokenizer <folder with the bundled tokenizer> --out results.json
    .venv/bin/python benchmarks/gpu_check.py --tokenizer ... --out r.json --small     # the mechanics, on a CPU

Hubs are unreachable and the bundled reader's weights are too large to send to a lent GPU machine, so
this builds a randomly initialised Llama of about 1B parameters (the reader's tokenizer, so real text
tokenises as usual) and a random TopK SAE, then measures on the demo's real fortunes:

- that the reader and SAE land on CUDA in bfloat16 by default, and that the shared template prefix
  passes its check against the full forward in bf16;
- tokens/s of ``Dataset(...)`` at two token budgets, against the reader alone doing the same forward
  passes (prefix + document, length-sorted, same budget): the ceiling;
- that the store written on the GPU loads and agrees with the token level (count and max identities).
Random weights make the features meaningless; only speed and mechanics are measured.
"""
from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

from interp_embed import Dataset
from interp_embed.architectures import TopKConfig, build_sae, save_sae
from interp_embed.data import demo_sample
from interp_embed.saes import LocalSAE
from interp_embed.spec.plan import EncodePlan

# (hidden size, layers, hooked layer, SAE latents): about 1B parameters on a GPU, a toy on a CPU.
SIZES = {"gpu": (2048, 16, 11, 32768), "small": (128, 4, 2, 1024)}


def build_models(tokenizer_dir: Path, work: Path, size: str, device: str) -> tuple[Path, Path]:
    hidden, layers, layer, d_sae = SIZES[size]
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=4 * hidden,
                         num_hidden_layers=layers, num_attention_heads=16, num_key_value_heads=8,
                         max_position_embeddings=4096, tie_word_embeddings=True)
    with torch.device(device):
        model = LlamaForCausalLM(config).to(torch.bfloat16)
    model_dir = work / "model"
    model.save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    del model
    sae = build_sae(TopKConfig(d_in=hidden, d_sae=d_sae, k=64, hook_layer=layer, model_name=str(model_dir)))
    with torch.no_grad():
        sae.W_enc.normal_(0, hidden ** -0.5)
        sae.W_dec.copy_(sae.W_enc.T)
    save_sae(sae, work / "sae")
    return model_dir, work / "sae"


def synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def ceiling(sae: LocalSAE, texts: list[str], batch_tokens: int) -> float:
    """Seconds for the reader alone: prefix + document sequences, length-sorted, under batch_tokens."""
    reader, _, _ = sae.load()
    sequences = sorted((reader.prefix_ids + reader.document_tokens(t).ids.tolist() for t in texts), key=len)
    batches, current = [], []
    for sequence in sequences:
        if current and (len(current) + 1) * len(sequence) > batch_tokens:
            batches.append(current)
            current = []
        current.append(sequence)
    batches.append(current)
    tensors = []
    for batch in batches:
        ids = torch.full((len(batch), len(batch[-1])), reader.pad_id)
        mask = torch.zeros_like(ids)
        for i, sequence in enumerate(batch):
            ids[i, : len(sequence)], mask[i, : len(sequence)] = torch.tensor(sequence), 1
        tensors.append((ids, mask))
    reader.forward(*tensors[0])  # warm-up: kernels and allocator
    synchronize(reader.device)
    start = time.perf_counter()
    for ids, mask in tensors:
        reader.forward(ids, mask)
    synchronize(reader.device)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokenizer", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--work", type=Path, default=Path("/tmp/gpu_check"))
    parser.add_argument("--repeat", type=int, default=20, help="copies of the 240-document demo sample")
    parser.add_argument("--small", action="store_true", help="a toy model on whatever device is there (CPU check)")
    args = parser.parse_args()
    shutil.rmtree(args.work, ignore_errors=True)
    args.work.mkdir(parents=True)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    results: dict = {"device": torch.cuda.get_device_name(0) if device == "cuda" else "cpu", "torch": torch.__version__}
    model_dir, sae_dir = build_models(args.tokenizer, args.work, "small" if args.small else "gpu", device)
    df = pd.concat([demo_sample()] * args.repeat, ignore_index=True)
    sae = LocalSAE(path=sae_dir, model=str(model_dir))
    reader, model, _ = sae.load()
    results.update(reader_device=str(reader.device), reader_dtype=str(reader.dtype), sae_dtype=str(model.W_enc.dtype),
                   documents=len(df))
    Dataset(df.head(50), sae=sae, save_path=args.work / "warm.iembed")  # warm-up, and the prefix check runs here
    for batch_tokens in (4096, 32768):
        path = args.work / f"b{batch_tokens}.iembed"
        synchronize(device)
        start = time.perf_counter()
        ds = Dataset(df, sae=sae, save_path=path, plan=EncodePlan(batch_tokens=batch_tokens))
        synchronize(device)
        ours = time.perf_counter() - start
        doc_tokens = int(ds._store.pooled().n_tokens.sum())
        template_tokens = doc_tokens + len(reader.prefix_ids) * len(df)
        ceiling_s = ceiling(sae, df.text.tolist(), batch_tokens)
        results[f"batch_tokens={batch_tokens}"] = {
            "ours_s": round(ours, 2), "ceiling_s": round(ceiling_s, 2),
            "ours_tokens_per_s": round(template_tokens / ours), "ceiling_tokens_per_s": round(template_tokens / ceiling_s),
            "ours_over_ceiling": round(ceiling_s / ours, 3), "document_tokens": doc_tokens,
            "template_tokens": template_tokens,
        }
        print(batch_tokens, results[f"batch_tokens={batch_tokens}"], flush=True)
    results["prefix_cache_ok"] = reader._prefix_cache_ok
    reloaded = Dataset.load_from_file(path)
    row = reloaded[7].latents("all").toarray()
    results["identities_hold"] = bool(
        np.array_equal(reloaded.latents("count").toarray()[7], (row > 0).sum(0))
        and np.array_equal(reloaded.latents("max").toarray()[7], row.max(0)))
    if device == "cuda":
        results["peak_gpu_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    args.out.write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
