"""Columns added to a store's documents table after encoding: one Parquet file each, named by its checksum.

The manifest lists each added column (its name, and its file's checksum and size); a file it does not list is a
leftover and is never read. The documents table itself is never rewritten, so adding a column to a large store
writes one column, and the encoded activations are untouched.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ..files import write_atomically
from .errors import StoreCorruptError
from .manifest import ColumnRecord, FileRecord
from .paths import plain_folder


def added_column_file(column: ColumnRecord) -> str:
    """The file name of an added column: its checksum (the manifest checks it is 64 hex digits)."""
    return f"{column.file.sha256}.parquet"


def write_added_column(folder: Path, table: pa.Table) -> FileRecord:
    """Write the one-column ``table`` durably into ``folder`` (made if missing) under its checksum's name."""
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    data = sink.getvalue().to_pybytes()
    record = FileRecord(hashlib.sha256(data).hexdigest(), len(data))
    if not os.path.lexists(folder):
        folder.mkdir()
    write_atomically(plain_folder(folder) / f"{record.sha256}.parquet", data)
    return record


def read_added_column(path: Path, name: str, n_rows: int) -> pd.Series:
    """The values of the added column ``name`` from its (verified) file, refused by name unless it holds exactly
    that column and ``n_rows`` rows."""
    try:
        frame = pq.read_table(path).to_pandas()
    # The file's pandas metadata (column types) is data of the file, however crafted.
    except (pa.ArrowException, OSError, ValueError, KeyError, TypeError, IndexError, AttributeError,
            RecursionError) as err:
        raise StoreCorruptError(f"{path}: not a readable Parquet file ({type(err).__name__})") from err
    if list(frame.columns) != [name] or len(frame) != n_rows:
        raise StoreCorruptError(f"{path} does not hold the column {name!r} of {n_rows} rows the manifest lists")
    return frame[name]
