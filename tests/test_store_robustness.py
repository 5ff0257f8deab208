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
