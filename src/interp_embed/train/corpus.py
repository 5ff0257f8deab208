"""Read training text from .txt, .csv, .jsonl/.json or .parquet files."""
from __future__ import annotations

from pathlib import Path

import pandas as pd


def read_texts(path: str | Path, field: str = "text", split: str | None = None) -> list[str]:
    """Documents of a corpus file: a text file's blank-line-separated paragraphs, or a table's ``field``.

    ``split`` keeps only rows whose ``split`` column equals it (the layout scripts/build_corpus.py writes).
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in (".txt", ".md", ".text"):
        docs = [p.strip() for p in path.read_text(encoding="utf-8", errors="replace").split("\n\n")]
        return [d for d in docs if d]
    if suffix == ".csv":
        table = pd.read_csv(path)
    elif suffix in (".jsonl", ".json"):
        table = pd.read_json(path, lines=suffix == ".jsonl")
    elif suffix == ".parquet":
        table = pd.read_parquet(path)
    else:
        raise ValueError(f"{path}: unsupported corpus format {suffix!r}; use .txt, .csv, .jsonl, .json or .parquet")
    if field not in table.columns:
        raise ValueError(f"{path}: no column {field!r}; available columns: {list(table.columns)}")
    if split is not None:
        if "split" not in table.columns:
            raise ValueError(f"{path}: split={split!r} asked for, but the file has no 'split' column")
        table = table[table["split"] == split]
    texts = table[field]
    bad = texts.index[~texts.map(lambda v: isinstance(v, str) and bool(v.strip()))]
    if len(bad):
        raise ValueError(f"{path}: column {field!r} has empty or non-text values in rows {list(bad[:20])}")
    return texts.tolist()
