"""Benchmark (not a test): labelling and scoring features through a chat-completions server, with latency and
rate limits, against one request at a time.

    .venv/bin/python benchmarks/labels.py --features 100 --latency 0.2 --rate-429 0.1

Starts the local server of the tests (tests/fake_llm.py: answers from the prompt) with ``--latency`` seconds per
request and a ``--rate-429`` share of requests refused with 429, encodes the bundled demo sample once (kept in
``--workdir``), and labels and scores ``--features`` features that fire in 5–50 % of its documents:

- ``concurrent, batched``: the defaults (8 requests in flight, 10 excerpts per scoring request);
- ``one at a time``: 1 request in flight and 1 excerpt per scoring request, on the first ``--baseline-features``
  features only (it is slow), compared per feature.

It prints wall time, requests (and 429s), tokens and the mean detection balanced accuracy of each setting, and
the speed-up per feature.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent.parent / "tests"))
import fake_llm  # noqa: E402  (the tests' server)

from interp_embed import Dataset  # noqa: E402
from interp_embed.data import demo_sample  # noqa: E402


def demo_store(workdir: Path) -> Path:
    path = workdir / "demo.iembed"
    if not path.exists():
        Dataset(demo_sample(), save_path=path)
    return path


def run(store: Path, copy: Path, features: list[int], server: fake_llm.FakeLLM, **options) -> dict:
    ds = Dataset.load_from_file(Dataset.load_from_file(store).save_to_file(copy))
    server.requests.clear()
    started = time.perf_counter()
    table = ds.label_features_sync(features, base_url=server.url, progress=False, **options)
    wall = time.perf_counter() - started
    usage = table.attrs["usage"]
    return {"features": len(features), "labelled": int((table.status == "labelled").sum()), "wall s": wall,
            "s per feature": wall / len(features), "requests": len(server.requests),
            "429s": sum(r.status == 429 for r in server.requests), "prompt tokens": usage.prompt_tokens,
            "completion tokens": usage.completion_tokens, "balanced accuracy": float(table.balanced_accuracy.mean())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--features", type=int, default=100)
    parser.add_argument("--baseline-features", type=int, default=5)
    parser.add_argument("--latency", type=float, default=0.2)
    parser.add_argument("--rate-429", type=float, default=0.1)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/interp_embed-bench-labels"))
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    store = demo_store(args.workdir)
    ds = Dataset.load_from_file(store)
    share = np.asarray((ds.latents() > 0).mean(axis=0)).ravel()
    candidates = np.flatnonzero((share >= 0.05) & (share <= 0.5))
    features = np.random.default_rng(0).choice(candidates, args.features, replace=False).tolist()
    server, http = fake_llm.start(fake_llm.FakeLLM(latency=args.latency, rate_429=args.rate_429))
    try:
        stamp = time.strftime("%H%M%S")
        rows = {
            "concurrent, batched": run(store, args.workdir / f"fast-{stamp}.iembed", features, server),
            "one at a time": run(store, args.workdir / f"slow-{stamp}.iembed", features[:args.baseline_features],
                                 server, concurrency=1, batch_size=1),
        }
    finally:
        http.shutdown()
    print(f"{args.features} features of the demo store; server latency {args.latency} s, {args.rate_429:.0%} of "
          "requests refused with 429")
    names = list(next(iter(rows.values())))
    print(f"{'setting':22}" + "".join(f"{n:>19}" for n in names))
    for setting, row in rows.items():
        print(f"{setting:22}" + "".join(f"{v:>19.3f}" if isinstance(v, float) else f"{v:>19}" for v in row.values()))
    fast, slow = rows["concurrent, batched"], rows["one at a time"]
    print(f"speed-up per feature: {slow['s per feature'] / fast['s per feature']:.1f}x; requests per feature: "
          f"{fast['requests'] / fast['features']:.1f} vs {slow['requests'] / slow['features']:.1f}")


if __name__ == "__main__":
    main()
