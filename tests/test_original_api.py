"""Code written for the original interp-embed 0.1.0 runs unchanged: its README's quickstart and method list
verbatim, and every argument of its ``Dataset``, ``DatasetRow``, ``LocalSAE`` and ``GoodfireSAE`` with the
original's meaning (or refused with a message naming what replaces it). Stores are the bundled fortunes with
synthetic activations unless a test is marked ``reader``; ``await`` calls go to tests/fake_llm.py.
"""
import ast
import asyncio
import logging
import textwrap

import numpy as np
import pandas as pd
import pytest

from interp_embed import Dataset
from interp_embed.saes import DefaultSAE, GoodfireSAE, LocalSAE, sae_from_spec
from synthetic import D_SAE, NON_ASCII, PUNCTUATION, synthetic_dataset, token_matrix, word_features

# The original README (interp-embed 0.1.0 on PyPI), character for character.
QUICKSTART_SAE = '''
from interp_embed import Dataset
from interp_embed.saes import GoodfireSAE
import pandas as pd

# 1. Load a Goodfire SAE or SAE supported through the SAELens package
sae = GoodfireSAE(
    variant_name="Llama-3.1-8B-Instruct-SAE-l19",  # or "Llama-3.3-70B-Instruct-SAE-l50" for higher quality features
    device="cuda:0", # optional
    quantize=True # optional
)
'''
QUICKSTART_DATA = '''
# 2. Prepare your data as a DataFrame
df = pd.DataFrame({
    "text": ["Good morning!", "Hello there!", "Good afternoon."],
    "date": ["2022-01-10", "2021-08-23", "2023-03-14"] # Metadata column
})

# 3. Create dataset - computes and saves feature activations
dataset = Dataset(
    data=df,
    sae=sae,
    field="text",  # Optional. Column containing text to analyze
    save_path="my_dataset.pkl"  # Optional. Auto-saves progress, which enables recovery if computations fail
)

# 4. In the future, load saved dataset to skip expensive recomputation.
dataset = Dataset.load_from_file("my_dataset.pkl") # # If some activations failed, use 'resume=True' to continue.
'''
METHODS = '''
# Get feature activations as a sparse matrix of shape (N = # documents, F = # features)
embeddings = dataset.latents()

# Get the feature labels if they exist from the SAE
labels = dataset.feature_labels()

# Pass in a feature index to get a more accurate label
new_label = await dataset.label_feature(feature = 65478) # example: "Friendly greetings"

# Annotate a document for a given feature, marking activating tokens with << >>.
annotated_document = dataset[0].token_activations(feature = 65478)

# Extract a list of top documents for a given feature
top_documents = dataset.top_documents_for_feature(feature = 65478)
'''


def run_cell(code: str, namespace: dict) -> dict:
    """Run ``code`` as a notebook cell (top-level ``await`` allowed) in ``namespace``; return the namespace."""
    compiled = compile(textwrap.dedent(code), "<readme>", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    result = eval(compiled, namespace)
    if asyncio.iscoroutine(result):
        asyncio.run(result)
    return namespace


@pytest.fixture
def ds(sample, tmp_path):
    """A fresh synthetic store per test (labels written by a test stay in its own store)."""
    return synthetic_dataset(tmp_path / "fortunes.iembed", sample, chunk_chars=1500)


def word_feature(word: str) -> int:
    """The first feature of its own that ``word`` fires (see synthetic.py)."""
    return max(word_features(word))


# ---- the README, verbatim ------------------------------------------------------------------------------------
def test_readme_methods_verbatim(ds, llm, monkeypatch):
    monkeypatch.setenv("OPENAI_BASE_URL", llm.url)
    # 65478 is a Goodfire feature: on this SAE the first call that names it says how many features there are.
    with pytest.raises(ValueError, match=r"synthetic architecture\) has 256 features"):
        run_cell(METHODS, {"dataset": ds})
    namespace = run_cell(METHODS.replace("65478", str(word_feature("the"))), {"dataset": ds})
    latents = ds.latents().toarray()
    assert (namespace["embeddings"] != ds.latents()).nnz == 0 and latents.shape == (60, D_SAE)
    assert namespace["labels"][PUNCTUATION] == "punctuation at a word's end"
    assert namespace["new_label"].label == "the"  # the fake model names the word marked most often
    feature = word_feature("the")
    first = ds[0].document
    assert namespace["annotated_document"].replace("<<", "").replace(">>", "") == first
    assert ("<<" in namespace["annotated_document"]) == (latents[0, feature] > 0)
    top = namespace["top_documents"]
    assert len(top) == min(10, int((latents[:, feature] > 0).sum())) and all("<<" in t for t in top)
    strongest = np.argsort(-latents[:, feature], kind="stable")[:len(top)]
    assert [t.replace("<<", "").replace(">>", "") for t in top] == [ds[int(i)].document for i in strongest]


@pytest.mark.reader
def test_readme_quickstart_verbatim(tmp_path, monkeypatch, caplog, llm):
    monkeypatch.chdir(tmp_path)
    namespace = run_cell(QUICKSTART_SAE, {})
    goodfire = namespace["sae"]
    assert goodfire.quantize and goodfire.spec()["quantize"] is True  # constructed, never loaded here
    namespace["sae"] = DefaultSAE()  # our default SAE stands in for Goodfire's 8B reader
    with caplog.at_level(logging.WARNING):
        run_cell(QUICKSTART_DATA, namespace)
    assert sum("not a pickle" in r.getMessage() for r in caplog.records) == 1
    dataset = namespace["dataset"]
    assert (tmp_path / "my_dataset.pkl").is_dir() and dataset.documents() == ["Good morning!", "Hello there!",
                                                                               "Good afternoon."]
    assert dataset.latents().shape == (3, 8192) and dataset.latents().nnz > 0
    monkeypatch.setenv("OPENAI_BASE_URL", llm.url)
    with pytest.raises(ValueError, match=r"type=default.*has 8,192 features"):
        run_cell(METHODS, {"dataset": dataset})
    rebuilt = Dataset(df := namespace["df"], field="text", save_path="batched.iembed", batch_size=2)
    assert rebuilt._store.plan.batch_tokens == 2 * rebuilt._store.plan.window_tokens
    assert (rebuilt.latents() != dataset.latents()).nnz == 0 and len(df) == 3


# ---- Dataset.latents and DatasetRow.latents ------------------------------------------------------------------
@pytest.mark.parametrize("aggregation", ["max", "mean", "sum", "binarize", "count"])
def test_compress_false_is_the_dense_matrix(synthetic, aggregation):
    sparse = synthetic.latents(aggregation, compress=True)
    dense = synthetic.latents(aggregation, compress=False, activated_threshold=0)
    assert isinstance(dense, np.ndarray) and dense.shape == (60, D_SAE) and dense.any()
    np.testing.assert_array_equal(dense, sparse.toarray())
    row = synthetic[7].latents(activation_type=aggregation, compress=False)
    np.testing.assert_array_equal(row, dense[7:8])
    np.testing.assert_array_equal(synthetic[7].latents(aggregation).toarray(), dense[7:8])
    np.testing.assert_array_equal(synthetic.latents(aggregation, False, 0.6), synthetic.latents(
        aggregation, activated_threshold=0.6).toarray())


def test_row_latents_all_and_refusals(synthetic):
    np.testing.assert_array_equal(synthetic[3].latents("all", compress=False), token_matrix(synthetic[3]))
    assert synthetic[3].latents().shape == (1, D_SAE)  # the original's default: max
    with pytest.raises(ValueError, match=r"ds\[i\]\.latents\('all'\)"):
        synthetic.latents("all")
    with pytest.raises(TypeError, match="compress must be True or False"):
        synthetic.latents(compress="no")


# ---- sorting and top documents, against the original's algorithm ----------------------------------------------
def original_sort(latents: np.ndarray, features, labels, descending=True, include_nonactive_samples=True):
    """interp-embed 0.1.0's Dataset.sort_by_features, on a dense matrix: (row, activation, label, feature) each."""
    top, inactive = [], []
    for i, activation in enumerate(latents[:, features]):
        nonzero = np.nonzero(activation)[0]
        if len(nonzero):
            top.append([i, nonzero[0], activation[nonzero[0]], labels.get(features[nonzero[0]], "")])
        else:
            inactive.append([i, float("inf"), 0, "NA"])
    entries = sorted(top, key=lambda x: (x[1], x[2]), reverse=descending)
    if include_nonactive_samples:
        entries = entries + inactive if descending else inactive + entries
    return [(i, a, label, features[t] if t != float("inf") else -1) for i, t, a, label in entries]


@pytest.mark.parametrize("descending", [True, False])
@pytest.mark.parametrize("include_nonactive_samples", [True, False])
def test_sort_by_features_matches_the_original(synthetic, descending, include_nonactive_samples):
    features = [NON_ASCII, PUNCTUATION, word_feature("the")]
    expected = original_sort(synthetic.latents(compress=False), features, synthetic.feature_labels(), descending,
                             include_nonactive_samples)
    ranked = synthetic.sort_by_features(features, descending=descending,
                                        include_nonactive_samples=include_nonactive_samples)
    table = ranked.pandas()
    assert ranked.store_rows.tolist() == [e[0] for e in expected]
    np.testing.assert_allclose(table.feature_activation.to_numpy(), [e[1] for e in expected])
    assert table.top_feature_label.tolist() == [e[2] for e in expected]
    assert table.top_feature_index.tolist() == [e[3] for e in expected]
    assert ranked[0].row["top_feature_index"] == expected[0][3]
    assert ranked[2:5].pandas().top_feature_label.tolist() == [e[2] for e in expected[2:5]]  # views keep them
    assert "feature_activation" not in synthetic.columns  # the store is not changed


def test_added_columns_are_not_saved(synthetic, tmp_path, caplog):
    ranked = synthetic.sort_by_features([NON_ASCII])
    assert ranked.columns[-3:] == ["feature_activation", "top_feature_label", "top_feature_index"]
    assert synthetic.sort_by_features(np.array([NON_ASCII]), include_top_feature=False).columns == synthetic.columns
    with pytest.raises(TypeError, match=r"e.g. \[1\]"):
        synthetic.sort_by_features(NON_ASCII)
    with caplog.at_level(logging.WARNING):
        saved = Dataset.load_from_file(ranked.save_to_file(tmp_path / "ranked.iembed"))
    assert "not saved" in caplog.text and saved.columns == synthetic.columns
    assert saved.documents() == ranked.documents()


@pytest.mark.parametrize("select_top, include_nonactive_samples", [(True, False), (False, False), (False, True)])
def test_top_documents_matches_the_original(synthetic, select_top, include_nonactive_samples):
    feature = NON_ASCII
    expected = original_sort(synthetic.latents(compress=False), [feature], {},
                             include_nonactive_samples=include_nonactive_samples)
    expected = expected[:5] if select_top else expected[-5:]
    view = synthetic.top_documents_for_feature(feature, document_only=False, k=5, select_top=select_top,
                                               include_nonactive_samples=include_nonactive_samples)
    assert view.store_rows.tolist() == [e[0] for e in expected]
    np.testing.assert_allclose(view.pandas().feature_activation.to_numpy(), [e[1] for e in expected])
    texts = synthetic.top_documents_for_feature(feature, "max", True, 5, select_top, include_nonactive_samples)
    assert [t.replace("<<", "").replace(">>", "") for t in texts] == view.documents()
    assert all(("<<" in t) == (e[1] > 0) for t, e in zip(texts, expected))
    # A list of str for code written against the original; in a notebook, the documents shaded.
    assert isinstance(texts, list) and texts == [str(t) for t in texts] and repr(texts) == repr([str(t) for t in texts])
    shown = texts._repr_html_()
    assert shown.startswith("<ol>") and shown.count("<li>") == len(texts) == 5
    assert all(t._repr_html_() in shown for t in texts)
    assert shown.count("<span style=\"background: rgba(255, 140, 0,") == sum(t.count("<<") for t in texts)


# ---- the constructor's and loader's arguments ----------------------------------------------------------------
def test_constructor_arguments_checked_at_the_door(sample):
    with pytest.raises(TypeError, match=r"ds\[\.\.\.\].*Dataset\.concat"):
        Dataset(sample, rows=[object()] * len(sample))
    with pytest.raises(TypeError, match="plan= or batch_size="):
        from interp_embed.spec.plan import EncodePlan
        Dataset(sample, plan=EncodePlan(), batch_size=4)
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1"):
        Dataset(sample, batch_size=0)
    with pytest.raises(ValueError, match="save_every_batch must be an integer >= 1"):
        Dataset(sample, save_every_batch=0)


def test_load_from_file_batch_size(sample, tmp_path, caplog):
    path = synthetic_dataset(tmp_path / "s.iembed", sample).path
    with caplog.at_level(logging.WARNING):
        Dataset.load_from_file(path, batch_size=4)  # 4 windows of 1,024 tokens: the store's own batches
    assert "batch_size" not in caplog.text
    with caplog.at_level(logging.WARNING):
        loaded = Dataset.load_from_file(path, False, 8)
    assert "batch_size=8 ignored" in caplog.text and len(loaded) == 60
    with pytest.raises(TypeError, match="batch_size must be an integer"):
        Dataset.load_from_file(path, batch_size="8")


def test_save_path_named_like_a_pickle_warns_once(synthetic, tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        path = synthetic[:4].save_to_file(tmp_path / "my_dataset.pkl")
    assert path.is_dir() and len(Dataset.load_from_file(path)) == 4
    assert [r.getMessage() for r in caplog.records if "pickle" in r.getMessage()] == [
        f"{tmp_path / 'my_dataset.pkl'} will be a folder (a dataset store), not a pickle file; the name is kept "
        "as given, but a name ending in .iembed says what it is"]
    with pytest.raises(TypeError, match="needs a folder path"):
        synthetic.save_to_file()
    with pytest.raises(ValueError, match="dtype"):
        synthetic.save_to_file(tmp_path / "half.iembed", dtype=np.float16)


def test_dataset_level_methods_of_the_original(synthetic):
    assert synthetic[:3].token_activations(NON_ASCII) == [row.token_activations(NON_ASCII) for row in synthetic[:3]]
    rows = synthetic[:3].dataset_rows()
    assert [r.document for r in rows] == synthetic.documents()[:3] and rows[1].row_record() == synthetic.list()[1]


# ---- SAE classes ---------------------------------------------------------------------------------------------
def test_goodfire_quantize_is_refused_when_loading_not_before():
    sae = GoodfireSAE(variant_name="Llama-3.1-8B-Instruct-SAE-l19", device="cuda:0", quantize=True)
    assert sae_from_spec(sae.spec()).quantize is True and GoodfireSAE().quantize is False
    with pytest.raises(RuntimeError, match=r"quantize=True.*needs a CUDA GPU.*quantize=False"):
        sae.load()
    with pytest.raises(TypeError, match="quantize must be True or False"):
        GoodfireSAE(quantize="8bit")


def test_original_sae_arguments_and_methods():
    sae = LocalSAE(sae_id="blocks.8.hook_resid_pre", release="gpt2-small-res-jb", device="cuda:0", truncate=True,
                   use_assistant_role=False)
    assert sae.role == "user" and sae.spec()["release"] == "gpt2-small-res-jb"
    with pytest.raises(AttributeError, match=r"LocalSAE\.metadata\(\).*spec\(\)"):
        sae.metadata()
    with pytest.raises(AttributeError, match=r"encode\(\).*Dataset\(data, sae=\.\.\.\)"):
        DefaultSAE().encode(["Good morning!"])
    with pytest.raises(AttributeError, match="has no attribute 'nonsense'"):
        DefaultSAE().nonsense


# ---- a feature id outside the SAE, in every public method that takes one -------------------------------------
OUTSIDE = 65478
CALLS = {
    "DatasetRow.token_activations": lambda ds: ds[0].token_activations(feature=OUTSIDE),
    "Dataset.token_activations": lambda ds: ds.token_activations(OUTSIDE),
    "top_documents_for_feature": lambda ds: ds.top_documents_for_feature(feature=OUTSIDE),
    "sort_by_features": lambda ds: ds.sort_by_features([NON_ASCII, OUTSIDE]),
    "set_label": lambda ds: ds.set_label(OUTSIDE, "greetings"),
    "label_feature": lambda ds: ds.label_feature_sync(OUTSIDE),
    "score_feature": lambda ds: ds.score_feature_sync(OUTSIDE, label="greetings"),
    "label_features": lambda ds: ds.label_features_sync([OUTSIDE]),
    "feature_correlations": lambda ds: ds.feature_correlations(features=[OUTSIDE]),
    "cluster": lambda ds: ds.cluster(features=[OUTSIDE], n_clusters=2),
    "search": lambda ds: ds.search(features=[OUTSIDE]),
    "report": lambda ds: ds.report(ds.path.parent / "never-written.html", features=[OUTSIDE]),
}


@pytest.mark.parametrize("call", CALLS.values(), ids=CALLS.keys())
def test_feature_outside_the_sae_names_the_sae(synthetic, call):
    with pytest.raises(ValueError, match=r"\[65478\]; the loaded SAE \(synthetic architecture\) has 256 features, "
                                         r"numbered 0 to 255"):
        call(synthetic)
