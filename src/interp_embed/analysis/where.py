"""Choosing documents by their metadata with a written condition, ``section == 'games' and year >= 2020``, safely.

The condition is in the syntax of ``pandas.DataFrame.query`` but is never evaluated as code: it is parsed with
Python's ``ast`` and only these are allowed — column names (a name that is not an identifier in backticks,
```release date```), literals (strings, numbers, True, False, None, and lists or tuples of them), comparisons
(``==``, ``!=``, ``<``, ``<=``, ``>``, ``>=``, ``in``, ``not in``), ``and``/``or``/``not`` (and ``&``, ``|``, ``~``),
and ``column.isna()`` / ``column.notna()``. Anything else — a call, an attribute, arithmetic, a name that is not a
column — is refused, naming the part of the condition refused. As in pandas, a missing value fails every comparison
but ``!=``.
"""
from __future__ import annotations

import ast
import operator
import re

import numpy as np
import pandas as pd

_COMPARISONS = {ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt, ast.LtE: operator.le,
                ast.Gt: operator.gt, ast.GtE: operator.ge}
_BACKTICKS = re.compile(r"`([^`]*)`")
_PLACEHOLDER = "__column_{}__"
MAX_LENGTH = 10_000


class WhereError(ValueError):
    """A condition that cannot be read, or that asks for something a condition may not do."""


def where_mask(frame: pd.DataFrame, condition: str) -> np.ndarray:
    """The boolean mask of the rows of ``frame`` that satisfy ``condition`` (see the module docstring).

    >>> where_mask(pd.DataFrame({"section": ["games", "libs"], "year": [2020, 2010]}), "section == 'games' or year > 2015")
    array([ True, False])
    """
    if not isinstance(condition, str) or not condition.strip():
        raise WhereError(f"a condition must be a non-empty string such as \"section == 'games'\", not {condition!r}.")
    quoted: list[str] = []

    def placeholder(match: re.Match) -> str:
        quoted.append(match.group(1))
        return _PLACEHOLDER.format(len(quoted) - 1)

    source = _BACKTICKS.sub(placeholder, condition)
    if len(source) > MAX_LENGTH:
        raise WhereError(f"a condition of {len(source):,} characters is too long to be one (at most {MAX_LENGTH:,}).")
    try:
        tree = ast.parse(source.strip(), mode="eval")
        return _Evaluator(frame, quoted, condition).mask(tree.body).to_numpy(dtype=bool)
    except SyntaxError as err:
        raise WhereError(f"condition {condition!r} cannot be read ({err.msg}); write it as pandas' query does, e.g. "
                         "\"section == 'games' and year >= 2020\".") from None
    except (RecursionError, MemoryError):
        raise WhereError(f"condition {condition[:80]!r}... is nested too deeply to be read.") from None


class _Evaluator:
    """Walks the parsed condition, allowing only the nodes the module docstring lists."""

    def __init__(self, frame: pd.DataFrame, quoted: list[str], condition: str):
        self.frame, self.quoted, self.condition = frame, quoted, condition

    def refuse(self, node: ast.AST, why: str):
        part = ast.unparse(node)
        for i, name in enumerate(self.quoted):
            part = part.replace(_PLACEHOLDER.format(i), f"`{name}`")
        raise WhereError(f"condition {self.condition!r}: {part!r} is not allowed ({why}); a condition compares "
                         "columns with values, joined by and/or/not.")

    def value(self, node: ast.AST):
        if isinstance(node, ast.BoolOp):
            parts = [self.mask(v) for v in node.values]
            combine = operator.and_ if isinstance(node.op, ast.And) else operator.or_
            result = parts[0]
            for part in parts[1:]:
                result = combine(result, part)
            return result
        if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.BitAnd, ast.BitOr)):
            combine = operator.and_ if isinstance(node.op, ast.BitAnd) else operator.or_
            return combine(self.mask(node.left), self.mask(node.right))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.Not, ast.Invert)):
            return ~self.mask(node.operand)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            operand = self.value(node.operand)
            if isinstance(operand, (int, float)) and not isinstance(operand, bool):
                return -operand if isinstance(node.op, ast.USub) else operand
            self.refuse(node, "a sign goes before a number only")
        if isinstance(node, ast.Compare):
            return self.compare(node)
        if isinstance(node, ast.Name):
            return self.column(node)
        if isinstance(node, ast.Constant):
            if node.value is None or isinstance(node.value, (str, int, float, bool)):
                return node.value
            self.refuse(node, "not a string, a number, True, False or None")
        if isinstance(node, (ast.List, ast.Tuple, ast.Set)):
            values = [self.value(e) for e in node.elts]
            if any(isinstance(v, pd.Series) or isinstance(v, list) for v in values):
                self.refuse(node, "a list holds values, not columns")
            return values
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and not node.args and not node.keywords \
                and node.func.attr in ("isna", "notna") and isinstance(node.func.value, ast.Name):
            column = self.column(node.func.value)
            return column.isna() if node.func.attr == "isna" else column.notna()
        self.refuse(node, "only comparisons, and/or/not, column names and literal values are")

    def column(self, node: ast.Name) -> pd.Series:
        name = node.id
        match = re.fullmatch(r"__column_(\d+)__", name)
        if match:
            name = self.quoted[int(match.group(1))]
        if name not in self.frame.columns:
            raise WhereError(f"condition {self.condition!r}: {name!r} is not a column; columns are "
                             f"{list(self.frame.columns)} (quote a name with spaces in backticks: `release date`).")
        return self.frame[name]

    def mask(self, node: ast.AST) -> pd.Series:
        value = self.value(node)
        if not isinstance(value, pd.Series):
            self.refuse(node, "not a condition on the rows")
        if not pd.api.types.is_bool_dtype(value):
            if value.isin([True, False]).all() and value.notna().all():
                return value.astype(bool)
            self.refuse(node, "a column is a condition only if it holds True and False")
        return value.fillna(False).astype(bool)

    def compare(self, node: ast.Compare) -> pd.Series:
        result, left = None, self.value(node.left)
        for op, right_node in zip(node.ops, node.comparators):
            right = self.value(right_node)
            if isinstance(op, (ast.In, ast.NotIn)):
                if not isinstance(left, pd.Series) or not isinstance(right, list):
                    self.refuse(node, "write `column in [values]`")
                part = left.isin(right)
                part = ~part if isinstance(op, ast.NotIn) else part
            elif type(op) in _COMPARISONS:
                if not isinstance(left, pd.Series) and not isinstance(right, pd.Series):
                    self.refuse(node, "a comparison needs a column on one side")
                if isinstance(left, list) or isinstance(right, list):
                    self.refuse(node, "compare a column with one value, or use `in [values]`")
                try:
                    part = _COMPARISONS[type(op)](left, right)
                except TypeError as err:
                    raise WhereError(f"condition {self.condition!r}: {ast.unparse(node)!r} compares values of "
                                     f"different kinds ({err}).") from None
            else:
                self.refuse(node, "'is' compares objects, not values; use == or !=")
            part = part.fillna(False).astype(bool)
            result = part if result is None else result & part
            left = right
        return result
