"""The Dataset methods are the analysis functions, on views of real text (synthetic activations, and the real\nreader where it matters)."""
import inspect

import pandas as pd
import pytest

from interp_embed import Dataset, analysis

from synthetic import NON_ASCII


@pytest.mark.parametrize("method, function", [("diff", analysis.diff_features), ("associate", analysis.associate_features),
                                              ("top_correlations", analysis.top_correlations),
                                              ("feature_correlations", analysis.feature_correlations),
                                              ("cluster", analysis.cluster_documents), ("search", analysis.search_documents)])
def test_methods_have_the_functions_parameters_and_docs(method, function):
    bound = getattr(Dataset, method)
    assert bound.__doc__ == function.__doc__ and bound.__name__ == method
    assert inspect.signature(bound) == inspect.signature(function)


def test_methods_delegate_to_the_analysis_functions(synthetic, sample):
    german, english = (sample.language == "de").to_numpy(), (sample.language == "en").to_numpy()
    de, en = synthetic[german], synthetic[english]
    table = de.diff(en)
    pd.testing.assert_frame_equal(table, analysis.diff_features(de, en))
    assert table.feature_id.iloc[0] == NON_ASCII  # umlauts: in most German fortunes, in few English ones
    counted = de.diff(en, aggregation="count", activated_threshold=1)  # features on at least two tokens
    active = synthetic.latents("count").toarray() > 1
    assert counted.set_index("feature_id").loc[NON_ASCII, "freq_a"] == pytest.approx(active[german, NON_ASCII].mean())
    pd.testing.assert_frame_equal(synthetic.top_correlations(k=5), analysis.top_correlations(synthetic, k=5))
    clusters = synthetic.cluster(features=table.feature_id.head(20).tolist(), n_clusters=2)
    pd.testing.assert_frame_equal(clusters.assignments, analysis.cluster_documents(
        synthetic, features=table.feature_id.head(20).tolist(), n_clusters=2).assignments)
    hits = synthetic.search(features=[NON_ASCII], k=3)
    assert len(hits) == 3 and all("<<" in h for h in hits.highlighted)


def test_associate_on_a_metadata_column(synthetic, sample):
    two_languages = synthetic[(sample.language != "es").to_numpy()]  # 'de' vs 'en': a binary column
    table = two_languages.associate("language")
    pd.testing.assert_frame_equal(table, analysis.associate_features(two_languages, "language"))
    assert table.feature_id.iloc[0] == NON_ASCII and table.q_value.iloc[0] < 1e-3


@pytest.mark.reader
def test_associate_on_real_activations(encoded, sample):
    table = encoded[(sample.language != "es").to_numpy()].associate("language")
    assert table.q_value.iloc[0] < 1e-3 and abs(table.separation.iloc[0]) > 0.8
    assert table.attrs["model"]["held_out"] > 0.8


@pytest.mark.reader
def test_search_by_example_text_finds_documents_of_that_kind(encoded, sample):
    features = encoded.features_of_text("Wer nicht wagt, der nicht gewinnt, sagt man in Deutschland.")
    assert 0 < len(features) <= 5
    hits = encoded.search("Wer nicht wagt, der nicht gewinnt, sagt man in Deutschland.", by="example", k=10)
    languages = sample.language.to_numpy()[hits.document.to_numpy()]
    assert (languages == "de").mean() >= 0.8, languages
