"""Benchmark (not a test): encoding on Ray workers against the plain single-process pipeline (``--ray``).

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
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # no model hub is reachable from our machines

sys.path.insert(0, str(Path(__file__).parent))
from fortunes import sample_fortunes  # noqa: E402  (a sibling script, not a package)

RAY_WAYS = {"single process": {}, "Ray, 1 worker": {"engine": "ray", "num_workers": 1},
            "Ray, 2 workers": {"engine": "ray", "num_workers": 2}}
"""The ways of encoding compared by ``--ray``: the keyword arguments each gives ``Dataset``."""


def timed_encoding(df: pd.DataFrame, chunk_tokens: int, folder: Path, **engine) -> tuple[float, object]:
    """Seconds that ``Dataset(df, ...)`` takes, from nothing loaded to every chunk committed, and the dataset."""
    from interp_embed import Dataset
    from interp_embed.encode.config import EncodePlan

    path = Path(tempfile.mkdtemp(dir=folder)) / "store.iembed"
    started = time.perf_counter()
    ds = Dataset(df, save_path=path, plan=EncodePlan(chunk_tokens=chunk_tokens), **engine)
    return time.perf_counter() - started, ds


def ray_scaling(args: argparse.Namespace) -> None:
    """Throughput of the single process, 1 Ray worker and 2 Ray workers on this machine (see the module's doc)."""
    from interp_embed.encode.config import EncodePlan

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
    parser.add_argument("--documents", type=int, default=96, help="fortunes encoded (--ray)")
    parser.add_argument("--chunk-tokens", type=int, default=1000, help="EncodePlan(chunk_tokens=...) (--ray)")
    parser.add_argument("--repeats", type=int, default=2, help="runs of each way, in mirrored order (--ray)")
    args = parser.parse_args()
    if not args.ray:
        parser.error("choose a benchmark: --ray")
    ray_scaling(args)


if __name__ == "__main__":
    main()
