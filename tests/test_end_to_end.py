"""The bundled reader + default SAE on real sentences: shapes, signs and aggregation identities."""
import numpy as np
import scipy.sparse as sp

from interp_embed import Dataset

from conftest import token_matrix


def test_latents_shape_and_type(encoded, sample):
    latents = encoded.latents()
    assert sp.isspmatrix_csr(latents)
    assert latents.shape == (len(sample), encoded.d_sae)
    assert latents.dtype == np.float32
    assert latents.nnz > 0 and (latents.data > 0).all()


def test_aggregations_agree_with_token_level(encoded):
    pooled = {name: encoded.latents(name).toarray() for name in ("max", "mean", "sum", "binarize", "count")}
    for name, matrix in pooled.items():
        assert (matrix >= 0).all(), name
    assert (pooled["max"] >= pooled["mean"] - 1e-6).all()
    np.testing.assert_array_equal(pooled["binarize"], (pooled["max"] > 0).astype(np.float32))
    for i in range(len(encoded)):
        tokens = token_matrix(encoded[i])
        n_tokens = len(encoded[i].tokens())
        assert tokens.shape[0] == n_tokens
        np.testing.assert_array_equal(pooled["count"][i], (tokens > 0).sum(0))
        np.testing.assert_array_equal(pooled["max"][i], tokens.max(0))
        np.testing.assert_allclose(pooled["sum"][i], tokens.sum(0), rtol=1e-5)
        np.testing.assert_allclose(pooled["mean"][i], tokens.sum(0) / n_tokens, rtol=1e-5)


def test_tokens_are_exact_slices_of_the_text(encoded):
    for row in encoded:
        assert "".join(row.tokens()) == row.document  # every character covered once, template excluded


def test_count_with_threshold_counts_tokens_above_it(encoded):
    counted = encoded.latents("count", activated_threshold=1.0).toarray()
    for i in range(5):
        np.testing.assert_array_equal(counted[i], (token_matrix(encoded[i]) > 1.0).sum(0))


def test_load_from_file_gives_identical_latents(encoded):
    reloaded = Dataset.load_from_file(encoded.path)
    for name in ("max", "sum", "count"):
        a, b = encoded.latents(name), reloaded.latents(name)
        assert a.dtype == b.dtype and (a != b).nnz == 0
    assert reloaded.pandas().equals(encoded.pandas())
    assert reloaded.feature_labels() == encoded.feature_labels()


def test_views_keep_their_latents(encoded, sample):
    full = encoded.latents().toarray()
    np.testing.assert_array_equal(encoded[1:4].latents().toarray(), full[1:4])
    mask = (sample.language == "de").to_numpy()
    view = encoded[mask]
    assert len(view) == mask.sum() and (view.pandas().language == "de").all()
    np.testing.assert_array_equal(view.latents().toarray(), full[mask])
    np.testing.assert_array_equal(encoded[[5, 2]].latents().toarray(), full[[5, 2]])
    assert encoded[0].document == sample.text[0]
    assert encoded[-1].document == sample.text.iloc[-1]


def test_top_documents_are_sorted_by_activation(encoded):
    latents = encoded.latents().toarray()
    feature = int(np.argmax((latents > 0).sum(0)))
    top = encoded.top_documents_for_feature(feature, k=5, document_only=False)
    values = top.latents()[:, feature].toarray().ravel()
    assert (np.diff(values) <= 0).all() and (values > 0).all()
    texts = encoded.top_documents_for_feature(feature, k=5)
    assert all("<<" in t and ">>" in t for t in texts)


def test_sort_and_filter_views(encoded, sample):
    by_language = encoded.sort_by_columns("language", descending=False)
    assert by_language.pandas().language.is_monotonic_increasing
    features = [int(encoded.latents().indices[0])]
    ranked = encoded.sort_by_features(features)
    score = ranked.latents()[:, features].toarray().ravel()
    assert (np.diff(score) <= 0).all()
    assert len(encoded.filter_na_rows()) == len(sample)
