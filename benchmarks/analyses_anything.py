"""Benchmark (not a test): analyses on anything a user can compute, on held-out real corpora.

    .venv/bin/python benchmarks/analyses_anything.py [--per-topic 25] [--runs 5]

Two corpora, each encoded once by the bundled reader and SAE (kept in ``--workdir`` for the next run):

- ``fortunes``: ``--per-topic`` Debian fortunes from each of 10 topic files (benchmarks/corpora.py);
- ``packages``: ``--per-topic`` Debian package descriptions from each of 10 archive sections (none of the tests'
  fixture; needs apt's English descriptions: ``apt-get update -o Acquire::Languages=en``).

In each corpus a random half of the documents is side A, and a phrase no run saw while the analyses were built
(:data:`PHRASE`) is appended to 30 % of side A's documents. Printed, per corpus:

- ``topics``: ``associate`` on the 10-topic column: how many topics have a feature pointing to them at q < 0.05
  (the goal: at least 8);
- ``random categories``: the topic column shuffled, ``--runs`` times: topics with a finding per run (at most 1);
- ``random arrays``: a standard-normal and a fair-coin array as the target, ``--runs`` times each: runs with any
  finding (at most 1 level, i.e. finding nothing);
- ``random trend``: ``trend`` over a random ordered column (ten "years"), ``--runs`` times: features with q < 0.05
  per run (at most 1);
- ``planted phrase``: ``diff`` of side A against side B under each grouping rule: significant features, the share
  of them in the largest group, and whether that group's representative fires inside the phrase (in more than
  half of the documents where it is active, its strongest token lies in the phrase); the goal: at least 60 % in a
  group whose representative fires inside it. This decides the default grouping rule;
- ``added column``: a column added after encoding, read back after reloading, as a target;
- ``cli --where``: ``interp-embed diff STORE --where "label == '<topic>'"`` exits 0.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).parent))
from corpora import fortunes_by_topic, package_descriptions  # noqa: E402  (a sibling script, not a package)

PHRASE = " Offer code ZX-4417 expires soon."
TOPICS = ("food", "law", "sports", "computers", "medicine", "love", "politics", "science", "pets", "startrek")
SECTIONS = ("games", "fonts", "sound", "libs", "python", "math", "graphics", "mail", "httpd", "editors")
PLANTED_SHARE = 0.3


def planted_corpus(frame: pd.DataFrame, seed: int = 1) -> pd.DataFrame:
    """``frame`` with a random half marked ``side_a`` and :data:`PHRASE` appended to 30 % of side A (``planted``)."""
    rng = np.random.default_rng(seed)
    side_a = np.zeros(len(frame), dtype=bool)
    side_a[rng.choice(len(frame), len(frame) // 2, replace=False)] = True
    planted = np.zeros(len(frame), dtype=bool)
    planted[rng.choice(np.flatnonzero(side_a), int(round(PLANTED_SHARE * side_a.sum())), replace=False)] = True
    texts = [t + PHRASE if p else t for t, p in zip(frame["text"], planted)]
    return frame.assign(text=texts, side_a=side_a, planted=planted)[["text", "label", "side_a", "planted"]]


def fires_inside_phrase(ds, feature: int) -> bool:
    """Whether, in more than half of the planted documents where ``feature`` is active, its strongest token lies in
    the planted phrase (the phrase ends each planted text)."""
    planted = np.flatnonzero(ds.pandas()["planted"].to_numpy() & ds.encoded_mask())
    inside = active = 0
    for position in planted:
        row = ds[int(position)]
        column = row.latents("all")[:, feature].toarray().ravel()
        if not column.any():
            continue
        active += 1
        start = row.spans()[int(np.argmax(column))][0]
        inside += start >= len(row.document) - len(PHRASE)
    return active > 0 and inside > active / 2


def measure(ds, runs: int, path: Path) -> dict[str, str]:
    rng = np.random.default_rng(2)
    frame = ds.pandas()
    n = len(ds)
    results = {}
    t = time.time()
    table = ds.associate("label", model=False)
    levels = table.attrs["levels"]
    results["topics"] = (f"{int((levels.n_significant > 0).sum())} of {len(levels)} topics have a feature pointing to "
                         f"them ({time.time() - t:.0f} s)")
    shuffled = []
    for _ in range(runs):
        levels = ds.associate(rng.permutation(frame["label"].to_numpy()), model=False).attrs["levels"]
        shuffled.append(int((levels.n_significant > 0).sum()))
    results["random categories"] = f"topics with a finding per run: {shuffled}"
    for kind, draw in (("normal", lambda: rng.standard_normal(n)), ("coin", lambda: rng.integers(0, 2, n))):
        found = [int((ds.associate(draw(), model=False).q_value < 0.05).sum()) for _ in range(runs)]
        results[f"random arrays ({kind})"] = f"findings per run: {found}"
    trends = [int((ds.trend(rng.integers(2015, 2025, n)).q_value < 0.05).sum()) for _ in range(runs)]
    results["random trend"] = f"features with q < 0.05 per run: {trends}"
    side = frame["side_a"].to_numpy()
    for rule in ("explained", "overlap"):
        t = time.time()
        diff = ds[side].diff(ds[~side], grouping=rule)
        found = diff[diff.q_value < 0.05]
        sizes = found.group.value_counts()
        largest = int(sizes.iloc[0]) if len(found) else 0
        top = found[found.group == sizes.index[0]] if len(found) else found
        representative = int(top.representative.iloc[0]) if len(top) else -1
        inside = len(top) > 0 and fires_inside_phrase(ds, representative)
        results[f"planted phrase ({rule})"] = (
            f"{len(found)} significant in {found.group.nunique()} groups; the largest holds {largest} "
            f"({largest / max(len(found), 1):.0%}), representative {representative} "
            f"{'fires' if inside else 'does not fire'} inside the phrase ({time.time() - t:.1f} s)")
    ds.add_column("is_first_topic", frame["label"] == sorted(frame["label"].unique())[0], overwrite=True)
    reloaded = type(ds).load_from_file(path)
    added = reloaded.associate("is_first_topic", model=False)
    results["added column"] = (f"read back after reloading: {'is_first_topic' in reloaded.pandas().columns}; as a "
                               f"target: {int((added.q_value < 0.05).sum())} features at q < 0.05")
    topic = sorted(frame["label"].unique())[0]
    done = subprocess.run([sys.executable, "-m", "interp_embed", "diff", str(path), "--where", f"label == '{topic}'",
                           "--rows", "3"], capture_output=True, text=True, env={**os.environ, "COLUMNS": "200"})
    results["cli --where"] = f"interp-embed diff STORE --where \"label == '{topic}'\" exited {done.returncode}"
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--per-topic", type=int, default=25)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/interp_embed-bench-anything"))
    parser.add_argument("--corpus", choices=["fortunes", "packages", "both"], default="both")
    args = parser.parse_args()

    from interp_embed import Dataset

    builders = {"fortunes": lambda: fortunes_by_topic(TOPICS, per_topic=args.per_topic, held_out=0, seed=0),
                "packages": lambda: package_descriptions(SECTIONS, per_section=args.per_topic, held_out=0, seed=0)}
    for name in (["fortunes", "packages"] if args.corpus == "both" else [args.corpus]):
        path = args.workdir / f"{name}-{args.per_topic}.iembed"
        if path.exists():
            ds = Dataset.load_from_file(path)
        else:
            args.workdir.mkdir(parents=True, exist_ok=True)
            ds = Dataset(planted_corpus(builders[name]()), save_path=path)
        print(f"\n{name}: {len(ds)} documents, {int(ds.pandas().planted.sum())} with the planted phrase", flush=True)
        for check, figure in measure(ds, args.runs, path).items():
            print(f"  {check}: {figure}", flush=True)


if __name__ == "__main__":
    main()
