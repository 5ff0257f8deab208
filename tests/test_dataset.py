"""Dataset and store mechanics on real text with synthetic activations (no model): aggregations, views,
saving views, what the user gave is kept."""
import collections
import re
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from interp_embed import Dataset
from interp_embed.dataset import DatasetView
from interp_embed.store import AGGREGATIONS
from interp_embed.store.words import STRONG

from synthetic import D_SAE, NON_ASCII, synthetic_dataset, synthetic_store, token_matrix

AGGREGATION_NAMES = ("max", "mean", "sum", "binarize", "count")


def test_latents_shape_and_type(synthetic, sample):
    latents = synthetic.latents()
    assert sp.isspmatrix_csr(latents) and latents.dtype == np.float32
    assert latents.shape == (len(sample), D_SAE) and latents.nnz > 0 and (latents.data > 0).all()
    assert set(AGGREGATIONS) == set(AGGREGATION_NAMES)


@pytest.mark.parametrize("threshold", [0.0, 1.0])
def test_every_aggregation_agrees_with_the_token_level(synthetic, threshold):
    pooled = {name: synthetic.latents(name, activated_threshold=threshold).toarray() for name in AGGREGATION_NAMES}
    for i in range(len(synthetic)):
        tokens = token_matrix(synthetic[i])
        counted = np.where(tokens > threshold, tokens, 0)  # a token activation counts only above the threshold
        np.testing.assert_array_equal(pooled["max"][i], counted.max(0))
        np.testing.assert_allclose(pooled["sum"][i], counted.sum(0), rtol=1e-5)
        np.testing.assert_allclose(pooled["mean"][i], counted.sum(0) / len(tokens), rtol=1e-5)
        np.testing.assert_array_equal(pooled["count"][i], (counted > 0).sum(0))
        np.testing.assert_array_equal(pooled["binarize"][i], (counted.max(0) > 0).astype(np.float32))
        for name in AGGREGATION_NAMES:  # one row pooled on its own gives the row of the whole matrix
            row = synthetic[i].latents(name, activated_threshold=threshold).toarray()[0]
            np.testing.assert_allclose(row, pooled[name][i], rtol=1e-6)
    assert pooled["count"].sum() > 0


def test_bad_aggregation_or_threshold_is_refused(synthetic):
    with pytest.raises(ValueError, match="'median' is not known; use one of 'max'"):
        synthetic.latents("median")
    with pytest.raises(ValueError, match="activated_threshold"):
        synthetic.latents("count", activated_threshold=-1)


def test_reload_gives_identical_latents_and_tables(synthetic):
    reloaded = Dataset.load_from_file(synthetic.path)
    for name in AGGREGATION_NAMES:
        a, b = synthetic.latents(name), reloaded.latents(name)
        assert a.dtype == b.dtype and (a != b).nnz == 0
    assert reloaded.pandas().equals(synthetic.pandas()) and reloaded.feature_labels() == synthetic.feature_labels()


def test_views_keep_their_latents(synthetic, sample):
    full = synthetic.latents().toarray()
    np.testing.assert_array_equal(synthetic[1:4].latents().toarray(), full[1:4])
    mask = (sample.language == "de").to_numpy()
    view = synthetic[mask]
    assert isinstance(view, Dataset) and isinstance(view, DatasetView)
    assert len(view) == mask.sum() and (view.pandas().language == "de").all()
    np.testing.assert_array_equal(view.latents().toarray(), full[mask])
    np.testing.assert_array_equal(synthetic[[5, 2]].latents().toarray(), full[[5, 2]])
    assert synthetic[0].document == sample.text[0] and synthetic[-1].document == sample.text.iloc[-1]
    # German and Spanish have letters beyond ASCII, English fortunes almost never.
    active = synthetic.latents("binarize").toarray()[:, NON_ASCII] > 0
    assert active[mask].mean() >= 0.75 and active[(sample.language == "en").to_numpy()].mean() < 0.2


def test_top_documents_sort_and_filter(synthetic):
    latents = synthetic.latents().toarray()
    feature = int(np.argmax((latents > 0).sum(0)[3:]) + 3)
    top = synthetic.top_documents_for_feature(feature, k=5, document_only=False)
    values = top.latents()[:, feature].toarray().ravel()
    assert (np.diff(values) <= 0).all() and (values > 0).all()
    assert all("<<" in t and ">>" in t for t in synthetic.top_documents_for_feature(feature, k=5))
    by_language = synthetic.sort_by_columns("language", descending=False)
    assert by_language.pandas().language.is_monotonic_increasing
    ranked = synthetic.sort_by_features([feature])
    assert (np.diff(ranked.latents()[:, feature].toarray().ravel()) <= 0).all()
    assert len(synthetic.filter_na_rows()) == len(synthetic)


def test_a_saved_view_holds_exactly_its_rows(synthetic, sample, tmp_path):
    german = synthetic[(sample.language == "de").to_numpy()].sort_by_features([NON_ASCII])
    path = german.save_to_file(tmp_path / "german.iembed")
    saved = Dataset.load_from_file(path)
    assert len(saved) == len(german) and saved.documents() == german.documents()
    for name in AGGREGATION_NAMES:
        assert (saved.latents(name) != german.latents(name)).nnz == 0
    for i in range(len(saved)):
        assert saved[i].tokens() == german[i].tokens()
        assert (saved[i].latents("all") != german[i].latents("all")).nnz == 0
    assert saved._store.is_complete() and saved.feature_labels() == synthetic.feature_labels()
    # Cut by the store's plan, as encoding the rows anew would cut them.
    assert [(c.start, c.stop) for c in saved._store.manifest.chunks] == saved._store.plan.chunk_ranges(
        saved.documents())
    with pytest.raises(FileExistsError):
        german.save_to_file(path)


def test_a_saved_view_keeps_skipped_rows_and_leaves_unencoded_ones_pending(tmp_path, sample):
    frame = pd.concat([sample.head(12), pd.DataFrame({"text": [None, ""], "language": ["en", "en"]})],
                      ignore_index=True)
    ds = synthetic_dataset(tmp_path / "partial.iembed", frame, chunk_chars=300, encode_chunks=2)
    assert not ds._store.is_complete()
    view = ds[::-1]  # the two skipped rows first, then the documents in reverse
    saved = Dataset.load_from_file(view.save_to_file(tmp_path / "view.iembed"))
    assert saved.skipped_rows() == {0: "empty", 1: "missing (None/NaN)"}
    np.testing.assert_array_equal(saved.encoded_mask(), view.encoded_mask())
    assert (saved.latents() != view.latents()).nnz == 0
    pending = set(saved._store.pending_rows())
    assert pending and pending == set(np.flatnonzero(~view.encoded_mask())) - {0, 1}


def test_what_the_user_gave_is_kept(tmp_path, sample):
    ds = synthetic_dataset(tmp_path / "d.iembed", sample.head(5), description="five fortunes")
    assert ds.dataset_description == "five fortunes"
    ds.dataset_description = "five fortunes, renamed"
    assert Dataset.load_from_file(ds.path).dataset_description == "five fortunes, renamed"
    assert Dataset.load_from_file(ds[1:3].save_to_file(tmp_path / "v.iembed")).dataset_description == \
        "five fortunes, renamed"


def test_a_store_without_an_sae_record_is_analysed_but_never_resumed(tmp_path, sample):
    store = synthetic_store(tmp_path / "s.iembed", sample.head(8), chunk_chars=200, encode_chunks=1)
    ds = Dataset.load_from_file(store.path)
    assert ds.latents().shape == (8, D_SAE)
    with pytest.raises(Exception, match="does not record which SAE encoded it"):
        Dataset.load_from_file(store.path, resume=True)


def _words_the_slow_way(ds) -> dict[tuple[int, str], float]:
    """(feature, word) -> summed strong activations, token by token: a token stands for its first word, or for its
    characters when it has none (a synthetic token is one whitespace-separated piece of text)."""
    peak = ds.latents().max(axis=0).toarray().ravel()
    expected: dict[tuple[int, str], float] = {}
    for i in np.flatnonzero(ds.encoded_mask()):
        row = ds[int(i)]
        for token, activations in zip(row.tokens(), token_matrix(row)):
            word = re.search(r"\w+", token)
            unit = word.group().lower() if word else token.strip()
            for f in np.flatnonzero((activations >= STRONG * peak) & (activations > 0)) if unit else []:
                expected[int(f), unit] = expected.get((int(f), unit), 0.0) + float(activations[f])
    return expected


def test_feature_words_are_the_words_under_each_features_strong_activations(tmp_path, sample):
    # Several chunks, skipped rows between encoded ones, and words beyond ASCII: read the slow way, token by token.
    frame = pd.concat([sample.head(20), pd.DataFrame({"text": [None, ""], "language": ["en", "en"]}), sample.tail(20)],
                      ignore_index=True)
    ds = synthetic_dataset(tmp_path / "words.iembed", frame, chunk_chars=600)
    for view in (ds, ds[::3], ds[ds.pandas().language.to_numpy() == "es"]):  # a view: its own rows and peaks
        expected = _words_the_slow_way(view)
        words = view.feature_words()
        got = words.mass.tocoo()
        found = {(int(f), str(words.words[w])): float(v) for f, w, v in zip(got.row, got.col, got.data)}
        assert found.keys() == expected.keys() and len(found) > 50
        np.testing.assert_allclose([found[key] for key in expected], list(expected.values()), rtol=1e-5)
        strongest = max(expected, key=expected.get)
        assert words.top(strongest[0], n=1) == [strongest[1]]
    assert ds.feature_words() is ds[::-1].feature_words()  # the same rows in another order: read once
    assert any(not w.isascii() for w in words.words) and "--" in list(words.words)  # "está"; symbols stand alone


def test_fires_on_ranks_the_words_specific_to_a_feature_first(tmp_path, sample):
    """A word a feature fires on more than its share of all tokens ranks by p(w|f)·log(p(w|f)/p(w)), computed here
    from the word counts the slow way."""
    ds = synthetic_dataset(tmp_path / "words.iembed", sample, chunk_chars=600)
    words = ds.feature_words()
    tokens = collections.Counter()
    for i in range(len(ds)):
        for token in ds[i].tokens():
            word = re.search(r"\w+", token)
            if word or token.strip():
                tokens[word.group().lower() if word else token.strip()] += 1
    assert {str(w): int(n) for w, n in zip(words.words, words.word_tokens) if n} == dict(tokens)
    expected = _words_the_slow_way(ds)
    checked = 0
    for feature in sorted({f for f, _ in expected})[:40]:
        mass = {w: v for (f, w), v in expected.items() if f == feature}
        total, all_tokens = sum(mass.values()), sum(tokens.values()) + len(words.words)
        score = {w: v / total * np.log(v / total / ((tokens[w] + 1) / all_tokens)) for w, v in mass.items()}
        hits = words.hits[feature]
        repeated = {str(words.words[i]) for i, n in zip(hits.indices, hits.data) if n >= 2}
        ranked = sorted((w for w in score if score[w] > 0), key=lambda w: (w not in repeated, -score[w], w))
        assert words.fires_on(feature, n=4) == ranked[:4]
        checked += bool(ranked)
    assert checked > 20


def test_concat_stacks_rows_and_activations_without_encoding(tmp_path, sample):
    old = sample.head(20).assign(year=2023)
    new = sample.tail(30).drop(columns=["language"]).assign(year=2024, source="web")
    a = synthetic_dataset(tmp_path / "old.iembed", old, chunk_chars=500)
    b = synthetic_dataset(tmp_path / "new.iembed", new, chunk_chars=500)
    both = Dataset.concat([a, b[::-1]], save_path=tmp_path / "both.iembed")
    assert both.name == "both" and len(both) == 50
    assert both.documents() == a.documents() + b[::-1].documents()
    table = both.pandas()
    assert table.year.tolist() == [2023] * 20 + [2024] * 30
    assert table.language.isna().tolist() == [False] * 20 + [True] * 30  # a column one side lacks is missing there
    assert (both.latents() != sp.vstack([a.latents(), b[::-1].latents()])).nnz == 0
    assert both[20].tokens() == b[29].tokens() and (both[20].latents("all") != b[29].latents("all")).nnz == 0
    assert both._store.is_complete() and Dataset.load_from_file(both.path).latents().nnz == both.latents().nnz
    assert (a + b).latents().shape == (50, D_SAE)
    assert both.associate("year").attrs["model"]["n_documents"] == 50  # the reason to concatenate


def test_concat_keeps_skipped_and_pending_rows_and_refuses_mixed_encoders(tmp_path, sample):
    frame = pd.concat([sample.head(12), pd.DataFrame({"text": [""], "language": ["en"]})], ignore_index=True)
    partial = synthetic_dataset(tmp_path / "partial.iembed", frame, chunk_chars=300, encode_chunks=2)
    whole = synthetic_dataset(tmp_path / "whole.iembed", sample.tail(5))
    both = Dataset.concat([whole, partial])
    assert both.name is None and both.skipped_rows() == {17: "empty"}
    # A chunk of the new plan holding any row not encoded yet is left whole to resume; the rest is copied.
    encoded, source = both.encoded_mask(), np.r_[whole.encoded_mask(), partial.encoded_mask()]
    assert encoded[:5].all() and encoded[5:].any() and not (encoded & ~source).any()
    assert (both.latents()[encoded] != sp.vstack([whole.latents(), partial.latents()])[encoded]).nnz == 0
    assert set(both._store.pending_rows()) == set(np.flatnonzero(~encoded)) - {17}
    other = synthetic_store(tmp_path / "other.iembed", sample.head(3))
    other.manifest.encoder = replace(other.encoder, sae={"architecture": "synthetic", "d_sae": D_SAE, "k": 3})
    with pytest.raises(ValueError, match=r"datasets\[0\] and datasets\[1\] were encoded differently"):
        Dataset.concat([whole, Dataset._from_store(other, np.arange(3))])
    renamed = Dataset._from_store(synthetic_store(tmp_path / "body.iembed",
                                                  sample.head(3).rename(columns={"text": "body"}), field="body"),
                                  np.arange(3))
    with pytest.raises(ValueError, match="different columns"):
        whole + renamed
    with pytest.raises(TypeError, match="non-empty list"):
        Dataset.concat(whole)


def test_a_dataset_is_named_after_its_store_and_a_view_by_the_user(tmp_path, sample):
    ds = synthetic_dataset(tmp_path / "fortunes.iembed", sample)
    assert ds.name == "fortunes" and ds[:5].name is None
    german, others = ds[(sample.language == "de").to_numpy()], ds[(sample.language != "de").to_numpy()]
    german.name, others.name = "german", "others"
    assert {"freq_german", "freq_others"} <= set(german.diff(others).columns)
    assert Dataset.load_from_file(ds.path, name="mine").name == "mine"
    with pytest.raises(TypeError, match="name must be a non-empty string"):
        Dataset.load_from_file(ds.path, name=3)


def test_highlighted_documents_are_strings_that_render_shaded_html(synthetic):
    row = synthetic[25]
    matrix = token_matrix(row)
    feature = 3 + int(np.argmax((matrix[:, 3:] > 0).sum(axis=0)))  # a word feature active on several tokens
    marked = row.token_activations(feature)
    tokens = matrix[:, feature]
    assert isinstance(marked, str) and marked.count("<<") == int((tokens > 0).sum()) > 0
    html = marked._repr_html_()
    titles = [float(t) for t in re.findall(r'title="([^"]+)"', html)]
    np.testing.assert_allclose(titles, tokens[tokens > 0], rtol=1e-3)  # shown to 4 significant digits
    assert "<<" not in html and re.sub(r"<[^>]+>", "", html) == row.document.replace("&", "&amp;").replace(
        "<", "&lt;").replace(">", "&gt;").replace('"', "&quot;").replace("'", "&#x27;")


def test_describe_feature_gathers_what_is_known(tmp_path, sample):
    frame = sample.copy()
    frame.loc[0, "text"] = "<script>alert(1)</script> über alles"
    ds = synthetic_dataset(tmp_path / "d.iembed", frame)
    description = ds.describe_feature(NON_ASCII, k=3)
    active = ds.latents()[:, NON_ASCII].toarray().ravel() > 0
    assert description.label == "letters beyond ASCII (ä, ñ, é …)" and description.label_source == "shipped"
    assert description.frequency == pytest.approx(active.mean())
    assert description.max_activation == 2.0 and description.mean_activation == pytest.approx(2.0)
    assert description.words == ds.feature_words().fires_on(NON_ASCII, 8) and description.words
    assert len(description.top_documents) == 3 and all("<<" in d for d in description.top_documents)
    assert description.shipped_summary is None  # no SAE files for a synthetic store
    assert "<script>" not in description._repr_html_() and str(description).startswith(
        f"feature {NON_ASCII} fires here on: {' · '.join(description.words)}\n  label: letters beyond ASCII")
    ds.set_label(NON_ASCII, "accented letters")
    assert ds.describe_feature(NON_ASCII).label_source == "user"
    with pytest.raises(ValueError, match="outside"):
        ds.describe_feature(D_SAE)


@pytest.mark.reader
def test_describe_feature_shows_the_shipped_summary(encoded):
    feature = int(encoded.latents()[25].indices[0])
    description = encoded.describe_feature(feature, k=2)
    summary = description.shipped_summary
    assert summary is not None and summary["top_words"] and summary["top_contexts"]
    assert "labelling corpus" in str(description) and description.top_documents
