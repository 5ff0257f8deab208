"""The ``interp-embed`` command line: demo, encode, info, top, train-sae."""
from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import typer

from .cli_config import config_options
from .encode.config import EncodePlan
from .train.config import HarvestConfig, TrainConfig

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Interpretable SAE embeddings of text datasets.")


def _read_table(path: Path) -> pd.DataFrame:
    readers = {".csv": pd.read_csv, ".jsonl": lambda p: pd.read_json(p, lines=True), ".json": pd.read_json,
               ".parquet": pd.read_parquet, ".tsv": lambda p: pd.read_csv(p, sep="\t")}
    if path.suffix not in readers:
        raise typer.BadParameter(f"{path}: use a .csv, .tsv, .json, .jsonl or .parquet file")
    return readers[path.suffix](path)


def _shorten(text: str, width: int = 160) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


@app.command()
def demo(save_path: Path = typer.Option(None, help="Where to keep the store (default: a temporary folder)."),
         features_per_group: int = typer.Option(2, help="Features shown per language.")) -> None:
    """Embed the bundled sample with the default SAE and show, per language, its most distinctive features."""
    from . import Dataset
    from .data import demo_sample

    df = demo_sample()
    path = save_path or Path(tempfile.mkdtemp(prefix="interp_embed-demo-")) / "demo.iembed"
    ds = Dataset(df, field="text", save_path=path)
    labels = ds.feature_labels()
    active = ds.latents("binarize").toarray() > 0
    typer.echo(f"\nEncoded {len(ds)} documents into {path} ({ds.d_sae} features).")
    for language in sorted(df["language"].unique()):
        inside = (df["language"] == language).to_numpy()
        difference = active[inside].mean(0) - active[~inside].mean(0)
        typer.secho(f"\nFeatures most specific to language={language!r}", bold=True)
        for feature in np.argsort(-difference)[:features_per_group]:
            typer.echo(f"  feature {feature}: {labels.get(int(feature), '(no label)')}")
            typer.echo(f"    active in {active[inside, feature].mean():.0%} of {language} documents, "
                       f"{active[~inside, feature].mean():.0%} of the others")
            for text in ds.top_documents_for_feature(int(feature), k=2):
                typer.echo(f"    · {_shorten(text)}")


@app.command()
@config_options(plan=EncodePlan)
def encode(table: Path = typer.Argument(..., exists=True, help="A .csv, .tsv, .json, .jsonl or .parquet file."),
           out: Path = typer.Option(..., help="The store folder to write."),
           field: str = typer.Option("text", help="The column holding the text."),
           on_error: str = typer.Option("raise", help="'raise' or 'skip' rows whose text is missing or empty."),
           resume: bool = typer.Option(False, help="Continue an interrupted run in OUT."),
           plan: EncodePlan = EncodePlan()) -> None:
    """Encode a table of documents into a store."""
    from . import Dataset

    if resume:
        ds = Dataset.load_from_file(out, resume=True)
    else:
        ds = Dataset(_read_table(table), field=field, save_path=out, on_error=on_error, plan=plan)
    typer.echo(repr(ds))


@app.command()
def info(path: Path) -> None:
    """Summarise a store: rows, encoded rows, tokens, bytes per stored token, encoder."""
    from .store import Store

    store = Store.open(path)
    chunks = store.manifest.chunks
    tokens = sum(c.n_tokens for c in chunks)
    size = sum(c.bytes for c in chunks)
    reader = store.encoder.reader
    typer.echo(f"{path}: {store.n_documents} rows, {sum(c.n_encoded for c in chunks)} encoded, "
               f"{len(store.skipped)} skipped, {store.pending_rows().size} pending")
    typer.echo(f"{tokens} tokens in {len(chunks)} chunks, {size / max(tokens, 1):.1f} bytes per token")
    encoded_by = f"reader {reader.model} layer {reader.layer} ({reader.role}); " if reader else ""
    typer.echo(f"{encoded_by}SAE {store.encoder.sae.get('architecture', '?')} with {store.d_sae} features")


@app.command()
def top(path: Path, feature: int = typer.Option(..., help="Feature id."), k: int = 5) -> None:
    """Show the documents where a feature is strongest, activating tokens marked << >>."""
    from . import Dataset

    ds = Dataset.load_from_file(path)
    typer.echo(f"feature {feature}: {ds.feature_labels().get(feature, '(no label)')}")
    for text in ds.top_documents_for_feature(feature, k=k):
        typer.echo(f"· {_shorten(text, 300)}")


@app.command("train-sae")
@config_options(harvest=HarvestConfig, train=TrainConfig)
def train_sae_command(
    corpus: Path = typer.Argument(..., exists=True, help="A .txt (documents separated by blank lines), .csv, .jsonl, .json or .parquet file."),
    out: Path = typer.Option(..., help="Run folder: checkpoints, state.json (config and training curve), and the SAE in OUT/sae."),
    field: str = typer.Option("text", help="The column holding the text (tables only)."),
    split: str = typer.Option(None, help="Keep only rows whose 'split' column equals this."),
    resume: bool = typer.Option(True, help="Continue an interrupted run found in OUT."),
    label_tokens: int = typer.Option(500_000, help="Label the trained SAE's features offline from this many tokens "
                                                   "of the corpus (0: no labels)."),
    harvest: HarvestConfig = HarvestConfig(), train: TrainConfig = TrainConfig(),
) -> None:
    """Train a TopK (or BatchTopK) SAE on a reader's activations, then label its features; a killed run resumes
    to the same weights."""
    from .train import train_from_file

    logging.getLogger().setLevel(logging.INFO)
    folder = train_from_file(corpus, out, harvest, train, field=field, split=split, resume=resume,
                             label_tokens=label_tokens)
    typer.echo(f"SAE written to {folder} (SAELens layout): LocalSAE(path={str(folder)!r}, model={harvest.model!r})")


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    app()


if __name__ == "__main__":
    main()
