"""Marking the tokens where a feature fires, in the document's own characters."""
from __future__ import annotations

import numpy as np


def highlight(text: str, spans: np.ndarray, active: np.ndarray, left: str = "<<", right: str = ">>") -> str:
    """``text`` with each active token's characters wrapped in markers.

    ``spans[i]`` is token i's character [start, end) in ``text``; ``active[i]`` says whether to mark it.
    A token's leading whitespace stays outside its markers; a character split over two tokens is marked
    once, with the first (its span overlaps the next token's).

    >>> highlight("Good morning!", np.array([[0, 4], [4, 12], [12, 13]]), np.array([False, True, False]))
    'Good <<morning>>!'
    """
    marked = []
    for start, end in spans[active]:
        start, end = int(start), int(end)
        while start < end and text[start].isspace():
            start += 1
        if start < end and (not marked or start >= marked[-1][1]):
            marked.append((start, end))
    out, pos = [], 0
    for start, end in marked:
        out += [text[pos:start], left, text[start:end], right]
        pos = end
    out.append(text[pos:])
    return "".join(out)
