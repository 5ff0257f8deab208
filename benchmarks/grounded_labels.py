"""Benchmark (not a test): do a feature's labels tell where it fires in *your* documents? Shipped labels (written from
the SAE's training corpus) against dataset labels (``label_features_offline``: written from the documents
themselves), both scored on documents neither was written from.

    .venv/bin/python benchmarks/grounded_labels.py

Each corpus (benchmarks/corpora.py) is encoded with the default SAE once (kept in ``--workdir``) and split at random
into halves A and B. Dataset labels are written from A only (``A.label_features_offline(held_out=0)``, on a copy of
the store); every label is then scored on B by ``B.score_labels``: the label's words as a detector of the documents
of B where the feature is strongly active (at least half its largest activation in B). Two sets of features:

- *topic features*: for each topic, the features most frequent in its documents of A against the rest (one-vs-rest
  diff on A, active in at least 5 of its documents); the 30 with the largest difference over all topics;
- *all features* with at least 5 strongly active documents in B.

Corpora: Debian package descriptions by section and English fortunes by topic were used while the method was built
(the number of words per label, 5, was chosen on them); Spanish fortunes by topic were held out — never looked at
before this benchmark's first run. It prints, per corpus and set, the mean and median balanced accuracy of each
kind of label, their difference, and how long labelling every feature took.
"""
from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).parent))
import corpora  # noqa: E402
from interp_embed import Dataset  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TOPIC_FEATURES = 30
MIN_POSITIVES = 5

CORPORA = {  # name: (how it is built, used while building the method?)
    "package descriptions": (lambda: corpora.package_descriptions(
        ("games", "fonts", "sound", "math", "graphics", "mail", "httpd", "editors", "database", "vcs", "electronics",
         "hamradio"), per_section=45, held_out=0), "development"),
    "English fortunes": (lambda: corpora.fortunes_by_topic(
        ("computers", "education", "food", "law", "love", "politics", "science", "sports", "startrek", "work"),
        per_topic=100, held_out=0), "development"),
    "Spanish fortunes": (lambda: corpora.fortunes_by_topic(
        tuple(f"{topic}.fortunes" for topic in ("amistad", "arte", "ciencia", "familia", "informatica", "libertad",
                                                "poder", "verdad")),
        per_topic=80, held_out=0, directory=corpora.FORTUNES / "es"), "held out"),
}


def encoded(name: str, workdir: Path) -> Path:
    path = workdir / f"{name.replace(' ', '-')}.iembed"
    if not path.exists():
        Dataset(CORPORA[name][0]()[["text", "label"]], save_path=path)
    return path


def topic_features(a: Dataset) -> list[int]:
    """The features most specific to one topic of ``a`` (module docstring)."""
    topic = a.pandas().label.to_numpy()
    found = []
    for t in sorted(set(topic)):
        table = a[topic == t].diff(a[topic != t])
        found += [(r.frequency_difference, r.feature_id) for r in table[table.count_a >= MIN_POSITIVES].itertuples()]
    chosen = []
    for _, f in sorted(found, reverse=True):
        if f not in chosen:
            chosen.append(int(f))
        if len(chosen) == TOPIC_FEATURES:
            return chosen
    return chosen


def run(name: str, workdir: Path, seed: int) -> list[dict]:
    store = encoded(name, workdir)
    copy = workdir / "copy.iembed"
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(store, copy)
    ds = Dataset.load_from_file(copy)
    order = np.random.default_rng(seed).permutation(len(ds))
    a, b = ds[np.sort(order[: len(ds) // 2])], ds[np.sort(order[len(ds) // 2:])]
    shipped = ds.feature_labels()
    started = time.perf_counter()
    written = a.label_features_offline(held_out=0, progress=False)
    seconds = time.perf_counter() - started
    dataset = dict(zip(written.feature_id, written.label))
    rows = []
    topics = topic_features(a)
    everything = [int(f) for f in written.feature_id]
    for features_name, features in (("topic features", topics), ("all features", everything)):
        scores = {}
        for kind, labels in (("shipped", shipped), ("dataset", dataset)):
            chosen = [f for f in features if labels.get(f) and shipped.get(f) and dataset.get(f)]
            table = b.score_labels(chosen, {f: labels[f] for f in chosen})
            scores[kind] = table.set_index("feature_id")
        both = scores["shipped"].add_suffix("_shipped").join(scores["dataset"].add_suffix("_dataset"))
        both = both[both.true_positives_dataset + both.false_negatives_dataset >= MIN_POSITIVES]
        rows.append({"corpus": name, "role": CORPORA[name][1], "documents": len(ds), "features": features_name,
                     "n": len(both),
                     "shipped": both.balanced_accuracy_shipped.mean(), "dataset": both.balanced_accuracy_dataset.mean(),
                     "shipped median": both.balanced_accuracy_shipped.median(),
                     "dataset median": both.balanced_accuracy_dataset.median(),
                     "labelled": len(written), "seconds": seconds})
    shutil.rmtree(copy)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workdir", type=Path, default=ROOT / ".cache" / "grounded_labels")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    rows = [row for name in CORPORA for row in run(name, args.workdir, args.seed)]
    table = pd.DataFrame(rows)
    table["difference"] = table["dataset"] - table["shipped"]
    pd.set_option("display.width", 200)
    print(table[["corpus", "role", "features", "n", "shipped", "dataset", "difference", "shipped median",
                 "dataset median"]].round(3).to_string(index=False))
    for r in table.drop_duplicates("corpus").itertuples():
        print(f"{r.corpus}: {r.labelled} features labelled from {r.documents // 2} documents in {r.seconds:.1f} s")


if __name__ == "__main__":
    main()
