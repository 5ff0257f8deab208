"""Benchmark (not a test): analyses of a store larger than the memory they may use (``--out-of-core``).

    .venv/bin/python benchmarks/scale.py --out-of-core                     # 10,000,000 documents × 65,536 features
    .venv/bin/python benchmarks/scale.py --out-of-core --documents 1000000 # develop small

``--out-of-core`` builds a compact store (pooled activations only, ``EncodePlan(token_level=False)``) of
``--documents`` synthetic documents × ``--features`` features directly with the store's chunk writer
(``Store.commit_pooled``), chunk by chunk, so generating it is bounded too: power-law feature frequencies with
about ``--active`` active features per document (benchmarks/analysis.py's generator, per chunk), and a binary
column ``group`` that a few planted features follow. It then runs, each in a process of its own so that its peak
RSS (``os.wait4``) is its own, with ``memory_limit=--memory-limit``:

- ``diff``: ``ds[group == 1].diff(ds[group == 0], memory_limit=...)`` (counts, Fisher tests, grouping);
- ``correlations``: ``ds.top_correlations(k=100, features=..., memory_limit=...)`` over the
  ``--correlation-features`` most frequent features (every pair of them counted, passes over the store as the
  bound requires);

and prints the bound, each peak RSS and each wall time.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).parent))
from analysis import synthetic_latents  # noqa: E402  (the generator of benchmarks/analysis.py)

GIB = 2**30
PLANTED = 5
"""Features planted in the documents of group 1 (present in half of them), so the diff finds something."""


def build_compact_store(path: Path, n_documents: int, d_sae: int, active: float, chunk_documents: int,
                        seed: int = 0) -> None:
    """A compact store of synthetic pooled activations, written chunk by chunk with the store's chunk writer."""
    import scipy.sparse as sp

    from interp_embed.encode.config import EncodePlan
    from interp_embed.store import EncoderRecord, Store
    from interp_embed.store.pooling import PooledStatistics

    rng = np.random.default_rng(seed)
    group = (rng.random(n_documents) < 0.5).astype(np.int8)
    documents = pd.DataFrame({"text": ["x"] * n_documents, "group": group})
    encoder = EncoderRecord(source=None, reader=None, sae={"architecture": "synthetic (benchmarks/scale.py)",
                                                           "d_sae": d_sae}, sae_sha256=None)
    plan = EncodePlan(chunk_tokens=chunk_documents, token_level=False)
    store = Store.create(path, documents, "text", encoder=encoder, plan=plan, skipped={}, labels=None)
    del documents
    planted = np.arange(PLANTED) * (d_sae // PLANTED) + 7
    with store.writing():
        for start in range(0, n_documents, chunk_documents):
            stop = min(n_documents, start + chunk_documents)
            n = stop - start
            X = synthetic_latents(n, d_sae, active, seed=seed + 1 + start // chunk_documents)
            chunk_rng = np.random.default_rng([seed, start])
            rows = np.repeat(np.flatnonzero(group[start:stop]), PLANTED)
            hit = chunk_rng.random(rows.size) < 0.5
            columns = np.tile(planted, rows.size // PLANTED)[hit]
            plant = sp.csr_matrix((np.ones(columns.size, np.float32), (rows[hit], columns)), shape=(n, d_sae))
            X = X.maximum(plant).tocsr()
            X.sort_indices()
            n_tokens = chunk_rng.integers(20, 300, n)
            count = np.minimum(chunk_rng.geometric(0.6, X.nnz), np.repeat(n_tokens, np.diff(X.indptr)))
            value = X.data.astype(np.float16).astype(np.float32)
            stats = PooledStatistics(indptr=X.indptr.astype(np.int64), features=X.indices, max=value,
                                     sum=value * count, count=count.astype(np.int32), n_tokens=n_tokens)
            store.commit_pooled(start, stop, np.arange(start, stop), n_tokens, stats)
            del X, plant, stats


def measure(name: str, store: Path, memory_limit: str, correlation_features: int) -> dict:
    """One analysis on the store, in this process; returns its seconds and what it found."""
    from interp_embed import Dataset

    ds = Dataset.load_from_file(store)
    t0 = time.perf_counter()
    if name == "diff":
        group = ds.pandas()["group"].to_numpy() == 1
        table = ds[group].diff(ds[~group], memory_limit=memory_limit)
        note = f"{int((table.q_value < 0.05).sum())} features with q < 0.05 of {len(table)} tested"
    elif name == "correlations":
        from interp_embed.analysis.blockwise import PresenceBlocks

        # The candidates, the most frequent features, take one pass of their own (counted in the time).
        counts = PresenceBlocks.of(ds, "ds", "max", 0.0, ds_limit(memory_limit)).counts
        features = np.sort(np.argsort(-counts, kind="stable")[:correlation_features])
        table = ds.top_correlations(k=100, features=features, memory_limit=memory_limit)
        note = f"{table.attrs['n_tests']:,} pairs tested; best NPMI {table.npmi.iloc[0]:.3f}"
    else:
        raise ValueError(name)
    return {"seconds": time.perf_counter() - t0, "note": note,
            "self_peak_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GIB}


def ds_limit(memory_limit: str) -> int:
    from interp_embed.validation import check_memory_limit

    return check_memory_limit(memory_limit)


def run_child(name: str, args: argparse.Namespace) -> dict:
    """Run one measurement in a child process; its peak RSS comes from os.wait4 on exactly that child."""
    command = [sys.executable, __file__, "--measure", name, "--store", str(args.store), "--memory-limit",
               args.memory_limit, "--correlation-features", str(args.correlation_features)]
    t0 = time.perf_counter()
    child = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    out = child.stdout.read()
    _, status, usage = os.wait4(child.pid, 0)
    result = json.loads(out.strip().splitlines()[-1]) if status == 0 and out.strip() else {"error": status}
    result.update(peak_rss_gib=usage.ru_maxrss * 1024 / GIB, wall_seconds=time.perf_counter() - t0)
    return result


def out_of_core(args: argparse.Namespace) -> None:
    """Build the compact store (unless it exists) and run the out-of-core analyses under the memory bound."""
    needed = args.documents * args.active * 8  # about 6 bytes per pooled entry, with room to spare
    free = shutil.disk_usage(args.store.parent).free
    print(f"disk: {free / 1e9:.0f} GB free at {args.store.parent}; the store needs about {needed / 1e9:.1f} GB")
    if needed > free:
        sys.exit(f"not enough disk for {args.documents:,} documents; pass a smaller --documents")
    if not args.store.exists():
        t0 = time.perf_counter()
        build_compact_store(args.store, args.documents, args.features, args.active, args.chunk_documents)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GIB
        print(f"built {args.store}: {args.documents:,} documents × {args.features:,} features in "
              f"{time.perf_counter() - t0:.0f} s (peak RSS of the builder {peak:.2f} GiB)")
    from interp_embed.store import Store

    store = Store.open(args.store)
    chunks = store.manifest.chunks
    size = sum(c.bytes for c in chunks)
    entries = sum(c.pooled_entries for c in chunks)
    print(f"store: {store.n_documents:,} documents, {entries / store.n_documents:.1f} active features per document, "
          f"{size / 1e9:.2f} GB on disk ({size / store.n_documents:.0f} bytes per document), {len(chunks)} chunks; "
          f"its latents in memory would need about {entries * 32 / GIB:.1f} GiB")
    print(f"memory_limit = {args.memory_limit} ({ds_limit(args.memory_limit) / GIB:.2f} GiB)")
    for name in ("diff", "correlations"):
        result = run_child(name, args)
        print(f"{name:>12}: peak RSS {result['peak_rss_gib']:.2f} GiB (bound {ds_limit(args.memory_limit) / GIB:.2f} "
              f"GiB), {result['wall_seconds']:.0f} s wall, {result.get('seconds', float('nan')):.0f} s analysis; "
              f"{result.get('note', result.get('error'))}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out-of-core", action="store_true", help="run the out-of-core benchmark")
    parser.add_argument("--documents", type=int, default=10_000_000)
    parser.add_argument("--features", type=int, default=65_536)
    parser.add_argument("--active", type=float, default=40.0, help="mean active features per document")
    parser.add_argument("--chunk-documents", type=int, default=50_000)
    parser.add_argument("--memory-limit", default="2GB")
    parser.add_argument("--correlation-features", type=int, default=2048)
    parser.add_argument("--store", type=Path, default=Path("/tmp/scale_out_of_core.iembed"))
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure, args.store, args.memory_limit, args.correlation_features)))
    elif args.out_of_core:
        out_of_core(args)
    else:
        parser.error("choose --out-of-core")


if __name__ == "__main__":
    main()
