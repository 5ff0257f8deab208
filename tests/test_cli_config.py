"""Command-line options come from the config dataclasses: one per field, with its type, default and docstring."""
import dataclasses
from dataclasses import dataclass
from typing import Literal

import pytest
import typer
from typer.testing import CliRunner

from interp_embed.cli import app
from interp_embed.cli.config import config_options, field_docs
from interp_embed.spec.plan import EncodePlan


@dataclass(frozen=True)
class Shape:
    """A test config."""

    width: int = 3
    """How wide,
    in cells."""
    kind: Literal["round", "square"] = "round"
    """Which outline."""
    scale: float | None = None

    def __post_init__(self):
        if self.width < 1:
            raise ValueError(f"width must be >= 1, not {self.width}")


def test_field_docs_are_the_docstrings_under_the_fields():
    assert field_docs(Shape) == {"width": "How wide, in cells.", "kind": "Which outline."}
    assert set(field_docs(EncodePlan)) == {f.name for f in dataclasses.fields(EncodePlan)}


def test_a_command_gets_one_option_per_field_and_the_built_config():
    demo = typer.Typer()
    seen = []

    @demo.command()
    @config_options(shape=Shape)
    def draw(name: str, shape: Shape = Shape()) -> None:
        seen.append((name, shape))

    runner = CliRunner()
    assert runner.invoke(demo, ["x", "--width", "7", "--kind", "square", "--scale", "0.5"]).exit_code == 0
    assert runner.invoke(demo, ["y"]).exit_code == 0
    assert seen == [("x", Shape(7, "square", 0.5)), ("y", Shape())]
    assert runner.invoke(demo, ["z", "--kind", "oval"]).exit_code == 2  # a choice, checked by the parser
    failed = runner.invoke(demo, ["z", "--width", "0"])
    assert isinstance(failed.exception, ValueError) and "width must be >= 1" in str(failed.exception)
    help_text = " ".join(runner.invoke(demo, ["--help"], terminal_width=200).output.split())
    assert "How wide, in cells." in help_text and "[default: 3]" in help_text


def test_a_field_named_twice_is_refused():
    def draw(width: int, shape: Shape) -> None: ...

    with pytest.raises(ValueError, match="--width would come from Shape and from draw"):
        config_options(shape=Shape)(draw)


def test_encode_takes_the_encode_plan_options():
    options = {p.name: p for p in typer.main.get_command(app).commands["encode"].params}
    assert "chunk_chars" not in options  # the older rule: only stores written with it use it
    for field, doc in field_docs(EncodePlan).items():
        if field == "chunk_chars":
            continue
        assert options[field].default == getattr(EncodePlan(), field) and options[field].help == doc
