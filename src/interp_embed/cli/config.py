"""Command-line options derived from the config dataclasses, so defaults and help are written once.

Every config field is documented by the docstring under it (as in ``EncodePlan``); a command decorated
with :func:`config_options` gets one ``--option`` per field, with the field's type, default and
docstring, and receives the built config objects — validated by their own ``__post_init__``.
"""
from __future__ import annotations

import ast
import dataclasses
import functools
import inspect
import textwrap
import typing

import typer


def field_docs(cls: type) -> dict[str, str]:
    """The docstring written under each field of a dataclass (and of the dataclasses it extends)."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        body = ast.parse(textwrap.dedent(inspect.getsource(klass))).body[0].body
        for node, after in zip(body, body[1:]):
            if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and isinstance(after, ast.Expr)
                    and isinstance(after.value, ast.Constant) and isinstance(after.value.value, str)):
                docs[node.target.id] = " ".join(after.value.value.split())
    return docs


def config_options(exclude: tuple[str, ...] = (), **configs: type):
    """Give a typer command one option per field of each config class; it is called with the configs built.

    ``@config_options(plan=EncodePlan)`` on ``def encode(table, ..., plan: EncodePlan)`` adds
    ``--chunk-tokens``, ``--batch-tokens`` … and calls ``encode(table, ..., plan=EncodePlan(...))``. Fields
    named in ``exclude`` keep their default and get no option (the command sets them otherwise).
    """
    def decorate(command):
        signature = inspect.signature(command)
        kept = [p for name, p in signature.parameters.items() if name not in configs]
        owner: dict[str, str] = {}
        for argument, cls in configs.items():
            hints, docs = typing.get_type_hints(cls), field_docs(cls)
            for field in dataclasses.fields(cls):
                if field.name in exclude:
                    continue
                if field.name in owner or field.name in signature.parameters:
                    raise ValueError(f"option --{field.name} would come from {cls.__name__} and from "
                                     f"{owner.get(field.name, command.__name__)}; rename one of them")
                owner[field.name] = argument
                kept.append(inspect.Parameter(field.name, inspect.Parameter.KEYWORD_ONLY, annotation=hints[field.name],
                                              default=typer.Option(field.default, help=docs.get(field.name))))

        @functools.wraps(command)
        def run(**kwargs):
            for argument, cls in configs.items():
                values = {name: kwargs.pop(name) for name, arg in owner.items() if arg == argument}
                kwargs[argument] = cls(**values)
            return command(**kwargs)

        run.__signature__ = signature.replace(parameters=kept)
        return run

    return decorate
