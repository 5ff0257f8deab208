"""Benchmarks (not tests) of scale: encoding on Ray workers (``--ray``) and analyses of a store larger than
the memory they may use (``--out-of-core``).

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

    .venv/bin/python benchmarks/scale.py --ray                      # 96 fortunes, chunks of ~1,000 tokens
    .venv/bin/python benchmarks/scale.py --ray --documents 1000

``--ray`` encodes one deterministic sample of Debian fortunes (benchmarks/fortunes.py; ``apt-get install
fortunes``) with the bundled reader and SAE three ways, through the public API: in this process
(``Dataset(df, plan=...)``), on 1 Ray worker and on 2 (``engine="ray", num_workers=n``, each starting and stopping
a Ray instance on this machine, as a user's call does). A worker gets an equal share of the CPUs (2 workers on 2
cores: one torch thread each; 1 worker or the single process: all of them).

Each way runs on the whole sample, and on its first two documents alone, one chunk each (so that both Ray
workers start). The second run is the fixed cost of starting (loading the models; for Ray also starting Ray and
its workers), so the difference of the two is about the time spent encoding the rest, and the rate after
start-up is ``documents - 2`` over that difference. The ways run ``--repeats`` times in mirrored order (single,
1, 2, 2, 1, single, ...) so that a change in the machine's load falls on all of them alike, and the best time
of each is kept. It prints,
for each way, the start-up time, the whole time and both rates, with each rate as a ratio to the single process's.
All three stores are checked to hold the same activations. The machine may be shared: compare the ratios of one
run, and read the load average printed with them.
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
import time
from pathlib import Path

import numpy as np
import pandas as pd

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # no model hub is reachable from our machines

sys.path.insert(0, str(Path(__file__).parent))  # sibling scripts, not a package
from analysis import synthetic_latents  # noqa: E402  (the generator of benchmarks/analysis.py)
from fortunes import sample_fortunes  # noqa: E402

GIB = 2**30
PLANTED = 5
"""Features planted in the documents of group 1 (present in half of them), so the diff finds something."""


def build_compact_store(path: Path, n_documents: int, d_sae: int, active: float, chunk_documents: int,
                        seed: int = 0) -> None:
    """A compact store of synthetic pooled activations, written chunk by chunk with the store's chunk writer."""
    import scipy.sparse as sp

    from interp_embed.spec.plan import EncodePlan
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
    from interp_embed.validation import MemorySize

    return MemorySize().check("memory_limit", memory_limit, {})


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


RAY_WAYS = {"single process": {}, "Ray, 1 worker": {"engine": "ray", "num_workers": 1},
            "Ray, 2 workers": {"engine": "ray", "num_workers": 2}}
"""The ways of encoding compared by ``--ray``: the keyword arguments each gives ``Dataset``."""


def timed_encoding(df: pd.DataFrame, chunk_tokens: int, folder: Path, **engine) -> tuple[float, object]:
    """Seconds that ``Dataset(df, ...)`` takes, from nothing loaded to every chunk committed, and the dataset."""
    from interp_embed import Dataset
    from interp_embed.spec.plan import EncodePlan

    path = Path(tempfile.mkdtemp(dir=folder)) / "store.iembed"
    started = time.perf_counter()
    ds = Dataset(df, save_path=path, plan=EncodePlan(chunk_tokens=chunk_tokens), **engine)
    return time.perf_counter() - started, ds


def ray_scaling(args: argparse.Namespace) -> None:
    """Throughput of the single process, 1 Ray worker and 2 Ray workers on this machine (see the module's doc)."""
    from interp_embed.spec.plan import EncodePlan

    df = pd.DataFrame({"text": sample_fortunes(args.documents)})
    chunks = EncodePlan(chunk_tokens=args.chunk_tokens).chunk_ranges(df["text"].tolist())
    folder = Path(tempfile.mkdtemp(prefix="scale-ray-"))
    results, reference = {way: [] for way in RAY_WAYS}, None
    order = [way for repeat in range(args.repeats) for way in (list(RAY_WAYS)[::-1] if repeat % 2 else RAY_WAYS)]
    try:
        for way in order:
            startup, _ = timed_encoding(df.head(2), 1, folder, **RAY_WAYS[way])
            whole, ds = timed_encoding(df, args.chunk_tokens, folder, **RAY_WAYS[way])
            if reference is None:
                reference = ds
            elif (ds.latents("sum") != reference.latents("sum")).nnz or \
                    ds._store.manifest.chunks != reference._store.manifest.chunks:
                raise SystemExit(f"{way} stored other activations than {order[0]}")
            results[way].append((startup, whole))
            print(f"  {way}: start-up {startup:.1f} s, whole {whole:.1f} s", file=sys.stderr, flush=True)
        tokens = sum(c.n_tokens for c in reference._store.manifest.chunks)
    finally:
        shutil.rmtree(folder, ignore_errors=True)

    print(f"\nEncoding {len(df)} fortunes ({tokens:,} document tokens, {len(chunks)} chunks of ~{args.chunk_tokens:,} "
          f"estimated tokens) on {os.cpu_count()} CPUs, best of {args.repeats} runs each; load average "
          f"{os.getloadavg()[0]:.1f} at the end")
    print(f"{'':16} {'start-up':>9} {'whole':>8} {'docs/s':>8} {'ratio':>6} {'docs/s after start-up':>22} {'ratio':>6}")
    base_whole, base_after = None, None
    for way, runs in results.items():
        startup, whole = min(run[0] for run in runs), min(run[1] for run in runs)
        rate_whole = len(df) / whole
        rate_after = (len(df) - 2) / max(whole - startup, 1e-9)
        base_whole, base_after = base_whole or rate_whole, base_after or rate_after
        print(f"{way:16} {startup:8.1f}s {whole:7.1f}s {rate_whole:8.2f} {rate_whole / base_whole:6.2f} "
              f"{rate_after:22.2f} {rate_after / base_after:6.2f}")
    print("Every store holds the same chunks, byte for byte.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ray", action="store_true", help="run the Ray benchmark")
    parser.add_argument("--out-of-core", action="store_true", help="run the out-of-core benchmark")
    parser.add_argument("--documents", type=int, help="fortunes encoded (--ray, default 96); synthetic documents "
                        "(--out-of-core, default 10,000,000)")
    parser.add_argument("--chunk-tokens", type=int, default=1000, help="EncodePlan(chunk_tokens=...) (--ray)")
    parser.add_argument("--repeats", type=int, default=2, help="runs of each way, in mirrored order (--ray)")
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
    elif args.ray == args.out_of_core:
        parser.error("choose one benchmark: --ray or --out-of-core")
    elif args.ray:
        args.documents = args.documents or 96
        ray_scaling(args)
    else:
        args.documents = args.documents or 10_000_000
        out_of_core(args)


if __name__ == "__main__":
    main()
