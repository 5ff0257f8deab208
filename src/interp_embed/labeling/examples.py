"""The examples an LLM reads to label a feature and the held-out ones it is scored on.

What makes a label honest is in the choice of examples:

- positives are drawn across the feature's activation quantiles, not only its top documents (a label written
  from the extreme over-fits it), shuffled within each quantile by a seed, so the same call draws the same;
- negatives are half random documents where the feature is silent and half *hard* negatives: silent documents
  that are closest to the positives in every other feature, so the label must name what differs;
- each example is a window of tokens around the feature's strongest activation in the document (a long
  document is cut, never sent whole), with the tokens where it fires marked << >>;
- the documents shown to write a label are never used to score it: both sets are cut from one seeded order.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from ..highlight import highlight, token_window

N_QUANTILES = 5
ELLIPSIS = "…"


@dataclass(frozen=True)
class Example:
    """One excerpt of one document."""

    row: int
    """The document's row in the store (stable across views)."""
    activation: float
    """The document's largest activation of the feature (0 for a negative)."""
    kind: str
    """``positive``, ``hard negative`` or ``random negative``."""
    marked: str
    """The excerpt with the tokens where the feature fires between << >> (a negative has none)."""
    plain: str
    """The same excerpt without marks."""
    misplaced: str
    """A positive's excerpt with as many marks on tokens where the feature does not fire ("" for a negative):
    a label that says where the feature fires tells the two apart."""


@dataclass(frozen=True)
class ExampleSets:
    """Disjoint sets of examples for one feature."""

    label_positives: list[Example]
    label_negatives: list[Example]
    score_positives: list[Example]
    score_negatives: list[Example]

    def rows(self) -> dict[str, list[int]]:
        return {"label_positives": [e.row for e in self.label_positives],
                "label_negatives": [e.row for e in self.label_negatives],
                "score_positives": [e.row for e in self.score_positives],
                "score_negatives": [e.row for e in self.score_negatives]}


def excerpt(text: str, spans: np.ndarray, values: np.ndarray, window_tokens: int, rng: np.random.Generator,
            ) -> tuple[str, str, str]:
    """``(marked, plain, misplaced)`` windows of at most ``window_tokens`` tokens of one document.

    The window puts the strongest activation three quarters of the way in (:func:`token_window`); a document
    without activations gets a window at a random place. ``…`` shows a cut.
    """
    n = len(spans)
    center = int(np.argmax(values)) if values.max(initial=0) > 0 else int(rng.integers(n))
    start, stop = token_window(n, center, window_tokens)
    offset = int(spans[start, 0])
    local = spans[start:stop] - offset
    piece = text[offset:int(spans[stop - 1, 1])]
    active = values[start:stop] > 0
    elsewhere = np.flatnonzero(~active)
    moved = np.zeros_like(active)
    moved[rng.choice(elsewhere, size=min(int(active.sum()), elsewhere.size), replace=False)] = True

    def shown(marks: np.ndarray) -> str:
        body = " ".join(highlight(piece, local, marks).split())
        return (ELLIPSIS if start > 0 else "") + body + (ELLIPSIS if stop < n else "")

    return shown(active), shown(np.zeros_like(active)), shown(moved) if active.any() else ""


def _examples(ds, feature: int, positions: np.ndarray, activations: np.ndarray, kinds: list[str],
              window_tokens: int, rng: np.random.Generator) -> list[Example]:
    out = []
    for position, activation, kind in zip(positions, activations, kinds):
        row = ds[int(position)]
        values = row.latents("all")[:, feature].toarray().ravel()
        marked, plain, misplaced = excerpt(row.document, row.spans(), values, window_tokens, rng)
        out.append(Example(row=int(ds.store_rows[int(position)]), activation=float(activation), kind=kind,
                           marked=marked, plain=plain, misplaced=misplaced))
    return out


def quantile_order(activations: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Positions of ``activations`` in an order that visits every quantile in turn, strongest quantile first,
    each shuffled: any prefix of it spans the range of activations."""
    ranked = np.argsort(-activations, kind="stable")
    if ranked.size == 0:
        return ranked
    bins = [rng.permutation(b) for b in np.array_split(ranked, min(N_QUANTILES, ranked.size)) if b.size]
    order = [b[i] for i in range(max((b.size for b in bins), default=0)) for b in bins if i < b.size]
    return np.array(order, dtype=np.int64)


def split_sizes(available: int, label: int, score: int) -> tuple[int, int]:
    """How many of ``available`` examples label and how many score: as asked when there are enough, else in
    the same proportion, at least one to label (unless none is asked for)."""
    if available >= label + score or label == 0:
        return min(label, available), min(score, available - min(label, available))
    n_label = min(available, max(1, round(available * label / (label + score))))
    return n_label, available - n_label


def draw_examples(feature: int, positive_dataset, negative_dataset, n_label: int, n_score: int, window_tokens: int,
                  seed: int, exclude_rows: frozenset[int] = frozenset()) -> ExampleSets:
    """The example sets for ``feature``: positives from ``positive_dataset``, negatives from ``negative_dataset``
    (the same dataset, or the other side of a contrast); ``exclude_rows`` (store rows) are never used."""
    rng = np.random.default_rng([seed, feature])
    pooled = positive_dataset.latents("max")
    column = pooled[:, feature].toarray().ravel()
    active = np.flatnonzero((column > 0) & ~np.isin(positive_dataset.store_rows, list(exclude_rows)))
    positives = active[quantile_order(column[active], rng)]
    n_label_pos, n_score_pos = split_sizes(positives.size, n_label, n_score)
    label_pos, score_pos = positives[:n_label_pos], positives[n_label_pos:n_label_pos + n_score_pos]

    negative_pooled = negative_dataset.latents("max")
    taken = set(exclude_rows) | set(positive_dataset.store_rows[positives].tolist())
    silent = np.flatnonzero((negative_pooled[:, feature].toarray().ravel() == 0) & negative_dataset.encoded_mask()
                            & ~np.isin(negative_dataset.store_rows, list(taken)))
    n_label_neg, n_score_neg = split_sizes(silent.size, n_label, n_score)
    hard = _closest_first(pooled[label_pos], negative_pooled[silent], feature)
    order, kinds = _alternate(silent[hard], silent[rng.permutation(silent.size)], n_label_neg + n_score_neg)

    def build(ds, positions, values, kind):
        return _examples(ds, feature, positions, values[positions], kind, window_tokens, rng)

    no_activation = np.zeros(len(negative_dataset))
    return ExampleSets(
        label_positives=build(positive_dataset, label_pos, column, ["positive"] * label_pos.size),
        label_negatives=build(negative_dataset, order[:n_label_neg], no_activation, kinds[:n_label_neg]),
        score_positives=build(positive_dataset, score_pos, column, ["positive"] * score_pos.size),
        score_negatives=build(negative_dataset, order[n_label_neg:], no_activation, kinds[n_label_neg:]),
    )


def _closest_first(positives: sp.csr_matrix, silent: sp.csr_matrix, feature: int) -> np.ndarray:
    """The silent documents ordered by cosine similarity to the positives' mean over every other feature
    (presence), closest first: documents like the positives in all but this feature."""
    from sklearn.preprocessing import normalize

    def presence(X: sp.csr_matrix) -> sp.csr_matrix:
        X = (X > 0).astype(np.float32).tocsc()
        X.data[X.indptr[feature]:X.indptr[feature + 1]] = 0  # this feature's own column says nothing here
        X.eliminate_zeros()
        return normalize(X.tocsr())

    if silent.shape[0] == 0 or positives.shape[0] == 0:
        return np.arange(silent.shape[0])
    centroid = np.asarray(presence(positives).mean(axis=0)).ravel()
    return np.argsort(-(presence(silent) @ centroid), kind="stable")


def _alternate(hard: np.ndarray, random: np.ndarray, n: int) -> tuple[np.ndarray, list[str]]:
    """``n`` negatives taken in turn from the closest and from a random order, no document twice, with their
    kinds. The label set and the score set are consecutive slices, so each is half hard, half random."""
    taken, kinds, seen = [], [], set()
    pools = [(iter(hard.tolist()), "hard negative"), (iter(random.tolist()), "random negative")]
    turn = 0
    while len(taken) < n:
        pool, kind = pools[turn % 2]
        for candidate in pool:
            if candidate not in seen:
                seen.add(candidate)
                taken.append(candidate)
                kinds.append(kind)
                break
        turn += 1
    return np.array(taken, dtype=np.int64), kinds
