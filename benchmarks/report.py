"""Benchmark (not a test): the time and size of ``write_report`` on a large store and on the demo's.

    .venv/bin/python benchmarks/report.py                       # 100,000 documents; --demo PATH adds the demo store

The large store is the synthetic one of ``benchmarks/analysis.py`` (its generator, reused): ``--docs`` documents ×
``--features`` features, about ``--active`` active per document, power-law feature frequencies, each document one
token of one character. Three reports are timed on it: the default (200 most frequent features, 10 top and 10
quantile documents each, correlations), the diff of two random halves, and the same diff limited to 20 features. The
demo store (``interp-embed demo --save-path demo.iembed``: 240 fortunes in three languages) gives the same reports
with real text: all its documents, and German against the others. A report embeds only what it shows, so its size
does not grow with the number of documents.
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from analysis import planted_target, synthetic_latents, write_store  # noqa: E402  (the same synthetic store)


def timed_report(ds, path: Path, **options) -> str:
    t0 = time.perf_counter()
    ds.report(path, **options)
    seconds = time.perf_counter() - t0
    return f"{seconds:7.2f} s {path.stat().st_size / 2**20:8.2f} MiB"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", type=int, default=100_000)
    parser.add_argument("--features", type=int, default=65_536)
    parser.add_argument("--active", type=float, default=100.0)
    parser.add_argument("--demo", type=Path, help="the demo store (interp-embed demo --save-path demo.iembed)")
    args = parser.parse_args()

    from interp_embed import Dataset

    workdir = Path(tempfile.mkdtemp(prefix="interp_embed-bench-report-"))
    try:
        t0 = time.perf_counter()
        X = synthetic_latents(args.docs, args.features, args.active)
        write_store(X, workdir / "store.iembed", planted_target(X))
        print(f"synthetic store: {args.docs:,} documents × {args.features:,} features, {X.nnz / args.docs:.1f} active "
              f"per document, written in {time.perf_counter() - t0:.1f} s (not timed below)")
        del X
        ds = Dataset.load_from_file(workdir / "store.iembed")
        half = ds.pandas()["half"].to_numpy() == 1
        a, b = ds[half], ds[~half]
        a.name, b.name = "odd", "even"
        print(f"  ds.report()                         {timed_report(ds, workdir / 'all.html')}")
        print(f"  odd.report(vs=even)                 {timed_report(a, workdir / 'diff.html', vs=b)}")
        print(f"  odd.report(vs=even, max_features=20){timed_report(a, workdir / 'diff20.html', vs=b, max_features=20)}")
        if args.demo:
            demo = Dataset.load_from_file(args.demo)
            german = demo.pandas()["language"].to_numpy() == "de"
            de, rest = demo[german], demo[~german]
            de.name, rest.name = "german", "others"
            print(f"demo store: {len(demo)} fortunes")
            print(f"  demo.report()                       {timed_report(demo, workdir / 'demo.html')}")
            print(f"  german.report(vs=others)            {timed_report(de, workdir / 'demo-diff.html', vs=rest)}")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
