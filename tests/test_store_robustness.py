"""A damaged store raises an error naming the file, or gives identical data; never anything else."""
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from interp_embed.store import StoreError

from hostile import read_everything, same
from synthetic import synthetic_store


@pytest.fixture(scope="module")
def small_store(sample, tmp_path_factory):
    path = tmp_path_factory.mktemp("robust") / "s.iembed"
    synthetic_store(path, sample.head(6), chunk_chars=300)
    return path, read_everything(path), sorted(p.relative_to(path) for p in path.rglob("*") if p.is_file())


def _damage(store: Path, file: Path, operation: str, fraction: float, tmp: Path) -> Path:
    copy = tmp / "copy.iembed"
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(store, copy)
    target = copy / file
    data = bytearray(target.read_bytes())
    position = min(int(fraction * len(data)), max(len(data) - 1, 0))
    if operation == "truncate":
        data = data[:position]
    elif data:
        data[position] ^= 0x01 << int(fraction * 8 % 8)
    target.write_bytes(bytes(data))
    return copy


def _check(store, reference, file, operation, fraction, tmp):
    copy = _damage(store, file, operation, fraction, tmp)
    try:
        result = read_everything(copy)
    except StoreError as err:
        assert str(copy) in str(err)  # the error names the damaged store's file
        return
    assert same(result, reference), f"{file} {operation} at {fraction:.3f} gave different data silently"


def test_every_file_truncated_or_flipped(small_store, tmp_path):
    store, reference, files = small_store
    assert any("chunks" in str(f) for f in files) and Path("manifest.json") in files
    for file in files:
        for operation, fraction in (("truncate", 0.0), ("truncate", 0.5), ("flip", 0.0), ("flip", 0.5), ("flip", 0.999)):
            _check(store, reference, file, operation, fraction, tmp_path)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_random_damage(small_store, tmp_path, data):
    store, reference, files = small_store
    file = data.draw(st.sampled_from(files))
    operation = data.draw(st.sampled_from(["truncate", "flip"]))
    fraction = data.draw(st.floats(0, 1, exclude_max=True))
    _check(store, reference, file, operation, fraction, tmp_path)


def test_leftovers_of_a_crash_are_ignored(small_store, tmp_path):
    store, reference, _ = small_store
    copy = tmp_path / "c.iembed"
    shutil.copytree(store, copy)
    (copy / "chunks" / ".tmp-000000099-000000100-123").mkdir()
    (copy / "chunks" / "000000099-000000100").mkdir()
    (copy / ".manifest.json.tmp-42").write_text("{half a manifest")
    assert same(read_everything(copy), reference)


def test_a_label_another_writer_added_is_seen_after_the_next_write(tmp_path, sample):
    from interp_embed.store import Store
    from interp_embed.store.labels import LabelRecord

    path = synthetic_store(tmp_path / "s.iembed", sample.head(20)).path
    mine, theirs = Store.open(path), Store.open(path)
    assert mine.label_records() == []  # read, and kept
    theirs.add_label(LabelRecord(feature=3, label="dogs", source="user"))
    with mine.writing():  # taking the writer lock reloads what other writers changed
        pass
    assert [(r.feature, r.label) for r in mine.label_records()] == [(3, "dogs")]


def test_a_reload_forgets_every_view_another_writer_changed(tmp_path, sample):
    """Every view a store keeps of what a writer changes (chunks, pooled statistics, words, added columns, labels)
    is read again once another writer has changed them and the writer lock reloads the store: each view then
    equals a fresh store's, and differs from what it was. A new kept view must be added here."""
    from functools import cached_property

    from interp_embed.store import Store
    from interp_embed.store.labels import DatasetLabels, LabelRecord
    from interp_embed.store.store import READ_ONCE
    from synthetic import encode_text

    def views(store: Store) -> dict[str, object]:  # by the cache each one is read through
        rows = store.pooled().n_tokens.nonzero()[0]
        return {
            "_chunks": [(c.entry.start, c.entry.stop) for c in store.chunks()],
            "_pooled": store.pooled().n_tokens.tolist(),
            "_feature_words": sorted(store.feature_words().words.tolist()),
            "_word_index": store.document_words(rows)[1].tolist(),
            "_documents": store.documents().columns.tolist(),
            "_labels": ([(r.feature, r.label) for r in store.label_records()],
                        [sorted(d.labels.items()) for d in store.dataset_labels()]),
        }

    kept = {name for name, value in vars(Store).items() if isinstance(value, cached_property)} - READ_ONCE
    frame = sample.head(24)
    store = synthetic_store(tmp_path / "s.iembed", frame, chunk_chars=300, encode_chunks=0)
    path, pending = store.path, store.pending_chunks()
    with store.writing():  # the first and third chunks: a store reloaded reads the second after them, a fresh one before
        for start, stop in pending[0:3:2]:
            store.commit_chunk(start, stop, [encode_text(frame.text.iloc[r], r) for r in range(start, stop)])
    mine = Store.open(path)
    before = views(mine)
    assert set(before) == kept and kept <= set(mine.__dict__)  # every view was read, and is kept

    theirs = Store.open(path)
    with theirs.writing():
        for start, stop in theirs.pending_chunks():
            theirs.commit_chunk(start, stop, [encode_text(frame.text.iloc[r], r) for r in range(start, stop)])
        theirs.add_column("language_again", frame.language)
        theirs.add_label(LabelRecord(feature=3, label="dogs", source="user"))
        theirs.add_dataset_labels(DatasetLabels(labels={4: "cats"}, scores={}, rows="all", seed=0, held_out=0.0,
                                                version="test"))
    assert views(mine) == before  # kept: nothing is read again before the store is reloaded
    with mine.writing():
        pass
    after, fresh = views(mine), views(Store.open(path))
    assert after == fresh
    assert all(before[name] != fresh[name] for name in kept), [name for name in kept if before[name] == fresh[name]]
