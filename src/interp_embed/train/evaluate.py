"""Held-out quality of an SAE on a reader (FVU, L0, dead latents) and the sparse codes offline labels need."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch

from ..encode.reader import Reader
from ..architectures import SparseAutoencoder
from .config import HarvestConfig
from .harvest import ActivationStream


def activation_chunks(reader: Reader, docs: list[np.ndarray], device: str, chunk_tokens: int = 131_072,
                      forward_tokens: int = 8192) -> Iterator[tuple[np.ndarray, torch.Tensor]]:
    """(document indices, their document-token activations in order) over ``docs``, a chunk at a time."""
    stream = ActivationStream(reader, docs, HarvestConfig(forward_tokens=forward_tokens), seed=0, device=device)
    start = 0
    while start < len(docs):
        stop, tokens = start, 0
        while stop < len(docs) and (tokens == 0 or tokens + len(docs[stop]) <= chunk_tokens):
            tokens += len(docs[stop])
            stop += 1
        ids = np.arange(start, stop)
        yield ids, stream.harvest(ids)
        start = stop


@dataclass
class Quality:
    fvu: float
    l0: float
    dead_fraction: float
    tokens: int

    def to_json(self) -> dict:
        return {"fvu": self.fvu, "l0": self.l0, "dead_fraction": self.dead_fraction, "tokens": self.tokens}


@torch.inference_mode()
def reconstruction_quality(sae: SparseAutoencoder, chunks) -> Quality:
    """FVU = sum ||x - x_hat||^2 / sum ||x - mean(x)||^2 over all tokens; dead = latents that never fired."""
    sq_err = sum_x = sum_x2 = 0.0
    n = active = 0
    fired = None
    for _, x in chunks:
        x = x.to(sae.W_enc.device, sae.W_enc.dtype)
        acts = sae.encode(x)
        _, to_input_scale = sae.normalize(x)  # an SAE that normalizes its input reconstructs the normalized input
        sq_err += float((x - to_input_scale(sae.decode(acts))).double().pow(2).sum())
        sum_x = sum_x + x.double().sum(0)
        sum_x2 += float(x.double().pow(2).sum())
        n += x.shape[0]
        on = acts > 0
        active += int(on.sum())
        fired = on.any(0) if fired is None else fired | on.any(0)
    total_var = sum_x2 - float((sum_x * sum_x).sum()) / n
    return Quality(fvu=sq_err / total_var, l0=active / n, dead_fraction=float((~fired).float().mean()), tokens=n)


@torch.inference_mode()
def sparse_codes(sae: SparseAutoencoder, chunks, lengths: np.ndarray):
    """Per chunk: (doc index, position, feature, value) arrays of every nonzero activation, numpy."""
    for doc_ids, x in chunks:
        codes = sae.encode_sparse(x.to(sae.W_enc.device, sae.W_enc.dtype))
        ptr = codes.ptr.cpu().numpy()
        per_row = np.diff(ptr)
        doc_of_row = np.repeat(doc_ids, lengths[doc_ids])
        pos_of_row = np.concatenate([np.arange(lengths[d]) for d in doc_ids])
        yield (np.repeat(doc_of_row, per_row), np.repeat(pos_of_row, per_row),
               codes.features.cpu().numpy(), codes.values.float().cpu().numpy())
