"""Commands that explain features: label (a language model writes and scores labels), report (the explorer)."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import typer

from . import app
from .common import CSV, JSON, console, feature_list, friendly, open_dataset, show
from .config import config_options
from ..labeling import LabelingConfig


@app.command()
@friendly
@config_options(labeling=LabelingConfig)
def label(store: Path = typer.Argument(..., help="A store folder."),
          features: str = typer.Option(..., help="Feature ids to label, e.g. 12,345,678."),
          score: bool = typer.Option(True, help="Also score each label on held-out excerpts."),
          api_key: str = typer.Option(None, envvar=None, help="The key (default: from the environment or .env; "
                                                                  "safer than typing it here)."),
          rows: int = typer.Option(20, "--rows", min=1, help="Rows shown on the terminal."),
          csv: Path = CSV, json: Path = JSON, labeling: LabelingConfig = LabelingConfig()) -> None:
    """Label features with a language model (OpenRouter, OpenAI or any compatible server) and keep the labels."""
    ds = open_dataset(store)
    options = dataclasses.asdict(labeling)
    table = ds.label_features_sync(feature_list(features), score=score, api_key=api_key, **options)
    show(table, ["feature_id", "status", "label", "balanced_accuracy", "fuzzing"], rows, f"labels in {store}", csv, json)
    usage = table.attrs["usage"]
    console.print(f"{usage.calls} requests, {usage.prompt_tokens:,} prompt and {usage.completion_tokens:,} completion "
                  "tokens; labels are kept in the store")


@app.command()
@friendly
def report(store: Path = typer.Argument(..., help="A store folder."),
           output: Path = typer.Option("report.html", "-o", "--output", help="The HTML file to write."),
           vs: Path = typer.Option(None, help="Another store: add the diff view, STORE vs this one."),
           features: str = typer.Option(None, help="Feature ids to show (default: chosen by the report)."),
           max_features: int = typer.Option(200, min=1, help="Features with a page of their own, at most.")) -> None:
    """Write the explorer: one self-contained HTML file to open offline or send to a colleague."""
    from ..report import write_report

    ds = open_dataset(store)
    written = write_report(ds, output, vs=open_dataset(vs) if vs else None, features=feature_list(features),
                           max_features=max_features)
    console.print(f"wrote {written} ({written.stat().st_size / 1e6:.1f} MB); open it in a browser")
