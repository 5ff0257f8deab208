"""Parameter checks at the door — of every analysis and every config — with errors that name the parameter and say
what it may be."""
from __future__ import annotations

import re
import shlex
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


def with_command_line(error: Exception, message: str) -> Exception:
    """``error``, carrying ``message``: the same failure in the words of the ``interp-embed`` command (its flags,
    not keyword arguments), which the command prints instead of ``str(error)``.

    >>> with_command_line(ValueError("pass api_key=..."), "pass --api-key").command_line
    'pass --api-key'
    """
    error.command_line = message
    return error


@dataclass(frozen=True)
class Remedy:
    """A way out of an error, said once for Python and once for the ``interp-embed`` command."""

    python: str
    """In Python's words: ``overwrite=True``."""
    command_line: str
    """In the command line's: ``--overwrite``."""


OVERWRITE = Remedy("overwrite=True", "--overwrite")
SKIP_BAD_ROWS = Remedy("on_error='skip'", "--on-error skip")
BY_EXAMPLE = Remedy("by='example'", "--by example")
BY_QUERY = Remedy("by='query'", "--by query")
EXAMPLES = Remedy("by='example', examples=[...]", "--by example --example TEXT")
FEATURE_IDS = Remedy("features=[...]", "--features")
ANOTHER_PATH = Remedy("choose another path", "choose another --out")


def resume_command(store) -> str:
    """The command that finishes an interrupted encoding into the folder ``store``, ready to paste into a shell."""
    return f"interp-embed encode --out {shlex.quote(str(store))} --resume"


def resume(store) -> Remedy:
    """How to finish encoding the store at ``store``."""
    return Remedy("load with resume=True", f"resume with `{resume_command(store)}`")


def explained(error_type: type[Exception], *parts: str | Remedy) -> Exception:
    """An ``error_type`` whose message is ``parts`` joined, each :class:`Remedy` in Python's words, carrying the
    same message in the command line's (:func:`with_command_line`): one message, two audiences, no rewriting.

    >>> error = explained(ValueError, "column 'x' exists; pass ", OVERWRITE, " to replace it.")
    >>> str(error), error.command_line
    ("column 'x' exists; pass overwrite=True to replace it.", "column 'x' exists; pass --overwrite to replace it.")
    """
    python = "".join(p.python if isinstance(p, Remedy) else p for p in parts)
    command_line = "".join(p.command_line if isinstance(p, Remedy) else p for p in parts)
    return with_command_line(error_type(python), command_line)


def check_choice(value: Any, name: str, choices: Sequence[str]) -> str:
    if value not in choices:
        raise ValueError(f"{name}={value!r} is not supported; use one of {', '.join(map(repr, choices))}.")
    return value


def check_bool(value: Any, name: str) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {value!r}.")
    return bool(value)


def check_fraction(value: Any, name: str, *, open_low: bool = False) -> float:
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a number between 0 and 1, got {value!r}.") from None
    if not (0.0 < x <= 1.0 if open_low else 0.0 <= x <= 1.0):
        bound = "(0, 1]" if open_low else "[0, 1]"
        raise ValueError(f"{name} must lie in {bound}, got {value!r}.")
    return x


def check_int(value: Any, name: str, minimum: int = 0, maximum: int | None = None,
              maximum_name: str | None = None) -> int:
    """``value`` as an int if it is an integer in [minimum, maximum]; else a TypeError (not an integer) or a
    ValueError (out of range) naming ``name``. ``maximum_name`` names the parameter that sets the maximum,
    so the message shows both sides of the clash.

    >>> check_int(0, "k", minimum=1, maximum=64, maximum_name="d_sae")
    Traceback (most recent call last):
    ...
    ValueError: k must be an integer in [1, d_sae] = [1, 64], not 0
    """
    if maximum is None:
        allowed = f">= {minimum}"
    elif maximum_name is None:
        allowed = f"in [{minimum}, {maximum}]"
    else:
        allowed = f"in [{minimum}, {maximum_name}] = [{minimum}, {maximum}]"
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an integer {allowed}, not {value!r}")
    if value < minimum or (maximum is not None and value > maximum):
        raise ValueError(f"{name} must be an integer {allowed}, not {value!r}")
    return int(value)


def check_threshold(value: Any) -> float:
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"activated_threshold must be a number >= 0, got {value!r}.") from None
    if not np.isfinite(x) or x < 0:
        raise ValueError(f"activated_threshold must be a finite number >= 0, got {value!r}.")
    return x


def check_features(features: Iterable[int] | None, d_sae: int, name: str = "features",
                   sae: Any = None) -> np.ndarray | None:
    """Return the feature ids as a sorted unique int array, or None when ``features`` is None.

    ``sae`` (anything with a ``summary()``, such as a dataset's ``encoder``) names the loaded SAE in the error
    for an id outside it.
    """
    if features is None:
        return None
    if isinstance(features, (int, np.integer)):
        features = [features]
    arr = np.asarray(list(features))
    if arr.size == 0:
        raise ValueError(f"{name} is empty; pass at least one feature id, or None for all features.")
    if not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"{name} must be integer feature ids, got dtype {arr.dtype}.")
    bad = arr[(arr < 0) | (arr >= d_sae)]
    if bad.size:
        loaded = f"the loaded SAE ({sae.summary()})" if sae is not None else "this SAE"
        raise ValueError(f"{name} contains ids outside [0, {d_sae}): {bad[:5].tolist()}; {loaded} has {d_sae:,} "
                         f"features, numbered 0 to {d_sae - 1}.")
    return np.unique(arr)


def check_coverage(min_coverage: Any, max_coverage: Any) -> tuple[float, float]:
    lo = check_fraction(min_coverage, "min_coverage")
    hi = check_fraction(max_coverage, "max_coverage")
    if lo > hi:
        raise ValueError(f"min_coverage ({lo}) must not exceed max_coverage ({hi}).")
    return lo, hi


_BYTE_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
               "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}


def check_memory_limit(value: Any) -> int | None:
    """A memory bound in bytes: None (no bound), a positive integer, or a string such as ``"4GB"`` or ``"512 MiB"``
    (KB, MB, GB, TB are powers of 1000; KiB, MiB, GiB, TiB powers of 1024).

    >>> check_memory_limit("1.5GB"), check_memory_limit("2 GiB"), check_memory_limit(10**6)
    (1500000000, 2147483648, 1000000)
    """
    if value is None:
        return None
    if isinstance(value, str):
        match = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]*)?)\s*([a-zA-Z]*)\s*", value)
        unit = match.group(2).lower() if match else None
        if unit not in _BYTE_UNITS:
            raise ValueError(f"memory_limit={value!r} is not a size; write bytes as an integer or a string such as "
                             f"'4GB', '512MB' or '2GiB'.")
        value = int(float(match.group(1)) * _BYTE_UNITS[unit])
    elif isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"memory_limit must be a number of bytes or a string such as '4GB', not {value!r}.")
    if value <= 0:
        raise ValueError(f"memory_limit must be positive, got {value!r}.")
    return int(value)
