"""Where in a reader an SAE reads: a decoder block and a site in it, named as TransformerLens and SAELens do.

Pure data, no torch: SAE configs and store manifests carry it as plain JSON. Which module of a transformers
model computes each site is :mod:`interp_embed.reading.hooking`'s concern.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from ..validation import Int, validate_fields

SITE_NAMES: dict[str, str] = {
    "resid_pre": "hook_resid_pre",
    "resid_post": "hook_resid_post",
    "attn_out": "hook_attn_out",
    "mlp_out": "hook_mlp_out",
    "z": "attn.hook_z",
}
"""Each site → its hook name inside ``blocks.N.`` (TransformerLens' spelling, which SAELens configs use)."""

_SITE_OF_NAME = {name: site for site, name in SITE_NAMES.items()}
_HOOK_NAME = re.compile(r"blocks\.(\d+)\.(" + "|".join(map(re.escape, SITE_NAMES.values())) + ")")


@dataclass(frozen=True)
class HookPoint:
    """An activation inside decoder block ``layer``; ``HookPoint.parse("blocks.3.hook_mlp_out")`` reads a name.

    >>> HookPoint(3, "mlp_out").name
    'blocks.3.hook_mlp_out'
    >>> HookPoint.parse("blocks.4.hook_resid_pre")
    HookPoint(layer=3, site='resid_post')
    """

    layer: int
    """The decoder block, counted from 0."""
    site: str = "resid_post"
    """``resid_post``: the block's output (the residual stream after it). ``resid_pre``: the input of block 0,
    the embeddings (before block N ≥ 1 it is the output of block N-1, spelled ``HookPoint(N-1, "resid_post")``).
    ``attn_out`` / ``mlp_out``: what the attention / MLP adds to the residual stream (after Gemma 2 and 3's
    post-attention / post-feedforward norm). ``z``: the attention heads' outputs before the output projection,
    all heads side by side (heads × head size wide), as SAELens' ``reshape_activations="hook_z"`` SAEs read it."""

    def __post_init__(self) -> None:
        validate_fields(self, layer=Int())
        if self.site not in SITE_NAMES:
            raise ValueError(f"hook site {self.site!r} is not supported; use one of {', '.join(map(repr, SITE_NAMES))}")
        # One point, one spelling: stores compare hook points, and the two spellings read the same tensor.
        if self.site == "resid_pre" and self.layer > 0:
            raise ValueError(f"the input of block {self.layer} is the output of block {self.layer - 1}: "
                             f"use HookPoint({self.layer - 1}, 'resid_post')")

    @property
    def name(self) -> str:
        """The TransformerLens / SAELens hook name, ``blocks.{layer}.{hook}``."""
        return f"blocks.{self.layer}.{SITE_NAMES[self.site]}"

    @classmethod
    def parse(cls, name: str) -> "HookPoint":
        """The hook point a TransformerLens / SAELens hook name names; ``blocks.N.hook_resid_pre`` with N ≥ 1
        is the output of block N-1. Any other name is refused with the supported ones listed."""
        match = _HOOK_NAME.fullmatch(name) if isinstance(name, str) else None
        if match is None:
            raise ValueError(f"hook {name!r} is not supported; use blocks.N. followed by one of "
                             f"{', '.join(SITE_NAMES.values())}")
        layer, site = int(match.group(1)), _SITE_OF_NAME[match.group(2)]
        if site == "resid_pre" and layer > 0:
            return cls(layer - 1, "resid_post")
        return cls(layer, site)
