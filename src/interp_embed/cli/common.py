"""What every command shares: failures as one line, tables on the terminal and in files, reading inputs.

Everything printed is plain text: a store's labels, documents and column values, paths and error messages may
hold rich markup (``[link=...]``), emoji codes or terminal control sequences (``ESC ]0;...``), and are shown as
written, with control characters escaped (:func:`plain`), never interpreted.
"""
from __future__ import annotations

import ast
import functools
import inspect
import logging
import re
import shlex
import sys
from pathlib import Path

import pandas as pd
import pyarrow as pa
import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

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
    """Rich consoles made at each use: output goes where sys.stdout points now (tests swap it), as wide as the
    terminal, or 200 columns when it is piped to a file. Strings are printed as :func:`plain` text: no markup,
    emoji codes or highlighting is read from them."""

    def __init__(self, stderr: bool = False):
        self.stderr = stderr

    def print(self, *args, **kwargs) -> None:
        stream = sys.stderr if self.stderr else sys.stdout
        Console(file=stream, markup=False, emoji=False, highlight=False, width=None if stream.isatty() else 200,
                soft_wrap=self.stderr).print(*(plain(a) if isinstance(a, str) else a for a in args),
                                             **kwargs)  # an error stays one line


console = _Terminal()
errors = _Terminal(stderr=True)
DEBUG = {"on": False}  # set by the --debug option of the command group


def resume_command(out) -> str:
    """The command that finishes an interrupted encoding into ``out``, ready to paste into a shell."""
    return f"interp-embed encode --out {shlex.quote(str(out))} --resume"


_PYTHON_STRING = r"""('(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")"""  # a path as a message quotes it: its repr

# Library messages name Python calls; on the command line the user knows flags.
_CLI_WORDS = [
    (re.compile(rf"Open it with Dataset\.load_from_file\({_PYTHON_STRING}, resume=True\), or choose another "
                r"save_path"),
     lambda m: f"Continue it with `{resume_command(ast.literal_eval(m[1]))}`, or choose another --out"),
    (re.compile(rf"Dataset\.load_from_file\({_PYTHON_STRING}, resume=True\)"),
     lambda m: resume_command(ast.literal_eval(m[1]))),
    (re.compile(r"on_error='skip'"), "--on-error skip"),
    (re.compile(r"load with resume=True"), "resume with `interp-embed encode --out STORE --resume`"),
    (re.compile(r"pass feature ids with features=\[\.\.\.\]"), "pass feature ids with --features"),
    (re.compile(r"\(by='example'\)"), "(--by example)"),
]


def in_cli_words(message: str) -> str:
    for pattern, replacement in _CLI_WORDS:
        message = pattern.sub(replacement, message)
    return message


def fail(message: str, code: int = 1):
    """Print one line to stderr and leave with ``code`` (1: a failure)."""
    errors.print(Text.assemble(("error:", "bold red"), " ", plain(in_cli_words(message))))
    raise typer.Exit(code)


def friendly(command):
    """Run ``command``: a failure prints one line (a traceback only with --debug) and exits 1; Ctrl-C exits 130."""
    @functools.wraps(command)
    def run(*args, **kwargs):
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
            fail(f"{message} ({type(err).__name__}; --debug shows the traceback)")

    run.__signature__ = inspect.signature(command)
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
    """A documents table from .csv, .tsv, .json, .jsonl, .parquet or .txt (documents separated by blank lines);
    .parquet and .jsonl files are read a batch of rows at a time (never whole in memory)."""
    suffix = path.suffix.lower()
    if suffix in (".txt", ".md", ".text"):
        from ..train.corpus import read_texts

        return pd.DataFrame({field: read_texts(path)})
    if suffix in (".parquet", ".jsonl"):
        from ..encode.table_files import jsonl_batches, parquet_batches

        return parquet_batches(path) if suffix == ".parquet" else jsonl_batches(path, field)
    readers = {".csv": pd.read_csv, ".tsv": lambda p: pd.read_csv(p, sep="\t"), ".json": pd.read_json}
    if suffix not in readers:
        raise typer.BadParameter(f"{plain(path)}: use a .csv, .tsv, .json, .jsonl, .parquet or .txt file")
    try:
        return readers[suffix](path)
    except Exception as err:  # noqa: BLE001 — pandas and pyarrow raise many kinds; the user needs the file named
        raise ValueError(f"{path} cannot be read as a {suffix} table: {err}") from err


def open_dataset(path: Path):
    from .. import Dataset

    return Dataset.load_from_file(path)


def shorten(text: str, width: int = 160) -> str:
    """One line of at most ``width`` characters, centred on the first << mark when there is one."""
    text = " ".join(str(text).split())
    if len(text) <= width:
        return text
    mark = text.find("<<")
    start = max(0, min(mark - width // 3, len(text) - width)) if mark > 0 else 0
    cut = text[start:start + width - 2]
    return ("…" if start else "") + cut + ("…" if start + width - 2 < len(text) else "")


def show(table: pd.DataFrame, columns: list[str], rows: int, title: str, csv: Path | None, json: Path | None) -> None:
    """Print the first ``rows`` rows of ``columns`` as a table; write the whole table to ``csv`` / ``json``."""
    if csv is not None:
        table.to_csv(csv, index=False)
    if json is not None:
        table.to_json(json, orient="records", force_ascii=False, indent=1)
    shown = Table(title=Text(plain(title)), title_justify="left", show_lines=False)
    columns = [c for c in columns if c in table.columns]
    for column in columns:
        numeric = pd.api.types.is_numeric_dtype(table[column])
        shown.add_column(Text(plain(column)), justify="right" if numeric else "left", overflow="fold",
                         max_width=None if numeric else 70)
    for _, row in table.head(rows).iterrows():
        shown.add_row(*(Text(plain(_cell(row[c]))) for c in columns))
    console.print(shown)
    written = [str(p) for p in (csv, json) if p is not None]
    more = f"; all {len(table)} rows in {' and '.join(written)}" if written else (
        f"; --csv or --json writes all {len(table)}" if len(table) > rows else "")
    console.print(f"{min(rows, len(table))} of {len(table)} rows shown{more}")


def _cell(value) -> str:
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1e-3 or abs(value) >= 1e4 else f"{value:.4f}".rstrip("0").rstrip(".")
    if isinstance(value, (list, tuple)):
        return ", ".join(map(str, value[:6])) + (" …" if len(value) > 6 else "")
    return shorten(str(value), 200)


CSV = typer.Option(None, "--csv", help="Write the whole table to this CSV file.")
JSON = typer.Option(None, "--json", help="Write the whole table to this JSON file (a list of records).")
