"""Reader activations streamed in shuffled buffers, in an order that a checkpoint can resume exactly.

Documents are cut into windows of ``max_doc_tokens`` (:func:`~interp_embed.reading.activations.cut_windows`). The
stream is a pure function of (windows, seed): epoch ``e`` visits the windows in a permutation seeded by
``(seed, e)`` and cuts that order into buffers of about ``buffer_tokens`` tokens. A buffer's activations are read
(document tokens only, prefix excluded, :func:`~interp_embed.reading.activations.read_windows`), then shuffled by
a generator seeded by ``(seed, e, buffer)``. A position ``(epoch, buffer, batch)`` therefore names the same batch
in every run, and resuming re-reads one buffer instead of replaying the whole stream.
"""
from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch

from ..reading.activations import Window, cut_windows, read_windows
from ..reading.reader import Reader
from .config import HarvestConfig

logger = logging.getLogger(__name__)


@dataclass(frozen=True, order=True)
class Position:
    """Where the stream is: the next batch to train on."""

    epoch: int = 0
    buffer: int = 0
    batch: int = 0


def fingerprint(docs: list[np.ndarray]) -> str:
    """A short hash of the token stream (of the stream's windows), so a checkpoint is never resumed on another
    corpus."""
    h = hashlib.blake2b(digest_size=8)
    for d in docs:
        h.update(np.asarray(d, dtype=np.int64).tobytes())
        h.update(b"|")
    return h.hexdigest()


class ActivationStream:
    """Shuffled batches of reader activations over the windows of ``docs`` for any number of epochs."""

    def __init__(self, reader: Reader, docs: list[np.ndarray], cfg: HarvestConfig, seed: int, device: str):
        self.reader, self.cfg, self.seed, self.device = reader, cfg, seed, device
        self.windows: list[Window] = cut_windows(docs, cfg.max_doc_tokens)
        self.lengths = np.array([w.kept for w in self.windows], dtype=np.int64)
        self._cache: tuple[tuple[int, ...], torch.Tensor] | None = None

    def buffers(self, epoch: int) -> list[np.ndarray]:
        """The window indices of each buffer of ``epoch`` (sorted within a buffer)."""
        order = np.random.default_rng([self.seed, epoch]).permutation(len(self.windows))
        out, current, tokens = [], [], 0
        for i in order:  # close a buffer as soon as it holds buffer_tokens tokens
            current.append(i)
            tokens += int(self.lengths[i])
            if tokens >= self.cfg.buffer_tokens:
                out.append(np.sort(current))
                current, tokens = [], 0
        if current:
            out.append(np.sort(current))
        return out

    def batches_per_buffer(self, epoch: int, batch_size: int) -> list[int]:
        return [int(-(-self.lengths[b].sum() // batch_size)) for b in self.buffers(epoch)]

    def harvest(self, window_ids: np.ndarray) -> torch.Tensor:
        """Activations (tokens, d_model) of the windows' own tokens, float32 on the stream's device, in the order
        the windows were read (a function of the windows alone)."""
        key = tuple(int(i) for i in window_ids)
        if self._cache is not None and self._cache[0] == key:
            return self._cache[1]  # the whole corpus fits in one buffer: read it once for all epochs
        windows = [self.windows[i] for i in window_ids]
        acts = torch.cat([hidden.to(self.device, torch.float32)
                          for _, hidden in read_windows(self.reader, windows, self.cfg.forward_tokens)])
        if len(window_ids) == len(self.windows):
            self._cache = (key, acts)
        return acts

    def iterate(self, batch_size: int, epochs: int, start: Position = Position()) -> Iterator[tuple[Position, torch.Tensor]]:
        """(position, batch) from ``start`` to the end of the last epoch; position names the batch yielded."""
        for epoch in range(start.epoch, epochs):
            for b, window_ids in enumerate(self.buffers(epoch)):
                if (epoch, b) < (start.epoch, start.buffer):
                    continue
                acts = self.harvest(window_ids)
                gen = torch.Generator().manual_seed(_mix(self.seed, epoch, b))
                perm = torch.randperm(acts.shape[0], generator=gen).to(acts.device)
                first = start.batch if (epoch, b) == (start.epoch, start.buffer) else 0
                for i in range(first, -(-acts.shape[0] // batch_size)):
                    yield Position(epoch, b, i), acts[perm[i * batch_size : (i + 1) * batch_size]]


def _mix(*parts: int) -> int:
    """A 63-bit seed from integers (torch generators take one integer)."""
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1
