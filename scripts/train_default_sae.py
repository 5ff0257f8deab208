"""Rebuild the shipped default SAE from scratch: corpus -> harvest -> train -> held-out quality -> labels -> files.

    python scripts/train_default_sae.py                      # everything on this machine (CPU: hours; GPU: minutes)

The same recipe in three steps when the heavy part runs on a GPU machine that cannot hold the 94 MB reader:

    python scripts/train_default_sae.py pack .gpu            # here: reader blocks 0..15 + token ids, ~60 MB
    python scripts/train_default_sae.py from-pack .gpu OUT   # there: train, evaluate, label; writes OUT/ (< 16 MB files)
    python scripts/train_default_sae.py assemble OUT         # here: OUT/ -> src/interp_embed/data/default_sae/

Relabel the shipped SAE without retraining (reader + SAE over the labelling split: 8-17 minutes on 2 shared CPU cores):

    python scripts/train_default_sae.py label [--max-tokens N]
"""
from __future__ import annotations

import argparse
import json
import logging
import lzma
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import torch  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402

from interp_embed.files import (FEATURE_LABELS, FEATURE_SUMMARIES, SAE_CONFIG, SAE_WEIGHTS,  # noqa: E402
                                TRAINING_REPORT, TRAINING_STATE, write_atomically)
from interp_embed.architectures import load_sae, save_sae  # noqa: E402
from interp_embed.labeling.driver import label_codes  # noqa: E402
from interp_embed.labeling.offline import write_labels  # noqa: E402
from interp_embed.reading.activations import cut_windows, read_windows  # noqa: E402
from interp_embed.reading.reader import Reader  # noqa: E402
from interp_embed.spec.reader import BUNDLED_READER, ReaderSpec  # noqa: E402
from interp_embed.train import HarvestConfig, TrainConfig, train_sae  # noqa: E402
from interp_embed.train.evaluate import reconstruction_quality  # noqa: E402

logger = logging.getLogger("train_default_sae")
CORPUS = ROOT / ".corpus" / "corpus.parquet"
SHIPPED = ROOT / "src" / "interp_embed" / "data" / "default_sae"
LAYER = 15
# The whole training split (4.4M tokens) sits in one shuffle buffer, harvested once: ~10 GB of RAM or GPU
# memory. A smaller --buffer-tokens changes only the shuffling order.
HARVEST = HarvestConfig(model=BUNDLED_READER, layer=LAYER, role="assistant", forward_tokens=16_384,
                        buffer_tokens=8_000_000, max_doc_tokens=512)
TRAIN = TrainConfig(d_sae=8192, k=32, k_aux=256, auxk_alpha=1 / 32, dead_tokens=1_000_000, lr=4e-4,
                    warmup_steps=200, decay_fraction=0.2, batch_size=4096, epochs=8, seed=0, checkpoint_every=1000,
                    log_every=100)
SPLITS = ("train", "heldout", "labelling")


def load_splits(corpus: Path) -> dict[str, list[np.ndarray]]:
    import pandas as pd

    table = pd.read_parquet(corpus, columns=["ids", "split"])
    return {s: [np.asarray(i, dtype=np.int64) for i in table[table.split == s].ids] for s in SPLITS}


def recipe(splits: dict[str, list[np.ndarray]], reader: Reader, work: Path, ship: Path, buffer_tokens: int) -> dict:
    """Train on the train split, measure on heldout, label on labelling; write the SAE folder ``ship``."""
    device = str(reader.device)
    harvest = HarvestConfig(**{**HARVEST.to_json(), "buffer_tokens": buffer_tokens})
    train = TrainConfig(**{**TRAIN.to_json(), "device": device})
    started = time.perf_counter()
    sae = train_sae(work / "train", harvest, train, docs=splits["train"], reader=reader)
    train_seconds = time.perf_counter() - started
    state = json.loads((work / "train" / TRAINING_STATE).read_text())

    started = time.perf_counter()
    heldout = cut_windows(splits["heldout"], harvest.max_doc_tokens)
    quality = reconstruction_quality(sae, read_windows(reader, heldout, harvest.forward_tokens))
    eval_seconds = time.perf_counter() - started
    logger.info("held-out: %s", quality)

    started = time.perf_counter()
    labels, summaries, about = label_codes(sae, reader, splits["labelling"])
    label_seconds = time.perf_counter() - started

    ship.mkdir(parents=True, exist_ok=True)
    shipped = load_sae(work / "train" / "sae")
    shipped.cfg.extra.update({"dataset_path": "scripts/build_corpus.py (Debian docs, man pages, code, Bible; en/de/es/fr/it/pt)",
                              "training_tokens": int(state["corpus_tokens"]) * train.epochs, "context_size": 512})
    save_sae(shipped, ship, dtype=torch.float16)
    write_labels(ship, labels, summaries, about)
    metrics = {"heldout": quality.to_json(), "live_labelled_features": len(labels),
               "train_tokens_per_epoch": state["corpus_tokens"], "steps": state["step"],
               "seconds": {"train_incl_harvest": round(train_seconds, 1), "heldout_eval": round(eval_seconds, 1),
                           "labels": round(label_seconds, 1)},
               "train_tokens_per_second": round(state["corpus_tokens"] * train.epochs / train_seconds),
               "device": device, "harvest": harvest.to_json(), "train": train.to_json(), "curve": state["log"]}
    write_atomically(ship / TRAINING_REPORT, json.dumps(metrics, indent=1))
    return metrics


def cmd_all(args) -> None:
    if not args.corpus.is_file():
        subprocess.run([sys.executable, str(ROOT / "scripts" / "build_corpus.py"), "--out", str(args.corpus)], check=True)
    reader = Reader(ReaderSpec(model=BUNDLED_READER, layer=LAYER), dtype=torch.float32)
    recipe(load_splits(args.corpus), reader, args.work, args.ship, args.buffer_tokens)


def cmd_label(args) -> None:
    """Relabel the shipped SAE on the labelling split (its weights are only read), e.g. after a labeller fix."""
    docs = load_splits(args.corpus)["labelling"]
    if args.max_tokens:  # the longest prefix of documents within the budget, for a slow machine
        docs = docs[: int(np.searchsorted(np.cumsum([len(d) for d in docs]), args.max_tokens, side="right"))]
    reader = Reader(ReaderSpec(model=BUNDLED_READER, layer=LAYER), dtype=torch.float32)
    sae = load_sae(args.ship)
    started = time.perf_counter()
    labels, summaries, about = label_codes(sae, reader, docs)
    write_labels(args.ship, labels, summaries, about)
    logger.info("%d features labelled from %d tokens in %.0f s", len(labels), about["labelling_tokens"],
                time.perf_counter() - started)


def cmd_pack(args) -> None:
    """Reader blocks 0..15 (GGUF bytes), used embedding rows, lzma'd token ids and CPU reference activations."""
    from interp_embed.reading.reader import bundled_gguf_path, resolve_model_path
    from compact_reader import pack_reader

    splits = load_splits(args.corpus)
    every = np.concatenate([d for s in SPLITS for d in splits[s]])
    reader = Reader(ReaderSpec(model=BUNDLED_READER, layer=LAYER), device="cpu", dtype=torch.float32)
    used = np.concatenate([every, reader.prefix_ids, [reader.pad_id]])
    pack_reader(bundled_gguf_path(), resolve_model_path(BUNDLED_READER), LAYER, used, args.dir)
    lengths = {s: np.array([len(d) for d in splits[s]], dtype=np.int64) for s in SPLITS}
    (args.dir / "ids.u16.xz").write_bytes(lzma.compress(every.astype(np.uint16).tobytes()))
    save_file({f"lengths.{s}": torch.from_numpy(lengths[s]) for s in SPLITS}, str(args.dir / "lengths.safetensors"))
    # Reference hidden states of a few held-out documents, to measure the remote reader's numerical error.
    refs = splits["heldout"][:1]
    windows = cut_windows(refs, HARVEST.max_doc_tokens)
    hidden = torch.cat([h for _, h in read_windows(reader, windows, HARVEST.forward_tokens)])
    save_file({"ids": torch.from_numpy(np.concatenate(refs)), "lengths": torch.tensor([len(d) for d in refs]),
               "hidden": hidden.contiguous()}, str(args.dir / "reference.safetensors"))
    size = sum(p.stat().st_size for p in args.dir.iterdir())
    logger.info("pack %s: %.1f MiB", args.dir, size / 2**20)


def cmd_from_pack(args) -> None:
    """On the GPU machine: rebuild the reader, check it against the CPU reference, run the recipe, write OUT."""
    from compact_reader import unpack_reader

    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    model_dir = unpack_reader(args.dir, args.work / "reader")
    reader = Reader(ReaderSpec(model=str(model_dir), layer=LAYER), dtype=torch.float32)
    lengths = load_file(str(args.dir / "lengths.safetensors"))
    ids = np.frombuffer(lzma.decompress((args.dir / "ids.u16.xz").read_bytes()), dtype=np.uint16).astype(np.int64)
    splits, start = {}, 0
    for s in SPLITS:
        ls = lengths[f"lengths.{s}"].numpy()
        ends = start + np.cumsum(ls)
        splits[s] = [ids[e - n : e] for e, n in zip(ends, ls)]
        start = int(ends[-1])
    if args.limit:  # a smoke test on a slice
        splits = {s: d[: args.limit] for s, d in splits.items()}

    ref = load_file(str(args.dir / "reference.safetensors"))
    ref_docs = np.split(ref["ids"].numpy(), np.cumsum(ref["lengths"].numpy())[:-1])
    windows = cut_windows(ref_docs, HARVEST.max_doc_tokens)
    hidden = torch.cat([h for _, h in read_windows(reader, windows, HARVEST.forward_tokens)]).float().cpu()
    rel_error = float((hidden - ref["hidden"]).norm() / ref["hidden"].norm())
    logger.info("reader on %s vs CPU reference: relative error %.2e", reader.device, rel_error)

    started = time.perf_counter()
    metrics = recipe(splits, reader, args.work, args.work / "ship", args.buffer_tokens)
    metrics["reader_relative_error_vs_cpu"] = rel_error
    metrics["seconds"]["recipe_total"] = round(time.perf_counter() - started, 1)
    if torch.cuda.is_available():
        metrics["gpu"] = torch.cuda.get_device_name()
        metrics["gpu_peak_memory_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    ship = args.work / "ship"
    weights = load_file(str(ship / SAE_WEIGHTS))  # one file is > 16 MiB: send it in two
    save_file({"W_enc": weights["W_enc"]}, str(out / "sae_enc.safetensors"))
    save_file({k: v for k, v in weights.items() if k != "W_enc"}, str(out / "sae_rest.safetensors"))
    for name in (SAE_CONFIG, FEATURE_LABELS, FEATURE_SUMMARIES):
        (out / name).write_bytes((ship / name).read_bytes())
    (out / TRAINING_REPORT).write_text(json.dumps(metrics, indent=1))
    print(json.dumps({k: v for k, v in metrics.items() if k != "curve"}, indent=1))


def cmd_assemble(args) -> None:
    """Join what ``from-pack`` wrote into the shipped SAE folder (SAELens layout + labels)."""
    src, ship = args.out, args.ship
    ship.mkdir(parents=True, exist_ok=True)
    weights = {**load_file(str(src / "sae_enc.safetensors")), **load_file(str(src / "sae_rest.safetensors"))}
    write_atomically(ship / SAE_WEIGHTS, lambda tmp: save_file(weights, str(tmp)))
    for name in (SAE_CONFIG, FEATURE_LABELS, FEATURE_SUMMARIES, TRAINING_REPORT):
        write_atomically(ship / name, (src / name).read_bytes())
    sae = load_sae(ship)
    logger.info("assembled %s: %s, d_sae=%d, k=%s", ship, sae.cfg.architecture, sae.cfg.d_sae, sae.cfg.k)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", type=Path, default=CORPUS)
    ap.add_argument("--work", type=Path, default=ROOT / "runs" / "default_sae")
    ap.add_argument("--ship", type=Path, default=SHIPPED)
    ap.add_argument("--buffer-tokens", type=int, default=HARVEST.buffer_tokens)
    sub = ap.add_subparsers(dest="command")
    p = sub.add_parser("label")
    p.add_argument("--max-tokens", type=int, default=0, help="label on this many tokens of the split (0: all)")
    p = sub.add_parser("pack")
    p.add_argument("dir", type=Path)
    p = sub.add_parser("from-pack")
    p.add_argument("dir", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument("--limit", type=int, default=0, help="documents per split (smoke test)")
    p = sub.add_parser("assemble")
    p.add_argument("out", type=Path)
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    {"label": cmd_label, "pack": cmd_pack, "from-pack": cmd_from_pack, "assemble": cmd_assemble, None: cmd_all}[args.command](args)


if __name__ == "__main__":
    main()
