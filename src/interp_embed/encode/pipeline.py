"""From texts to sparse token activations, chunk by chunk, committed to a store as they finish.

Rows are cut into chunks of consecutive rows by their texts' estimated tokens (``EncodePlan.chunk_ranges``),
so the same table always gives the same chunks and the same batches: a resumed run computes bit-for-bit what an
uninterrupted one would. Inside a chunk, windows are sorted by length and packed into batches under a token budget (little
padding); long documents are split into windows that overlap by ``window_overlap`` tokens of context,
and every token is computed exactly once. Only the sparse SAE output leaves the device.
"""
from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from ..architectures import SparseAutoencoder
from ..reading.reader import Reader
from ..spec.plan import EncodePlan
from ..store.chunk import EncodedDocument
from ..store.store import Store

logger = logging.getLogger(__name__)


@dataclass
class _Window:
    row: int
    order: int  # position of this window within its document
    ids: np.ndarray  # document token ids fed in this window (context overlap included)
    keep_from: int  # first position (within ids) whose activations are kept


def _windows(row: int, ids: np.ndarray, capacity: int, overlap: int) -> list[_Window]:
    if len(ids) <= capacity:
        return [_Window(row, 0, ids, 0)]
    windows, start = [], 0
    while True:
        context = 0 if start == 0 else overlap
        lo = start - context
        hi = min(lo + capacity, len(ids))
        windows.append(_Window(row, len(windows), ids[lo:hi], context))
        if hi == len(ids):
            return windows
        start = hi


def _batches(windows: list[_Window], plan: EncodePlan) -> list[list[_Window]]:
    """Greedy packing of length-sorted windows: a batch holds at most ``plan.batch_tokens`` once every window is
    padded to the longest, and (unless ``plan.max_padding`` is None) no more padding than ``plan.max_padding``
    times its windows' own tokens; a window that would break either starts the next batch.

    Only document tokens count: the template prefix is computed once and shared (Reader.forward_documents).
    """
    ordered = sorted(windows, key=lambda w: (len(w.ids), w.row))
    batches, current, tokens = [], [], 0
    for window in ordered:
        longest = len(window.ids)  # sorted ascending: the newcomer is the longest
        padded, own = (len(current) + 1) * longest, tokens + longest
        too_padded = plan.max_padding is not None and padded - own > plan.max_padding * own
        if current and (padded > plan.batch_tokens or too_padded):
            batches.append(current)
            current, tokens = [], 0
        current.append(window)
        tokens += longest
    if current:
        batches.append(current)
    return batches


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
        """Encode the given rows (texts already validated) in length-sorted batches; after each batch,
        ``progress(documents)`` is told how many documents it finished (their last window was in it)."""
        windows: list[_Window] = []
        tokens = {}
        for row, text in zip(rows, texts):
            doc = self.reader.document_tokens(text)
            tokens[row] = doc
            windows.extend(_windows(row, doc.ids, self.capacity, self.plan.window_overlap))
        parts: dict[int, list] = {row: [] for row in rows}
        windows_left = Counter(window.row for window in windows)
        for batch in _batches(windows, self.plan):
            finished = 0
            for window, result in zip(batch, self._run_batch(batch)):
                parts[window.row].append((window.order, result))
                windows_left[window.row] -= 1
                finished += windows_left[window.row] == 0
            if progress is not None:
                progress(finished)
        return [self._assemble(row, tokens[row], [r for _, r in sorted(parts[row], key=lambda p: p[0])]) for row in rows]

    def _run_batch(self, batch: list[_Window]) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        width = max(len(w.ids) for w in batch)
        input_ids = np.full((len(batch), width), self.reader.pad_id, dtype=np.int64)
        mask = np.zeros((len(batch), width), dtype=np.int64)
        for i, window in enumerate(batch):
            input_ids[i, : len(window.ids)] = window.ids
            mask[i, : len(window.ids)] = 1
        hidden = self.reader.forward_documents(torch.from_numpy(input_ids), torch.from_numpy(mask))
        # Gather only the kept document positions of every window into one (tokens, d_model) matrix.
        rows = np.concatenate([np.full(len(w.ids) - w.keep_from, i) for i, w in enumerate(batch)])
        cols = np.concatenate([np.arange(w.keep_from, len(w.ids)) for w in batch])
        x = hidden[torch.from_numpy(rows).to(hidden.device), torch.from_numpy(cols).to(hidden.device)]
        acts = self.sae.encode_sparse(x.to(self.sae_device, self.sae.W_enc.dtype))
        ptr = acts.ptr.cpu().numpy()
        features = acts.features.cpu().numpy()
        values = acts.values.float().cpu().numpy()  # float32: the store decides how to keep them (stored_values)
        self.tokens_done += int(mask.sum())
        results, t = [], 0
        for window in batch:
            n = len(window.ids) - window.keep_from
            a0, a1 = ptr[t], ptr[t + n]
            results.append((ptr[t : t + n + 1] - a0, features[a0:a1], values[a0:a1]))
            t += n
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
