"""A reader's activations of documents given as token ids, read in order: the one path that training, held-out
evaluation and offline labels all read through.

Each document is read after the reader's template prefix (the chat-template scaffolding, or BOS in raw mode), and
only its own tokens' activations are kept.
"""
from __future__ import annotations

from typing import Iterator

import numpy as np
import torch

from ..architectures import SparseAutoencoder
from .reader import Reader


def tokenize(reader: Reader, texts: list[str], max_doc_tokens: int) -> list[np.ndarray]:
    """Document token ids (no template), long documents cut into windows of ``max_doc_tokens``."""
    docs = []
    for text in texts:
        ids = reader.document_tokens(text).ids
        docs.extend(ids[start : start + max_doc_tokens] for start in range(0, len(ids), max_doc_tokens))
    return [d for d in docs if len(d)]


@torch.inference_mode()
def document_activations(reader: Reader, docs: list[np.ndarray], doc_ids: np.ndarray, forward_tokens: int,
                         device: str) -> torch.Tensor:
    """Activations (tokens, d_model) of the documents ``docs[doc_ids]``' own tokens, in ``doc_ids`` order, float32
    on ``device``. Documents of similar length share a forward pass of about ``forward_tokens`` padded tokens."""
    prefix = list(reader.prefix_ids)
    lengths = [len(docs[i]) for i in doc_ids]
    out: list[torch.Tensor | None] = [None] * len(doc_ids)
    by_length = sorted(range(len(doc_ids)), key=lambda i: -lengths[i])
    start = 0
    while start < len(by_length):
        width = len(prefix) + lengths[by_length[start]]
        rows = max(1, forward_tokens // width)
        group = by_length[start : start + rows]
        start += len(group)
        ids = torch.full((len(group), width), reader.pad_id, dtype=torch.long)
        mask = torch.zeros((len(group), width), dtype=torch.long)
        for row, i in enumerate(group):
            seq = prefix + docs[doc_ids[i]].tolist()
            ids[row, : len(seq)] = torch.tensor(seq)
            mask[row, : len(seq)] = 1
        hidden = reader.forward(ids, mask)
        for row, i in enumerate(group):
            out[i] = hidden[row, len(prefix) : len(prefix) + lengths[i]].to(device, torch.float32)
    return torch.cat(out)


def activation_chunks(reader: Reader, docs: list[np.ndarray], device: str, chunk_tokens: int = 131_072,
                      forward_tokens: int = 8192) -> Iterator[tuple[np.ndarray, torch.Tensor]]:
    """(document indices, their document-token activations in order) over ``docs``, a chunk at a time."""
    start = 0
    while start < len(docs):
        stop, tokens = start, 0
        while stop < len(docs) and (tokens == 0 or tokens + len(docs[stop]) <= chunk_tokens):
            tokens += len(docs[stop])
            stop += 1
        ids = np.arange(start, stop)
        yield ids, document_activations(reader, docs, ids, forward_tokens, device)
        start = stop


@torch.inference_mode()
def sparse_codes(sae: SparseAutoencoder, chunks, lengths: np.ndarray):
    """Per chunk of :func:`activation_chunks`: (doc index, position, feature, value) arrays of every nonzero
    activation of ``sae``, numpy."""
    for doc_ids, x in chunks:
        codes = sae.encode_sparse(x.to(sae.W_enc.device, sae.W_enc.dtype))
        ptr = codes.ptr.cpu().numpy()
        per_row = np.diff(ptr)
        doc_of_row = np.repeat(doc_ids, lengths[doc_ids])
        pos_of_row = np.concatenate([np.arange(lengths[d]) for d in doc_ids])
        yield (np.repeat(doc_of_row, per_row), np.repeat(pos_of_row, per_row),
               codes.features.cpu().numpy(), codes.values.float().cpu().numpy())
