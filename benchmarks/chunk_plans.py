"""Benchmark (not a test): the default chunk plan against the one stores had before it.

    .venv/bin/python benchmarks/chunk_plans.py --documents 600            # padding, then timed runs
    .venv/bin/python benchmarks/chunk_plans.py --documents 600 --padding-only

The same Debian fortunes (benchmarks/fortunes.py) are cut by three plans: the one stores had before
(`first_chunk_tokens=None, max_padding=None`: every chunk 24,000 estimated tokens, every batch filled to
`batch_tokens`), small first chunks alone (`max_padding=None`: 1,000 estimated tokens, each next one twice as
large, up to 24,000), and the default `EncodePlan()`, which also closes a batch before it pads its windows by more
than a fifth of their tokens. A smaller chunk sorts fewer windows by length before packing them, so filled batches
pad more. Two figures:

- the padded tokens of each plan's batches, as the pipeline cuts them (`reading.activations.cut_windows` and
  `pack_batches`): the
  forward work, exactly, whatever the machine's load;
- timed runs of `Dataset(...)` with the models loaded once, the plan before and the default in the order before,
  default, default, before (so that a drift in the shared machine's load weighs on both alike): each run's rate,
  when its first commits came, and the ratio of the two plans' times.
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


def padded_tokens(plan, reader, sae, texts: list[str]) -> tuple[int, int, list[int]]:
    """The document tokens of the texts, the tokens of the batches the pipeline runs for them under `plan` (padding
    included), and the estimated tokens of each chunk."""
    from interp_embed.encode.pipeline import Encoder
    from interp_embed.reading.activations import cut_windows, pack_batches
    from interp_embed.spec.plan import estimated_tokens

    capacity = Encoder(reader, sae, plan).capacity
    ids = [reader.document_tokens(text).ids for text in texts]
    real = padded = 0
    sizes = []
    for start, stop in plan.chunk_ranges(texts):
        windows = cut_windows(ids[start:stop], capacity, plan.window_overlap)
        real += sum(len(w.ids) for w in windows)
        padded += sum(len(batch) * max(len(w.ids) for w in batch)
                      for batch in pack_batches(windows, plan.batch_tokens, plan.max_padding))
        sizes.append(sum(map(estimated_tokens, texts[start:stop])))
    return real, padded, sizes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--documents", type=int, default=600, help="how many fortunes to encode (default 600)")
    parser.add_argument("--padding-only", action="store_true", help="count padded tokens; time no runs")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's). On a machine shared with other "
                        "work, 1 keeps the threads of one batch from waiting on each other for a core, which makes "
                        "every batch cost far more than its work and would penalise the plan with more batches")
    args = parser.parse_args()
    import pandas as pd

    from interp_embed import Dataset
    from interp_embed.saes import DefaultSAE
    from interp_embed.spec.plan import EncodePlan
    from interp_embed.store import Store

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    texts = sample_fortunes(args.documents)
    sae = DefaultSAE(device="cpu", dtype="float32")
    reader, model, _ = sae.load()
    plans = {"before": EncodePlan(first_chunk_tokens=None, max_padding=None),
             "small first": EncodePlan(max_padding=None), "default": EncodePlan()}
    padded = {}
    for name, plan in plans.items():
        real, padded[name], sizes = padded_tokens(plan, reader, model, texts)
        print(f"{name:>11}: {len(sizes)} chunks of {', '.join(f'{s:,}' for s in sizes)} estimated tokens; batches "
              f"of {padded[name]:,} tokens for {real:,} document tokens ({padded[name] / real - 1:.1%} padding)",
              flush=True)
    print(f"forward work against the plan before: small first {padded['small first'] / padded['before']:.3f}, "
          f"default {padded['default'] / padded['before']:.3f}")
    if args.padding_only:
        return

    commits: list[float] = []
    commit = Store.commit_chunk

    def timed_commit(self, *rest):
        commit(self, *rest)
        commits.append(time.perf_counter())

    Store.commit_chunk = timed_commit
    documents = pd.DataFrame({"text": texts})
    seconds: dict[str, list[float]] = {"before": [], "default": []}
    load = [os.getloadavg()[0]]
    with tempfile.TemporaryDirectory() as work:
        for run, name in enumerate(["before", "default", "default", "before"]):
            commits.clear()
            started = time.perf_counter()
            dataset = Dataset(documents, sae=sae, save_path=Path(work) / f"{run}.iembed", plan=plans[name])
            elapsed = time.perf_counter() - started
            tokens = sum(c.n_tokens for c in dataset._store.manifest.chunks)
            seconds[name].append(elapsed)
            print(f"{name:>11}: {elapsed:6.1f} s, {tokens / elapsed:5.0f} document tokens/s, {len(commits)} commits, "
                  f"the first after {', '.join(f'{c - started:.0f}' for c in commits[:5])} s", flush=True)
            load.append(os.getloadavg()[0])
    print(f"time default / before: {sum(seconds['default']) / sum(seconds['before']):.3f}; 1-minute load "
          f"average before and after each run (2 cores, shared): {' / '.join(f'{x:.1f}' for x in load)}")


if __name__ == "__main__":
    main()
