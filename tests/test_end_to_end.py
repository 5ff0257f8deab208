"""The bundled reader + default SAE on real sentences: shapes, exact token slices, aggregation identities."""
import numpy as np
import pytest
import scipy.sparse as sp

from interp_embed import Dataset

from synthetic import token_matrix

pytestmark = pytest.mark.reader


def test_latents_shape_and_type(encoded, sample):
    latents = encoded.latents()
    assert sp.isspmatrix_csr(latents)
    assert latents.shape == (len(sample), encoded.d_sae)
    assert latents.dtype == np.float32
    assert latents.nnz > 0 and (latents.data > 0).all()


def test_aggregations_agree_with_token_level(encoded):
    pooled = {name: encoded.latents(name).toarray() for name in ("max", "mean", "sum", "binarize", "count")}
    for i in range(len(encoded)):
        tokens = token_matrix(encoded[i])
        n_tokens = len(encoded[i].tokens())
        assert tokens.shape[0] == n_tokens
        np.testing.assert_array_equal(pooled["count"][i], (tokens > 0).sum(0))
        np.testing.assert_array_equal(pooled["max"][i], tokens.max(0))
        np.testing.assert_allclose(pooled["sum"][i], tokens.sum(0), rtol=1e-5)
        np.testing.assert_allclose(pooled["mean"][i], tokens.sum(0) / n_tokens, rtol=1e-5)
    np.testing.assert_array_equal(pooled["binarize"], (pooled["max"] > 0).astype(np.float32))


def test_tokens_are_exact_slices_of_the_text(encoded):
    for row in encoded:
        assert "".join(row.tokens()) == row.document  # every character covered once, template excluded


def test_load_from_file_gives_identical_latents(encoded):
    reloaded = Dataset.load_from_file(encoded.path)
    for name in ("max", "sum", "count"):
        a, b = encoded.latents(name), reloaded.latents(name)
        assert a.dtype == b.dtype and (a != b).nnz == 0
    assert reloaded.pandas().equals(encoded.pandas())
    assert reloaded.feature_labels() == encoded.feature_labels()
