"""The Dataset methods are the analysis functions, on views of real encoded text."""
import numpy as np
import pandas as pd

from interp_embed import analysis


def test_methods_delegate_to_the_analysis_functions(encoded, sample):
    german = (sample.language == "de").to_numpy()
    de, rest = encoded[german], encoded[~german]
    table = de.diff(rest)
    pd.testing.assert_frame_equal(table, analysis.diff_features(de, rest))
    top = int(table.feature_id.iloc[0])
    latents = encoded.latents("binarize").toarray()
    assert latents[german, top].mean() > 0.9 and latents[~german, top].mean() < 0.2  # real German feature
    pd.testing.assert_frame_equal(encoded.top_correlations(k=5), analysis.top_correlations(encoded, k=5))
    clusters = encoded.cluster(features=table.feature_id.head(20).tolist(), n_clusters=2)
    assert set(clusters.assignments.cluster) <= {-1, 0, 1}
    hits = encoded.search(features=[top], k=3)
    assert len(hits) == 3 and all("<<" in h for h in hits.highlighted)


def test_associate_on_a_metadata_column(encoded, sample):
    two_languages = encoded[(sample.language != "es").to_numpy()]  # 'de' vs 'en': a binary column
    table = two_languages.associate("language")
    pd.testing.assert_frame_equal(table, analysis.associate_features(two_languages, "language"))
    assert table.q_value.iloc[0] < 1e-3 and abs(table.separation.iloc[0]) > 0.8
    assert table.attrs["model"]["held_out"] > 0.8


def test_search_by_example_text_finds_documents_of_that_kind(encoded, sample):
    features = encoded.features_of_text("Wer nicht wagt, der nicht gewinnt, sagt man in Deutschland.")
    assert 0 < len(features) <= 5
    hits = encoded.search("Wer nicht wagt, der nicht gewinnt, sagt man in Deutschland.", by="example", k=10)
    languages = sample.language.to_numpy()[hits.document.to_numpy()]
    assert (languages == "de").mean() >= 0.8, languages
