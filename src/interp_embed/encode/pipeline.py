"""From texts to sparse token activations, chunk by chunk, committed to a store as they finish.

Rows are cut into chunks of consecutive rows by their texts' estimated tokens (``EncodePlan.chunk_ranges``),
so the same table always gives the same chunks and the same batches: a resumed run computes bit-for-bit what an
uninterrupted one would. A chunk's documents are read as :mod:`interp_embed.reading.activations` reads every
document: long ones split into windows that overlap by ``window_overlap`` tokens of context (every token computed
exactly once), windows sorted by length and packed into batches under a token budget (little padding). Only the
sparse SAE output leaves the device.
"""
from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable

import numpy as np
import torch
from tqdm.auto import tqdm

from ..architectures import SparseAutoencoder
from ..reading.activations import Window, cut_windows, read_windows
from ..reading.reader import Reader
from ..spec.plan import EncodePlan
from ..store.chunk import EncodedDocument
from ..store.store import Store

logger = logging.getLogger(__name__)


class Encoder:
    """Runs a reader and an SAE over rows of a table and commits the results to a store."""

    def __init__(self, reader: Reader, sae: SparseAutoencoder, plan: EncodePlan, sae_device: str | None = None):
        if reader.spec.hook_point != sae.cfg.hook_point:
            raise ValueError(f"the SAE reads {sae.cfg.hook_point.name} but the reader is hooked at "
                             f"{reader.spec.hook_point.name}")
        if reader.width != sae.cfg.d_in:
            raise ValueError(f"the SAE expects d_in={sae.cfg.d_in} but the reader's activations at "
                             f"{reader.spec.hook_point.name} are {reader.width} wide")
        self.reader, self.sae, self.plan = reader, sae, plan
        self.sae_device = sae_device or reader.device
        n_prefix = len(reader.prefix_ids)
        self.capacity = plan.window_tokens - n_prefix
        if self.capacity <= 2 * plan.window_overlap:
            raise ValueError(f"window_tokens={plan.window_tokens} leaves no room after the {n_prefix}-token "
                             f"template prefix and the overlap of {plan.window_overlap}; raise window_tokens")
        self.tokens_done = 0

    def encode_rows(self, rows: list[int], texts: list[str],
                    progress: Callable[[int], None] | None = None) -> list[EncodedDocument]:
        """Encode the given rows (texts already validated, rows ascending) in length-sorted batches; after each
        batch, ``progress(documents)`` is told how many documents it finished (their last window was in it)."""
        docs = [self.reader.document_tokens(text) for text in texts]
        windows = cut_windows([doc.ids for doc in docs], self.capacity, self.plan.window_overlap)
        pieces: list[list] = [[] for _ in docs]
        windows_left = Counter(window.doc for window in windows)
        for batch, hidden in read_windows(self.reader, windows, self.plan.batch_tokens, self.plan.max_padding):
            finished = 0
            for window, codes in zip(batch, self._sparse_codes(batch, hidden)):
                pieces[window.doc].append((window.start, codes))
                windows_left[window.doc] -= 1
                finished += windows_left[window.doc] == 0
            self.tokens_done += sum(len(window.ids) for window in batch)
            if progress is not None:
                progress(finished)
        return [self._assemble(row, doc, [codes for _, codes in sorted(parts, key=lambda p: p[0])])
                for row, doc, parts in zip(rows, docs, pieces)]

    def _sparse_codes(self, batch: list[Window], hidden: torch.Tensor) -> list[tuple[np.ndarray, ...]]:
        """Each window's SAE activations of the tokens it keeps, as (pointer, features, values) arrays."""
        acts = self.sae.encode_sparse(hidden.to(self.sae_device, self.sae.W_enc.dtype))
        ptr = acts.ptr.cpu().numpy()
        features = acts.features.cpu().numpy()
        values = acts.values.float().cpu().numpy()  # float32: the store decides how to keep them (stored_values)
        results, t = [], 0
        for window in batch:
            a0, a1 = ptr[t], ptr[t + window.kept]
            results.append((ptr[t : t + window.kept + 1] - a0, features[a0:a1], values[a0:a1]))
            t += window.kept
        return results

    @staticmethod
    def _assemble(row, doc, pieces) -> EncodedDocument:
        ptrs, feats, vals, offset = [np.zeros(1, np.int64)], [], [], 0
        for ptr, f, v in pieces:
            ptrs.append(offset + ptr[1:])
            offset += int(ptr[-1])
            feats.append(f)
            vals.append(v)
        return EncodedDocument(row=row, token_ids=doc.ids, spans=doc.spans, act_ptr=np.concatenate(ptrs),
                               act_features=np.concatenate(feats), act_values=np.concatenate(vals))



def advance_bar(bar: tqdm, documents: int, tokens: int, started: float) -> None:
    """Move the bar on by ``documents``, with the ``tokens`` read since ``started`` and their rate. The step that
    reaches the end is not drawn: the bar's close draws the final line, once (a log holds every redraw)."""
    rate = tokens / max(time.perf_counter() - started, 1e-9)
    bar.set_postfix_str(f"{tokens:,} tokens, {rate:,.0f} tok/s", refresh=False)
    if bar.n + documents >= bar.total:
        bar.n += documents
    else:
        bar.update(documents)


def encode_chunks(store: Store, encoder: Encoder) -> None:
    """Encode the store's pending chunks in order, committing each as it finishes (``encoder.plan`` is the
    store's plan: it decides the chunks and the batches). The bar moves with every batch."""
    todo = store.pending_chunks()
    if not todo:
        return
    skipped = store.skipped
    n_docs = sum(b - a for a, b in todo)
    started, tokens_before = time.perf_counter(), encoder.tokens_done
    with tqdm(total=n_docs, unit="doc", desc="Encoding", dynamic_ncols=True, mininterval=1.0) as bar:
        def progress(documents: int) -> None:
            advance_bar(bar, documents, encoder.tokens_done - tokens_before, started)

        for start, stop in todo:
            texts = store.texts(start, stop)  # only this chunk's rows: the table may not fit in memory
            rows = [r for r in range(start, stop) if r not in skipped]
            store.commit_chunk(start, stop, encoder.encode_rows(rows, [texts[r - start] for r in rows], progress))
            progress(stop - start - len(rows))  # the skipped rows of the chunk
    logger.info("Encoded %d rows (%d document tokens read) into %s", n_docs, encoder.tokens_done - tokens_before, store.path)
