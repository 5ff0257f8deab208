"""Names a package exports without importing them until first use (PEP 562).

The packages that hold torch code export it this way, so that importing them — or their pure-data
configs — never imports torch: a saved dataset is analysed on machines without it.
"""
from __future__ import annotations

from collections.abc import Callable
from importlib import import_module


def lazy_exports(package: str, modules: dict[str, str]) -> Callable[[str], object]:
    """A module-level ``__getattr__`` that imports ``name`` from the submodule ``modules[name]`` of ``package``.

    >>> __getattr__ = lazy_exports(__name__, {"train_sae": ".trainer"})   # doctest: +SKIP
    """

    def __getattr__(name: str) -> object:
        if name not in modules:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(import_module(modules[name], package), name)

    return __getattr__
