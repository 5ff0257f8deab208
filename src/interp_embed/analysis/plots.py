"""Figures for the analyses. Built on matplotlib's object API (no pyplot), so nothing opens a window."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from .diff import canonical_diff
from .trend import level_columns

if TYPE_CHECKING:  # matplotlib is imported by the functions that draw: importing interp_embed stays fast
    from matplotlib.figure import Figure


def _name(feature_id: int, label: str, width: int = 40) -> str:
    text = f"{feature_id}: {label}" if label else str(feature_id)
    return text if len(text) <= width else text[: width - 1] + "…"


def _require(table: pd.DataFrame, columns: list[str], producer: str) -> None:
    if not isinstance(table, pd.DataFrame):
        raise TypeError(f"expected the DataFrame returned by {producer}, got {type(table).__name__}.")
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise ValueError(f"table lacks columns {missing}; pass the DataFrame returned by {producer}.")


def _figure(width: float, height: float) -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height))


def _finish(fig: Figure, path: str | Path | None) -> Figure:
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=150)
    return fig


def plot_diff(table: pd.DataFrame, top: int = 10, path: str | Path | None = None, title: str | None = None) -> Figure:
    """Bar chart of the ``top`` most positive and ``top`` most negative frequency differences with their CIs.

    Error bars are the table's ``ci_low``/``ci_high`` (Newcombe interval of ``freq_a − freq_b``); features
    with ``q_value < 0.05`` are drawn solid, the rest hatched. A feature is named by the words it fires on
    (``fires_on``, from the side where it is more frequent) where the table has them, else by its label.

    Example::

        plot_diff(diff_features(ds_a, ds_b), top=10, path="diff.png")
    """
    _require(table, ["feature_id", "label", "ci_low", "ci_high", "q_value"], "diff_features")
    table = canonical_diff(table)  # a table whose sides are named (freq_german) too
    _require(table, ["freq_a", "freq_b"], "diff_features")
    d = (table["freq_a"] - table["freq_b"]).to_numpy()
    order = np.argsort(d, kind="stable")
    pick = np.unique(np.concatenate([order[:top][d[order[:top]] < 0], order[::-1][:top][d[order[::-1][:top]] > 0]]))
    rows = table.iloc[pick].assign(_d=d[pick]).sort_values("_d")
    fig = _figure(8, 0.35 * max(len(rows), 2) + 1.2)
    ax = fig.subplots()
    y = np.arange(len(rows))
    err = np.vstack([rows["_d"] - rows["ci_low"], rows["ci_high"] - rows["_d"]])
    significant = rows["q_value"].to_numpy() < 0.05
    colours = np.where(rows["_d"] > 0, "tab:blue", "tab:orange")
    ax.barh(y, rows["_d"], xerr=err, color=colours, capsize=2,
            hatch=[None if s else "//" for s in significant], edgecolor="black", linewidth=0.3)
    words = rows["fires_on"] if "fires_on" in rows.columns else pd.Series("", index=rows.index)
    names = [_name(f, w if isinstance(w, str) and w else l) for f, w, l in zip(rows["feature_id"], words, rows["label"])]
    ax.set_yticks(y, names, fontsize=7)
    ax.axvline(0, color="black", linewidth=0.6)
    ax.set_xlabel("freq_a − freq_b (95% Newcombe CI; hatched: q ≥ 0.05)")
    ax.set_title(title or "Features that differ between the datasets")
    return _finish(fig, path)


def plot_correlations(table: pd.DataFrame, top: int = 20, path: str | Path | None = None,
                      title: str | None = None) -> Figure:
    """Heat map of NPMI among the features of the ``top`` strongest pairs (blank: pair not listed).

    Example::

        plot_correlations(top_correlations(ds, k=30), path="npmi.png")
    """
    _require(table, ["feature_a", "label_a", "feature_b", "label_b", "npmi"], "feature_correlations")
    pairs = table.nlargest(top, "npmi")
    names = {}
    for f, l in list(zip(pairs["feature_a"], pairs["label_a"])) + list(zip(pairs["feature_b"], pairs["label_b"])):
        names.setdefault(int(f), _name(int(f), l, 30))
    ids = list(names)
    pos = {f: i for i, f in enumerate(ids)}
    M = np.full((len(ids), len(ids)), np.nan)
    for a, b, v in zip(pairs["feature_a"], pairs["feature_b"], pairs["npmi"]):
        M[pos[int(a)], pos[int(b)]] = M[pos[int(b)], pos[int(a)]] = v
    size = 0.3 * max(len(ids), 4) + 2
    fig = _figure(size + 2, size)
    ax = fig.subplots()
    image = ax.imshow(np.ma.masked_invalid(M), cmap="viridis", vmin=-1, vmax=1)
    ax.set_xticks(range(len(ids)), [names[f] for f in ids], rotation=90, fontsize=6)
    ax.set_yticks(range(len(ids)), [names[f] for f in ids], fontsize=6)
    fig.colorbar(image, ax=ax, label="NPMI")
    ax.set_title(title or f"NPMI of the top {len(pairs)} feature pairs")
    return _finish(fig, path)


def plot_clusters(clusters: pd.DataFrame, path: str | Path | None = None, title: str | None = None) -> Figure:
    """Cluster sizes as bars, each annotated with its best describing feature.

    Example::

        assignments, clusters = cluster_documents(ds, query="emotion")
        plot_clusters(clusters, path="clusters.png")
    """
    _require(clusters, ["cluster", "size", "rank", "feature_id", "label"], "cluster_documents")
    first = clusters.sort_values("rank").groupby("cluster", sort=True).head(1).sort_values("cluster")
    fig = _figure(8, 0.45 * max(len(first), 2) + 1.2)
    ax = fig.subplots()
    y = np.arange(len(first))
    ax.barh(y, first["size"], color="tab:green")
    ax.set_yticks(y, [f"cluster {c}" if c >= 0 else "no axis feature" for c in first["cluster"]], fontsize=8)
    for yi, size, f, l in zip(y, first["size"], first["feature_id"], first["label"]):
        text = _name(int(f), l, 50) if f >= 0 else "(no over-represented feature)"
        ax.text(size, yi, "  " + text, va="center", fontsize=7)
    ax.set_xlabel("documents")
    ax.set_xlim(0, first["size"].max() * 1.8)
    ax.set_title(title or "Clusters and their most over-represented feature")
    return _finish(fig, path)


def plot_trends(table: pd.DataFrame, top: int = 6, path: str | Path | None = None, title: str | None = None) -> Figure:
    """The frequency of the ``top`` strongest trends (smallest p-values, one feature per group when the table is
    grouped) at each level, as lines; a dashed line where ``q_value >= 0.05``.

    Example::

        plot_trends(feature_trends(ds, "year"), path="trends.png")
    """
    _require(table, ["feature_id", "label", "p_value", "q_value"], "feature_trends")
    levels = level_columns(table)
    rows = table.sort_values(["p_value", "feature_id"])
    if "representative" in rows.columns:
        rows = rows[rows["feature_id"] == rows["representative"]]
    rows = rows.head(top)
    fig = _figure(8, 4.5)
    ax = fig.subplots()
    x = np.arange(len(levels))
    for _, row in rows.iterrows():
        ax.plot(x, row[levels].to_numpy(dtype=float), marker="o", linestyle="-" if row["q_value"] < 0.05 else "--",
                label=_name(int(row["feature_id"]), row.get("fires_on") or row["label"], 50))
    ax.set_xticks(x, [c[len("freq_"):] for c in levels], rotation=30, ha="right", fontsize=7)
    ax.set_ylabel("share of documents where the feature is active")
    ax.legend(fontsize=7)
    ax.set_title(title or f"The {len(rows)} strongest trends (dashed: q ≥ 0.05)")
    return _finish(fig, path)
