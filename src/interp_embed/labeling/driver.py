"""Label any SAE folder offline: read a corpus with the SAE's reader, encode it, label every feature that fires.

This is what ``interp-embed train-sae`` runs at the end and what rebuilt the shipped SAE's labels; the
labels (``feature_labels.json``) and per-feature summaries (``feature_summaries.json``) are written
beside the SAE's weights, where ``LocalSAE`` and every store encoded with it find them.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from .offline import build_labels, token_bytes, write_labels

logger = logging.getLogger(__name__)


def label_codes(sae, reader, docs: list[np.ndarray], progress: bool = True, window_tokens: int = 512
                ) -> tuple[dict, dict, dict]:
    """``(labels, summaries, about)`` for every feature of ``sae`` that fires on the token-id documents ``docs``.

    Each document is read by ``reader`` in its chat template (template excluded), as the encoder reads it, in
    windows of ``window_tokens`` tokens.
    """
    from ..reading.activations import cut_windows, read_windows

    lengths = np.array([len(d) for d in docs])
    parts = []
    with tqdm(total=int(lengths.sum()), unit="tok", unit_scale=True, desc="Labelling", disable=not progress) as bar:
        for batch, hidden in read_windows(reader, cut_windows(docs, window_tokens), batch_tokens=8192):
            codes = sae.encode_sparse(hidden.to(sae.W_enc.device, sae.W_enc.dtype))
            per_token = np.diff(codes.ptr.cpu().numpy())
            doc = np.concatenate([np.full(w.kept, w.doc) for w in batch])
            pos = np.concatenate([np.arange(w.start, w.start + w.kept) for w in batch])
            parts.append((np.repeat(doc, per_token), np.repeat(pos, per_token), codes.features.cpu().numpy(),
                          codes.values.float().cpu().numpy()))
            bar.update(len(doc))
    doc_idx, pos, feats, vals = (np.concatenate([p[i] for p in parts]) for i in range(4))
    labels, summaries = build_labels(docs, doc_idx, pos, feats, vals, token_bytes(reader.tokenizer), sae.cfg.d_sae)
    about = {"labelling_tokens": int(lengths.sum()), "labelling_documents": len(docs),
             "method": "interp_embed.labeling.offline: whole words scored p(w|f)*log(p(w|f)/p(w)), script or "
                       "language tag, top contexts"}
    return labels, summaries, about


def label_sae(folder: str | Path, texts: list[str], *, model: str | None = None, role: str = "assistant",
              device: str | None = None, max_tokens: int | None = 500_000, max_doc_tokens: int = 512,
              progress: bool = True) -> dict[int, str]:
    """Label every feature of the SAE in ``folder`` from ``texts`` and write the label files into ``folder``.

    ``model`` is the reader (default: the one the SAE's ``cfg.json`` names); documents are wrapped in its
    chat template as ``role`` and cut into windows of ``max_doc_tokens``; at most ``max_tokens`` tokens
    are read (the first documents; None reads all). Returns ``{feature id: label}``; features that never
    fire on the corpus get no label.

    >>> label_sae("runs/my-sae/sae", corpus_texts, model="HuggingFaceTB/SmolLM2-360M-Instruct")  # doctest: +SKIP
    """
    from ..reading.activations import tokenize
    from ..saes import LocalSAE

    source = LocalSAE(path=folder, model=model, role=role, device=device)
    reader, sae, _ = source.load()
    docs = tokenize(reader, texts)
    if max_tokens is not None:  # the first max_tokens tokens: whole documents, the last one cut
        ends = np.cumsum([len(d) for d in docs])
        docs = [d[: max(0, max_tokens - (end - len(d)))] for d, end in zip(docs, ends)]
        docs = [d for d in docs if len(d)]
    if not docs:
        raise ValueError("the corpus has no tokens to label from (empty texts, or max_tokens too small)")
    started = time.perf_counter()
    labels, summaries, about = label_codes(sae, reader, docs, progress=progress, window_tokens=max_doc_tokens)
    write_labels(folder, labels, summaries, about)
    source.destroy()
    logger.info("%d features labelled from %d tokens in %.0f s", len(labels), about["labelling_tokens"],
                time.perf_counter() - started)
    return {int(f): label for f, label in labels.items()}
