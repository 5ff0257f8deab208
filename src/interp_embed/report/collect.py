"""What a report shows, gathered from a Dataset through its public API and the analyses, as plain JSON-able dicts.

Only what is shown is gathered: per shown feature its statistics, a histogram and a bounded number of
excerpts, never a dense document × feature matrix; the report says how much it shows of what there is.

Each feature is shown with what it does in the data before what it was called elsewhere: the words it fires on
most specifically here (``fires_on``; in a diff, on the side where it is more frequent), then its label, where the
label came from, and how well the label's words find the documents where the feature is strongly active
(``score_labels``; held out for labels written from this dataset).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timezone

import numpy as np
import pandas as pd

from ..analysis import diff_features, feature_correlations, one_row_per_group
from ..analysis.diff import canonical_diff
from ..analysis.fires_on import SEPARATOR, words_of
from ..analysis.inputs import feature_counts, load_documents, presence
from ..files import DOCUMENTS
from .excerpts import EXCERPT_TOKENS, Texts, Titles, collect_excerpts

MAX_COVERAGE = 0.5
"""Without the SAE's corpus statistics, default features are the most frequent among those active in at most this
share of the documents. A feature active nearly everywhere (punctuation, position) says little about a dataset."""
PSEUDO_TOKENS = 5.0
"""Added to a feature's active tokens here and to those expected from the SAE's labelling corpus before they are
compared: a feature seen on a handful of tokens cannot rank by chance alone."""
MIN_DOCUMENTS = 3
"""A default feature is active in at least this many documents (or in every one of a smaller dataset): one
document is an anecdote."""
FIRES_ON_SHOWN = 8
"""Words shown per feature."""
LINKED_DOCUMENTS = 3
"""Top documents of a feature embedded only because a view links to it (the cluster table)."""
HISTOGRAM_BINS = 20
DIFF_EXAMPLES = 3
"""Excerpts per side of each diff finding (at most ``top_documents``)."""
MAX_MEMBERS = 50
"""Members listed for a group of findings (``n_members`` counts them all)."""
MAX_CLUSTER_ROWS = 1000
CLUSTER_EXAMPLE_CHARS = 300
ALPHA = 0.05
SPECIFICITY = ("how many times more often a feature is active on a token here than on a token of the SAE's labelling "
               f"corpus (feature_summaries.json), each count plus {PSEUDO_TOKENS:g} so that a rare feature cannot rank "
               "by chance")
KEYWORD_SCORE = ("the label's words used to find the documents where the feature is strongly active (at least half "
                 "its largest activation): balanced accuracy, 0.5 is chance. A label written from this dataset "
                 "(source dataset) is scored on documents held out from writing it; any other label is scored here, "
                 "on every encoded document of this report's dataset")


def number(x) -> float | None:
    """A float for JSON; None for a missing or infinite value (JSON has no NaN)."""
    if x is None or x is pd.NA:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def collect(ds, *, vs, features, max_features: int, top_documents: int, quantile_documents: int, correlated: int,
            clusters, title: str, title_column: str | None) -> dict:
    """Everything the report embeds (parameters already checked by :func:`~interp_embed.report.write_report`)."""
    docs, texts, names = load_documents(ds, "ds"), Texts(), Texts()
    counts = feature_counts(presence(docs.activations))
    specific = Specificity.of(ds, docs)
    diff = None
    if vs is not None:
        diff, findings = _diff(ds, vs, features, max_features)
        shown = findings if features is None else list(features)
        rule = ("the representatives of the strongest differences, in the diff's order: smallest q-value first "
                "(then p-value)")
    elif features is None:
        shown, rule = default_features(counts, docs.n, max_features, specific)
    else:
        shown, rule = list(features), "the features asked for"
    linked = [f for f in _cluster_features(clusters) if f not in set(shown)]
    titles = Titles.of(ds, title_column)
    pages = _feature_pages(ds, docs, np.asarray(shown + linked, dtype=np.int64), counts,
                           [top_documents] * len(shown) + [min(top_documents, LINKED_DOCUMENTS)] * len(linked),
                           [quantile_documents] * len(shown) + [0] * len(linked), texts, titles, names)
    for page in pages[len(shown):]:
        page["linked"] = "the cluster table"
    _add_specificity(pages, specific)
    words_note = _add_fires_on(ds, vs, diff, pages)
    keyword_note = _add_labels(ds, pages)
    if correlated and len(shown) > 1:
        _add_correlations(ds, pages[:len(shown)], shown, correlated)
    if diff is not None:
        _add_diff_examples(ds, vs, diff, min(DIFF_EXAMPLES, top_documents), texts, names, title_column)
    return {
        "title": title,
        "overview": _overview(ds, docs.n),
        "shown": {"features": len(shown), "linked": len(linked), "of": ds.d_sae, "rule": rule,
                  "top_documents": top_documents, "quantile_documents": quantile_documents,
                  "correlated": correlated, "excerpt_tokens": EXCERPT_TOKENS,
                  "specificity": SPECIFICITY if specific is not None else None, "fires_on": words_note,
                  "keyword_score": keyword_note, "title_column": titles.column, "store": ds.path.name},
        "features": pages,
        "diff": diff,
        "clusters": None if clusters is None else _clusters(ds, clusters, titles, names),
        "texts": texts.table,
        "names": names.table,
    }


@dataclass(frozen=True)
class Specificity:
    """How much more often each feature fires here than in the SAE's labelling corpus (see :data:`SPECIFICITY`)."""

    lift: np.ndarray
    """(d_sae,) the ratio of the two rates of active tokens, each count plus :data:`PSEUDO_TOKENS`."""
    here: np.ndarray
    """(d_sae,) the share of this dataset's encoded tokens where the feature is active."""
    corpus: np.ndarray
    """(d_sae,) its share of the tokens of the SAE's labelling corpus."""

    @classmethod
    def of(cls, ds, docs) -> "Specificity | None":
        """For ``ds`` (its encoded rows ``docs``); None where the SAE ships no corpus statistics."""
        from ..describe import sae_folder
        from ..labeling.offline import load_token_frequencies

        folder = sae_folder(ds)
        corpus = None if folder is None else load_token_frequencies(folder, ds.d_sae)
        if corpus is None:
            return None
        active = np.asarray(ds.latents("count")[docs.rows].sum(axis=0), dtype=np.float64).ravel()
        tokens = float(ds.stored.n_tokens()[docs.rows].sum())
        return cls(lift=(active + PSEUDO_TOKENS) / (tokens * corpus + PSEUDO_TOKENS),
                   here=active / max(tokens, 1.0), corpus=corpus)


def default_features(counts: np.ndarray, n: int, k: int, specific: Specificity | None) -> tuple[list[int], str]:
    """The ``k`` features a report shows by default, most specific to the dataset first, and the rule that chose
    them: by :class:`Specificity` among those active in at least :data:`MIN_DOCUMENTS` documents, else (no corpus
    statistics) :func:`frequent_features`."""
    if specific is None:
        return frequent_features(counts, n, k).tolist(), (
            f"the most frequent features active in at most {MAX_COVERAGE:.0%} of the documents (then the more "
            "frequent ones, if too few are); the SAE ships no statistics of its labelling corpus to compare with")
    active = np.flatnonzero(counts >= min(MIN_DOCUMENTS, n))
    order = np.lexsort((active, -counts[active], -specific.lift[active]))
    return active[order][:k].tolist(), (
        f"the features most specific to this dataset: {SPECIFICITY}; among those active in at least "
        f"{min(MIN_DOCUMENTS, n)} documents")


def frequent_features(counts: np.ndarray, n: int, k: int) -> np.ndarray:
    """The ``k`` most frequent active features, those in at most ``MAX_COVERAGE`` of the ``n`` documents first.

    >>> frequent_features(np.array([10, 4, 0, 5, 1]), 10, 3).tolist()
    [3, 1, 4]
    """
    active = np.flatnonzero(counts > 0)
    ubiquitous = counts[active] > MAX_COVERAGE * n
    order = np.lexsort((active, -counts[active], ubiquitous))
    return active[order][:k]


def _cluster_features(clusters) -> list[int]:
    """The features the cluster table links to, in its order (first ``MAX_CLUSTER_ROWS`` rows, as shown)."""
    if clusters is None:
        return []
    ids = clusters[1]["feature_id"].head(MAX_CLUSTER_ROWS)
    return list(dict.fromkeys(int(f) for f in ids if f >= 0))


def _overview(ds, n_encoded: int) -> dict:
    """What the dataset is and what encoded it."""
    encoder = ds.encoder
    reader = encoder.reader
    tokens = ds.stored.n_tokens().sum()
    # The documents table is written once, when the store is made (the manifest changes with every commit).
    written = datetime.fromtimestamp((ds.path / DOCUMENTS).lstat().st_mtime, timezone.utc)
    return {
        "name": ds.name, "description": ds.dataset_description, "documents": len(ds), "encoded": n_encoded,
        "tokens": int(tokens),
        "reader": reader and {"model": reader.model, "layer": reader.layer, "role": reader.role},
        "sae": {key: value for key, value in encoder.sae.items() if isinstance(value, (str, int, float, bool))},
        "sae_sha256": encoder.sae_sha256,
        "store_created": written.isoformat(timespec="seconds"),
        "report_created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def _feature_pages(ds, docs, shown: np.ndarray, counts: np.ndarray, top_documents: list[int],
                   quantile_documents: list[int], texts: Texts, titles: Titles, names: Texts) -> list[dict]:
    """Per shown feature: frequency, histogram, top and quantile-sampled excerpts (``top_documents[i]`` and
    ``quantile_documents[i]`` of them for the i-th feature)."""
    rows, n = docs.rows, docs.n
    columns = docs.activations[:, shown].tocsc()
    pages, wanted = [], []
    for j, feature in enumerate(shown.tolist()):
        values = columns.data[columns.indptr[j]:columns.indptr[j + 1]]
        positions = rows[columns.indices[columns.indptr[j]:columns.indptr[j + 1]]]
        ranked = np.argsort(-values, kind="stable")
        top, rest = ranked[:top_documents[j]], ranked[top_documents[j]:]
        # Evenly spaced ranks of the rest: from strong to barely active, whatever the shape of the distribution.
        sample = rest[np.unique(np.linspace(0, rest.size - 1, min(quantile_documents[j], rest.size)).round().astype(int))]
        peak = float(values.max(initial=0))
        histogram = np.histogram(values, bins=HISTOGRAM_BINS, range=(0, peak or 1))[0]
        page = {"id": feature, "count": int(counts[feature]), "frequency": float(counts[feature] / n), "max": peak,
                "histogram": histogram.tolist(), "correlated": [], "linked": None,
                "top": positions[top].tolist(), "quantile": positions[sample].tolist()}
        wanted += [(p, feature) for p in page["top"] + page["quantile"]]
        pages.append(page)
    excerpts = collect_excerpts(ds, wanted, texts, titles, names)
    for page in pages:
        for kind in ("top", "quantile"):
            page[kind] = [excerpts[p, page["id"]] for p in page[kind]]
    return pages


def _add_specificity(pages: list[dict], specific: Specificity | None) -> None:
    for page in pages:
        f = page["id"]
        page["specificity"] = None if specific is None else {
            "lift": float(specific.lift[f]), "here": float(specific.here[f]), "corpus": float(specific.corpus[f])}


def _add_fires_on(ds, vs, diff: dict | None, pages: list[dict]) -> str:
    """Each page's ``fires_on`` (the words it fires on most specifically, :data:`FIRES_ON_SHOWN` of them) and
    ``fires_on_in`` (the dataset they were read from: in a diff, the side where the feature is more frequent);
    returns how they were found, or why there are none."""
    sides = {"a": words_of(ds)} if vs is None else {"a": words_of(ds), "b": words_of(vs)}
    side = {f["id"]: f["side"] for f in diff["findings"]} if diff else {}
    names = {"a": ds.name or "this dataset", "b": vs.name or "the other dataset"} if vs is not None else {"a": None}
    for page in pages:
        which = side.get(page["id"], "a")
        words = sides[which]
        page["fires_on"] = [] if isinstance(words, str) else words.fires_on(page["id"], FIRES_ON_SHOWN)
        page["fires_on_in"] = names[which]
    reasons = [w for w in sides.values() if isinstance(w, str)]
    if reasons:
        return reasons[0]
    return ("the words under each feature's strong activations (at least half its largest) in the documents shown, "
            "most specific to the feature first: a word it fires on more than that word's share of all tokens"
            + (" — in a diff, on the side where the feature is more frequent" if vs is not None else ""))


def _add_labels(ds, pages: list[dict]) -> str | None:
    """Each page's label, where it came from, its LLM detection scores and its keyword score (:data:`KEYWORD_SCORE`);
    returns how the keyword scores were computed, or why there are none."""
    sources = ds.label_sources().set_index("feature_id")
    for page in pages:
        page.update(_label(sources, page["id"]))
        page["keyword"] = None
    if not ds.token_level:
        return ("none: the store keeps pooled activations only (EncodePlan(token_level=False)), not the words a label "
                "is checked against")
    held_out = {}  # the newest record of each feature: a dataset label's own held-out score
    for record in ds.stored.label_records():
        held_out[record.feature] = record
    to_score = []
    for page in pages:
        record = held_out.get(page["id"])
        if page["source"] == "dataset" and record is not None and record.label == page["label"] and record.score:
            page["keyword"] = _keyword({k[len("keyword_"):]: v for k, v in record.score.items()
                                        if k.startswith("keyword_")}, "held out")
        elif page["label"]:
            to_score.append(page)
    if to_score:
        scores = ds.score_labels([p["id"] for p in to_score], {p["id"]: p["label"] for p in to_score})
        by_feature = {int(row["feature_id"]): row for row in scores.to_dict("records")}  # in the order of the ids
        for page in to_score:
            page["keyword"] = _keyword(by_feature[page["id"]], "this dataset")
    return KEYWORD_SCORE


def _keyword(score: dict, scored_on: str) -> dict:
    keys = ("balanced_accuracy", "precision", "recall", "true_positives", "false_positives", "true_negatives",
            "false_negatives")
    return {"scored_on": scored_on, **{k: number(score.get(k)) for k in keys}}


def _label(sources: pd.DataFrame, feature: int) -> dict:
    """A feature's label and where it came from (``ds.label_sources()``), None where it has none."""
    if feature not in sources.index:
        return {"label": "", "source": None, "model": None, "balanced_accuracy": None, "fuzzing": None}
    row = sources.loc[feature]
    model = row["model"]
    return {"label": row["label"], "source": row["source"], "model": model if isinstance(model, str) else None,
            "balanced_accuracy": number(row["balanced_accuracy"]), "fuzzing": number(row["fuzzing"])}


def _add_correlations(ds, pages: list[dict], shown, k: int) -> None:
    """Each page's ``k`` shown features that co-occur with it most (NPMI > 0), from ``feature_correlations``
    over the shown features: every link opens a page of the report, and the q-values' family is those pairs."""
    pairs = feature_correlations(ds, features=shown)
    pairs = pairs[pairs["npmi"] > 0]
    both = pd.concat([pairs.rename(columns={"feature_a": "feature", "feature_b": "other"}),
                      pairs.rename(columns={"feature_b": "feature", "feature_a": "other"})])
    both = both.sort_values(["npmi", "count_ab", "other"], ascending=[False, False, True])
    best = {f: group.head(k) for f, group in both.groupby("feature", sort=False)}
    for page in pages:
        group = best.get(page["id"])
        if group is not None:
            page["correlated"] = [{"id": int(r.other), "npmi": float(r.npmi), "count_ab": int(r.count_ab),
                                   "q_value": number(r.q_value)} for r in group.itertuples()]


def _diff(ds, vs, features, max_features: int) -> tuple[dict, list[int]]:
    """The diff of ``ds`` against ``vs``: without ``features``, its ``max_features`` strongest groups of findings
    (smallest q-values, one row per group as ``diff_features(grouped=True)`` gives); with them, their rows."""
    flat = canonical_diff(diff_features(ds, vs))
    groups = one_row_per_group(flat)
    if features is None:
        rows = groups.sort_values(["q_value", "p_value", "feature_id"]).head(max_features)
    else:
        rows = flat[flat["feature_id"].isin(features)].copy()
        members = groups.set_index("group")["members"]
        rows["members"] = rows["group"].map(members)
        rows["n_members"] = rows["members"].map(len)
    findings = [{
        "id": int(r["feature_id"]), "label": r["label"], "side": "a" if r["freq_a"] >= r["freq_b"] else "b",
        "fires_on": [w for w in str(r["fires_on"]).split(SEPARATOR) if w] if isinstance(r["fires_on"], str) else [],
        "freq_a": float(r["freq_a"]), "freq_b": float(r["freq_b"]),
        "difference": float(r["frequency_difference"]), "ci_low": number(r["ci_low"]),
        "ci_high": number(r["ci_high"]), "p_value": number(r["p_value"]), "q_value": number(r["q_value"]),
        "n_members": int(r["n_members"]), "members": [int(m) for m in r["members"][:MAX_MEMBERS]],
    } for _, r in rows.iterrows()]
    diff = {"name_a": ds.name or "this dataset", "name_b": vs.name or "the other dataset",
            "n_a": int(ds.encoded_mask().sum()), "n_b": int(vs.encoded_mask().sum()), "tested": len(flat),
            "significant": int((flat["q_value"] < ALPHA).sum()), "groups": int((groups["q_value"] < ALPHA).sum()),
            "alpha": ALPHA, "findings": findings}
    return diff, [f["id"] for f in findings]


def _add_diff_examples(ds, vs, diff: dict, k: int, texts: Texts, names: Texts, title_column: str | None) -> None:
    """Each finding's ``k`` strongest documents on either side, as excerpts."""
    ids = [f["id"] for f in diff["findings"]]
    for side, dataset in (("a", ds), ("b", vs)):
        titles = Titles.of(dataset, title_column)
        docs = load_documents(dataset)
        columns = docs.activations[:, ids].tocsc()
        wanted = {}
        for j, feature in enumerate(ids):
            values = columns.data[columns.indptr[j]:columns.indptr[j + 1]]
            positions = docs.rows[columns.indices[columns.indptr[j]:columns.indptr[j + 1]]]
            wanted[feature] = positions[np.argsort(-values, kind="stable")[:k]].tolist()
        excerpts = collect_excerpts(dataset, [(p, f) for f, ps in wanted.items() for p in ps], texts, titles, names)
        for finding in diff["findings"]:
            finding[f"examples_{side}"] = [excerpts[p, finding["id"]] for p in wanted[finding["id"]]]


def _clusters(ds, clustering, titles: Titles, names: Texts) -> dict:
    """The cluster table of ``ds.cluster(...)`` (first ``MAX_CLUSTER_ROWS`` rows), how documents fell, and each
    cluster's words and typical documents (the start of each, at most CLUSTER_EXAMPLE_CHARS characters, named as
    ``titles`` says: ``name`` indexes ``names``)."""
    assignments, table = clustering
    shown = table.head(MAX_CLUSTER_ROWS)
    frame = ds.pandas() if "examples" in table.columns else None
    summaries = []
    for c, group in table.groupby("cluster", sort=True):
        first = group.iloc[0]
        examples = []
        for d in (first["examples"] if frame is not None else []):
            row = frame.iloc[int(d)].to_dict()
            text = str(row[ds.field])
            examples.append({"document": int(d), "text": text[:CLUSTER_EXAMPLE_CHARS],
                             "name": names.index(titles.describe(row, text))})
        summaries.append({"cluster": int(c), "size": int(first["size"]), "words": str(first.get("words", "")),
                          "examples": examples})
    return {
        "rows": [{"cluster": int(r.cluster), "size": int(r.size), "rank": int(r.rank), "id": int(r.feature_id),
                  "label": str(r.label), "fires_on": str(getattr(r, "fires_on", "")), "freq_in": number(r.freq_in),
                  "freq_out": number(r.freq_out), "lift": number(r.lift)} for r in shown.itertuples()],
        "summaries": summaries,
        "total_rows": len(table), "documents": len(assignments),
        "unassigned": int((assignments["cluster"] < 0).sum()),
        "axis": [int(f) for f in table.attrs.get("axis", [])[:MAX_MEMBERS]],
        "axis_size": len(table.attrs.get("axis", [])),
    }
