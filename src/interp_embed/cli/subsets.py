"""``--where``: the documents of a store chosen by a condition on their metadata, read safely (analysis/where.py)."""
from __future__ import annotations

import typer

from ..analysis.where import where_mask

WHERE_HELP = ("Only the documents whose metadata satisfy this condition, in pandas query syntax, e.g. \"section == "
              "'games' and year >= 2020\" (read as data: comparisons, and/or/not, in [...]; never run as code).")


def where_option(help: str = WHERE_HELP):
    return typer.Option(None, "--where", help=help)


def chosen(ds, condition: str | None, what: str = "--where"):
    """The view of ``ds``'s documents that satisfy ``condition`` (all of ``ds`` without one); none is an error."""
    if condition is None:
        return ds
    return ds[_mask(ds, condition, what)]


def _mask(ds, condition: str, what: str):
    mask = where_mask(ds.pandas(), condition)
    if not mask.any():
        raise ValueError(f"no document of {ds.path} satisfies {what} {condition!r}")
    return mask
