"""A damaged store raises an error naming the file, or gives identical data; never anything else."""
import shutil
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from interp_embed import Dataset
from interp_embed.store import StoreError

from synthetic import synthetic_store


def _read_everything(path: Path) -> dict:
    ds = Dataset.load_from_file(path)
    out = {name: ds.latents(name).toarray() for name in ("max", "sum", "count")}
    out["documents"] = ds.pandas().to_json()
    out["labels"] = ds.feature_labels()
    out["tokens"] = [(row.tokens(), row.latents("all").toarray()) for row in ds]
    return out


def _same(a: dict, b: dict) -> bool:
    return all(
        np.array_equal(a[k], b[k]) if isinstance(a[k], np.ndarray) else
        all(ta == tb and np.array_equal(xa, xb) for (ta, xa), (tb, xb) in zip(a[k], b[k])) if k == "tokens" else a[k] == b[k]
        for k in a
    )


@pytest.fixture(scope="module")
def small_store(sample, tmp_path_factory):
    path = tmp_path_factory.mktemp("robust") / "s.iembed"
    synthetic_store(path, sample.head(6), chunk_chars=300)
    return path, _read_everything(path), sorted(p.relative_to(path) for p in path.rglob("*") if p.is_file())


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
        result = _read_everything(copy)
    except StoreError as err:
        assert str(copy) in str(err)  # the error names the damaged store's file
        return
    assert _same(result, reference), f"{file} {operation} at {fraction:.3f} gave different data silently"


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
    assert _same(_read_everything(copy), reference)
