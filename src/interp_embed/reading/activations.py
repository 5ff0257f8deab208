"""A reader's activations of documents given as token ids: the one path that encoding, SAE training, held-out
evaluation and offline labels all read through.

A document longer than a window is cut into windows that overlap by ``overlap`` tokens: each window after the first
repeats that many tokens of the one before as left context and keeps only the tokens after them, so every token is
read exactly once, and (with an overlap) never without context. Every window is read after the reader's template
prefix (the chat-template scaffolding, or BOS in raw mode), whose keys and values are computed once and shared
(:meth:`Reader.forward_documents`). Windows are sorted by length and packed into batches under a token budget, so
little of a forward pass is padding.

Encoding reads with overlapping windows (``EncodePlan``); SAE training and offline labels read windows of
``max_doc_tokens`` without overlap, the recipe the shipped SAE was trained and labelled with.
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ..spec.plan import EncodePlan
from ..validation import InvalidParameterError
from .reader import Reader


def tokenize(reader: Reader, texts: list[str]) -> list[np.ndarray]:
    """The token ids of each text read as a document (no template), texts without a token left out."""
    docs = (reader.document_tokens(text).ids for text in texts)
    return [ids for ids in docs if len(ids)]


@dataclass(frozen=True, eq=False)
class Window:
    """A stretch of one document fed to the reader at once (windows compare by identity: they hold arrays)."""

    doc: int
    """Index of the document among those cut."""
    start: int
    """Position in the document of the first token whose activations this window gives."""
    ids: np.ndarray
    """The token ids fed, from ``start - keep_from``: the context repeated from the window before, then its own."""
    keep_from: int
    """How many of ``ids`` are context: activations are kept from this index of ``ids`` on."""

    @property
    def kept(self) -> int:
        """How many tokens' activations this window gives."""
        return len(self.ids) - self.keep_from


def cut_windows(docs: Sequence[np.ndarray], window_tokens: int, overlap: int = 0) -> list[Window]:
    """Every document's windows in document order: a document of at most ``window_tokens`` tokens is one window
    (an empty one none), a longer one is cut into windows of ``window_tokens`` tokens, each after the first
    beginning with ``overlap`` tokens of context from the one before (``overlap`` < ``window_tokens / 2``)."""
    if not 0 <= 2 * overlap < window_tokens:
        raise InvalidParameterError(f"overlap must be in [0, window_tokens / 2), not {overlap} for "
                                    f"window_tokens={window_tokens}")
    windows = []
    for doc, ids in enumerate(docs):
        start = 0
        while start < len(ids):
            context = 0 if start == 0 else overlap
            stop = min(start - context + window_tokens, len(ids))
            windows.append(Window(doc, start, ids[start - context : stop], context))
            start = stop
    return windows


def pack_batches(windows: list[Window], batch_tokens: int,
                 max_padding: float | None = EncodePlan.max_padding) -> list[list[Window]]:
    """Greedy packing of length-sorted windows: a batch holds at most ``batch_tokens`` once every window is
    padded to the longest, and (unless ``max_padding`` is None) no more padding than ``max_padding`` times its
    windows' own tokens; a window that would break either starts the next batch. Ties in length keep the order
    of ``windows``, so the same windows always make the same batches.

    Only document tokens count: the template prefix is computed once and shared (Reader.forward_documents).
    """
    ordered = sorted(windows, key=lambda w: len(w.ids))  # stable: equal lengths keep their order
    batches, current, tokens = [], [], 0
    for window in ordered:
        longest = len(window.ids)  # sorted ascending: the newcomer is the longest
        padded, own = (len(current) + 1) * longest, tokens + longest
        too_padded = max_padding is not None and padded - own > max_padding * own
        if current and (padded > batch_tokens or too_padded):
            batches.append(current)
            current, tokens = [], 0
        current.append(window)
        tokens += longest
    if current:
        batches.append(current)
    return batches


@torch.inference_mode()
def read_windows(reader: Reader, windows: list[Window], batch_tokens: int,
                 max_padding: float | None = EncodePlan.max_padding) -> Iterator[tuple[list[Window], torch.Tensor]]:
    """``(batch, activations)`` for each batch of :func:`pack_batches`: the activations at the reader's hook
    point of the tokens each window of ``batch`` keeps, window after window, shape (tokens, width), on the
    reader's device in its dtype."""
    for batch in pack_batches(windows, batch_tokens, max_padding):
        width = max(len(w.ids) for w in batch)
        input_ids = np.full((len(batch), width), reader.pad_id, dtype=np.int64)
        mask = np.zeros((len(batch), width), dtype=np.int64)
        for i, window in enumerate(batch):
            input_ids[i, : len(window.ids)] = window.ids
            mask[i, : len(window.ids)] = 1
        hidden = reader.forward_documents(torch.from_numpy(input_ids), torch.from_numpy(mask))
        # Gather only the kept positions of every window into one (tokens, width) matrix.
        rows = np.concatenate([np.full(w.kept, i) for i, w in enumerate(batch)])
        cols = np.concatenate([np.arange(w.keep_from, len(w.ids)) for w in batch])
        yield batch, hidden[torch.from_numpy(rows).to(hidden.device), torch.from_numpy(cols).to(hidden.device)]
