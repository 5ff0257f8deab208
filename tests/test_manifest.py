"""The typed manifest: it round-trips, reads the first format version, and refuses by name what it cannot read."""
import json

import pytest

from interp_embed import Dataset
from interp_embed.files import MANIFEST, sha256_json
from interp_embed.store import Manifest, Store, StoreCorruptError, StoreError

from synthetic import synthetic_store


def _reseal(path, body: dict) -> None:
    """Write ``body`` as the store's manifest with a matching checksum (as a careless or hostile tool would)."""
    (path / MANIFEST).write_text(json.dumps({"body": body, "sha256": sha256_json(body)}))


@pytest.fixture()
def store(sample, tmp_path):
    return synthetic_store(tmp_path / "s.iembed", sample.head(10), chunk_chars=300, description="ten fortunes")


def test_the_manifest_round_trips(store):
    reread = Manifest.from_bytes(store.manifest.to_bytes(), store.path / MANIFEST)
    assert reread == store.manifest
    assert reread.dataset_description == "ten fortunes" and len(reread.chunks) >= 2
    assert all(c.bytes > 0 for c in reread.chunks) and reread.d_sae == 256


def test_a_version_1_store_is_read_and_upgraded_at_its_next_commit(store):
    before = Dataset.load_from_file(store.path)
    latents = before.latents()
    body = json.loads((store.path / MANIFEST).read_text())["body"]
    # Version 1 named the SAE source "spec", kept no description, and recorded files with their name.
    encoder = {("spec" if k == "source" else k): v for k, v in body["encoder"].items()}
    v1 = {**body, "version": 1, "encoder": encoder, "documents": {"file": "documents.parquet", **body["documents"]}}
    del v1["dataset_description"]
    _reseal(store.path, v1)
    old = Store.open(store.path)
    assert old.dataset_description == "" and old.encoder == store.encoder and old.manifest.chunks == store.manifest.chunks
    assert (Dataset.load_from_file(store.path).latents() != latents).nnz == 0
    old.set_description("upgraded")
    assert json.loads((store.path / MANIFEST).read_text())["body"]["version"] == 2


@pytest.mark.parametrize("change, error, message", [
    (lambda b: b.update(version=4), StoreError, "version 4 needs another interp_embed"),
    (lambda b: b.update(format="something.else"), StoreError, "not an interp_embed store"),
    (lambda b: b.update(n_documents="10"), StoreCorruptError, "n_documents should be int"),
    (lambda b: b.update(n_documents=True), StoreCorruptError, "n_documents should be int"),
    (lambda b: b["chunks"][0].update(name="../../elsewhere"), StoreCorruptError, "does not hold rows"),
    (lambda b: b["encoder"]["sae"].pop("d_sae"), StoreCorruptError, "d_sae should be int"),
    (lambda b: b.pop("field"), StoreCorruptError, "KeyError"),
    (lambda b: b.update(plan={"chunk_chars": -1}), StoreCorruptError, "chunk_chars must be an integer >= 1"),
])
def test_what_cannot_be_read_is_refused_by_name(store, change, error, message):
    body = json.loads((store.path / MANIFEST).read_text())["body"]
    change(body)
    _reseal(store.path, body)
    with pytest.raises(error, match=message) as err:
        Store.open(store.path)
    assert str(store.path / MANIFEST) in str(err.value)


def test_file_names_in_the_manifest_are_never_followed(store, tmp_path):
    (tmp_path / "outside.parquet").write_bytes((store.path / "documents.parquet").read_bytes())
    body = json.loads((store.path / MANIFEST).read_text())["body"]
    body["documents"]["file"] = str(tmp_path / "outside.parquet")  # ignored: the table is always documents.parquet
    _reseal(store.path, body)
    (store.path / "documents.parquet").write_bytes(b"not parquet")
    with pytest.raises(StoreCorruptError, match="documents.parquet does not match its checksum"):
        Store.open(store.path).documents()


@pytest.mark.parametrize("text", ['{"body": ' + "[" * 100_000 + "]" * 100_000 + ', "sha256": "x"}',
                                  '{"body": {"n_documents": NaN}, "sha256": "x"}', '{"body": {}}', "[1, 2]", "\udcff"])
def test_a_manifest_that_is_not_a_sealed_object_is_refused(store, text):
    (store.path / "manifest.json").write_text(text, errors="surrogateescape")
    with pytest.raises(StoreCorruptError, match="manifest.json"):
        Store.open(store.path)
