"""Commands that explain features: label (a language model writes and scores labels), report (the explorer)."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import typer

from . import app
from .common import CSV, JSON, console, default, fail, feature_list, friendly, open_dataset, show
from .config import config_options
from .subsets import chosen, where_option
from ..analysis import cluster_documents
from ..labeling import LabelingConfig


@app.command()
@friendly
@config_options(labeling=LabelingConfig)
def label(store: Path = typer.Argument(..., help="A store folder."),
          features: str = typer.Option(None, help="Feature ids to label, e.g. 12,345,678 (with --offline: default "
                                                  "every feature that fires on a word)."),
          offline: bool = typer.Option(False, "--offline", help="Write labels from this dataset's own words: no "
                                                                "language model, no network (scored on held-out "
                                                                "documents by the label's words)."),
          held_out: float = typer.Option(0.3, help="With --offline: the share of documents held out to score labels."),
          score: bool = typer.Option(True, help="Also score each label on held-out excerpts."),
          api_key: str = typer.Option(None, envvar=None, help="The key (default: from the environment or .env; "
                                                                  "safer than typing it here)."),
          rows: int = typer.Option(20, "--rows", min=1, help="Rows shown on the terminal."),
          csv: Path = CSV, json: Path = JSON, labeling: LabelingConfig = LabelingConfig()) -> None:
    """Label features with a language model (OpenRouter, OpenAI or any compatible server), or with --offline from
    the words they fire on in this dataset, and keep the labels."""
    ds = open_dataset(store)
    if offline:
        table = ds.label_features_offline(feature_list(features), held_out=held_out, seed=labeling.seed)
        show(table, ["feature_id", "status", "label", "balanced_accuracy"], rows, f"dataset labels in {store}", csv,
             json)
        if len(table) and (table.status == "no words").all():
            fail(f"none of the {len(table)} features fires strongly on a word in {store}, so nothing was labelled")
        written = int((table.status == "labelled").sum())
        console.print(f"{written} labels written from this dataset's words, {int((table.status == 'kept').sum())} "
                      f"kept from an earlier run; balanced_accuracy: how well each label's words find the held-out "
                      f"documents where its feature is strongly active")
        return
    if features is None:
        raise typer.BadParameter("give the features to label with --features 1,2,3 (or label offline: --offline)",
                                 param_hint="--features")
    options = dataclasses.asdict(labeling)
    table = ds.label_features_sync(feature_list(features), score=score, api_key=api_key, **options)
    show(table, ["feature_id", "status", "label", "balanced_accuracy", "fuzzing"], rows, f"labels in {store}", csv, json)
    done = table.status.isin(["labelled", "kept"])
    if len(table) and not done.any():
        fail(f"every feature failed ({len(table)}), so nothing was labelled; the first: {table.status.iloc[0]}")
    usage = table.attrs["usage"]
    console.print(f"{usage.calls} requests, {usage.prompt_tokens:,} prompt and {usage.completion_tokens:,} completion "
                  "tokens; labels are kept in the store")


@app.command()
@friendly
def report(store: Path = typer.Argument(..., help="A store folder."),
           output: Path = typer.Option("report.html", "-o", "--output", help="The HTML file to write."),
           vs: Path = typer.Option(None, help="Another store: add the diff view, STORE vs this one."),
           features: str = typer.Option(None, help="Feature ids to show (default: those most specific to STORE, or "
                                                   "with --vs the strongest differences)."),
           max_features: int = typer.Option(200, min=1, help="Features with a page of their own, at most."),
           title_column: str = typer.Option(None, help="The column that names each document (default: a column "
                                                       "named title, name, subject or headline; else its first "
                                                       "words)."),
           clusters: str = typer.Option(None, help="Add the cluster view: documents clustered along the features "
                                                   "a query matches (\"music\") or along feature ids (12,345,678)."),
           n_clusters: int = typer.Option(default(cluster_documents, "n_clusters"), min=1,
                                          help="With --clusters: k-means clusters."),
           where: str = where_option()) -> None:
    """Write the explorer: one self-contained HTML file to open offline or send to a colleague."""
    from ..report import write_report

    ds = chosen(open_dataset(store), where)
    clustering = None
    if clusters is not None:
        ids = _feature_ids(clusters)
        clustering = cluster_documents(ds, features=ids, query=None if ids else clusters, n_clusters=n_clusters)
    written = write_report(ds, output, vs=open_dataset(vs) if vs else None, features=feature_list(features),
                           max_features=max_features, title_column=title_column, clusters=clustering)
    console.print(f"wrote {written} ({written.stat().st_size / 1e6:.1f} MB); open it in a browser")


def _feature_ids(text: str) -> list[int] | None:
    """``"12,345"`` → ``[12, 345]``; None for text that is not a list of ids (a query)."""
    parts = text.replace(",", " ").split()
    return [int(p) for p in parts] if parts and all(p.isdigit() for p in parts) else None
