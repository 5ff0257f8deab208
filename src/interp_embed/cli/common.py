"""What every command shares: failures as one line, tables on the terminal and in files, reading inputs.

Everything printed is plain text: a store's labels, documents and column values, paths and error messages may
hold rich markup (``[link=...]``), emoji codes or terminal control sequences (``ESC ]0;...``), and are shown as
written, with control characters escaped (:func:`plain`), never interpreted.
"""
from __future__ import annotations

import functools
import inspect
import logging
import re
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pyarrow as pa
import typer
from rich.console import Console
from rich.text import Text

from .tables import cut, layout, table_width
from ..validation import resume_command

# What a terminal would act on instead of showing: C0 and C1 controls (ESC starts colour, title and hyperlink
# sequences; CR and BS overwrite), bidirectional marks and overrides (they reorder what is read), line and
# paragraph separators, and lone surrogates (a path of undecodable bytes; no terminal encoding holds them).
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069\ud800-\udfff]")


def plain(text) -> str:
    r"""``text`` as safe terminal text: each character a terminal would act on written as its escape.

    >>> print(plain("ok\x1b]0;title\x07 \u202eevil [link=https://x/]y[/link]"))
    ok\x1b]0;title\x07 \u202eevil [link=https://x/]y[/link]
    """
    return _UNSAFE.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), str(text))


class PlainFormatter(logging.Formatter):
    """Log lines with :func:`plain` messages: a warning may quote a store's file name or text."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        return plain(super().formatMessage(record))


class _Terminal:
    """Rich consoles made at each use: output goes where sys.stdout points now (tests swap it). On a terminal, text
    is wrapped at words to its width; into a pipe or a file, and on stderr, a line stays one line (a table fits
    itself, :func:`show`). Strings are printed as :func:`plain` text: no markup, emoji codes or highlighting is read
    from them."""

    def __init__(self, stderr: bool = False):
        self.stderr = stderr

    def print(self, *args, **kwargs) -> None:
        stream = sys.stderr if self.stderr else sys.stdout
        Console(file=stream, markup=False, emoji=False, highlight=False, width=table_width(stream),
                soft_wrap=self.stderr or not stream.isatty()).print(
            *(plain(a) if isinstance(a, str) else a for a in args), **kwargs)  # an error stays one line


console = _Terminal()
errors = _Terminal(stderr=True)
DEBUG = {"on": False}  # set by the --debug option of the command group
TABLES = {"wide": False}  # set by the --wide option of a command that prints a table


def fail(message: str, code: int = 1):
    """Print one line to stderr and leave with ``code`` (1: a failure)."""
    errors.print(Text.assemble(("error:", "bold red"), " ", plain(message)))
    raise typer.Exit(code)


WIDE = typer.Option(False, "--wide", help="Print every column of the table in full, however wide.")


def friendly(command):
    """Run ``command``: a failure prints one line (a traceback only with --debug) and exits 1; Ctrl-C exits 130.
    A command that prints a table (it has ``--csv``) also gets ``--wide``."""
    signature = inspect.signature(command)
    tabular = "csv" in signature.parameters

    @functools.wraps(command)
    def run(*args, **kwargs):
        TABLES["wide"] = kwargs.pop("wide", False)
        try:
            return command(*args, **kwargs)
        except (typer.Exit, typer.Abort, typer.BadParameter):
            raise
        except KeyboardInterrupt:
            errors.print("interrupted")
            raise typer.Exit(130) from None
        except Exception as err:  # noqa: BLE001 — every failure becomes one readable line
            if DEBUG["on"]:
                raise
            message = str(err.args[0]) if isinstance(err, KeyError) and err.args else str(err)
            fail(f"{getattr(err, 'command_line', message)} ({type(err).__name__}; --debug shows the traceback)")

    if tabular:
        signature = signature.replace(parameters=[*signature.parameters.values(), inspect.Parameter(
            "wide", inspect.Parameter.KEYWORD_ONLY, annotation=bool, default=WIDE)])
    run.__signature__ = signature
    return run


def default(function, name: str):
    """The default of ``function``'s parameter ``name``: the command line states no default of its own."""
    return inspect.signature(function).parameters[name].default


def feature_list(text: str | None) -> list[int] | None:
    """``"3, 17,42"`` → ``[3, 17, 42]``."""
    if text is None:
        return None
    try:
        return [int(part) for part in text.replace(",", " ").split()]
    except ValueError:
        raise typer.BadParameter(f"{text!r}: give feature ids separated by commas, e.g. --features 12,345") from None


def read_table(path: Path, field: str) -> pd.DataFrame | pa.RecordBatchReader:
    """A documents table (see :func:`interp_embed.encode.table_files.read_table`); a file of another kind is a
    mistake in the command's arguments."""
    from ..encode import table_files

    if path.suffix.lower() not in table_files.TABLE_SUFFIXES:
        raise typer.BadParameter(f"{plain(path)}: use a .csv, .tsv, .json, .jsonl, .parquet or .txt file")
    return table_files.read_table(path, field)


def open_dataset(path: Path):
    """The store at ``path`` to analyse. An unfinished one says how many rows are encoded and how to finish it (on
    stderr; with none encoded it stops there): the analyses read the encoded rows only."""
    from .. import Dataset
    from ..dataset import NOT_ENCODED_WARNING
    from ..store import Store

    store = Store.open(path)
    n, chunks = store.n_documents, store.manifest.chunks
    encoded, pending = sum(c.n_encoded for c in chunks), store.pending_rows().size
    finish = f"finish it with `{resume_command(path)}`"
    if pending and not encoded:
        fail(f"{path} has 0 of {n} rows encoded, so there is nothing to analyse yet; {finish}")
    if not encoded:
        fail(f"{path} has no encoded rows: all {n} were skipped (no text to encode)")
    if pending:
        errors.print(f"note: {path} has {encoded} of {n} rows encoded; the other {pending} are left out until you "
                     f"{finish}")
    quiet = logging.getLogger("interp_embed.dataset")
    said = _Drop(NOT_ENCODED_WARNING)  # said above, in the command line's words
    quiet.addFilter(said)
    try:
        return Dataset.load_from_file(path)
    finally:
        quiet.removeFilter(said)


class _Drop(logging.Filter):
    """Drops the log records of one message (by its format string)."""

    def __init__(self, message: str):
        super().__init__()
        self.message = message

    def filter(self, record: logging.LogRecord) -> bool:
        return record.msg != self.message


def shorten(text: str, width: int = 160) -> str:
    """One line of at most ``width`` characters, around the first << mark when there is one."""
    return cut(" ".join(str(text).split()), width)


def show(table: pd.DataFrame, columns: list[str], rows: int, title: str, csv: Path | None, json: Path | None,
         optional: tuple[str, ...] = ()) -> None:
    """Print the first ``rows`` rows of ``columns`` as a table fitted to the terminal (``optional`` numeric columns
    may be left out to fit; with ``--wide``: every column of the table, nothing cut); write the whole table to
    ``csv`` / ``json``."""
    if csv is not None:
        table.to_csv(csv, index=False)
    if json is not None:
        table.to_json(json, orient="records", force_ascii=False, indent=1)
    wide = TABLES["wide"]
    columns = list(table.columns) if wide else [c for c in columns if c in table.columns]
    head = table.head(rows)
    numeric = [pd.api.types.is_numeric_dtype(table[c]) for c in columns]
    cells = [[plain(" ".join(_cell(row[c], number).split())) for c, number in zip(columns, numeric)]
             for _, row in head.iterrows()]
    width = None if wide else table_width(sys.stdout)
    lines, dropped = layout([plain(c) for c in columns], cells, numeric, width, optional)
    written = [str(p) for p in (csv, json) if p is not None]
    more = f"; all {len(table)} rows in {' and '.join(written)}" if written else (
        f"; --csv or --json writes all {len(table)}" if len(table) > rows else "")
    left_out = f"; {', '.join(dropped)} left out to fit (--wide shows every column)" if dropped else ""
    note = f"{min(rows, len(table))} of {len(table)} rows shown{more}{left_out}"
    for line in [*_wrap(plain(title), width), *lines, *_wrap(plain(note), width)]:
        console.print(line, soft_wrap=True)  # as wide as the table (a --wide line is as long as it is)


def print_wrapped(text: str) -> None:
    """Print a note under a table, broken at spaces to the terminal's width."""
    for line in _wrap(plain(text), table_width(sys.stdout)):
        console.print(line, soft_wrap=True)


def _wrap(text: str, width: int | None) -> list[str]:
    """``text`` broken at spaces into lines of at most ``width`` characters (None: one line)."""
    return [text] if width is None else textwrap.wrap(text, width, break_on_hyphens=False) or [""]


def _cell(value, numeric: bool) -> str:
    """A value as a table shows it: numbers short, a missing text blank (a missing number is nan)."""
    if not numeric and pd.api.types.is_scalar(value) and pd.isna(value):
        return ""
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1e-3 or abs(value) >= 1e4 else f"{value:.4f}".rstrip("0").rstrip(".")
    if isinstance(value, (list, tuple)):
        return ", ".join(map(str, value[:6])) + (" …" if len(value) > 6 else "")
    return str(value)


CSV = typer.Option(None, "--csv", help="Write the whole table to this CSV file.")
JSON = typer.Option(None, "--json", help="Write the whole table to this JSON file (a list of records).")
