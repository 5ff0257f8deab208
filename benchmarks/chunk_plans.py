"""Benchmark (not a test): the chunk plan by estimated tokens against the older one by characters.

    .venv/bin/python benchmarks/chunk_plans.py --documents 300

Encodes the same Debian fortunes (benchmarks/fortunes.py) with both plans in one process, the models loaded
once, in the order old, new, new, old (so that a drift in the shared machine's load weighs on both alike),
and prints each run's rate and the seconds between commits, then the ratio of the two plans' times: smaller
chunks must not slow encoding down, and a commit should come about every 30 s.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).parent))
from fortunes import sample_fortunes  # noqa: E402  (a sibling script, not a package)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--documents", type=int, default=300, help="how many fortunes to encode (default 300)")
    args = parser.parse_args()
    import pandas as pd

    from interp_embed import Dataset
    from interp_embed.encode.config import EncodePlan
    from interp_embed.saes import DefaultSAE
    from interp_embed.store import Store

    documents = pd.DataFrame({"text": sample_fortunes(args.documents)})
    sae = DefaultSAE(device="cpu")
    sae.load()
    commits: list[float] = []
    commit = Store.commit_chunk

    def timed_commit(self, *rest):
        commit(self, *rest)
        commits.append(time.perf_counter())

    Store.commit_chunk = timed_commit
    plans = {"characters": EncodePlan(chunk_tokens=None, chunk_chars=100_000), "tokens": EncodePlan()}
    seconds: dict[str, list[float]] = {name: [] for name in plans}
    with tempfile.TemporaryDirectory() as work:
        for run, name in enumerate(["characters", "tokens", "tokens", "characters"]):
            commits.clear()
            started = time.perf_counter()
            dataset = Dataset(documents, sae=sae, save_path=Path(work) / f"{run}.iembed", plan=plans[name])
            elapsed = time.perf_counter() - started
            tokens = sum(c.n_tokens for c in dataset._store.manifest.chunks)
            gaps = [b - a for a, b in zip([started, *commits], commits)]
            seconds[name].append(elapsed)
            print(f"{name:>10}: {elapsed:6.1f} s, {tokens / elapsed:4.0f} document tokens/s, {len(commits)} chunks, "
                  f"{min(gaps):.0f}-{max(gaps):.0f} s between commits", flush=True)
    print(f"time by tokens / time by characters: {sum(seconds['tokens']) / sum(seconds['characters']):.3f}")


if __name__ == "__main__":
    main()
