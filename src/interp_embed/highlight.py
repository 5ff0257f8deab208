"""Marking the tokens where a feature fires, in the document's own characters."""
from __future__ import annotations

import numpy as np


def marked_spans(text: str, spans: np.ndarray, active: np.ndarray) -> list[tuple[int, int, int]]:
    """``(token, start, end)`` for each active token: the characters to mark, in text order.

    ``spans[i]`` is token i's character [start, end) in ``text``; ``active[i]`` says whether to mark it.
    A token's leading whitespace stays outside its mark; a character split over two tokens is marked
    once, with the first (its span overlaps the next token's). Both the << >> markers of :func:`highlight`
    and the shading of the HTML report are drawn from these.

    >>> marked_spans("Good morning!", np.array([[0, 4], [4, 12], [12, 13]]), np.array([False, True, False]))
    [(1, 5, 12)]
    """
    marked = []
    for token in np.flatnonzero(active):
        start, end = int(spans[token, 0]), int(spans[token, 1])
        while start < end and text[start].isspace():
            start += 1
        if start < end and (not marked or start >= marked[-1][2]):
            marked.append((int(token), start, end))
    return marked


def highlight(text: str, spans: np.ndarray, active: np.ndarray, left: str = "<<", right: str = ">>") -> str:
    """``text`` with each active token's characters wrapped in markers (see :func:`marked_spans`).

    >>> highlight("Good morning!", np.array([[0, 4], [4, 12], [12, 13]]), np.array([False, True, False]))
    'Good <<morning>>!'
    """
    out, pos = [], 0
    for _, start, end in marked_spans(text, spans, active):
        out += [text[pos:start], left, text[start:end], right]
        pos = end
    out.append(text[pos:])
    return "".join(out)


def token_window(n_tokens: int, center: int, window_tokens: int) -> tuple[int, int]:
    """``(start, stop)``: at most ``window_tokens`` consecutive tokens of ``n_tokens``, ``center`` three quarters
    of the way in (what precedes a token is what a reader model saw), shifted to stay inside the document.

    >>> token_window(100, 50, 8), token_window(100, 2, 8), token_window(5, 4, 8)
    ((44, 52), (0, 8), (0, 5))
    """
    start = min(max(center - (3 * window_tokens) // 4, 0), max(n_tokens - window_tokens, 0))
    return start, min(n_tokens, start + window_tokens)


class Highlighted(str):
    """A document with the tokens where a feature fires between markers — a plain ``str`` everywhere — that a
    notebook shows as HTML, each active token shaded by its activation (hover for the value).

    >>> h = Highlighted.of("Good morning!", np.array([[0, 4], [4, 12], [12, 13]]), np.array([0, 2.0, 0]))
    >>> h, h._repr_html_()
    ('Good <<morning>>!', 'Good <span style="background: rgba(255, 140, 0, 0.90)" title="2">morning</span>!')
    """

    _html: str

    @classmethod
    def of(cls, text: str, spans: np.ndarray, values: np.ndarray, left: str = "<<", right: str = ">>") -> "Highlighted":
        import html

        out = cls(highlight(text, spans, values > 0, left, right))
        peak = float(values.max(initial=0)) or 1.0
        parts, pos = [], 0
        for token, start, end in marked_spans(text, spans, values > 0):
            alpha = 0.15 + 0.75 * float(values[token]) / peak  # faint for weak, strong for the peak
            parts += [html.escape(text[pos:start]), f'<span style="background: rgba(255, 140, 0, {alpha:.2f})" '
                      f'title="{float(values[token]):.4g}">{html.escape(text[start:end])}</span>']
            pos = end
        parts.append(html.escape(text[pos:]))
        out._html = "".join(parts)
        return out

    def _repr_html_(self) -> str:
        return self._html


class HighlightedDocuments(list):
    """Documents with the tokens where a feature fires marked — a plain ``list`` of ``str`` everywhere — that a
    notebook shows as a numbered list of shaded documents (each as :class:`Highlighted` shows it).

    >>> docs = HighlightedDocuments([Highlighted.of("Hi!", np.array([[0, 2], [2, 3]]), np.array([0, 1.0]))])
    >>> docs, docs == ["Hi<<!>>"], docs._repr_html_()
    (['Hi<<!>>'], True, '<ol><li>Hi<span style="background: rgba(255, 140, 0, 0.90)" title="1">!</span></li></ol>')
    """

    def _repr_html_(self) -> str:
        import html

        items = (d._repr_html_() if isinstance(d, Highlighted) else html.escape(str(d)) for d in self)
        return "<ol>" + "".join(f"<li>{item}</li>" for item in items) + "</ol>"
