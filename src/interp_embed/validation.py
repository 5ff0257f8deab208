"""Checks that configuration dataclasses run at the door, so a bad value fails with a message naming its field."""
from __future__ import annotations


def check_integer(name: str, value, low: int, high: int | None = None, high_name: str | None = None) -> None:
    """Raise a ValueError naming ``name`` unless ``value`` is an integer in ``[low, high]``.

    ``high_name`` names the field that sets the upper bound, so the message shows both sides of the clash.

    >>> check_integer("k", 0, low=1, high=64, high_name="d_sae")
    Traceback (most recent call last):
    ...
    ValueError: k must be an integer in [1, d_sae] = [1, 64], not 0
    """
    is_integer = isinstance(value, int) and not isinstance(value, bool)
    if is_integer and value >= low and (high is None or value <= high):
        return
    if high is None:
        allowed = f">= {low}"
    elif high_name is None:
        allowed = f"in [{low}, {high}]"
    else:
        allowed = f"in [{low}, {high_name}] = [{low}, {high}]"
    raise ValueError(f"{name} must be an integer {allowed}, not {value!r}")
