"""Out-of-core analyses (``memory_limit=``) and compact stores (``EncodePlan(token_level=False)``), on real text."""
import json
import mmap
import re

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from interp_embed import Dataset
from interp_embed.analysis import top_correlations
from interp_embed.analysis.blockwise import PresenceBlocks
from interp_embed.store.reading import BLOCK_SHARE, BYTES_PER_ENTRY, MATERIALISED_BYTES_PER_ENTRY
from interp_embed.analysis.cooccurrence import feature_blocks
from interp_embed.cli import app
from interp_embed.saes import DefaultSAE
from interp_embed.spec.plan import EncodePlan
from interp_embed.store import StoreError
from interp_embed.validation import MemorySize
from synthetic import synthetic_dataset

STORES = ["synthetic", pytest.param("encoded", marks=pytest.mark.reader)]


def one_chunk(ds) -> int:
    """The smallest memory_limit a blockwise analysis of ``ds`` accepts: room to read its largest chunk."""
    return max(c.pooled_entries for c in ds._store.manifest.chunks) * BLOCK_SHARE * BYTES_PER_ENTRY


@pytest.mark.parametrize("value, expected", [("4GB", 4 * 10**9), ("512 MiB", 512 * 2**20), ("1.5gb", 15 * 10**8),
                                             (123456, 123456), (None, None)])
def test_memory_limit_is_read_in_bytes(value, expected):
    assert MemorySize().check("memory_limit", value, {}) == expected


@pytest.mark.parametrize("value, error, words", [("4 parsecs", ValueError, "'4 parsecs' is not a size"),
                                                 (0, ValueError, "positive"), (2.5, TypeError, "number of bytes"),
                                                 (True, TypeError, "number of bytes")])
def test_a_bad_memory_limit_is_refused_by_name(synthetic, value, error, words):
    with pytest.raises(error, match=words):
        synthetic.diff(synthetic, memory_limit=value)


@pytest.mark.parametrize("store", STORES)
def test_blockwise_diff_equals_the_in_memory_one(request, store):
    ds = request.getfixturevalue(store)
    english = (ds.pandas()["language"] == "en").to_numpy()
    a, b = ds[english], ds[~english][::-1]
    for options in ({}, {"aggregation": "mean", "grouped": True}, {"activated_threshold": 0.5}):
        expected = a.diff(b, **options)
        assert (expected.q_value < 0.05).any() or options  # something to group
        # A bound this small computes the overlaps of a few leaders per pass over the store.
        got = a.diff(b, memory_limit=one_chunk(ds), **options)
        pd.testing.assert_frame_equal(got, expected, check_exact=True)


def test_blockwise_diff_counts_a_row_shown_twice_twice(synthetic):
    twice = synthetic[np.r_[0:30, 0:30]]
    other = synthetic[30:]
    pd.testing.assert_frame_equal(twice.diff(other, memory_limit="1MB"), twice.diff(other), check_exact=True)


@pytest.mark.parametrize("store", STORES)
def test_blockwise_top_correlations_equal_the_in_memory_ones_over_several_passes(request, store):
    ds = request.getfixturevalue(store)
    limit = one_chunk(ds)
    candidates = int((PresenceBlocks.of(ds, "ds", "max", 0.0, limit).counts >= 3).sum())
    assert len(feature_blocks(candidates, 4096, limit // 8)) > 3  # several passes over the store
    expected = ds.top_correlations(k=40, min_count=3)
    got = ds.top_correlations(k=40, min_count=3, memory_limit=limit)
    pd.testing.assert_frame_equal(got, expected, check_exact=True)
    assert got.attrs == expected.attrs


@pytest.mark.parametrize("store", STORES)
def test_blockwise_associate_equals_the_in_memory_one(request, store):
    ds = request.getfixturevalue(store)
    frame = ds.pandas()
    view = ds[::-1]  # the dataset's order differs from the store's
    view_frame = frame.iloc[::-1]
    for target, values in (("english", (view_frame["language"] == "en").to_numpy()),
                           ("length", view_frame["text"].str.len().to_numpy(dtype=float))):
        view = view._view(np.arange(len(view)), **{target: values})
        expected = view.associate(target)
        got = view.associate(target, memory_limit=one_chunk(ds) * 4)
        pd.testing.assert_frame_equal(got, expected, check_exact=target == "english", rtol=1e-12)
        assert got.attrs["model"] == expected.attrs["model"]


def test_blockwise_associate_scores_on_a_sample_of_the_held_out_documents_past_the_bound(synthetic, caplog):
    frame = synthetic.pandas()
    view = synthetic._view(np.arange(len(synthetic)), english=(frame["language"] == "en").to_numpy())
    got = view.associate("english", test_size=0.5, memory_limit=one_chunk(synthetic))
    assert got.attrs["model"]["n_test"] < view.associate("english", test_size=0.5).attrs["model"]["n_test"]
    assert "held-out documents, to stay within memory_limit" in caplog.text


def mapped(array: np.ndarray) -> bool:
    """Whether ``array``'s memory is a mapped file (somewhere down its chain of bases)."""
    while array is not None and not isinstance(array, (np.memmap, mmap.mmap)):
        array = getattr(array, "base", None)
    return array is not None


@pytest.fixture(scope="module")
def small_chunks(sample, tmp_path_factory):
    """The sample with an empty and a missing text, in chunks small enough that one fits where all do not."""
    frame = pd.concat([sample, pd.DataFrame({"text": ["", None], "language": ["en", "en"]})], ignore_index=True)
    return synthetic_dataset(tmp_path_factory.mktemp("small") / "s.iembed", frame, chunk_chars=200)


@pytest.mark.parametrize("aggregation", ["max", "mean", "sum", "count", "binarize"])
def test_latents_over_the_limit_are_built_on_disk_with_the_same_values(small_chunks, aggregation):
    n, limit = len(small_chunks), one_chunk(small_chunks)
    entries = sum(c.pooled_entries for c in small_chunks._store.manifest.chunks)
    assert entries * MATERIALISED_BYTES_PER_ENTRY > limit  # so the matrix is built on disk
    view = small_chunks[np.r_[n - 1, 3, 3, np.arange(0, n, 2)]]  # reordered, a row twice, unencoded rows included
    for ds in (small_chunks, view):
        on_disk = ds.latents(aggregation, memory_limit=limit)
        assert mapped(on_disk.data) and mapped(on_disk.indices) and not mapped(ds.latents(aggregation).data)
        assert on_disk.shape == ds.latents(aggregation).shape
        assert (on_disk != ds.latents(aggregation)).nnz == 0
        assert on_disk.has_canonical_format == ds.latents(aggregation).has_canonical_format
    assert not [p for p in small_chunks.path.iterdir() if p.name.startswith(".tmp-")]  # its files are unlinked


def test_latents_over_the_limit_refuse_what_needs_memory(small_chunks):
    with pytest.raises(MemoryError, match="leave compress=True"):
        small_chunks.latents(compress=False, memory_limit=one_chunk(small_chunks))
    with pytest.raises(ValueError, match="activated_threshold > 0"):
        small_chunks.latents(activated_threshold=1.0, memory_limit=one_chunk(small_chunks))
    assert (small_chunks.latents(memory_limit="1GB") != small_chunks.latents()).nnz == 0


def test_a_chunk_larger_than_the_bound_is_refused_by_name(synthetic):
    with pytest.raises(ValueError, match=r"chunk 0+-\d+ of .* raise memory_limit"):
        synthetic.diff(synthetic, memory_limit=5_000)


def test_memory_limit_needs_a_dataset_over_a_store(synthetic):
    class StandIn:  # what the analyses accept without a store
        d_sae = synthetic.d_sae
        latents, encoded_mask, feature_labels = synthetic.latents, synthetic.encoded_mask, synthetic.feature_labels
        pandas, __getitem__, __len__ = synthetic.pandas, synthetic.__getitem__, synthetic.__len__

    with pytest.raises(TypeError, match="memory_limit needs an interp_embed Dataset"):
        top_correlations(StandIn(), memory_limit="1GB")


# ---- compact stores -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def twins(sample, tmp_path_factory):
    """Twelve real documents encoded twice by the bundled reader: with token-level arrays and compact."""
    sae = DefaultSAE()  # its own: the tests check when it is loaded, and another test may load the shared one
    folder = tmp_path_factory.mktemp("twins")
    docs = sample.iloc[::5].reset_index(drop=True)
    full = Dataset(docs, sae=sae, save_path=folder / "full.iembed", plan=EncodePlan(chunk_tokens=200))
    # Created, then encoded by a resume: the store's plan, compact included, is what resuming honours.
    Dataset(docs, sae=sae, save_path=folder / "compact.iembed", compute_activations=False,
            plan=EncodePlan(chunk_tokens=200, token_level=False))
    compact = Dataset.load_from_file(folder / "compact.iembed", resume=True, sae=sae)
    return full, compact


@pytest.mark.reader
def test_a_compact_store_keeps_pooled_arrays_only_with_the_same_latents(twins):
    full, compact = twins
    manifest = json.loads((compact.path / "manifest.json").read_text())["body"]
    assert manifest["plan"]["token_level"] is False and not compact.token_level and full.token_level
    assert len(manifest["chunks"]) > 1
    assert all(set(c["files"]) == {"doc_rows.npy", "token_ptr.npy", "pool_ptr.npy", "pool_features.npy",
                                   "pool_max.npy", "pool_count.npy", "pool_sum_repeated.npy"}
               for c in manifest["chunks"])
    for aggregation in ("max", "mean", "count"):
        assert (compact.latents(aggregation) != full.latents(aggregation)).nnz == 0
        assert (compact[3].latents(aggregation) != full[3].latents(aggregation)).nnz == 0
    assert not compact.sae.is_loaded()  # a row's pooled activations are read, not recomputed


@pytest.mark.reader
def test_a_compact_store_recomputes_a_documents_highlights_on_demand(twins):
    full, compact = twins
    feature = int(np.argmax(full.latents("binarize").sum(axis=0).A1 * (full.latents("binarize").mean(axis=0).A1 < 1)))
    assert compact.top_documents_for_feature(feature, k=3) == full.top_documents_for_feature(feature, k=3)
    row_full, row_compact = full[1], compact[1]
    np.testing.assert_array_equal(row_compact.spans(), row_full.spans())
    np.testing.assert_allclose(row_compact.latents("all").toarray(), row_full.latents("all").toarray(), atol=0.05)
    assert compact.describe_feature(feature, k=2).top_documents == full.describe_feature(feature, k=2).top_documents
    assert compact.describe_feature(feature).words == []
    assert not compact.sae.is_loaded()  # the models loaded to recompute were freed


@pytest.mark.reader
def test_a_compact_store_loads_the_models_once_for_several_highlights(twins, monkeypatch):
    from interp_embed.encode import session

    full, compact = twins
    loads, loaded_models = [], session.loaded_models

    def counting(sae):
        loads.append(sae.is_loaded())
        return loaded_models(sae)

    monkeypatch.setattr(session, "loaded_models", counting)
    reopened = Dataset.load_from_file(compact.path)  # no SAE given: the store's is rebuilt from its record
    feature = int(full.latents("binarize").sum(axis=0).A1.argmax())
    assert reopened.top_documents_for_feature(feature, k=3) == full.top_documents_for_feature(feature, k=3)
    assert loads.count(False) == 1  # loaded once, reused by the three documents


@pytest.mark.reader
def test_the_sae_rebuilt_from_the_record_is_shared_by_views_taken_before_it(twins, monkeypatch):
    from interp_embed.encode import session

    full, compact = twins
    loads, loaded_models = [], session.loaded_models
    monkeypatch.setattr(session, "loaded_models", lambda sae: loads.append(sae.is_loaded()) or loaded_models(sae))
    reopened = Dataset.load_from_file(compact.path)  # no SAE given: rebuilt from the store's record on first use
    early = reopened[2:5]
    assert reopened.sae is None and early.sae is None
    feature = int(full[2:5].latents("binarize").sum(axis=0).A1.argmax())
    with reopened.models_loaded():
        highlighted = [row.token_activations(feature) for row in early]  # a compact store encodes each row again
    assert loads.count(False) == 1  # the view used the models its parent loaded, not models of its own
    assert early.sae is reopened.sae is not None and not reopened.sae.is_loaded()  # kept, and freed
    assert highlighted == [row.token_activations(feature) for row in full[2:5]] and "<<" in "".join(highlighted)


@pytest.mark.reader
def test_a_compact_store_searches_by_labels_alone_and_says_so(twins, caplog):
    full, compact = twins
    labels = compact.feature_labels()
    active = np.flatnonzero(compact.latents("binarize").sum(axis=0).A1)
    word = next(match.group(1) for f in active for match in [re.search(r"'([a-z]{4,})'", labels.get(int(f), ""))]
                if match)
    hits = compact.search(word, by="labels", k=2)
    assert "matched against feature labels alone" in caplog.text
    assert all("<<" in text for text in hits.highlighted)  # recomputed, as a token-level store shows them
    assert not compact.sae.is_loaded()


@pytest.mark.reader
def test_a_compact_store_refuses_what_needs_every_token_by_name(twins, tmp_path):
    _, compact = twins
    with pytest.raises(StoreError, match="activated_threshold > 0 .* keeps pooled activations only"):
        compact.latents(activated_threshold=0.5)
    with pytest.raises(StoreError, match=r"feature_words .* EncodePlan\(token_level=False\)"):
        compact.feature_words()
    with pytest.raises(StoreError, match="compact store"):
        compact[:3].save_to_file(tmp_path / "part.iembed")


@pytest.mark.reader
def test_info_prints_the_bytes_per_token_of_both_modes(twins):
    full, compact = twins
    lines = {}
    for ds in twins:
        out = CliRunner().invoke(app, ["info", str(ds.path)], terminal_width=250).output
        lines[ds.token_level] = next(line for line in out.splitlines() if "mode:" in line)
    tokens = sum(c.n_tokens for c in full._store.manifest.chunks)
    full_size = sum(c.bytes for c in full._store.manifest.chunks)
    assert f"token-level {full_size / tokens:.1f} bytes per token, compact" in lines[True]
    assert "mode: compact" in lines[False] and "(estimated)" in lines[False]
    compact_of = lambda line: float(line.split("compact ")[-1])  # noqa: E731
    assert compact_of(lines[False]) == compact_of(lines[True])
    estimated = float(lines[False].split("token-level ")[1].split(" bytes")[0])
    assert abs(estimated - full_size / tokens) / (full_size / tokens) < 0.2


def test_token_level_must_be_a_bool():
    with pytest.raises(TypeError, match="token_level must be True or False"):
        EncodePlan(token_level="no")


def test_a_rows_pooled_latents_are_read_from_its_chunk_alone(small_chunks, monkeypatch):
    store, expected = small_chunks._store, small_chunks.latents("mean")

    def whole_store(*args, **kwargs):
        raise AssertionError("one row's latents read every chunk")

    monkeypatch.setattr(type(store), "pooled", whole_store)
    for row in range(len(small_chunks)):  # the empty and the missing text included
        assert (store.row_latents(row, "mean") != expected[row]).nnz == 0
