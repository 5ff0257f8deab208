"""Parameter checks at the door — of every analysis and every config — with errors that name the parameter and say
what it may be.

A public function declares what each parameter may be with :func:`validate_params` (a config, with
:func:`validate_fields` in its ``__post_init__``); a bad value raises :class:`InvalidParameterError`, both a
ValueError and a TypeError. :class:`Remedy` and :func:`explained` word an error's way out for Python and for the
``interp-embed`` command."""
from __future__ import annotations

import functools
import inspect
import re
import shlex
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any, TypeVar

import numpy as np

F = TypeVar("F", bound=Callable)


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


class InvalidParameterError(ValueError, TypeError):
    """A parameter given a value it cannot take: of the wrong kind (``"yes"`` for a bool) or out of its range.

    Both a ValueError and a TypeError, as scikit-learn's: code that catches either kind of mistake catches it. The
    message names the parameter, the value received and what the parameter may be.

    >>> isinstance(InvalidParameterError("k must be an integer >= 1, not 0"), (ValueError, TypeError))
    True
    """


class Spec:
    """What one parameter may be (see :func:`validate_params`).

    ``check(name, value, given)`` returns the value as the function uses it (an ``int``, a ``float``...) or raises
    :class:`InvalidParameterError`; ``given`` holds the other arguments by name, for a bound another parameter sets.
    """

    def check(self, name: str, value: Any, given: Mapping[str, Any]) -> Any:
        raise NotImplementedError


@dataclass(frozen=True)
class Int(Spec):
    """An integer (not a bool) in [min, max]."""

    min: int = 0
    """The smallest value allowed."""
    max: int | str | None = None
    """The largest value allowed, or the name of the parameter that sets it (``max="d_sae"``: the message then
    shows both sides of the clash); None: no bound."""

    def check(self, name, value, given):
        top = given[self.max] if isinstance(self.max, str) else self.max
        if top is None:
            allowed = f">= {self.min}"
        elif isinstance(self.max, str):
            allowed = f"in [{self.min}, {self.max}] = [{self.min}, {top}]"
        else:
            allowed = f"in [{self.min}, {top}]"
        if (isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < self.min
                or (top is not None and value > top)):
            raise InvalidParameterError(f"{name} must be an integer {allowed}, not {value!r}")
        return int(value)


@dataclass(frozen=True)
class Fraction(Spec):
    """A number between 0 and 1, as a float."""

    above_zero: bool = False
    """Refuse 0: the fraction lies in (0, 1]."""
    below_one: bool = False
    """Refuse 1: the fraction lies in [0, 1)."""
    at_least: str | None = None
    """The parameter whose value this one must not be below (``max_coverage=Fraction(at_least="min_coverage")``),
    checked before it."""

    def check(self, name, value, given):
        bound = f"{'(' if self.above_zero else '['}0, 1{')' if self.below_one else ']'}"
        x = _number(name, value, "a number between 0 and 1")
        if not ((0.0 < x if self.above_zero else 0.0 <= x) and (x < 1.0 if self.below_one else x <= 1.0)):
            raise InvalidParameterError(f"{name} must lie in {bound}, got {value!r}.")
        if self.at_least is not None and given[self.at_least] > x:
            raise InvalidParameterError(f"{self.at_least} ({given[self.at_least]}) must not exceed {name} ({x}).")
        return x


@dataclass(frozen=True)
class Number(Spec):
    """A finite number >= min, as a float: a threshold, a weight."""

    min: float = 0.0
    """The smallest value allowed."""

    def check(self, name, value, given):
        x = _number(name, value, f"a number >= {self.min:g}")
        if not np.isfinite(x) or x < self.min:
            raise InvalidParameterError(f"{name} must be a finite number >= {self.min:g}, got {value!r}.")
        return x


def _number(name: str, value: Any, allowed: str) -> float:
    """``value`` as a float (not a bool), else the error saying what is allowed."""
    if isinstance(value, (bool, np.bool_)):
        raise InvalidParameterError(f"{name} must be {allowed}, got {value!r}.")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise InvalidParameterError(f"{name} must be {allowed}, got {value!r}.") from None


@dataclass(frozen=True)
class Bool(Spec):
    """True or False (a NumPy bool too), as a bool."""

    def check(self, name, value, given):
        if not isinstance(value, (bool, np.bool_)):
            raise InvalidParameterError(f"{name} must be True or False, got {value!r}.")
        return bool(value)


@dataclass(frozen=True)
class Choice(Spec):
    """One of a few names: ``Choice(("kmeans", "hdbscan"))``."""

    options: Sequence[str]
    """The names allowed."""

    def check(self, name, value, given):
        if value not in self.options:
            raise InvalidParameterError(f"{name}={value!r} is not supported; use one of "
                                        f"{', '.join(map(repr, self.options))}.")
        return value


@dataclass(frozen=True)
class OrNone(Spec):
    """None (the function's own default), or what ``spec`` allows."""

    spec: Spec

    def check(self, name, value, given):
        return None if value is None else self.spec.check(name, value, given)


@dataclass(frozen=True)
class Features(Spec):
    """Feature ids of the dataset passed as the parameter ``dataset`` (``"self"`` in a method), as a sorted array
    without repeats; None stays None (every feature). An id outside the dataset's SAE is refused naming the SAE."""

    dataset: str = "ds"
    """The parameter holding the dataset (anything with ``d_sae``, and ``encoder`` to name its SAE)."""
    one: bool = False
    """One feature id, returned as an int."""

    def check(self, name, value, given):
        if value is None and not self.one:
            return None
        ds = given[self.dataset]
        ids = check_features([value] if self.one else value, ds.d_sae, name, sae=getattr(ds, "encoder", None))
        return int(ids[0]) if self.one else ids


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
    try:
        arr = np.asarray(list(features))
    except TypeError:
        raise InvalidParameterError(f"{name} must be feature ids (a list of integers), not {features!r}.") from None
    if arr.size == 0:
        raise InvalidParameterError(f"{name} is empty; pass at least one feature id, or None for all features.")
    if not np.issubdtype(arr.dtype, np.integer):
        raise InvalidParameterError(f"{name} must be integer feature ids, got dtype {arr.dtype}.")
    bad = arr[(arr < 0) | (arr >= d_sae)]
    if bad.size:
        loaded = f"the loaded SAE ({sae.summary()})" if sae is not None else "this SAE"
        raise InvalidParameterError(f"{name} contains ids outside [0, {d_sae}): {bad[:5].tolist()}; {loaded} has "
                                    f"{d_sae:,} features, numbered 0 to {d_sae - 1}.")
    return np.unique(arr)


_BYTE_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
               "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}


@dataclass(frozen=True)
class MemorySize(Spec):
    """A memory bound in bytes: None (no bound), a positive integer, or a string such as ``"4GB"`` or ``"512 MiB"``
    (KB, MB, GB, TB are powers of 1000; KiB, MiB, GiB, TiB powers of 1024).

    >>> [MemorySize().check("memory_limit", v, {}) for v in ("1.5GB", "2 GiB", 10**6)]
    [1500000000, 2147483648, 1000000]
    """

    def check(self, name, value, given):
        if value is None:
            return None
        if isinstance(value, str):
            match = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]*)?)\s*([a-zA-Z]*)\s*", value)
            unit = match.group(2).lower() if match else None
            if unit not in _BYTE_UNITS:
                raise InvalidParameterError(f"{name}={value!r} is not a size; write bytes as an integer or a string "
                                            "such as '4GB', '512MB' or '2GiB'.")
            value = int(float(match.group(1)) * _BYTE_UNITS[unit])
        elif isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise InvalidParameterError(f"{name} must be a number of bytes or a string such as '4GB', not {value!r}.")
        if value <= 0:
            raise InvalidParameterError(f"{name} must be positive, got {value!r}.")
        return int(value)


def validate_params(**specs: Spec) -> Callable[[F], F]:
    """Check the arguments named in ``specs`` at every call, before the function's body runs, and pass it each value
    as its :class:`Spec` returns it (``alpha="0.1"`` arrives as ``0.1``)::

        @validate_params(k=Int(min=1), alpha=Fraction(above_zero=True))
        def top(ds, k=10, alpha=0.05): ...

    A bad value raises :class:`InvalidParameterError` naming the parameter. Specs are checked in the order given, so
    one whose bound another parameter sets (``Int(max="d_sae")``) comes after it. Put it on public entry points only:
    the private functions they call trust their arguments (nothing is checked twice).

    >>> @validate_params(k=Int(min=1))
    ... def top(k=10):
    ...     return k
    >>> top(k=0)
    Traceback (most recent call last):
    ...
    interp_embed.validation.InvalidParameterError: k must be an integer >= 1, not 0
    """
    def decorate(function: F) -> F:
        signature = inspect.signature(function)
        unknown = set(specs) - set(signature.parameters)
        if unknown:  # a typo in the declaration fails at import, not at the first bad call
            raise TypeError(f"{function.__qualname__} has no parameter {', '.join(sorted(unknown))}")

        def bind(args, kwargs) -> inspect.BoundArguments:
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            given = bound.arguments
            for name, spec in specs.items():
                given[name] = spec.check(name, given[name], given)
            return bound

        if inspect.iscoroutinefunction(function):  # stays a coroutine function: asyncio tells it apart by that
            @functools.wraps(function)
            async def checked(*args, **kwargs):
                bound = bind(args, kwargs)
                return await function(*bound.args, **bound.kwargs)
        else:
            @functools.wraps(function)
            def checked(*args, **kwargs):
                bound = bind(args, kwargs)
                return function(*bound.args, **bound.kwargs)

        checked.params = specs  # what each parameter may be, for a reader (and the tests)
        checked.__kwdefaults__ = function.__kwdefaults__  # read as the function's own, as wraps does the signature
        return checked

    return decorate


def validate_fields(instance: Any, **specs: Spec) -> None:
    """Check the fields of a dataclass ``instance`` named in ``specs``, from its ``__post_init__``: the door of a
    config. The fields keep the values given (a frozen dataclass is not rewritten).

    >>> @dataclass(frozen=True)
    ... class Plan:
    ...     workers: int = 1
    ...     def __post_init__(self):
    ...         validate_fields(self, workers=Int(min=1))
    >>> Plan(workers=0)
    Traceback (most recent call last):
    ...
    interp_embed.validation.InvalidParameterError: workers must be an integer >= 1, not 0
    """
    given = {f.name: getattr(instance, f.name) for f in fields(instance)}
    for name, spec in specs.items():
        spec.check(name, given[name], given)
