"""``add-column``: keep values computed after encoding (ratings, labels, derived flags) as a column of a store."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import typer

from . import app
from .common import console, friendly, open_dataset

_READERS = {".csv": pd.read_csv, ".tsv": lambda p: pd.read_csv(p, sep="\t"), ".json": pd.read_json,
            ".jsonl": lambda p: pd.read_json(p, lines=True), ".parquet": pd.read_parquet}


@app.command("add-column")
@friendly
def add_column(store: Path = typer.Argument(..., help="A store folder."),
               name: str = typer.Argument(..., help="The column to add to the store's table."),
               source: Path = typer.Option(..., "--from", help="A table holding the values: .csv, .tsv, .json, .jsonl "
                                                               "or .parquet."),
               on: str = typer.Option(..., "--on", help="The column both tables share: it says which document each "
                                                        "row of the file is about."),
               column: str = typer.Option(None, help="The file's column holding the values (default: NAME)."),
               overwrite: bool = typer.Option(False, "--overwrite", help="Replace a column of that name.")) -> None:
    """Keep a column of values computed after encoding in the store, matched to the documents by a key column; the
    activations are not touched. Documents the file does not mention get a missing value."""
    ds = open_dataset(store)
    column = column or name
    reader = _READERS.get(source.suffix.lower())
    if reader is None:
        raise typer.BadParameter(f"{source}: use a .csv, .tsv, .json, .jsonl or .parquet file", param_hint="--from")
    try:
        table = reader(source)
    except Exception as err:  # noqa: BLE001 — pandas and pyarrow raise many kinds; the user needs the file named
        raise ValueError(f"{source} cannot be read as a {source.suffix} table: {err}") from err
    documents = ds.pandas()
    for what, frame, needed in (("the store's table", documents, [on]), (str(source), table, [on, column])):
        missing = [c for c in needed if c not in frame.columns]
        if missing:
            raise ValueError(f"{what} has no column {missing[0]!r}; its columns are {list(frame.columns)}")
    repeated = table[on].value_counts()
    if (repeated > 1).any():
        raise ValueError(f"{source}: key {repeated.index.tolist()[0]!r} appears {int(repeated.iloc[0])} times in column {on!r}; "
                         "give each document one value")
    keys, file_keys = documents[on], table[on]
    if not (pd.api.types.is_numeric_dtype(keys) and pd.api.types.is_numeric_dtype(file_keys)):
        keys, file_keys = keys.astype(str), file_keys.astype(str)  # "7" in a CSV is the document keyed 7
    values = keys.map(pd.Series(table[column].to_numpy(), index=file_keys.to_numpy()))
    ds.add_column(name, values, overwrite=overwrite)
    matched = int(values.notna().sum())
    unmatched = int((~file_keys.isin(keys)).sum())
    console.print(f"added column {name!r} to {store}: {matched} of {len(documents)} documents have a value"
                  + (f"; {unmatched} rows of {source} match no document" if unmatched else ""))
