"""train-sae: train and label an SAE on a reader's activations."""
from __future__ import annotations

import logging
from pathlib import Path

import typer

from . import app
from .common import console, friendly
from .config import config_options
from ..train.config import HarvestConfig, TrainConfig


@app.command("train-sae")
@friendly
@config_options(harvest=HarvestConfig, train=TrainConfig)
def train_sae(
    corpus: Path = typer.Argument(..., exists=True, help="A .txt (documents separated by blank lines), .csv, .jsonl, "
                                                         ".json or .parquet file."),
    out: Path = typer.Option(..., help="Run folder: checkpoints, state.json (config and training curve), and the SAE "
                                       "in OUT/sae."),
    field: str = typer.Option("text", help="The column holding the text (tables only)."),
    split: str = typer.Option(None, help="Keep only rows whose 'split' column equals this."),
    resume: bool = typer.Option(True, help="Continue an interrupted run found in OUT."),
    label_tokens: int = typer.Option(500_000, help="Label the trained SAE's features offline from this many tokens "
                                                   "of the corpus (0: no labels)."),
    harvest: HarvestConfig = HarvestConfig(), train: TrainConfig = TrainConfig(),
) -> None:
    """Train a TopK (or BatchTopK) SAE on a reader's activations, then label its features; a killed run resumes
    to the same weights."""
    from ..train import train_from_file

    logging.getLogger().setLevel(logging.INFO)
    folder = train_from_file(corpus, out, harvest, train, field=field, split=split, resume=resume,
                             label_tokens=label_tokens)
    console.print(f"SAE written to {folder} (SAELens layout): LocalSAE(path={str(folder)!r}, model={harvest.model!r})")
