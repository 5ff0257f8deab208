"""Tables that fit the terminal: every id and number whole, the words features fire on kept, long text cut with "…".

A table is as wide as the terminal (``COLUMNS`` when set, else the terminal's own width, else — printed into a pipe
or a file — :data:`PIPE_WIDTH` columns). Ids and numbers are never cut; numeric headers are written over two lines
(``freq_`` above ``german``) when one line is too wide. When the columns still do not fit, labels are shortened
and then left out first, then the numbers a command calls optional (a diff's interval) while the words a feature
fires on would get less than :data:`WORDS_WIDTH`, then other text; the words stay, shortened to no less than
:data:`MIN_WIDTH` says. ``--wide`` prints every column of the table in full, however wide.
"""
from __future__ import annotations

import os
import shutil
from dataclasses import dataclass

from rich.cells import cell_len

from ..analysis.fires_on import SEPARATOR

PIPE_WIDTH = 100
"""Columns of a table printed into a pipe or a file when ``COLUMNS`` is not set: wide enough for the numbers of a
diff and a readable ``fires_on``, narrow enough for a laptop's terminal to show it unwrapped."""
GAP = "  "
MIN_WIDTH = {"words": 14, "text": 24, "label": 16}
"""The narrowest a text column is shown; a column that cannot get this much is left out (labels first)."""
WORDS_WIDTH = 28
"""The words a feature fires on get this much (or all they need) before optional numbers are shown."""
ELLIPSIS = "…"


def table_width(stream) -> int:
    """The width tables and messages are fitted to: ``COLUMNS``, else the terminal's, else :data:`PIPE_WIDTH`."""
    columns = os.environ.get("COLUMNS", "")
    if columns.isdigit() and int(columns) > 0:
        return int(columns)
    if stream.isatty():
        return shutil.get_terminal_size((PIPE_WIDTH, 24)).columns
    return PIPE_WIDTH


def role(name: str, numeric: bool, optional: bool = False) -> str:
    """How a column is treated: ``number`` (never cut), ``optional`` (a number left out before text is), ``words``
    (what a feature fires on: kept, shortened), ``label`` (shortened, then left out first) or ``text`` (the rest)."""
    if numeric:
        return "optional" if optional else "number"
    if name.startswith("fires_on"):
        return "words"
    if name.startswith("label") or name.endswith("_label"):
        return "label"
    return "text"


def cut(text: str, width: int, words: bool = False, marks: bool = True) -> str:
    """``text`` in at most ``width`` terminal cells, with "…" where it is cut; with ``marks``, a text with a ``<<``
    mark shows the part around its first mark (a highlighted document shows what it is shown for). With ``words``,
    a list of words (joined by " · ") loses whole words while one still fits.

    >>> cut("Tell me about the <<rabbits>> of the field, said the farmer", 20), cut("short", 20)
    ('…t the <<rabbits>> …', 'short')
    >>> cut("die · ihnen · alec · maus", 20, words=True), cut("beschädigte · maus", 8, words=True)
    ('die · ihnen · alec …', 'beschä…')
    """
    if cell_len(text) <= width:
        return text
    if words and SEPARATOR in text:
        kept = text.split(SEPARATOR)
        while len(kept) > 1 and cell_len(SEPARATOR.join(kept) + " " + ELLIPSIS) > width:
            kept.pop()
        if cell_len(SEPARATOR.join(kept) + " " + ELLIPSIS) <= width:
            return SEPARATOR.join(kept) + " " + ELLIPSIS
    mark = text.find("<<") if marks else -1
    start = max(0, min(mark - width // 3, len(text) - width)) if mark > 0 else 0
    body = text[start:start + width - 2]
    while cell_len(body) > width - 2:  # a wide (CJK) character takes two cells
        body = body[:-1]
    return (ELLIPSIS if start else "") + body + (ELLIPSIS if start + len(body) < len(text) else "")


@dataclass
class Column:
    name: str
    """Its name in the table (and the header shown)."""
    cells: list[str]
    """Its shown rows, as one-line strings."""
    role: str
    """See :func:`role`."""
    width: int = 0
    """The cells it is given."""
    header: tuple[str, ...] = ()
    """The header's lines."""

    @property
    def natural(self) -> int:
        return max([cell_len(self.name), *map(cell_len, self.cells)])

    @property
    def minimum(self) -> int:
        """The narrowest this column is shown: a number whole (its header over two lines), text as
        :data:`MIN_WIDTH` says (or narrower, when all of it is)."""
        values = max(map(cell_len, self.cells), default=0)
        if self.role in NUMBERS:
            return max(values, *map(cell_len, stacked(self.name, values)))
        return min(self.natural, max(MIN_WIDTH[self.role], cell_len(self.name)))


def stacked(name: str, width: int) -> tuple[str, ...]:
    """A header cut after underscores into lines of at most ``width`` cells (a part longer stays whole).

    >>> stacked("freq_german", 4), stacked("frequency_difference", 5), stacked("q_value", 8)
    (('freq_', 'german'), ('frequency_', 'difference'), ('q_value',))
    """
    parts = [p + "_" for p in name.split("_")]
    parts[-1] = parts[-1][:-1]
    lines = [parts[0]]
    for part in parts[1:]:
        if cell_len(lines[-1] + part) <= width:
            lines[-1] += part
        else:
            lines.append(part)
    return tuple(lines)


NUMBERS = ("number", "optional")
GROW_ORDER = ("words", "text", "label")


def layout(names: list[str], cells: list[list[str]], numeric: list[bool], width: int | None,
           optional: tuple[str, ...] = ()) -> tuple[list[str], list[str]]:
    """The lines of a table of ``cells`` (rows of one-line strings) under ``names``, fitted to ``width`` cells
    (None: no limit, nothing cut), and the names of the columns left out to fit; ``optional`` names numeric
    columns that may be left out before any text is."""
    columns = [Column(n, [row[i] for row in cells], role(n, num, n in optional))
               for i, (n, num) in enumerate(zip(names, numeric))]
    dropped: list[str] = []
    if width is None:
        for c in columns:
            c.width, c.header = c.natural, (c.name,)
        return _lines(columns), dropped

    def room(kept):
        return width - cell_len(GAP) * (len(kept) - 1)

    def comfortable(c):  # the words get WORDS_WIDTH (or what they need), every other column its minimum
        return min(c.natural, max(c.minimum, WORDS_WIDTH)) if c.role == "words" else c.minimum

    def leave_out(groups, width_of):
        for group in groups:
            if sum(map(width_of, kept)) <= room(kept):
                return
            for c in group:
                if c in kept:
                    kept.remove(c)
                    dropped.append(c.name)

    kept = list(columns)
    alone = lambda role: [[c] for c in reversed(columns) if c.role == role]  # noqa: E731
    optional = [[c for c in columns if c.role == "optional"]]  # together: an interval's two ends
    # What cannot get its minimum: labels first, then optional numbers, other text, the words, and at last numbers
    # from the right (never the first column, the id). Then, while the words would be cramped, labels and optional
    # numbers.
    leave_out(alone("label") + optional + alone("text") + alone("words") + alone("number")[:-1],
              lambda c: c.minimum)
    leave_out(alone("label") + optional, comfortable)
    # Numbers and ids whole; one-line headers if they fit beside comfortable words, else numeric headers stacked.
    one_line = sum(c.natural if c.role in NUMBERS else comfortable(c) for c in kept) <= room(kept)
    for c in kept:
        if c.role in NUMBERS:
            c.width = c.natural if one_line else c.minimum
            c.header = (c.name,) if one_line else stacked(c.name, c.width)
        else:
            c.width, c.header = c.minimum, (c.name,)
    spare = room(kept) - sum(c.width for c in kept)
    for r in GROW_ORDER:
        for c in kept:
            if c.role == r and spare > 0:
                grown = min(c.natural, c.width + spare)
                spare -= grown - c.width
                c.width = grown
    return _lines(kept), dropped


def _lines(columns: list[Column]) -> list[str]:
    height = max((len(c.header) for c in columns), default=1)

    def line(values: list[str]) -> str:
        parts = []
        for c, value in zip(columns, values):
            value = cut(value, c.width, words=c.role == "words", marks=c.role == "text")
            pad = " " * (c.width - cell_len(value))
            parts.append(pad + value if c.role in NUMBERS else value + pad)
        return GAP.join(parts).rstrip()

    headers = [line([(("",) * (height - len(c.header)) + c.header)[i] for c in columns]) for i in range(height)]
    rule = GAP.join("─" * c.width for c in columns)
    return headers + [rule] + [line([c.cells[i] for c in columns]) for i in range(len(columns[0].cells) if columns else 0)]
