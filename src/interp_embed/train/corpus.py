"""Read training text from .txt, .csv, .tsv, .jsonl/.json or .parquet files (read as ``interp-embed encode`` reads
them: encode/table_files.py)."""
from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from ..encode.table_files import TEXT_SUFFIXES, read_paragraphs, read_table


def read_texts(path: str | Path, field: str = "text", split: str | None = None) -> list[str]:
    """Documents of a corpus file: a text file's blank-line-separated paragraphs, or a table's ``field``.

    ``split`` keeps only rows whose ``split`` column equals it (the layout scripts/build_corpus.py writes).
    """
    path = Path(path)
    if path.suffix.lower() in TEXT_SUFFIXES:
        return read_paragraphs(path)
    table = read_table(path, field)
    if isinstance(table, pa.RecordBatchReader):
        table = table.read_all().to_pandas()
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
