"""The ``fires_on`` column of every table of features: what each feature fires on in the data being analysed.

A feature's label may have been written from another corpus (the shipped labels describe the SAE's training text);
these words are about the documents in the table: ``FeatureWords.fires_on``, the words under the feature's strong
activations, most specific first. Where a table compares documents (a diff, a binary target), each feature's words
come from the side where it is more frequent. A dataset that cannot tell — a compact store keeps no tokens, a
stand-in may have no ``feature_words`` — gets empty strings, and the table's ``attrs["fires_on"]`` says why.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from ..store.words import FeatureWords

FIRES_ON_WORDS = 5
"""Words shown per feature."""
SEPARATOR = " · "
"""Between the words of a feature (a comma would read as one of them: a feature can fire on ",")."""
COMPACT = ("none: the store keeps pooled activations only (EncodePlan(token_level=False)), not the tokens the words "
           "are read from")
NO_WORDS = "none: the dataset cannot tell which words its features fire on (it has no feature_words())"


def words_of(ds, positions: np.ndarray | None = None) -> FeatureWords | str:
    """The :class:`FeatureWords` of ``ds`` (of its documents at ``positions`` when given), or why there are none."""
    if not hasattr(ds, "feature_words"):
        return NO_WORDS
    if not getattr(ds, "token_level", True):
        return COMPACT
    return (ds if positions is None else ds[np.asarray(positions, dtype=np.int64)]).feature_words()


def fires_on_text(words: FeatureWords | str, features: Sequence[int]) -> np.ndarray:
    """The ``fires_on`` strings of ``features`` (words joined by :data:`SEPARATOR`), "" for each where ``words`` is
    a reason."""
    if isinstance(words, str):
        return np.full(len(features), "", dtype=object)
    distinct, where = np.unique(np.asarray(features, dtype=np.int64), return_inverse=True)  # a long listing of
    text = np.array([SEPARATOR.join(words.fires_on(int(f), FIRES_ON_WORDS)) for f in distinct] + [""], dtype=object)
    return text[:-1][where.reshape(-1)] if distinct.size else np.full(0, "", dtype=object)  # pairs repeats features


def fires_on(ds, features: Sequence[int]) -> np.ndarray:
    """For each of ``features``, the words it fires on most specifically in ``ds`` ("" where ``ds`` cannot tell);
    the ``fires_on`` column of every feature table."""
    return fires_on_text(words_of(ds), np.asarray(features, dtype=np.int64).ravel())


def add_fires_on(table: pd.DataFrame, sides: Sequence[FeatureWords | str], side: np.ndarray | None = None,
                 feature_column: str = "feature_id", column: str = "fires_on") -> pd.DataFrame:
    """``table`` with ``column`` inserted after ``feature_column``: for each row, the words its feature fires on in
    ``sides[side[row]]`` (``side`` defaults to 0 everywhere). ``attrs["fires_on"]`` tells where the words came
    from, or why there are none."""
    features = table[feature_column].to_numpy()
    side = np.zeros(len(table), dtype=np.int64) if side is None else np.asarray(side, dtype=np.int64)
    text = np.full(len(table), "", dtype=object)
    for i, words in enumerate(sides):
        rows = np.flatnonzero(side == i)
        text[rows] = fires_on_text(words, features[rows])
    table = table.copy()
    table.insert(table.columns.get_loc(feature_column) + 1, column, text)
    reasons = [w for w in sides if isinstance(w, str)]
    table.attrs["fires_on"] = reasons[0] if reasons else (
        "the words each feature fires on most specifically in the documents analysed"
        + (", on the side where it is more frequent" if len(sides) > 1 else ""))
    return table
