"""Labels from the dataset's own words, offline, and a check of any label that needs no language model.

A dataset label reads like the SAE's shipped offline labels, but is about the documents at hand:
``German words: 'werden', 'kann', 'können' — “…Netzwerks w<<arten>> systemd-”`` — a script or language tag where
most of the feature's strong activations are in one, the words most specific to the feature in these documents
(``FeatureWords.fires_on``) and the excerpt around its strongest activation, the token marked.

Labels are written from a random share of the documents and checked on the rest (:func:`score_labels`): a label's
words are used as a detector of the documents where the feature is *strongly* active — at least
``store.words.STRONG`` of its largest activation in those documents — and the detector's balanced accuracy is the
label's score, with its counts. A label that names what the feature does here finds those documents; one written
from another corpus ("'king', 'Israel', 'land'" for a feature that fires on "gold" and "treasure") does not.
"""
from __future__ import annotations

import hashlib
import logging

import numpy as np
import pandas as pd
import scipy.sparse as sp
from tqdm.auto import tqdm

from ..analysis.fires_on import SEPARATOR
from ..store.labels import DatasetLabels
from ..store.words import STRONG, FeatureWords
from ..validation import Bool, Features, Fraction, Int, InvalidParameterError, check_features, validate_params
from .offline import label_words

logger = logging.getLogger(__name__)

VERSION = "dataset-words-1"
"""How dataset labels are written; labelling again the same way (and from the same rows) keeps earlier labels."""
LABELS_PER_FILE = 1024
CONTEXT = (40, 20)
"""Characters of text shown before and after the marked token of a label's excerpt."""


@validate_params(features=Features(), held_out=Fraction(), seed=Int(), n_words=Int(min=1), progress=Bool())
def label_features_offline(ds, features=None, *, held_out: float = 0.3, seed: int = 0, n_words: int = 5,
                           progress: bool = True) -> pd.DataFrame:
    """Write a label for each feature from this dataset's own words (no LLM, no network), and score it.

    The encoded documents are split at random (``seed``): labels are written from ``1 - held_out`` of them and
    scored on the ``held_out`` rest by :func:`score_labels` (``held_out=0`` writes from all and scores nothing). A
    label is the feature's script or language tag (when it has one), its ``n_words`` most specific words here and
    the excerpt around its strongest activation (see the module docstring). ``features`` (default: every feature
    that fires strongly on a word here) are labelled; on a view, from the view's documents only.

    Labels are kept in the store as they are written (source ``dataset``, a thousand to a file) and become the
    features' labels in every table, over the shipped ones (a label of your own or an LLM's written later wins
    again). Labelling again the same way from the same documents keeps what is there: a killed run resumes.

    Returns one row per feature: ``feature_id``, ``label``, ``fires_on``, ``status`` (``labelled``, ``kept``, or
    ``no words``: it never fires strongly on a word here), the held-out ``balanced_accuracy`` and its counts;
    ``attrs["held_out"]`` holds the positions in ``ds`` of the held-out documents.
    """
    if held_out >= 1:
        raise InvalidParameterError("held_out must be below 1: some documents must be left to write the labels from.")
    store = ds.stored
    store.require_tokens("label_features_offline (labels from the words features fire on)")
    encoded = np.flatnonzero(ds.encoded_mask())
    if encoded.size == 0:
        raise ValueError("this dataset has no encoded documents to write labels from; encode it first.")
    shuffled = np.random.default_rng(seed).permutation(encoded)
    n_scored = int(round(held_out * encoded.size))
    written, scored = ds[np.sort(shuffled[n_scored:])], ds[np.sort(shuffled[:n_scored])]
    words = written.feature_words()
    if features is None:
        features = np.flatnonzero(words.mass.getnnz(axis=1))
    rows = hashlib.sha256(np.unique(ds.store_rows[encoded]).astype(np.int64).tobytes()).hexdigest()
    kept = {f: (label, labels.scores.get(f)) for labels in store.dataset_labels()
            if (labels.version, labels.seed, labels.held_out, labels.rows) == (VERSION, seed, held_out, rows)
            for f, label in labels.labels.items()}

    texts = store.all_texts()
    table = []
    todo = [int(f) for f in features if int(f) not in kept]
    written_labels = {f: dataset_label(words, f, texts, n_words) for f in todo}
    written_labels = {f: label for f, label in written_labels.items() if label}
    scores = _scores(score_labels(scored, list(written_labels), written_labels)) if n_scored and written_labels else {}
    with tqdm(total=len(written_labels), unit="label", disable=not progress, desc="dataset labels") as bar:
        batch = sorted(written_labels)
        for start in range(0, len(batch), LABELS_PER_FILE):
            part = batch[start:start + LABELS_PER_FILE]
            store.add_dataset_labels(DatasetLabels(
                labels={f: written_labels[f] for f in part}, scores={f: scores[f] for f in part if f in scores},
                rows=rows, seed=seed, held_out=held_out, version=VERSION))
            bar.update(len(part))
    for f in features:
        f = int(f)
        label, score = kept[f] if f in kept else (written_labels.get(f, ""), scores.get(f))
        status = "kept" if f in kept else "labelled" if label else "no words"
        table.append({"feature_id": f, "label": label, "fires_on": SEPARATOR.join(words.fires_on(f, n_words)),
                      "status": status, **_score_columns(score)})
    table = pd.DataFrame(table, columns=["feature_id", "label", "fires_on", "status", *SCORE_COLUMNS])
    table.attrs["held_out"] = np.sort(shuffled[:n_scored])  # positions in ds of the documents the labels were scored on
    return table


def dataset_label(words: FeatureWords, feature: int, texts: pd.Series, n_words: int = 5) -> str:
    """``German words: 'a', 'b', 'c' — “…excerpt<<token>>…”`` for ``feature`` (module docstring), or "" when it
    never fires strongly on a word. Its most specific words, or (where no word is more frequent under it than
    among all tokens) the words it fires on most."""
    found = words.fires_on(feature, n_words) or words.top(feature, n_words)
    if not found:
        return ""
    value, row, start, end = words.strongest[feature]
    text = texts.iloc[int(row)]
    start, end = int(start), int(end)
    before, token, after = text[max(0, start - CONTEXT[0]):start], text[start:end], text[end:end + CONTEXT[1]]
    excerpt = " ".join(f"{before}<<{token}>>{after}".split())
    tag = words.tags[feature]
    quoted = ", ".join(f"'{w}'" for w in found)
    return f"{tag + ' words: ' if tag else ''}{quoted} — “{excerpt}”"


SCORE_COLUMNS = ["balanced_accuracy", "precision", "recall", "true_positives", "false_positives", "true_negatives",
                 "false_negatives"]


def score_labels(ds, features=None, labels: dict[int, str] | None = None) -> pd.DataFrame:
    """How well each label's words find the documents of ``ds`` where its feature is strongly active.

    A document is *positive* where the feature's largest activation in it is at least ``STRONG`` (0.5) of its
    largest in ``ds``; the label *detects* it where the document holds one of the label's words — an offline or
    dataset label's quoted words exactly, a written label's words (English stop words left out) by their stem.
    Score labels on documents they were not written from (a held-out view) for an honest figure.

    ``labels`` ({feature: label}) default to the features' current labels; ``features`` to every labelled feature
    active in ``ds``. Returns ``feature_id``, ``label``, ``source``, ``balanced_accuracy`` (the mean of the shares
    of positive and negative documents told right; NaN when there are no positives or no negatives), ``precision``,
    ``recall`` and the four counts.
    """
    if labels is None:
        labels, known = ds.feature_labels(), ds.label_sources()
        sources = dict(zip(known.feature_id, known.source))
    else:
        labels, sources = {int(f): str(label) for f, label in labels.items()}, {}
    encoded = np.flatnonzero(ds.encoded_mask())
    pooled = sp.csc_matrix(ds.latents("max")[encoded])
    if features is None:
        features = [f for f in sorted(labels) if 0 <= f < ds.d_sae and pooled.indptr[f + 1] > pooled.indptr[f]]
    check_features(list(features), ds.d_sae, sae=ds.encoder)
    features = list(dict.fromkeys(int(f) for f in features))  # in the order given
    missing = [f for f in features if not labels.get(f)]
    if missing:
        raise ValueError(f"feature {missing[0]} has no label to score; pass labels={{{missing[0]}: '...'}}.")
    presence, vocabulary = ds.document_words()
    detector = _label_matrix([labels[f] for f in features], vocabulary)  # words × features
    detected = (presence @ detector) > 0
    columns = pooled[:, features]
    peak = columns.max(axis=0).toarray().ravel()
    positive = sp.csr_matrix(columns.multiply((1.0 / np.where(peak > 0, peak, np.inf))[np.newaxis, :])) >= STRONG
    n = len(encoded)
    true_positives = np.asarray(positive.multiply(detected).sum(axis=0)).ravel()
    positives = np.asarray(positive.sum(axis=0)).ravel()
    predicted = np.asarray(detected.sum(axis=0)).ravel()
    false_positives, false_negatives = predicted - true_positives, positives - true_positives
    true_negatives = n - positives - false_positives
    with np.errstate(invalid="ignore", divide="ignore"):
        recall = true_positives / positives
        specificity = true_negatives / (n - positives)
        precision = np.where(predicted > 0, true_positives / np.maximum(predicted, 1), np.nan)
    return pd.DataFrame({
        "feature_id": features, "label": [labels[f] for f in features],
        "source": [sources.get(f, "given") for f in features],
        "balanced_accuracy": (recall + specificity) / 2, "precision": precision, "recall": recall,
        "true_positives": true_positives, "false_positives": false_positives, "true_negatives": true_negatives,
        "false_negatives": false_negatives})


def _label_matrix(labels: list[str], vocabulary: np.ndarray) -> sp.csr_matrix:
    """(n_words, len(labels)) 0/1: the words of the vocabulary each label detects."""
    from ..analysis.label_search import query_terms, stem  # the stemmer search uses

    index = {str(w): i for i, w in enumerate(vocabulary)}
    stems: dict[str, list[int]] | None = None
    rows, cols = [], []
    for j, label in enumerate(labels):
        quoted = label_words(label)
        if quoted is not None:
            ids = [index[w.lower()] for w in quoted if w.lower() in index]
        else:
            if stems is None:
                stems = {}
                for i, w in enumerate(vocabulary):
                    stems.setdefault(stem(str(w)), []).append(i)
            ids = [i for term in query_terms(label) for i in stems.get(term, [])]
        rows += ids
        cols += [j] * len(ids)
    return sp.csr_matrix((np.ones(len(rows), dtype=np.int32), (rows, cols)), shape=(len(vocabulary), len(labels)))


def _scores(table: pd.DataFrame) -> dict[int, dict[str, float]]:
    """A score table as label records keep it: feature → {``keyword_<column>``: number}, NaN left out (JSON has
    none). The prefix tells a keyword score from an LLM's detection score in ``label_sources``."""
    return {int(row.feature_id): {f"keyword_{c}": float(getattr(row, c)) for c in SCORE_COLUMNS
                                  if np.isfinite(getattr(row, c))} for row in table.itertuples()}


def _score_columns(score: dict | None) -> dict[str, float]:
    return {c: (score or {}).get(f"keyword_{c}", np.nan) for c in SCORE_COLUMNS}

