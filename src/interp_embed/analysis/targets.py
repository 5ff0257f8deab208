"""What an association or a trend is computed against: a column of the dataset, or values the user computed.

A target is a column name, or one value per document — a NumPy array, a list, a boolean mask, a pandas Series.
A Series whose index holds exactly the labels of the dataset's table (``ds.pandas().index``) is matched by label;
any other sequence of the dataset's length is taken in row order; another length is refused, saying both lengths.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

KINDS = ("binary", "numeric", "categorical")
MAX_LEVELS = 100
"""A categorical target with more distinct values is refused: each level is tested against the rest, and a column
of mostly unique values (names, ids, free text) has nothing to learn per level."""


def aligned(values: Any, frame: pd.DataFrame, what: str) -> pd.Series:
    """``values`` as a Series with ``frame``'s index, one value per row of ``frame`` (see the module docstring)."""
    n = len(frame)
    if isinstance(values, pd.DataFrame):
        raise TypeError(f"{what} must be one value per document, not a table of {values.shape[1]} columns; pick one "
                        f"column, e.g. df[{values.columns[0]!r}].")
    if isinstance(values, pd.Series):
        if values.index.equals(frame.index):
            return values
        if (len(values) == n and values.index.is_unique and frame.index.is_unique
                and set(values.index) == set(frame.index)):
            return values.reindex(frame.index)
        if len(values) == n:
            return pd.Series(values.to_numpy(), index=frame.index, name=values.name)
        raise ValueError(f"{what} has {len(values)} values for the dataset's {n} documents; give one per document, in "
                         "the dataset's order or as a Series indexed like ds.pandas().")
    if isinstance(values, (str, bytes)) or np.ndim(values) == 0:
        raise TypeError(f"{what} must be a column name or one value per document, not {values!r}.")
    array = np.asarray(values)
    if array.ndim != 1:
        raise ValueError(f"{what} must be one-dimensional (one value per document), not of shape {array.shape}.")
    if array.size != n:
        raise ValueError(f"{what} has {array.size} values for the dataset's {n} documents; give one per document, in "
                         "the dataset's order.")
    return pd.Series(array, index=frame.index)


def target_series(frame: pd.DataFrame, target: Any) -> tuple[pd.Series, str]:
    """``(values, name)``: the target as one value per row of ``frame`` (the dataset's table) and what to call it —
    the column's name, the Series' name, or ``"target"``."""
    if isinstance(target, str):
        if target not in frame.columns:
            raise KeyError(f"target {target!r} is not a column of the dataset; columns are {list(frame.columns)}. Pass "
                           "values you computed (an array, a Series or a boolean mask) as the target itself, or keep "
                           "them as a column with ds.add_column(name, values).")
        return frame[target], target
    values = aligned(target, frame, "target")
    name = values.name if isinstance(values.name, str) and values.name else "target"
    return values, name


@dataclass(frozen=True)
class Target:
    """A target's values over the documents analysed, encoded for the tests."""

    kind: str
    """``binary``, ``numeric`` or ``categorical`` (see :func:`encode_target`)."""
    y: np.ndarray
    """float64, NaN where the value is missing: 0/1 for a binary target (1: ``positive``), the value for a numeric
    one, the level's index in ``levels`` for a categorical one."""
    positive: Any = None
    """The class a binary target's 1 stands for."""
    levels: tuple = ()
    """A categorical target's distinct values, sorted."""


def encode_target(values: pd.Series, name: str, max_levels: int = MAX_LEVELS) -> Target:
    """Encode a target: ``binary`` (booleans, 0/1, or two distinct values — the one sorted last is the positive
    class), ``numeric`` (numbers), or ``categorical`` (more than two distinct values that are not numbers, or a
    pandas categorical column of more than two)."""
    present = values.dropna()
    if present.empty:
        raise ValueError(f"target {name!r} has no non-missing values among the encoded documents.")
    categorical = isinstance(values.dtype, pd.CategoricalDtype)
    if not categorical and (pd.api.types.is_bool_dtype(present) or _is_zero_one(present)):
        y = values.map(lambda v: np.nan if pd.isna(v) else float(v)).to_numpy(dtype=np.float64)
        return Target("binary", y, positive=1)
    if not categorical and pd.api.types.is_numeric_dtype(present):
        return Target("numeric", values.to_numpy(dtype=np.float64))
    classes = sorted(pd.unique(present), key=_sort_key)
    if len(classes) == 2:
        positive = classes[1]
        y = values.map(lambda v: np.nan if pd.isna(v) else float(v == positive)).to_numpy(dtype=np.float64)
        return Target("binary", y, positive=positive)
    if len(classes) < 2:
        raise ValueError(f"target {name!r} has one value only ({classes[0]!r}) among the encoded documents; there is "
                         "nothing to compare.")
    if present.value_counts().max() < 2:
        raise ValueError(f"target {name!r} has {len(classes)} distinct values among {len(present)} documents, no two "
                         "documents sharing one: it looks like an identifier or free text, not categories. Map it to "
                         f"categories or numbers first, e.g. df[{name!r}].str.len().")
    if len(classes) > max_levels:
        raise ValueError(f"target {name!r} has {len(classes)} distinct values; each is tested against the rest, up to "
                         f"{max_levels}. Group rare values first (e.g. map them to 'other'), or pass a numeric target.")
    index = {level: float(i) for i, level in enumerate(classes)}
    y = values.map(lambda v: np.nan if pd.isna(v) else index[v]).to_numpy(dtype=np.float64)
    return Target("categorical", y, levels=tuple(classes))


def _is_zero_one(values: pd.Series) -> bool:
    try:
        return set(pd.unique(values)) <= {0, 1}
    except TypeError:  # unhashable values
        return False


def _sort_key(value):
    """Numbers by value and everything else by its text, numbers first: a column may mix types."""
    return (0, float(value), "") if isinstance(value, (int, float, np.number)) and not isinstance(value, bool) else (
        1, 0.0, str(value))
