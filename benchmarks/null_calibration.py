"""Benchmark (not a test): are the association statistics honest under the null, on real text?

    .venv/bin/python benchmarks/null_calibration.py --documents 400 --runs 20

Encodes ``--documents`` Debian fortunes (English and German, the real reader and the default SAE; the store
is kept in ``--workdir`` for the next run), then asks ``associate_features`` about targets that carry no
signal, so every "discovery" is a false one:

- ``normal``: a standard-normal random number per document;
- ``permuted length``: the documents' character lengths, shuffled (real, skewed values, no link to text);
- ``coin``: a fair random 0/1 per document.

For each kind it prints the share of runs with any feature at q < 0.05 (BH promises at most 5 % under the
complete null), the mean number of such features, the smallest p-value seen, and what the sparse L1
model did: the mean number of features it selected and its held-out R² or AUC (a model of noise should
select about nothing and score about 0 R² / 0.5 AUC).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).parent))
from fortunes import FORTUNES_DIR, load_fortunes  # noqa: E402  (a sibling script, not a package)


def corpus(n: int, seed: int = 0) -> pd.DataFrame:
    """``n`` fortunes, half English and half German, one paragraph each, reproducibly drawn."""
    rng = np.random.default_rng(seed)
    english = [t for t in load_fortunes() if len(t) < 400]
    german = [t for t in load_fortunes(FORTUNES_DIR / "de") if len(t) < 400]
    texts = list(rng.choice(english, n // 2, replace=False)) + list(rng.choice(german, n - n // 2, replace=False))
    return pd.DataFrame({"text": texts, "language": ["en"] * (n // 2) + ["de"] * (n - n // 2)})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--documents", type=int, default=400)
    parser.add_argument("--runs", type=int, default=20, help="random targets of each kind")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/interp_embed-bench-null"))
    args = parser.parse_args()

    from interp_embed import Dataset
    from interp_embed.analysis import associate_features

    path = args.workdir / f"fortunes-{args.documents}.iembed"
    if path.exists():
        ds = Dataset.load_from_file(path)
    else:
        args.workdir.mkdir(parents=True, exist_ok=True)
        ds = Dataset(corpus(args.documents), save_path=path)
    lengths = ds.pandas()["text"].str.len().to_numpy(dtype=float)
    rng = np.random.default_rng(1)
    kinds = {
        "normal": lambda: rng.standard_normal(len(ds)),
        "permuted length": lambda: rng.permutation(lengths),
        "coin": lambda: rng.integers(0, 2, len(ds)),
    }
    print(f"{len(ds)} fortunes (en + de), {args.runs} random targets per kind; a discovery is q < 0.05")
    print(f"{'target':16} {'runs with any':>13} {'mean found':>10} {'smallest p':>11} {'model selects':>13} "
          f"{'held-out':>9} {'seconds':>8}")
    for name, draw in kinds.items():
        started, any_found, found, smallest, selected, held_out = time.perf_counter(), 0, [], 1.0, [], []
        for _ in range(args.runs):
            ds._store.documents()["target"] = draw()  # a column of the in-memory table, never written to disk
            table = associate_features(ds, "target")
            hits = int((table.q_value < 0.05).sum())
            any_found += hits > 0
            found.append(hits)
            smallest = min(smallest, float(table.p_value.min()))
            selected.append(len(table.attrs["model"]["selected"]))
            held_out.append(table.attrs["model"]["held_out"])
        print(f"{name:16} {any_found:>6} of {args.runs:<4} {np.mean(found):>10.1f} {smallest:>11.2g} "
              f"{np.mean(selected):>13.1f} {np.mean(held_out):>9.3f} {time.perf_counter() - started:>8.1f}")


if __name__ == "__main__":
    main()
