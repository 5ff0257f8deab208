"""The documents a report shows, as excerpts with the exact characters of each active token and its value.

Each excerpt is cut from the document's own text around the feature's strongest token, so a report stays
small however long its documents are; the marks are the character spans the store kept for each token
(never re-decoded tokens), chosen as :func:`~interp_embed.highlight.marked_spans` chooses the << >> marks.
"""
from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from ..highlight import marked_spans, token_window

EXCERPT_TOKENS = 96
"""A document is cut to this many tokens around its strongest activation of the feature shown."""
EXCERPT_CHARS = 2000
"""... and to at most this many characters (a token can be long: a run of spaces, a base64 blob)."""


TITLE_COLUMNS = ("title", "name", "subject", "headline")
"""Without ``title_column``, the first column named one of these (in any case) titles the documents."""
TITLE_CHARS = 120
"""A title is cut to this many characters."""
MAX_META = 4
"""Other columns shown beside each document's title (the first ones of its table)."""
META_CHARS = 40
"""... each value cut to this many characters."""


def short(text: str, n: int) -> str:
    """``text`` on one line, at most ``n`` characters (cut with "…")."""
    text = " ".join(str(text).split())
    return text if len(text) <= n else text[:n - 1] + "…"


@dataclass(frozen=True)
class Titles:
    """How a report names a document: its title column (or, without one, its first words) and a few other columns."""

    column: str | None
    """The column whose value titles a document; None: its first words do."""
    meta: tuple[str, ...]
    """Other columns shown beside the title."""

    @classmethod
    def of(cls, ds, column: str | None) -> "Titles":
        """For the documents of ``ds``: ``column`` where its table has it, else the first of :data:`TITLE_COLUMNS` it
        has."""
        columns = [str(c) for c in ds.pandas().columns if c != ds.field]
        if column not in columns:
            column = next((c for c in columns if c.lower() in TITLE_COLUMNS), None)
        return cls(column=column, meta=tuple(c for c in columns if c != column)[:MAX_META])

    def describe(self, row: dict, text: str) -> dict:
        """``title`` (``title_from``: ``column`` or ``text``, its first words) and ``meta`` ([column, value] pairs,
        missing values left out) of the document whose table row is ``row``."""
        value = row.get(self.column) if self.column else None
        present = value is not None and not (isinstance(value, float) and np.isnan(value)) and str(value).strip()
        meta = [[c, short(row[c], META_CHARS)] for c in self.meta
                if c in row and not (pd.api.types.is_scalar(row[c]) and pd.isna(row[c]))]
        if present:
            return {"title": short(value, TITLE_CHARS), "title_from": "column", "meta": meta}
        return {"title": short(text, TITLE_CHARS // 2), "title_from": "text", "meta": meta}


class Texts:
    """Values the excerpts refer to, each kept once: a short document shown for many features is one entry of the
    texts, its title and metadata one entry of the names."""

    def __init__(self):
        self.table: list = []
        self._index: dict[str, int] = {}

    def index(self, value) -> int:
        key = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, sort_keys=True)
        if key not in self._index:
            self._index[key] = len(self.table)
            self.table.append(value)
        return self._index[key]


def excerpt(text: str, spans: np.ndarray, values: np.ndarray) -> dict:
    """One document's excerpt for one feature (token activations ``values``, one per token of ``spans``).

    ``marks`` are ``[start, end, value]`` of the active tokens, in characters of ``text`` (the excerpt);
    ``offset`` is where the excerpt starts in the document, ``cut_before``/``cut_after`` say whether
    the document goes on.
    """
    center = int(np.argmax(values))
    first, stop = token_window(len(spans), center, EXCERPT_TOKENS)
    begin, end = int(spans[first, 0]), int(spans[stop - 1, 1])
    if end - begin > EXCERPT_CHARS:  # the strongest token three quarters of the way in, as token_window puts it
        begin = max(begin, min(int(spans[center, 0]) - (3 * EXCERPT_CHARS) // 4, end - EXCERPT_CHARS))
        end = begin + EXCERPT_CHARS
    marks = []
    for token, start, stop_char in marked_spans(text, spans, values > 0):
        start, stop_char = max(start, begin), min(stop_char, end)
        if first <= token < stop and start < stop_char:
            marks.append([start - begin, stop_char - begin, float(values[token])])
    return {"text": text[begin:end], "offset": begin, "cut_before": begin > 0, "cut_after": end < len(text),
            "peak": float(values[center]), "marks": marks}


def collect_excerpts(ds, wanted: Iterable[tuple[int, int]], texts: Texts, titles: Titles,
                     names: Texts) -> dict[tuple[int, int], dict]:
    """``{(position, feature): excerpt}`` for each wanted pair, its ``text`` an index into ``texts`` and its ``name``
    (the document's title and metadata, as ``titles`` says) an index into ``names``; each document is read from the
    store once."""
    by_position: dict[int, list[int]] = {}
    for position, feature in wanted:
        by_position.setdefault(int(position), []).append(int(feature))
    found = {}
    for position, features in tqdm(sorted(by_position.items()), desc="Report: reading documents", unit="doc",
                                   leave=False, disable=len(by_position) < 100):
        row = ds[position]
        features = sorted(set(features))
        columns = row.latents("all")[:, features].toarray()
        spans = row.spans()
        name = names.index(titles.describe(row.row, row.document))
        for j, feature in enumerate(features):
            shown = excerpt(row.document, spans, columns[:, j])
            found[position, feature] = {"document": position, "name": name, **shown, "text": texts.index(shown["text"])}
    return found
