"""How encoding work is cut: chunks on disk, batches on the device, windows over long documents. Pure data, no torch.

A store records its plan (as plain JSON) so that a resumed run cuts the same chunks and batches.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field

from ..validation import Int, InvalidParameterError, OrNone, validate_fields


BYTES_PER_TOKEN = 3
"""UTF-8 bytes per token assumed when sizing chunks: SmolLM2's tokenizer reads the demo sample at 2.8
(English 3.5, German and Spanish 2.6), Japanese at 1.7. Bytes rather than characters: a Japanese character
is 3 bytes and about 1.8 tokens, which counting characters would underestimate fivefold."""


def estimated_tokens(text) -> int:
    """About how many tokens ``text`` makes, from its UTF-8 bytes alone (0 for a value that is not text).

    Chunks are sized by this estimate rather than by the reader's tokenizer: a resumed run must cut the same
    ranges, and the store plans them (``interp-embed info``, ``Store.pending_chunks``) without loading a
    reader or importing transformers; a tokenizer's output can also change with a library upgrade, which
    would leave a half-done store with chunks its plan no longer produces.
    """
    if not isinstance(text, str):
        return 0
    return -(-len(text.encode("utf-8", "surrogatepass")) // BYTES_PER_TOKEN)


@dataclass(frozen=True)
class EncodePlan:
    """How encoding work is cut: chunks on disk, batches on the device, windows over long documents.

    A store keeps its plan, so a resumed run cuts the same chunks and batches and its result is
    bit-for-bit that of an uninterrupted run.
    """

    chunk_tokens: int | None = 24_000
    """A chunk of consecutive rows is committed to disk after about this many tokens (estimated from the
    texts' UTF-8 bytes, so the same table is always cut the same way): every 20-30 s for the bundled reader
    on a 2-core CPU (~1,000 tokens/s); a crash loses at most the chunk in flight. Smaller chunks pad a little
    more (their batches are packed from fewer windows). On a GPU, raise it to commit less often."""
    first_chunk_tokens: int | None = 1_000
    """The first chunk is committed after about this many tokens, and each next one after twice as many as the
    one before, up to ``chunk_tokens``: a run stopped early keeps most of what it computed (on a 2-core CPU,
    commits after about 1, 3, 7, 15 and 31 s, then every 24). None: every chunk is ``chunk_tokens`` (the plan of
    stores written before this existed, which resume with it)."""
    chunk_chars: int | None = None
    """The rule of stores written before ``chunk_tokens`` existed: a chunk after about this many characters, every
    chunk alike (``first_chunk_tokens`` does not apply). Such stores resume with it; it is set only together with
    ``chunk_tokens=None``."""
    batch_tokens: int = 4096
    """Padded document tokens per forward batch (batches are packed from length-sorted windows)."""
    max_padding: float | None = 0.2
    """A batch is closed early rather than pad its windows (each to the longest one's length) by more than this
    share of their own tokens: filling ``batch_tokens`` alone pads a chunk of short and long documents by about
    a third, a small chunk more (benchmarks/chunk_plans.py). None: batches fill ``batch_tokens`` whatever their
    padding (the rule of stores written before this existed, which resume with it)."""
    window_tokens: int = 1024
    """The longest sequence fed to the reader, template prefix included; longer documents are split."""
    window_overlap: int = 128
    """Context tokens a window repeats from the one before it; their activations come from that one."""
    token_level: bool = True
    """Keep every token's activations. False keeps each document's pooled activations only (a compact store,
    less than half the size: ``interp-embed info`` prints the bytes per token of both); a document's highlights
    are then recomputed by running the reader and SAE on that document, and what needs every token
    (``feature_words``, ``activated_threshold`` > 0 on token activations) is refused."""

    def __post_init__(self) -> None:
        if (self.chunk_tokens is None) == (self.chunk_chars is None):
            raise ValueError("give exactly one of chunk_tokens and chunk_chars (chunk_chars with chunk_tokens=None)")
        if self.chunk_chars is not None:  # the older rule cut chunks of one size
            object.__setattr__(self, "first_chunk_tokens", None)
        validate_fields(self, chunk_tokens=OrNone(Int(min=1)), first_chunk_tokens=OrNone(Int(min=1)),
                        chunk_chars=OrNone(Int(min=1)), batch_tokens=Int(min=1), window_tokens=Int(min=1))
        if self.max_padding is not None and (isinstance(self.max_padding, bool) or
                                             not isinstance(self.max_padding, (int, float)) or self.max_padding < 0):
            raise InvalidParameterError(f"max_padding must be a number >= 0 (or None), not {self.max_padding!r}")
        if not isinstance(self.token_level, bool):
            raise InvalidParameterError(f"token_level must be True or False, not {self.token_level!r}")
        # Fewer than half the window repeated, so every window moves on by more than it repeats.
        half = "window_tokens // 2 - 1"
        Int(max=half).check("window_overlap", self.window_overlap, {half: self.window_tokens // 2 - 1})

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> "EncodePlan":
        """The plan a manifest records. One without ``chunk_tokens`` predates it and cut chunks by characters; one
        without ``first_chunk_tokens`` cut every chunk to the same size, one without ``max_padding`` filled every
        batch."""
        return cls(**{"chunk_tokens": None, "first_chunk_tokens": None, "max_padding": None, **data})

    def chunk_limit(self, index: int) -> int:
        """The size (estimated tokens, or characters for a ``chunk_chars`` plan) at which chunk ``index`` (0: the
        first) is closed."""
        if self.chunk_tokens is None:
            return self.chunk_chars
        if self.first_chunk_tokens is None:
            return self.chunk_tokens
        return min(self.chunk_tokens, self.first_chunk_tokens << min(index, 64))  # doubling, up to chunk_tokens

    def chunk_ranges(self, texts: Iterable) -> list[tuple[int, int]]:
        """Consecutive row ranges [start, stop) of about :meth:`chunk_limit` estimated tokens (or characters)
        each, a function of the texts alone: the same table is always cut the same way."""
        cutter = ChunkCutter(self)
        cutter.add(texts)
        return cutter.ranges()


@dataclass
class ChunkCutter:
    """Cuts rows into the chunks of a plan as their texts arrive, batch after batch: one pass over a table that
    is never whole in memory gives the ranges :meth:`EncodePlan.chunk_ranges` gives for all its texts at once."""

    plan: EncodePlan
    """The plan whose :meth:`~EncodePlan.chunk_limit` sizes the chunks."""
    closed: list[tuple[int, int]] = field(default_factory=list)
    """The [start, stop) ranges cut so far."""
    start: int = 0
    """First row of the chunk being filled."""
    size: int = 0
    """Its size so far, in the plan's measure."""
    rows: int = 0
    """Rows seen so far."""

    def add(self, texts: Iterable) -> None:
        """Take the next rows' texts, in table order."""
        if self.plan.chunk_tokens is not None:
            sizes = map(estimated_tokens, texts)
        else:
            sizes = (len(t) if isinstance(t, str) else 0 for t in texts)
        limit = self.plan.chunk_limit(len(self.closed))
        for length in sizes:
            self.rows += 1
            self.size += length
            if self.size >= limit:
                self.closed.append((self.start, self.rows))
                self.start, self.size = self.rows, 0
                limit = self.plan.chunk_limit(len(self.closed))

    def ranges(self) -> list[tuple[int, int]]:
        """Every range: those cut so far and, when rows remain, the last, shorter one."""
        return self.closed + ([(self.start, self.rows)] if self.start < self.rows else [])
