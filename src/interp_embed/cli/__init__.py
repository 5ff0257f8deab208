"""The ``interp-embed`` command line: every analysis as a command, tables on the terminal and in files.

Exit codes: 0 success, 2 a usage error (the parser's message), 1 a failure (one line; ``--debug`` shows the
traceback), 130 interrupted (an encoding run says how to resume).
"""
from __future__ import annotations

import logging

import typer

from .common import DEBUG, PlainFormatter

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False, rich_markup_mode=None,
                  help="Interpretable SAE embeddings of text datasets.")


@app.callback()
def _options(debug: bool = typer.Option(False, "--debug", help="Show the traceback of a failure.")) -> None:
    DEBUG["on"] = debug


# Imported for the commands they add, in the order --help lists them.
from . import store_commands, column_command, analysis_commands, label_commands, train_command  # noqa: E402,F401,I001


def main() -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(PlainFormatter("%(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=logging.WARNING, handlers=[handler])
    app()


__all__ = ["app", "main"]
