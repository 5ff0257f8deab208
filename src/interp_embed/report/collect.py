"""What a report shows, gathered from a Dataset through its public API and the analyses, as plain JSON-able dicts.

Only what is shown is gathered: per shown feature its statistics, a histogram and a bounded number of
excerpts, never a dense document × feature matrix; the report says how much it shows of what there is.
"""
from __future__ import annotations

import math
from datetime import datetime, timezone

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ..analysis import diff_features, feature_correlations, one_row_per_group
from ..analysis.inputs import feature_counts, load_documents, presence
from ..files import DOCUMENTS
from ..store import Store
from .excerpts import EXCERPT_TOKENS, Texts, collect_excerpts

MAX_COVERAGE = 0.5
"""Default features: the most frequent among those active in at most this share of the documents. A feature
active nearly everywhere (punctuation, position) says little about a dataset, and would crowd the list."""
HISTOGRAM_BINS = 20
DIFF_EXAMPLES = 3
"""Excerpts per side of each diff finding (at most ``top_documents``)."""
MAX_MEMBERS = 50
"""Members listed for a group of findings (``n_members`` counts them all)."""
MAX_CLUSTER_ROWS = 1000
CLUSTER_EXAMPLE_CHARS = 300
ALPHA = 0.05


def number(x) -> float | None:
    """A float for JSON; None for a missing or infinite value (JSON has no NaN)."""
    if x is None or x is pd.NA:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def collect(ds, *, vs, features, max_features: int, top_documents: int, quantile_documents: int, correlated: int,
            clusters, title: str) -> dict:
    """Everything the report embeds (parameters already checked by :func:`~interp_embed.report.write_report`)."""
    docs, texts = load_documents(ds, "ds"), Texts()
    counts = feature_counts(presence(docs.activations))
    diff = None
    if vs is not None:
        diff, findings = _diff(ds, vs, features, max_features)
        shown = findings if features is None else features
        rule = "the representatives of the strongest differences (smallest q-values)"
    elif features is None:
        shown = frequent_features(counts, docs.n, max_features)
        rule = (f"the most frequent features active in at most {MAX_COVERAGE:.0%} of the documents (then the "
                "more frequent ones, if too few are)")
    else:
        shown, rule = features, "the features asked for"
    columns = docs.activations[:, shown].tocsc()
    pages = _feature_pages(ds, docs.rows, columns, np.asarray(shown), counts, docs.n, top_documents,
                           quantile_documents, texts)
    if correlated and len(shown) > 1:
        _add_correlations(ds, pages, shown, correlated)
    if diff is not None:
        _add_diff_examples(ds, vs, diff, min(DIFF_EXAMPLES, top_documents), texts)
    return {
        "title": title,
        "overview": _overview(ds, docs.n),
        "shown": {"features": len(shown), "of": ds.d_sae, "rule": rule, "top_documents": top_documents,
                  "quantile_documents": quantile_documents, "correlated": correlated,
                  "excerpt_tokens": EXCERPT_TOKENS},
        "features": pages,
        "diff": diff,
        "clusters": None if clusters is None else _clusters(ds, clusters),
        "texts": texts.table,
    }


def frequent_features(counts: np.ndarray, n: int, k: int) -> np.ndarray:
    """The ``k`` most frequent active features, those in at most ``MAX_COVERAGE`` of the ``n`` documents first.

    >>> frequent_features(np.array([10, 4, 0, 5, 1]), 10, 3).tolist()
    [3, 1, 4]
    """
    active = np.flatnonzero(counts > 0)
    ubiquitous = counts[active] > MAX_COVERAGE * n
    order = np.lexsort((active, -counts[active], ubiquitous))
    return active[order][:k]


def _overview(ds, n_encoded: int) -> dict:
    """What the dataset is and what encoded it."""
    encoder = ds.encoder
    reader = encoder.reader
    # A Dataset counts no tokens; the store's read API has each row's count (the view's rows are ds.store_rows).
    tokens = Store.open(ds.path).pooled().n_tokens[ds.store_rows].sum()
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


def _feature_pages(ds, rows: np.ndarray, columns: sp.csc_matrix, shown: np.ndarray, counts: np.ndarray, n: int,
                   top_documents: int, quantile_documents: int, texts: Texts) -> list[dict]:
    """Per shown feature: label and provenance, frequency, histogram, top and quantile-sampled excerpts."""
    sources = ds.label_sources().set_index("feature_id")
    pages, wanted = [], []
    for j, feature in enumerate(shown.tolist()):
        values = columns.data[columns.indptr[j]:columns.indptr[j + 1]]
        positions = rows[columns.indices[columns.indptr[j]:columns.indptr[j + 1]]]
        ranked = np.argsort(-values, kind="stable")
        top, rest = ranked[:top_documents], ranked[top_documents:]
        # Evenly spaced ranks of the rest: from strong to barely active, whatever the shape of the distribution.
        sample = rest[np.unique(np.linspace(0, rest.size - 1, min(quantile_documents, rest.size)).round().astype(int))]
        peak = float(values.max(initial=0))
        histogram = np.histogram(values, bins=HISTOGRAM_BINS, range=(0, peak or 1))[0]
        page = {"id": feature, "count": int(counts[feature]), "frequency": float(counts[feature] / n), "max": peak,
                "histogram": histogram.tolist(), "correlated": [],
                "top": positions[top].tolist(), "quantile": positions[sample].tolist(),
                **_label(sources, feature)}
        wanted += [(p, feature) for p in page["top"] + page["quantile"]]
        pages.append(page)
    excerpts = collect_excerpts(ds, wanted, texts)
    for page in pages:
        for kind in ("top", "quantile"):
            page[kind] = [excerpts[p, page["id"]] for p in page[kind]]
    return pages


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
    flat = diff_features(ds, vs)
    freq_a, freq_b = [c for c in flat.columns if c.startswith("freq_")]
    groups = one_row_per_group(flat)
    if features is None:
        rows = groups.sort_values(["q_value", "p_value", "feature_id"]).head(max_features)
    else:
        rows = flat[flat["feature_id"].isin(features)].copy()
        members = groups.set_index("group")["members"]
        rows["members"] = rows["group"].map(members)
        rows["n_members"] = rows["members"].map(len)
    findings = [{
        "id": int(r["feature_id"]), "label": r["label"], "freq_a": float(r[freq_a]), "freq_b": float(r[freq_b]),
        "difference": float(r["frequency_difference"]), "ci_low": number(r["ci_low"]),
        "ci_high": number(r["ci_high"]), "p_value": number(r["p_value"]), "q_value": number(r["q_value"]),
        "n_members": int(r["n_members"]), "members": [int(m) for m in r["members"][:MAX_MEMBERS]],
    } for _, r in rows.iterrows()]
    diff = {"name_a": ds.name or "this dataset", "name_b": vs.name or "the other dataset",
            "n_a": int(ds.encoded_mask().sum()), "n_b": int(vs.encoded_mask().sum()), "tested": len(flat),
            "significant": int((flat["q_value"] < ALPHA).sum()), "groups": int((groups["q_value"] < ALPHA).sum()),
            "alpha": ALPHA, "findings": findings}
    return diff, [f["id"] for f in findings]


def _add_diff_examples(ds, vs, diff: dict, k: int, texts: Texts) -> None:
    """Each finding's ``k`` strongest documents on either side, as excerpts."""
    ids = [f["id"] for f in diff["findings"]]
    for side, dataset in (("a", ds), ("b", vs)):
        docs = load_documents(dataset)
        columns = docs.activations[:, ids].tocsc()
        wanted = {}
        for j, feature in enumerate(ids):
            values = columns.data[columns.indptr[j]:columns.indptr[j + 1]]
            positions = docs.rows[columns.indices[columns.indptr[j]:columns.indptr[j + 1]]]
            wanted[feature] = positions[np.argsort(-values, kind="stable")[:k]].tolist()
        excerpts = collect_excerpts(dataset, [(p, f) for f, ps in wanted.items() for p in ps], texts)
        for finding in diff["findings"]:
            finding[f"examples_{side}"] = [excerpts[p, finding["id"]] for p in wanted[finding["id"]]]


def _clusters(ds, clustering) -> dict:
    """The cluster table of ``ds.cluster(...)`` (first ``MAX_CLUSTER_ROWS`` rows), how documents fell, and each
    cluster's words and typical documents (the start of each, at most CLUSTER_EXAMPLE_CHARS characters)."""
    assignments, table = clustering
    shown = table.head(MAX_CLUSTER_ROWS)
    texts = ds.pandas()[ds.field] if "examples" in table.columns else None
    summaries = []
    for c, group in table.groupby("cluster", sort=True):
        first = group.iloc[0]
        examples = [{"document": int(d), "text": str(texts.iloc[int(d)])[:CLUSTER_EXAMPLE_CHARS]}
                    for d in first["examples"]] if texts is not None else []
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
