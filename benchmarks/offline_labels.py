"""Offline labels before and after whole words: how many list whole words of the text, how many name a script
or language.

On ``--n`` random features (seeded) among those the default SAE fires on in the bundled demo sample (240
fortunes in English, German and Spanish), and on every labelled feature, compares two ``feature_labels.json``:
by default the shipped labels at commit ``d17d4db`` (sub-word tokens) and the shipped labels now (whole words).
A listed item is *punctuation* when it has no letter or digit (spaces and line breaks, spelled out as ``\\n``,
count here too), a *whole word* when its letters and digits occur as whole words (``store.words.WORD``; the ``'s``
of ``it's`` counts) in the labelling split the labels were built from, and a *fragment* otherwise: they occur
there only inside longer words. A piece that is also a word somewhere ('ist' of 'sistema', 'en') counts as
whole, so the fragments before are undercounted. A label is "whole" when it lists items and none is a fragment,
"empty" when it lists none.

    python scripts/build_corpus.py                 # once: the labelling split lives in .corpus/
    python benchmarks/offline_labels.py            # encodes the demo sample on CPU (~1 min)
"""
from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from interp_embed.analysis.label_search import OFFLINE_LABEL  # noqa: E402
from interp_embed.data import default_sae_folder  # noqa: E402
from interp_embed.files import FEATURE_LABELS  # noqa: E402
from interp_embed.store.words import WORD  # noqa: E402

BEFORE = "d17d4db"  # the last commit whose shipped labels listed tokens


def corpus_words(corpus: Path) -> set[str]:
    """Every whole word of the labelling split's texts."""
    import pandas as pd

    if not corpus.is_file():
        sys.exit(f"{corpus} is missing: build it with `python scripts/build_corpus.py`")
    table = pd.read_parquet(corpus, columns=["text", "split"])
    return set(WORD.findall("\n".join(table[table.split == "labelling"].text)))


def demo_features() -> np.ndarray:
    """The features the default SAE fires on anywhere in the demo sample, encoded into a temporary store."""
    import tempfile

    from interp_embed import Dataset
    from interp_embed.data import demo_sample
    from interp_embed.saes import DefaultSAE

    with tempfile.TemporaryDirectory() as folder:
        ds = Dataset(demo_sample(), sae=DefaultSAE(), save_path=Path(folder) / "demo.iembed")
        return np.flatnonzero(ds.latents().getnnz(axis=0))


def items(label: str) -> tuple[str | None, list[str]]:
    """An offline label's tag (None without one) and its quoted items (none where every token the old labeller
    found was a stray byte of a character: ``' — “…”'``)."""
    offline = OFFLINE_LABEL.match(label)
    tag = re.match(r"^(\w+) words: ", label)
    return tag.group(1) if tag else None, re.findall(r"'(.*?)'(?:, |$)", offline.group(1)) if offline else []


def kind(item: str, words: set[str]) -> str:
    """'whole word', 'fragment' or 'punctuation' (spaces and line breaks, spelled out as labels show them, too)."""
    if not WORD.search(item) or re.fullmatch(r"(?:\\(?:[nrt]|x[0-9a-f]{2}|u[0-9a-f]{4})|\s)+", item):
        return "punctuation"
    return "whole word" if set(WORD.findall(item)) <= words else "fragment"


def measure(labels: dict[str, str], features, words: set[str]) -> dict[str, float]:
    kinds = Counter()
    whole_labels = tagged = empty = 0
    for f in features:
        tag, listed = items(labels[str(f)])
        found = [kind(i, words) for i in listed]
        kinds.update(found)
        whole_labels += bool(found) and "fragment" not in found
        empty += not found
        tagged += tag is not None
    n = len(features)
    return {"labels": n, "whole-word labels": whole_labels / n, "empty labels": empty / n, "tagged labels": tagged / n,
            **{f"{k} items": kinds[k] / sum(kinds.values()) for k in ("whole word", "fragment", "punctuation")}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--before", help=f"a feature_labels.json (default: the shipped one at commit {BEFORE})")
    ap.add_argument("--after", type=Path, default=default_sae_folder() / FEATURE_LABELS)
    ap.add_argument("--corpus", type=Path, default=ROOT / ".corpus" / "corpus.parquet")
    ap.add_argument("--n", type=int, default=50)
    ap.add_argument("--examples", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    before = json.loads(Path(args.before).read_text("utf-8") if args.before else subprocess.run(
        ["git", "-C", str(ROOT), "show", f"{BEFORE}:src/interp_embed/data/default_sae/{FEATURE_LABELS}"],
        capture_output=True, check=True, text=True).stdout)
    after = json.loads(args.after.read_text("utf-8"))
    words = corpus_words(args.corpus)
    active = [f for f in demo_features() if str(f) in before and str(f) in after]
    sample = sorted(np.random.default_rng(args.seed).choice(active, size=min(args.n, len(active)), replace=False))
    everything = sorted(set(map(int, before)) & set(map(int, after)))
    rows = {(name, scope): measure(labels, features, words)
            for scope, features in ((f"{len(sample)} demo features", sample), ("all features", everything))
            for name, labels in (("before", before), ("after", after))}
    columns = list(next(iter(rows.values())))
    print(f"{'':34}" + "".join(f"{c:>20}" for c in columns))
    for (name, scope), row in rows.items():
        print(f"{name + ', ' + scope:34}" + "".join(f"{v:>20.0f}" if c == "labels" else f"{v:>20.1%}"
                                                  for c, v in row.items()))
    tags = Counter(items(after[str(f)])[0] for f in everything)
    print("\ntags, all features after:", ", ".join(f"{t} {n}" for t, n in tags.most_common() if t))
    print(f"\n{args.examples} examples (demo features, seed {args.seed}):")
    for f in sample[: args.examples]:
        print(f"  {f}\n    before: {before[str(f)]}\n    after:  {after[str(f)]}")


if __name__ == "__main__":
    main()
