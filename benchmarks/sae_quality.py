"""Quality of an SAE on its reader, on held-out text not used in training.

Prints: fraction of variance unexplained (FVU), L0, dead latents over the held-out tokens; the increase in
the reader's next-token cross-entropy when the SAE reconstruction replaces the hooked residual stream,
next to the increase from zero-ablating it; and how well the best single feature separates German from
English Debian fortunes (balanced accuracy of "feature active anywhere in the document").

    python scripts/build_corpus.py                       # once: the held-out split lives in .corpus/
    apt-get install fortunes fortunes-de
    python benchmarks/sae_quality.py                     # the shipped SAE; 1M held-out tokens (CPU: ~20 min)
    python benchmarks/sae_quality.py --tokens 100000 --ce-tokens 20000 --device cuda
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from fortunes import FORTUNES_DIR, load_fortunes  # noqa: E402

from interp_embed.architectures import SparseAutoencoder, load_sae  # noqa: E402
from interp_embed.files import FEATURE_LABELS  # noqa: E402
from interp_embed.reading.activations import cut_windows, read_windows  # noqa: E402
from interp_embed.reading.reader import Reader, resolve_model_path  # noqa: E402
from interp_embed.spec.reader import BUNDLED_READER, ReaderSpec  # noqa: E402
from interp_embed.train.evaluate import reconstruction_quality  # noqa: E402

SHIPPED = ROOT / "src" / "interp_embed" / "data" / "default_sae"
CONTEXT = 512  # documents are read in windows of this many tokens, as the shipped SAE was trained


def heldout_docs(corpus: Path, tokens: int) -> list[np.ndarray]:
    import pandas as pd

    if not corpus.is_file():
        sys.exit(f"{corpus} is missing: build it with `python scripts/build_corpus.py`")
    table = pd.read_parquet(corpus, columns=["ids", "split"])
    docs, total = [], 0
    for ids in table[table.split == "heldout"].ids:
        if total >= tokens:
            break
        docs.append(np.asarray(ids, dtype=np.int64))
        total += len(ids)
    return docs


@torch.inference_mode()
def cross_entropy(model, layer: int, prefix: list[int], docs: list[np.ndarray], sae: SparseAutoencoder,
                  device: str, batch_tokens: int = 4096) -> dict[str, float]:
    """Mean next-token CE over document tokens: clean, with the SAE's reconstruction, with zeros at ``layer``."""
    mode = {"patch": None}
    p = len(prefix)

    def hook(module, inputs, output):
        hidden = output[0] if isinstance(output, tuple) else output
        if mode["patch"] is None:
            return output
        doc = hidden[:, p:]  # only document tokens are patched, as only they are encoded
        new = torch.zeros_like(doc) if mode["patch"] == "zero" else sae(doc.float()).to(doc.dtype)
        hidden = torch.cat([hidden[:, :p], new], dim=1)
        return (hidden, *output[1:]) if isinstance(output, tuple) else hidden

    handle = model.model.layers[layer].register_forward_hook(hook)
    sums = {"clean": 0.0, "sae": 0.0, "zero": 0.0}
    count = 0
    try:
        order = sorted(range(len(docs)), key=lambda i: -len(docs[i]))
        start = 0
        while start < len(order):
            width = p + len(docs[order[start]])
            group = order[start : start + max(1, batch_tokens // width)]
            start += len(group)
            ids = torch.full((len(group), width), 0, dtype=torch.long)
            mask = torch.zeros_like(ids)
            for r, i in enumerate(group):
                seq = prefix + docs[i].tolist()
                ids[r, : len(seq)], mask[r, : len(seq)] = torch.tensor(seq), 1
            ids, mask = ids.to(device), mask.to(device)
            # Predictions of document tokens 1..n-1 from document positions 0..n-2.
            targets = ids[:, p + 1 :]
            valid = mask[:, p + 1 :].bool()
            for name in sums:
                mode["patch"] = None if name == "clean" else name
                logits = model(input_ids=ids, attention_mask=mask, use_cache=False).logits[:, p:-1].float()
                ce = torch.nn.functional.cross_entropy(logits.transpose(1, 2), targets, reduction="none")
                sums[name] += float(ce[valid].sum())
            count += int(valid.sum())
    finally:
        handle.remove()
    return {k: v / count for k, v in sums.items()} | {"tokens": count}


@torch.inference_mode()
def max_pooled(reader: Reader, sae: SparseAutoencoder, texts: list[str], device: str) -> np.ndarray:
    """(documents, d_sae) maximum activation of each feature over each document's tokens."""
    docs = [reader.document_tokens(t).ids for t in texts]
    out = np.zeros((len(docs), sae.cfg.d_sae), dtype=np.float32)
    for windows, x in read_windows(reader, cut_windows(docs, CONTEXT), batch_tokens=8192):
        acts = sae.encode(x.to(sae.W_enc.device, torch.float32)).cpu().numpy()
        bounds = np.cumsum([0] + [w.kept for w in windows])
        for row, window in enumerate(windows):
            out[window.doc] = np.maximum(out[window.doc], acts[bounds[row] : bounds[row + 1]].max(0))
    return out


def best_feature(active: np.ndarray, is_german: np.ndarray) -> tuple[int, float]:
    """The feature whose 'active in the document' best predicts German, by balanced accuracy."""
    tpr = active[is_german].mean(0)
    tnr = 1 - active[~is_german].mean(0)
    bal = (tpr + tnr) / 2
    f = int(bal.argmax())
    return f, float(bal[f])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sae", type=Path, default=SHIPPED)
    ap.add_argument("--corpus", type=Path, default=ROOT / ".corpus" / "corpus.parquet")
    ap.add_argument("--tokens", type=int, default=1_000_000, help="held-out tokens for FVU, L0 and dead latents")
    ap.add_argument("--ce-tokens", type=int, default=20_000, help="held-out tokens for the cross-entropy test")
    ap.add_argument("--fortunes", type=int, default=400, help="fortunes per language")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    torch.manual_seed(0)
    sae = load_sae(args.sae, device=args.device)
    reader = Reader(ReaderSpec(model=BUNDLED_READER, layer=sae.cfg.hook_layer), device=args.device, dtype=torch.float32)
    print(f"SAE {args.sae}: {sae.cfg}")

    started = time.perf_counter()
    docs = heldout_docs(args.corpus, args.tokens)
    q = reconstruction_quality(sae, read_windows(reader, cut_windows(docs, CONTEXT), batch_tokens=8192))
    seconds = time.perf_counter() - started
    print(f"held-out tokens      {q.tokens:>10,}   ({q.tokens / seconds:,.0f} tokens/s reader + SAE)")
    print(f"FVU                  {q.fvu:>10.4f}   (target <= 0.20)")
    print(f"L0                   {q.l0:>10.1f}")
    print(f"dead latents         {q.dead_fraction:>10.2%}   (never active in those tokens; target <= 5%)")

    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(resolve_model_path(BUNDLED_READER), dtype=torch.float32).to(args.device).eval()
    ce = cross_entropy(model, sae.cfg.hook_layer, list(reader.prefix_ids), heldout_docs(args.corpus, args.ce_tokens), sae, args.device)
    d_sae, d_zero = ce["sae"] - ce["clean"], ce["zero"] - ce["clean"]
    print(f"next-token CE        {ce['clean']:>10.4f}   nats/token over {ce['tokens']:,} held-out tokens")
    print(f"  + SAE reconstruction {d_sae:>+8.4f}   ({ce['sae']:.4f})")
    print(f"  + zero ablation      {d_zero:>+8.4f}   ({ce['zero']:.4f})")
    print(f"  CE loss recovered  {1 - d_sae / d_zero:>10.2%}")

    rng = np.random.default_rng(0)
    english = load_fortunes(FORTUNES_DIR)
    german = load_fortunes(FORTUNES_DIR / "de")
    english = [english[i] for i in rng.choice(len(english), args.fortunes, replace=False)]
    german = [german[i] for i in rng.choice(len(german), args.fortunes, replace=False)]
    active = max_pooled(reader, sae, english + german, args.device) > 0
    is_german = np.array([False] * len(english) + [True] * len(german))
    pick = rng.permutation(len(is_german)) < len(is_german) // 2  # choose the feature on one half, score on the other
    f, bal_in = best_feature(active[pick], is_german[pick])
    test = ~pick
    tpr, tnr = active[test & is_german, f].mean(), 1 - active[test & ~is_german, f].mean()
    f_all, bal_all = best_feature(active, is_german)
    print(f"German vs English fortunes ({args.fortunes} each): feature {f} chosen on half, balanced accuracy on the "
          f"other half {(tpr + tnr) / 2:.3f} (German active {tpr:.0%}, English active {1 - tnr:.0%}); "
          f"best on all: feature {f_all}, {bal_all:.3f}")
    labels_file = args.sae / FEATURE_LABELS
    if labels_file.is_file():
        import json

        print(f"  label of {f}: {json.loads(labels_file.read_text())[str(f)]}")


if __name__ == "__main__":
    main()
