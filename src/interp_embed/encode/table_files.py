"""Input tables read a batch of rows at a time, as ``pyarrow.RecordBatchReader`` objects: a file larger than
memory is encoded without ever being whole in it (``Dataset.from_parquet``, ``Dataset.from_jsonl``); and CSV and
JSON tables read whole, with the text as it is written.
"""
from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pyarrow as pa

from ..store.documents import open_parquet
from ..validation import Int, validate_params

ROWS_PER_BATCH = 10_000
"""Rows read (and held in memory) at a time."""
TEXT_SUFFIXES = (".txt", ".md", ".text")
"""Plain text files, one document per paragraph (documents separated by blank lines)."""
TABLE_SUFFIXES = (".csv", ".tsv", ".json", ".jsonl", ".parquet", *TEXT_SUFFIXES)


def read_table(path: str | Path, field: str) -> pd.DataFrame | pa.RecordBatchReader:
    """A documents table from .csv, .tsv, .json, .jsonl, .parquet or .txt (documents separated by blank lines, in
    column ``field``); .parquet and .jsonl files are read a batch of rows at a time (never whole in memory). A file
    that cannot be read is a ValueError naming it."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in TEXT_SUFFIXES:
        return pd.DataFrame({field: read_paragraphs(path)})
    if suffix in (".parquet", ".jsonl"):
        return parquet_batches(path) if suffix == ".parquet" else jsonl_batches(path, field)
    readers = {".csv": lambda p: read_csv(p, field), ".tsv": lambda p: read_csv(p, field, sep="\t"), ".json": read_json}
    if suffix not in readers:
        raise ValueError(f"{path}: use a .csv, .tsv, .json, .jsonl, .parquet or .txt file")
    try:
        return readers[suffix](path)
    except Exception as err:  # noqa: BLE001 — pandas and pyarrow raise many kinds; the user needs the file named
        raise ValueError(f"{path} cannot be read as a {suffix} table: {err}") from err


def read_paragraphs(path: str | Path) -> list[str]:
    """The documents of a plain text file: its paragraphs (separated by blank lines), stripped, empty ones left
    out."""
    docs = [p.strip() for p in Path(path).read_text(encoding="utf-8", errors="replace").split("\n\n")]
    return [d for d in docs if d]


def read_csv(path: str | Path, field: str, sep: str = ",") -> pd.DataFrame:
    """A CSV (or, with ``sep="\\t"``, TSV) table whose text column ``field`` is read as written: ``NA``, ``null``,
    ``None`` or ``n/a`` is a document and ``0042`` stays ``0042``; only an empty cell is a missing text. The other
    columns are read as pandas reads them (``NA`` there is a missing value, ``42`` a number)."""
    table = pd.read_csv(path, sep=sep, low_memory=False)
    if field in table.columns:
        texts = pd.read_csv(path, sep=sep, usecols=[field], dtype=str, keep_default_na=False, na_values=[""])
        table[field] = texts[field].to_numpy()
    return table


def read_json(path: str | Path) -> pd.DataFrame:
    """A JSON table (records or columns, as pandas reads them) with every value as JSON typed it: a string such as
    ``"0042"`` or ``"2024-01-10"`` stays a string."""
    return pd.read_json(path, dtype=False)


@validate_params(batch_rows=Int(min=1))
def parquet_batches(path: str | Path, batch_rows: int = ROWS_PER_BATCH) -> pa.RecordBatchReader:
    """The rows of a Parquet file, ``batch_rows`` at a time, with the file's schema (a pandas index it
    records included)."""
    path = Path(path)
    try:
        parquet = open_parquet(path)
        schema = parquet.schema_arrow
    except pa.ArrowException as err:
        raise ValueError(f"{path} cannot be read as a .parquet table: {err}") from err
    return pa.RecordBatchReader.from_batches(schema, _parquet_batches(path, parquet, batch_rows))


def _parquet_batches(path: Path, parquet, batch_rows: int) -> Iterator[pa.RecordBatch]:
    try:
        yield from parquet.iter_batches(batch_size=batch_rows)
    except pa.ArrowException as err:
        raise ValueError(f"{path} cannot be read as a .parquet table: {err}") from err


@validate_params(batch_rows=Int(min=1))
def jsonl_batches(path: str | Path, field: str = "text", batch_rows: int = ROWS_PER_BATCH) -> pa.RecordBatchReader:
    """The rows of a JSON lines file (one JSON object per line; blank lines are ignored), ``batch_rows`` at a time.

    The file is read twice, a batch at a time: first to find every column and a type that holds all its values
    (integers and decimals in one column become decimals, as pandas reads them), then to convert the rows.
    ``field``'s values must be strings (null where a row has no text): a number there is refused by its line,
    since no column type holds both.
    """
    path = Path(path)
    schema = None
    for records, lines in _records(path, field, batch_rows):
        names = list(dict.fromkeys(name for record in records for name in record))
        found = _table(records, names, None, path, lines).schema
        try:
            schema = found if schema is None else pa.unify_schemas([schema, found], promote_options="permissive")
        except (pa.ArrowInvalid, pa.ArrowTypeError) as err:
            raise ValueError(f"{path}, {lines}: a column holds values of another type than in the lines before "
                             f"({err}); give every column one type") from err
    if schema is None:
        raise ValueError(f"{path} holds no JSON object; write one object per line, e.g. {{\"{field}\": \"...\"}}")
    batches = (_table(records, schema.names, schema, path, lines).to_batches()
               for records, lines in _records(path, field, batch_rows))
    return pa.RecordBatchReader.from_batches(schema, (batch for listed in batches for batch in listed))


def _records(path: Path, field: str, batch_rows: int) -> Iterator[tuple[list[dict], str]]:
    """Batches of the file's objects (their text checked), each with the lines it spans, as ``"lines 3-7"``."""
    batch, first, number = [], 0, 0
    try:
        with open(path, encoding="utf-8-sig") as lines:
            for number, line in enumerate(lines, 1):
                if not line.strip():
                    continue
                if not batch:
                    first = number
                batch.append(_record(path, number, line, field))
                if len(batch) == batch_rows:
                    yield batch, f"lines {first}-{number}"
                    batch = []
    except UnicodeDecodeError as err:
        raise ValueError(f"{path} is not UTF-8 text ({err.reason} after line {number})") from err
    if batch:
        yield batch, f"lines {first}-{number}"


def _record(path: Path, number: int, line: str, field: str) -> dict:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}, line {number}: not JSON ({err.msg}); write one JSON object per line") from err
    if not isinstance(record, dict):
        raise ValueError(f"{path}, line {number}: a JSON {type(record).__name__}, not an object; write one "
                         f"object per line, e.g. {{\"{field}\": \"...\"}}")
    text = record.get(field)
    if text is not None and not isinstance(text, str):
        raise ValueError(f"{path}, line {number}: {field!r} holds {json.dumps(text)[:40]}, not a string; write it "
                         "as a JSON string, or null for a row without text")
    return record


def _table(records: list[dict], names: list[str], schema: pa.Schema | None, path: Path, lines: str) -> pa.Table:
    columns = {name: [record.get(name) for record in records] for name in names}
    try:
        return pa.Table.from_pydict(columns, schema=schema)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError) as err:
        raise ValueError(f"{path}, {lines}: a column holds values of different types ({err}); give every column "
                         "one type") from err
