"""The analyses on real text through the real Dataset and the default SAE: known differences are found,
random splits of one dataset are not called different.

English and German sentences come from the Debian ``fortunes`` and ``fortunes-de`` packages. One dataset of
~160 short documents is encoded once for the module (about a minute on two CPU cores); subsets are views.
"""
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from interp_embed import Dataset
from interp_embed import analysis as A

FORTUNES = Path("/usr/share/games/fortunes")
PLANTED = " Call 555-0199 now!"
N_PER_SET = 80
NULL_RUNS = 20

pytestmark = [pytest.mark.reader, pytest.mark.skipif(
    not (FORTUNES / "fortunes").exists() or not (FORTUNES / "de").is_dir(),
    reason="needs the Debian packages fortunes and fortunes-de (apt-get install fortunes fortunes-de)",
)]


def read_fortunes(files, n, seed):
    """n short one-paragraph fortunes (no attributions or ASCII art), drawn reproducibly."""
    texts = []
    for path in files:
        for block in path.read_text(encoding="utf-8", errors="replace").split("\n%\n"):
            text = " ".join(block.split())
            if 20 <= len(text) <= 110 and "--" not in text and not re.search(r"[=|_/\\<>]{2,}", text):
                texts.append(text)
    texts = sorted(set(texts))
    return [texts[i] for i in np.random.default_rng(seed).choice(len(texts), n, replace=False)]


@pytest.fixture(scope="module")
def corpus():
    english = read_fortunes([FORTUNES / "fortunes"], N_PER_SET, seed=0)
    german_files = sorted(p for p in (FORTUNES / "de").iterdir() if p.is_file() and "." not in p.name)
    german = read_fortunes(german_files, N_PER_SET, seed=1)
    planted = np.arange(N_PER_SET) % 2 == 1  # every other English sentence carries the planted phrase
    english = [t + PLANTED if p else t for t, p in zip(english, planted)]
    frame = pd.DataFrame({
        "text": english + german + [""],  # the empty row is skipped: it must not count anywhere
        "lang": ["en"] * N_PER_SET + ["de"] * N_PER_SET + ["de"],
        "planted": list(planted) + [False] * (N_PER_SET + 1),
    })
    # Targets that carry no signal: standard normals, the real (skewed) lengths shuffled, fair coins.
    rng = np.random.default_rng(7)
    lengths = frame.text.str.len().to_numpy(float)
    for i in range(NULL_RUNS // 2):
        frame[f"normal_{i}"] = rng.standard_normal(len(frame))
        frame[f"shuffled_length_{i}"] = rng.permutation(lengths)
    for i in range(5):
        frame[f"coin_{i}"] = rng.integers(0, 2, len(frame))
    ds = Dataset(data=frame, field="text", on_error="skip")
    lang = ds.pandas()["lang"].to_numpy()
    return ds, ds[lang == "en"], ds[lang == "de"]


def balanced_accuracy(active, truth):
    return (active[truth].mean() + (~active[~truth]).mean()) / 2


def test_english_vs_german_is_recovered(corpus):
    ds, english, german = corpus
    table = A.diff_features(english, german)
    top = table.iloc[0]
    assert top.q_value < 1e-10 and top.ci_low > 0.5
    # The skipped empty row is not a German document with no active features.
    assert table.iloc[-1].count_b / table.iloc[-1].freq_b == pytest.approx(N_PER_SET)
    active = ds.latents()[:, int(top.feature_id)].toarray().ravel() > 0
    truth = ds.pandas()["lang"].to_numpy() == "en"
    encoded = ds.encoded_mask()
    assert balanced_accuracy(active[encoded], truth[encoded]) > 0.9
    assert (table.q_value < 0.05).sum() >= 20  # language changes many features, not one


def test_planted_phrase_is_recovered(corpus):
    ds, english, _ = corpus
    planted = english.pandas()["planted"].to_numpy()
    table = A.diff_features(english[planted], english[~planted])
    significant = table[table.q_value < 0.01]
    assert len(significant) >= 3
    best = significant.iloc[0]
    active = english.latents()[:, int(best.feature_id)].toarray().ravel() > 0
    assert balanced_accuracy(active, planted) > 0.9
    # The evidence points at the planted tokens.
    hits = A.search_documents(english, features=[int(best.feature_id)], k=5)
    assert len(hits) == 5 and english.pandas()["planted"].iloc[hits.document].all()
    for text in hits.highlighted:
        marked = re.findall(r"<<(.*?)>>", text)
        assert marked and all(fragment in PLANTED for fragment in marked)
    # One phenomenon, one finding: most of the features the phrase moves form one group around the best one.
    found = table[table.q_value < 0.05]
    assert len(found) >= 100
    largest = found.group.value_counts()
    assert largest.iloc[0] >= 0.6 * len(found), largest.head().to_dict()
    grouped = A.diff_features(english[planted], english[~planted], grouped=True)
    first = grouped.iloc[grouped.n_members.idxmax()]
    assert first.n_members == largest.iloc[0] and int(first.feature_id) in found.feature_id.head(10).tolist()
    # Its representative fires inside the phrase, and grouping by explanation gathers at least what overlap does.
    for text in A.search_documents(english, features=[int(first.feature_id)], k=5).highlighted:
        assert all(fragment in PLANTED for fragment in re.findall(r"<<(.*?)>>", text))
    by_overlap = A.diff_features(english[planted], english[~planted], grouping="overlap")
    assert largest.iloc[0] >= by_overlap[by_overlap.q_value < 0.05].group.value_counts().iloc[0]


@pytest.mark.parametrize("query, rule", [("exclamations", r"!"), ("numbers", r"\d")])
def test_search_by_labels_finds_symbols_and_numbers_by_their_names(corpus, query, rule):
    # The planted phrase " Call 555-0199 now!" gives half the English fortunes a "!" and digits. The features firing
    # on them are described by what Unicode calls their characters (EXCLAMATION MARK, decimal number), so a query
    # naming the property finds them; before, a symbol or number matched no word of any query.
    ds, _, _ = corpus
    hits = ds.search(query, by="labels", k=10, highlight=False, feedback=False)
    matched = hits.attrs["features"]
    assert set(matched.source) == {"label match"} and re.search(rule, matched.fires_on.iloc[0]), matched.to_string()
    texts = ds.pandas().text.to_numpy()[hits.document.to_numpy()]
    assert len(texts) >= 4 and all(re.search(rule, t) for t in texts), texts


def test_random_splits_of_one_dataset_find_nothing(corpus):
    _, _, german = corpus
    keep = german.encoded_mask()
    n = int(keep.sum())
    splits_with_discoveries = 0
    for seed in range(10):
        half = np.zeros(len(german), bool)
        half[np.random.default_rng(seed).choice(np.flatnonzero(keep), n // 2, replace=False)] = True
        table = A.diff_features(german[half], german[~half & keep])
        splits_with_discoveries += bool((table.q_value < 0.05).any())
    # Under the complete null BH at 0.05 makes a discovery in at most 5% of splits in expectation.
    assert splits_with_discoveries <= 2


def test_random_targets_find_nothing_and_select_nothing(corpus):
    ds, _, _ = corpus
    runs_with_findings, selected, held_out = 0, [], []
    for i in range(NULL_RUNS // 2):
        for target in (f"normal_{i}", f"shuffled_length_{i}"):
            table = A.associate_features(ds, target=target)
            runs_with_findings += bool((table.q_value < 0.05).any())
            selected.append(int(table.selected.sum()))
            held_out.append(table.attrs["model"]["held_out"])
            # Features present in a few documents are tested by permutation: never overwhelming p-values.
            small = table[table.count_active < 10]
            assert (small.p_method == "rank-sum permutation").all() and small.p_value.min() >= 1 / 10_001
    # Benjamini–Hochberg at 0.05 under the complete null: a discovery in at most 5% of runs in expectation.
    assert runs_with_findings <= 1, runs_with_findings
    assert np.mean(selected) <= 1 and max(held_out) < 0.05, (selected, held_out)  # a model of noise is empty
    coins = [A.associate_features(ds, target=f"coin_{i}").attrs["model"] for i in range(5)]
    assert np.mean([len(m["selected"]) for m in coins]) <= 3 and all(m["held_out"] < 0.7 for m in coins)


def test_language_predicts_with_a_sparse_model(corpus):
    ds, _, _ = corpus
    table = A.associate_features(ds, target="lang")  # two string classes: "en" is the positive (sorted last)
    model = table.attrs["model"]
    assert model["positive_class"] == "en" and model["n_documents"] == 2 * N_PER_SET
    assert model["metric"] == "auc" and model["held_out"] > 0.9 and model["permutation_baseline"] < 0.7
    assert 1 <= table.selected.sum() <= 200
    assert table.iloc[0].q_value < 1e-10


def test_correlations_and_clusters_on_real_text(corpus, tmp_path):
    ds, english, german = corpus
    pairs = A.top_correlations(ds, k=50, min_count=5)
    assert len(pairs) == 50 and pairs.npmi.is_monotonic_decreasing and (pairs.count_ab >= 1).all()
    diff = A.diff_features(english, german)
    axis = diff.feature_id.iloc[:10].tolist() + diff.feature_id.iloc[-10:].tolist()  # English and German markers
    assignments, clusters = A.cluster_documents(ds, features=axis, n_clusters=2)
    assert len(assignments) == 2 * N_PER_SET  # the skipped row is not assigned
    lang = ds.pandas()["lang"].to_numpy()[assignments.document]
    english_cluster = pd.Series(assignments.cluster[lang == "en"]).mode()[0]
    agree = (assignments.cluster == english_cluster).to_numpy() == (lang == "en")
    assert agree.mean() > 0.85
    A.plot_clusters(clusters, path=tmp_path / "clusters.png")
    assert (tmp_path / "clusters.png").exists()
