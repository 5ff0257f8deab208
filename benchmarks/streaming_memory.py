"""Benchmark (not a test): peak memory of making a store from a file read in batches, against reading it whole.

    .venv/bin/python benchmarks/streaming_memory.py --rows 100000 400000

For each size and format (Parquet, JSON lines) it writes a table of real fortunes (the bundled sample, each
text made unique), then, each in a fresh process, makes a store of it and reads the texts of its first
chunks — streamed (``Dataset.from_parquet`` / ``from_jsonl``) and whole (``Dataset(pd.read_parquet(...))`` /
``pd.read_json(..., lines=True)``) — and prints the growth of each process's peak resident memory over
the memory it held after its imports (Linux only: the peak is reset through /proc/self/clear_refs),
and the ratio of the two. Streamed, the peak must not grow with the file.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

TESTS = Path(__file__).resolve().parent.parent / "tests"

MEASURE = """
import json, sys
import pandas as pd
from interp_embed import Dataset
from interp_embed.store import Store
from test_streaming import NoModel  # an SAE stand-in: the store is made, nothing is encoded

def peak():  # the peak resident memory since the last reset, in bytes
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmHWM:"))

path, out, way = sys.argv[1:]
with open("/proc/self/clear_refs", "w") as clear:
    clear.write("5")  # the peak so far (importing) is forgotten: only what the work adds is measured
before = peak()
parquet = path.endswith(".parquet")
if way == "streamed":
    (Dataset.from_parquet if parquet else Dataset.from_jsonl)(path, sae=NoModel(), save_path=out,
                                                              compute_activations=False)
else:
    table = pd.read_parquet(path) if parquet else pd.read_json(path, lines=True)
    Dataset(table, sae=NoModel(), save_path=out, compute_activations=False)
    del table
store = Store.open(out)
for start, stop in store.chunk_ranges()[:3]:
    store.texts(start, stop)
print(json.dumps({"growth": peak() - before}))
"""


def write_table(path: Path, rows: int) -> None:
    import numpy as np

    from interp_embed.data import demo_sample

    fortunes = demo_sample()
    table = fortunes.iloc[np.arange(rows) % len(fortunes)].reset_index(drop=True)
    table["text"] = table["text"] + " (" + table.index.astype(str) + ")"
    if path.suffix == ".parquet":
        table.to_parquet(path)
    else:
        table.to_json(path, orient="records", lines=True, force_ascii=False)


def growth(path: Path, way: str, folder: Path) -> float:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(TESTS), *sys.path]))
    out = folder / f"{path.name}-{way}.iembed"
    done = subprocess.run([sys.executable, "-c", MEASURE, str(path), str(out), way], capture_output=True, text=True,
                          env=env, check=True)
    return json.loads(done.stdout.splitlines()[-1])["growth"] / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[100_000, 400_000], help="table sizes to measure")
    args = parser.parse_args()
    print(f"{'file':>16} {'streamed MiB':>13} {'whole MiB':>10} {'whole / streamed':>17}")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for suffix in (".parquet", ".jsonl"):
            for rows in args.rows:
                path = folder / f"{rows}{suffix}"
                write_table(path, rows)
                streamed, whole = growth(path, "streamed", folder), growth(path, "whole", folder)
                print(f"{path.name:>16} {streamed:13.1f} {whole:10.1f} {whole / streamed:17.1f}", flush=True)


if __name__ == "__main__":
    main()
