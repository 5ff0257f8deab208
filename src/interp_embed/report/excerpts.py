"""The documents a report shows, as excerpts with the exact characters of each active token and its value.

Each excerpt is cut from the document's own text around the feature's strongest token, so a report stays
small however long its documents are; the marks are the character spans the store kept for each token
(never re-decoded tokens), chosen as :func:`~interp_embed.highlight.marked_spans` chooses the << >> marks.
"""
from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from tqdm.auto import tqdm

from ..highlight import marked_spans, token_window

EXCERPT_TOKENS = 96
"""A document is cut to this many tokens around its strongest activation of the feature shown."""
EXCERPT_CHARS = 2000
"""... and to at most this many characters (a token can be long: a run of spaces, a base64 blob)."""


class Texts:
    """The excerpts' texts, each kept once: a short document shown for many features is one entry."""

    def __init__(self):
        self.table: list[str] = []
        self._index: dict[str, int] = {}

    def index(self, text: str) -> int:
        if text not in self._index:
            self._index[text] = len(self.table)
            self.table.append(text)
        return self._index[text]


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


def collect_excerpts(ds, wanted: Iterable[tuple[int, int]], texts: Texts) -> dict[tuple[int, int], dict]:
    """``{(position, feature): excerpt}`` for each wanted pair, its ``text`` an index into ``texts``; each document is
    read from the store once."""
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
        for j, feature in enumerate(features):
            shown = excerpt(row.document, spans, columns[:, j])
            found[position, feature] = {"document": position, **shown, "text": texts.index(shown["text"])}
    return found
