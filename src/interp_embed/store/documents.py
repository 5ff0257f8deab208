"""The documents table on disk, written and read a row group at a time, so a table larger than memory never
has to be whole in it.

The writer takes the table batch by batch, hashes the bytes as they are written (the manifest records the
checksum) and cuts the rows into the plan's chunks in the same pass. The reader gives the texts of a range of
rows by reading only the row groups that hold them, and the whole text column a batch at a time.

A table's row count sizes arrays, so it is checked against the bytes of the file before anything is sized by
it (:func:`check_row_count`): a footer can claim any number, however few rows its pages hold.
"""
from __future__ import annotations

import hashlib
import io
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..spec.plan import ChunkCutter, EncodePlan
from .errors import StoreCorruptError

ROWS_PER_GROUP = 10_000
"""Rows per Parquet row group of a documents table: encoding a chunk reads the one or two groups holding it."""
READ_BUFFER = 1 << 20
"""Bytes read from a Parquet file at a time: without this buffer, pyarrow reads a whole row group's column
before decoding its first batch, and an input table written in one group would be read whole."""


TRUSTED_ROWS_PER_BYTE = 64
"""Rows per byte of a documents table up to which its footer's row count is taken as it is. A table written in row
groups of :data:`ROWS_PER_GROUP` rows takes at least a byte per 30 rows, however repetitive its texts (the
footer's record of each group alone is longer than that); a table claiming more rows than this is counted by
decoding its text column, in bounded memory."""


def check_row_count(path: Path, field: str, expected: int) -> None:
    """That the documents table at ``path`` holds ``expected`` rows, before any array is sized by that number: its
    footer's count must equal its row groups' counts and the manifest's, every column chunk must lie inside the
    file, and a count the file's size cannot vouch for (see :data:`TRUSTED_ROWS_PER_BYTE`) is checked by counting
    the rows of the text column. A StoreCorruptError names the file otherwise."""
    try:
        metadata = pq.ParquetFile(path).metadata
        groups = [metadata.row_group(i) for i in range(metadata.num_row_groups)]
        chunks = [group.column(j) for group in groups for j in range(group.num_columns)]
        spans = [((c.dictionary_page_offset if c.has_dictionary_page else c.data_page_offset), c.total_compressed_size)
                 for c in chunks]
    except (pa.ArrowException, OSError) as err:
        raise StoreCorruptError(f"{path}: not a readable Parquet file ({err})") from err
    size = path.stat().st_size
    if metadata.num_rows != expected:
        raise StoreCorruptError(f"{path} has {metadata.num_rows} rows; the manifest says {expected}")
    if sum(group.num_rows for group in groups) != metadata.num_rows:
        raise StoreCorruptError(f"{path}: its footer claims {metadata.num_rows} rows, its row groups "
                                f"{sum(group.num_rows for group in groups)}; the file was altered")
    if any(start is None or start < 0 or length < 0 or start + length > size for start, length in spans):
        raise StoreCorruptError(f"{path}: its footer places data beyond the file's {size} bytes; the file was altered")
    if metadata.num_rows > TRUSTED_ROWS_PER_BYTE * size:
        counted = 0
        try:
            for batch in open_parquet(path).iter_batches(batch_size=ROWS_PER_GROUP, columns=[field]):
                counted += batch.num_rows
        except (pa.ArrowException, OSError) as err:
            raise StoreCorruptError(f"{path}: not a readable Parquet file ({err})") from err
        if counted != metadata.num_rows:
            raise StoreCorruptError(f"{path}: its footer claims {metadata.num_rows} rows, its pages hold {counted}; "
                                    "the file was altered")


def open_parquet(path: Path) -> pq.ParquetFile:
    """A Parquet file opened to be read a batch at a time (see :data:`READ_BUFFER`)."""
    return pq.ParquetFile(path, pre_buffer=False, buffer_size=READ_BUFFER)


class _HashingFile(io.RawIOBase):
    """A new file that hashes every byte written to it: the checksum costs no second reading of the file."""

    def __init__(self, path: Path):
        self._file = open(path, "xb")  # exclusive: never through a link planted at the path
        self.digest = hashlib.sha256()

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        self.digest.update(data)
        return self._file.write(data)

    def close(self) -> None:
        self._file.close()
        super().close()


class DocumentsWriter:
    """Writes a documents table batch by batch, in row groups of :data:`ROWS_PER_GROUP` rows.

    >>> with DocumentsWriter(path, table.schema, "text", EncodePlan()) as writer:   # doctest: +SKIP
    ...     writer.write(table)
    >>> writer.sha256, writer.cutter.ranges()                                       # doctest: +SKIP
    """

    def __init__(self, path: Path, schema: pa.Schema, field: str, plan: EncodePlan):
        self.field = field
        self.cutter = ChunkCutter(plan)
        """The chunks of the rows written so far."""
        self.sha256: str | None = None
        """Hex SHA-256 of the file, once closed."""
        self._file = _HashingFile(path)
        self._writer = pq.ParquetWriter(self._file, schema)
        self._held = schema.empty_table()

    @property
    def n_rows(self) -> int:
        return self.cutter.rows

    def write(self, batch: pa.RecordBatch | pa.Table) -> None:
        """Append the next rows. Rows are held until they fill a row group, so that every group but the last has
        :data:`ROWS_PER_GROUP` rows whatever the size of the batches."""
        table = pa.Table.from_batches([batch]) if isinstance(batch, pa.RecordBatch) else batch
        for column in table.column(self.field).chunks:
            self.cutter.add(column.to_pylist())
        held = pa.concat_tables([self._held, table])
        whole = held.num_rows - held.num_rows % ROWS_PER_GROUP
        if whole:
            self._writer.write_table(held.slice(0, whole), row_group_size=ROWS_PER_GROUP)
        self._held = held.slice(whole)

    def __enter__(self) -> "DocumentsWriter":
        return self

    def __exit__(self, kind, error, trace) -> None:
        try:
            if error is None and self._held.num_rows:
                self._writer.write_table(self._held)
            self._writer.close()
        finally:
            self._file.close()
        self.sha256 = self._file.digest.hexdigest()


class DocumentTexts:
    """The text column of a documents table, read a row group or a batch at a time (the last group read is
    kept: encoding asks for consecutive ranges of rows)."""

    def __init__(self, path: Path, field: str):
        self.path, self.field = path, field
        try:
            self._file = open_parquet(path)
            sizes = [self._file.metadata.row_group(i).num_rows for i in range(self._file.num_row_groups)]
        except (pa.ArrowException, OSError) as err:
            raise StoreCorruptError(f"{path}: not a readable Parquet file ({err})") from err
        if field not in self._file.schema_arrow.names:
            raise StoreCorruptError(f"{path} has no text column {field!r}")
        self._group_starts = np.cumsum([0, *sizes])
        self._kept: tuple[int, list] = (-1, [])

    def between(self, start: int, stop: int) -> list:
        """The texts of rows [start, stop), in order (None where a row has none)."""
        first = int(np.searchsorted(self._group_starts, start, side="right")) - 1
        texts = []
        for group in range(max(first, 0), len(self._group_starts) - 1):
            offset = int(self._group_starts[group])
            if offset >= stop:
                break
            texts += self._group(group)[max(start - offset, 0) : stop - offset]
        return texts

    def batches(self) -> Iterator[list]:
        """Every row's text, a batch of rows at a time, in order."""
        try:
            for batch in self._file.iter_batches(batch_size=ROWS_PER_GROUP, columns=[self.field]):
                yield batch.column(0).to_pylist()
        except (pa.ArrowException, OSError) as err:
            raise StoreCorruptError(f"{self.path}: not a readable Parquet file ({err})") from err

    def _group(self, group: int) -> list:
        if self._kept[0] != group:
            try:
                column = self._file.read_row_group(group, columns=[self.field]).column(0)
            except (pa.ArrowException, OSError) as err:
                raise StoreCorruptError(f"{self.path}: not a readable Parquet file ({err})") from err
            self._kept = (group, column.to_pylist())
        return self._kept[1]
