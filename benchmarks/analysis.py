"""Benchmark (not a test): the analyses at the scale of a real corpus, and the original's diff for scale.

    .venv/bin/python benchmarks/analysis.py --docs 100000        # develop small; the target is --docs 1000000

Synthetic pooled activations shaped like real ones: ``--docs`` documents × ``--features`` features, about
``--active`` active per document, feature frequencies following a power law (a handful of features in
90% of documents, most in a few hundred). They are written once, through the store API
(``Store.create`` + ``Store.commit_chunk``, one token per document carrying its pooled activations), into
``--workdir``. Each measurement then runs in a process of its own on ``Dataset.load_from_file`` so that
its peak RSS (``os.wait4``) is its own:

- ``latents``: ``ds.latents("max")`` from the store (manifest, checksums, concatenation);
- ``diff``: ``diff_features`` between two halves of the dataset (views), latents included;
- ``correlations``: ``top_correlations(k=1000)`` over features active in at most ``--corr-max-coverage``
  of the documents and at least ``--corr-min-count`` of them (see the note printed with the figure);
- ``associate``: ``associate_features`` for a planted binary column (tests + L1 logistic model);
- ``original diff`` vs ``our diff`` at ``--small-docs`` documents: the original interp_embed's approach
  (one sparse row per document, ``vstack``, dense ``toarray()``, binarise, column means) against ours on
  the same rows, with the ratio.

Targets on a 2-core machine at 1,000,000 × 65,536: each measurement under 60 s and 8 GiB. Each child runs
under an address-space limit (``--memory-limit-gib``, RLIMIT_AS), so a measurement that overruns fails
cleanly (MemoryError) instead of pushing a shared machine out of memory; the others still run and print.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

GIB = 1024**3


def synthetic_latents(n_docs: int, n_features: int, mean_active: float, seed: int = 0,
                      exponent: float = 1.0, cap: float = 0.9) -> sp.csr_matrix:
    """Max-pooled activations with power-law feature frequencies, fully vectorised.

    Feature f is present in each document independently with probability p_f (∝ rank^-exponent, capped at
    ``cap``, scaled so the p_f sum to ``mean_active``). Each feature's documents are drawn as cumulative
    sums of geometric gaps, which yields sorted, distinct document ids without any per-feature loop.
    """
    rng = np.random.default_rng(seed)
    p = np.arange(1, n_features + 1, dtype=np.float64) ** -exponent
    for _ in range(50):  # rescale until the capped probabilities sum to mean_active
        p = np.minimum(cap, p * mean_active / p.sum())
    rng.shuffle(p)
    expected = p * n_docs
    draws = np.ceil(expected * 1.02 + 6 * np.sqrt(expected) + 10).astype(np.int64)
    gaps = rng.geometric(np.repeat(p, draws)).astype(np.int64)
    starts = np.r_[0, np.cumsum(draws)[:-1]]
    position = np.cumsum(gaps)
    position -= np.repeat(position[starts] - gaps[starts], draws) + 1  # restart the sum at each feature
    feature = np.repeat(np.arange(n_features, dtype=np.int32), draws)
    keep = position < n_docs
    del gaps
    position, feature = position[keep].astype(np.int32), feature[keep]
    indptr = np.r_[0, np.cumsum(np.bincount(feature, minlength=n_features))].astype(np.int64)
    values = (rng.exponential(1.0, position.size) + 0.05).astype(np.float16).astype(np.float32)
    return sp.csc_matrix((values, position, indptr), shape=(n_docs, n_features)).tocsr()


def write_store(X: sp.csr_matrix, path: Path, y: np.ndarray, chunk_docs: int = 50_000) -> None:
    """Write X through the store API: each document is one token whose activations are its pooled row."""
    from interp_embed.spec.plan import EncodePlan
    from interp_embed.store import EncodedDocument, EncoderRecord, Store

    n, d = X.shape
    documents = pd.DataFrame({"text": ["x"] * n, "y": y, "half": np.arange(n) % 2})
    # No reader or SAE made these activations: the store says so (it can be analysed, never resumed).
    encoder = EncoderRecord(source=None, reader=None, sae={"architecture": "synthetic (benchmarks/analysis.py)",
                                                           "d_sae": d}, sae_sha256=None)
    store = Store.create(path, documents, "text", encoder=encoder, plan=EncodePlan(chunk_tokens=chunk_docs),
                         skipped={}, labels=None)
    one_token, span = np.ones(1, np.int64), np.array([[0, 1]])
    with store.writing():
        for start in range(0, n, chunk_docs):
            stop = min(n, start + chunk_docs)
            docs = [EncodedDocument(row=r, token_ids=one_token, spans=span,
                                    act_ptr=np.array([0, X.indptr[r + 1] - X.indptr[r]]),
                                    act_features=X.indices[X.indptr[r]:X.indptr[r + 1]],
                                    act_values=X.data[X.indptr[r]:X.indptr[r + 1]].astype(np.float16))
                    for r in range(start, stop)]
            store.commit_chunk(start, stop, docs)


def planted_target(X: sp.csr_matrix, seed: int = 1) -> np.ndarray:
    """A binary column that depends on three mid-frequency features (plus noise)."""
    rng = np.random.default_rng(seed)
    counts = np.bincount(X.indices, minlength=X.shape[1])
    middle = np.flatnonzero((counts > 0.1 * X.shape[0]) & (counts < 0.5 * X.shape[0]))[:3]
    signal = np.asarray((X[:, middle] > 0).sum(axis=1)).ravel()
    return (rng.random(X.shape[0]) < 0.2 + 0.2 * signal).astype(np.int8)


def measure(name: str, args: argparse.Namespace) -> dict:
    """Run one measurement in this process; return its seconds and notes (the parent reads the RSS)."""
    from interp_embed import Dataset
    from interp_embed import analysis as A

    note = ""
    if name == "setup":  # a child too, so the parent stays small: a child's ru_maxrss starts at its parent's RSS
        t0 = time.perf_counter()
        X = synthetic_latents(args.docs, args.features, args.active)
        note = f"generated {args.docs:,} × {args.features:,} ({X.nnz / args.docs:.1f} active per document)"
        write_store(X, args.workdir / "store.iembed", planted_target(X))
        return {"seconds": time.perf_counter() - t0, "note": note + ", written through Store.commit_chunk"}
    if name in ("original_diff", "our_diff"):
        X = synthetic_latents(args.small_docs, args.features, args.active, seed=2)
        half = args.small_docs // 2
        t0 = time.perf_counter()
        if name == "original_diff":
            # The original: latents("binarize") vstacks one sparse row per document and densifies it.
            freqs = []
            for part in (X[:half], X[half:]):
                rows = [part[i] for i in range(part.shape[0])]
                t0 = t0 if freqs else time.perf_counter()  # building the row list is the original's storage
                dense = sp.vstack(rows).toarray()
                binary = (dense > 0).astype(np.float32)
                freqs.append(binary.sum(axis=0) / binary.shape[0])
            _ = freqs[0] - freqs[1]
        else:
            P_a, P_b = A.inputs.presence(X[:half]), A.inputs.presence(X[half:])
            table = A.diff_counts(A.inputs.feature_counts(P_a), half, A.inputs.feature_counts(P_b),
                                  X.shape[0] - half)
            note = f"{len(table)} features tested"
        return {"seconds": time.perf_counter() - t0, "note": note}

    ds = Dataset.load_from_file(args.workdir / "store.iembed")
    t0 = time.perf_counter()
    if name == "latents":
        X = ds.latents("max")
        note = f"{X.shape[0]:,} × {X.shape[1]:,}, {X.nnz:,} nonzeros"
    elif name == "diff":
        half = ds.pandas()["half"].to_numpy() == 1
        table = A.diff_features(ds[half], ds[~half])
        note = f"{len(table):,} features tested, {(table.q_value < 0.05).sum()} at q < 0.05 (random halves)"
    elif name == "correlations":
        pairs = A.top_correlations(ds, k=1000, min_count=args.corr_min_count,
                                   max_coverage=args.corr_max_coverage)
        note = (f"top {len(pairs)} pairs, NPMI {pairs.npmi.min():.3f}..{pairs.npmi.max():.3f}; candidates: "
                f"features in >= {args.corr_min_count} docs and <= {args.corr_max_coverage:.0%} of docs")
    elif name == "associate":
        table = A.associate_features(ds, target="y")
        model = table.attrs["model"]
        note = (f"{len(table):,} features tested, held-out AUC {model['held_out']:.3f}, "
                f"{len(model['selected'])} selected")
    else:
        raise ValueError(name)
    return {"seconds": time.perf_counter() - t0, "note": note}


def run_child(name: str, args: argparse.Namespace) -> dict:
    """Run one measurement in a child process; its peak RSS comes from os.wait4 on exactly that child.

    A child that fails (MemoryError under the address-space limit, or killed after ``--time-limit``) yields a
    result with an ``error`` (its wait status and last stderr line) instead of stopping the benchmark.
    """
    command = [sys.executable, __file__, "--measure", name, "--workdir", str(args.workdir), "--docs", str(args.docs),
               "--features", str(args.features), "--active", str(args.active), "--small-docs", str(args.small_docs),
               "--corr-min-count", str(args.corr_min_count), "--corr-max-coverage", str(args.corr_max_coverage),
               "--memory-limit-gib", str(args.memory_limit_gib)]
    t0 = time.perf_counter()
    with tempfile.TemporaryFile("w+") as err:  # a file, not a pipe: the child never blocks on it
        child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=err, text=True)
        timer = threading.Timer(args.time_limit, child.kill)  # a runaway measurement ends; the rest still run
        timer.start()
        out = child.stdout.read()
        _, status, usage = os.wait4(child.pid, 0)
        timer.cancel()
        err.seek(0)
        last = (err.read().strip().splitlines() or ["(no stderr)"])[-1]
    peak = usage.ru_maxrss * 1024 / GIB  # ru_maxrss is in KiB on Linux
    if status != 0 or not out.strip():
        return {"seconds": time.perf_counter() - t0, "peak_rss_gib": peak,
                "error": f"wait status {status}: {last}"}
    result = json.loads(out.strip().splitlines()[-1])
    result["peak_rss_gib"] = peak
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", type=int, default=1_000_000)
    parser.add_argument("--features", type=int, default=65_536)
    parser.add_argument("--active", type=float, default=100.0)
    parser.add_argument("--small-docs", type=int, default=4_000, help="size for the original-vs-ours diff")
    parser.add_argument("--corr-min-count", type=int, default=100)
    parser.add_argument("--corr-max-coverage", type=float, default=0.01)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/interp_embed-bench-analysis"))
    parser.add_argument("--keep", action="store_true", help="keep the synthetic store for another run")
    parser.add_argument("--memory-limit-gib", type=float, default=12.0,
                        help="address-space limit of each measurement's process (RLIMIT_AS)")
    parser.add_argument("--time-limit", type=float, default=600.0, help="seconds before a measurement is killed")
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        limit = int(args.memory_limit_gib * GIB)
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        print(json.dumps(measure(args.measure, args)))
        return

    shape = args.workdir / "shape.json"  # written once the store is complete
    reuse = shape.exists() and json.loads(shape.read_text()) == [args.docs, args.features, args.active]
    if not reuse:
        shutil.rmtree(args.workdir, ignore_errors=True)
        args.workdir.mkdir(parents=True)
        r = run_child("setup", args)
        if "error" in r:
            raise SystemExit(f"could not write the synthetic store: {r['error']}")
        shape.write_text(json.dumps([args.docs, args.features, args.active]))
        print(f"{r['note']} in {r['seconds']:.1f} s (setup, not timed)")
    print(f"{'measurement':<16}{'seconds':>9}{'peak RSS GiB':>14}  note")
    results = {}
    for name in ("latents", "diff", "correlations", "associate", "original_diff", "our_diff"):
        r = results[name] = run_child(name, args)
        if "error" in r:
            print(f"{name:<16}{r['seconds']:>9.2f}{r['peak_rss_gib']:>14.2f}  FAILED ({r['error']})", flush=True)
            continue
        flag = "" if r["seconds"] < 60 and r["peak_rss_gib"] < 8 else "  OVER TARGET"
        print(f"{name:<16}{r['seconds']:>9.2f}{r['peak_rss_gib']:>14.2f}  {r['note']}{flag}", flush=True)
    original, ours = results["original_diff"], results["our_diff"]
    if "error" in original or "error" in ours:
        print("original/ours diff ratio: not available (a measurement failed)")
    else:
        print(f"original/ours diff at {args.small_docs:,} documents: {original['seconds'] / ours['seconds']:.1f}x "
              f"the time, {original['peak_rss_gib'] / ours['peak_rss_gib']:.1f}x the peak RSS "
              "(whole process, Python and libraries included)")
    if not args.keep:
        shutil.rmtree(args.workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
