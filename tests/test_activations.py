"""The one path from token ids to a reader's activations (reading.activations), on real text: windows cover every
token once with the context they promise, and reading in packed windows gives each token the activation it has when
its document is read alone, after the template prefix."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from interp_embed.data import demo_sample
from interp_embed.reading.activations import cut_windows, pack_batches, read_windows, tokenize
from interp_embed.reading.reader import Reader
from interp_embed.spec.reader import ReaderSpec
from numerics import assert_equal_up_to_rounding

pytestmark = pytest.mark.reader


@pytest.fixture(scope="module")
def reader(tiny_model_dir) -> Reader:
    return Reader(ReaderSpec(model=str(tiny_model_dir), layer=1), device="cpu", dtype=torch.float32)


@pytest.fixture(scope="module")
def docs(reader) -> list[np.ndarray]:
    """The demo's fortunes, and three long documents made of ten of them each."""
    texts = demo_sample().text.tolist()[:40]
    return tokenize(reader, texts + [" ".join(texts[i : i + 10]) for i in (0, 10, 20)])


def test_windows_keep_every_token_once_after_the_context_they_repeat(docs):
    windows = cut_windows(docs + [np.zeros(0, dtype=np.int64)], window_tokens=64, overlap=16)
    assert {w.doc for w in windows} == set(range(len(docs)))  # the empty document has no window
    assert max(len(d) for d in docs) > 3 * 64 and all(len(w.ids) <= 64 for w in windows)
    for doc, ids in enumerate(docs):
        mine = [w for w in windows if w.doc == doc]
        assert np.array_equal(np.concatenate([w.ids[w.keep_from :] for w in mine]), ids)
        assert [w.start for w in mine] == list(np.cumsum([0] + [w.kept for w in mine[:-1]]))
        for w in mine:  # the context is the tokens just before the kept ones
            assert w.keep_from == (0 if w.start == 0 else 16)
            assert np.array_equal(w.ids, ids[w.start - w.keep_from : w.start + w.kept])
    # Without overlap, windows are the document cut in pieces.
    pieces = cut_windows(docs, window_tokens=64)
    assert [len(w.ids) for w in pieces] == [min(64, len(d) - s) for d in docs for s in range(0, len(d), 64)]
    with pytest.raises(ValueError, match="overlap"):
        cut_windows(docs, window_tokens=64, overlap=32)


def test_batches_hold_every_window_once_within_the_token_budget(docs):
    windows = cut_windows(docs, window_tokens=64, overlap=16)
    batches = pack_batches(windows, batch_tokens=256, max_padding=None)
    assert sorted(map(id, (w for batch in batches for w in batch))) == sorted(map(id, windows))
    assert all(len(batch) * max(len(w.ids) for w in batch) <= 256 for batch in batches)


def test_reading_in_windows_gives_each_token_its_activation_read_alone(reader, docs):
    # Every document short enough to be read in one window: packed, padded and after the cached prefix, each
    # token's activation is the one of a forward pass over the prefix and that document alone.
    short = [d for d in docs if len(d) <= 64][:12]
    read = {}
    for batch, hidden in read_windows(reader, cut_windows(short, window_tokens=64), batch_tokens=256):
        assert hidden.shape == (sum(w.kept for w in batch), reader.width)
        for w, x in zip(batch, hidden.split([w.kept for w in batch])):
            read[w.doc] = x
    assert sorted(read) == list(range(len(short)))
    prefix = reader.prefix_ids
    for doc, ids in enumerate(short):
        alone = reader.forward(torch.tensor([prefix + ids.tolist()]))[0, len(prefix) :]
        assert_equal_up_to_rounding(read[doc], alone, rtol=1e-4)
    # A long document read in overlapping windows: every token is read once, and the first window's tokens have the
    # activations they have when the document is read from its start at once (a causal model).
    long = max(docs, key=len)
    kept = {}
    for batch, hidden in read_windows(reader, cut_windows([long], window_tokens=64, overlap=16), batch_tokens=256):
        kept.update(zip([w.start for w in batch], hidden.split([w.kept for w in batch])))
    assert sum(len(x) for x in kept.values()) == len(long) > 3 * 64
    whole = reader.forward(torch.tensor([prefix + long[:64].tolist()]))[0, len(prefix) :]
    assert_equal_up_to_rounding(kept[0], whole, rtol=1e-4)
