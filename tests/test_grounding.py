"""What features do in the user's data: ``fires_on`` in every table, labels written from the dataset's own words, and
their keyword score — on stores of real text (synthetic activations: each word fires features of its own)."""
import re

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import balanced_accuracy_score

from interp_embed import Dataset
from interp_embed.analysis import diff_many
from interp_embed.analysis.fires_on import SEPARATOR
from interp_embed.analysis.label_search import stem
from interp_embed.labeling import dataset_labels
from interp_embed.store.words import STRONG

from synthetic import NON_ASCII, synthetic_dataset


@pytest.fixture
def ds(sample, tmp_path):
    return synthetic_dataset(tmp_path / "g.iembed", sample, chunk_chars=600)


def words(view, feature: int) -> str:
    return SEPARATOR.join(view.feature_words().fires_on(feature, 5))


def units(row) -> set[str]:
    """What each token of a row stands for, the slow way: its first word lower-cased, else its characters."""
    found = (re.search(r"\w+", token) for token in row.tokens())
    return {m.group().lower() if m else t.strip() for m, t in zip(found, row.tokens()) if m or t.strip()}


# ---- fires_on in every table -----------------------------------------------------------------------------------
def test_a_diff_shows_what_each_feature_fires_on_where_it_is_more_frequent(ds):
    language = ds.pandas().language.to_numpy()
    german, others = ds[language == "de"], ds[language != "de"]
    table = german.diff(others)
    assert list(table.columns[:3]) == ["feature_id", "fires_on", "label"]
    for row in table.iloc[np.r_[0:5, -5:0]].itertuples():
        side = german if row.freq_a >= row.freq_b else others
        assert row.fires_on == words(side, row.feature_id) and row.fires_on
    assert "more frequent" in table.attrs["fires_on"]
    grouped = german.diff(others, grouped=True)
    assert grouped.fires_on.iloc[0] == words(german, grouped.feature_id.iloc[0])


def test_diff_many_reads_each_datasets_own_words(ds):
    language = ds.pandas().language.to_numpy()
    parts = {lang: ds[language == lang] for lang in ("en", "de", "es")}
    table = diff_many(parts)
    for row in table.groupby("dataset").head(3).itertuples():
        assert row.fires_on == words(parts[row.dataset], row.feature_id)


def test_association_and_correlation_tables_show_the_words(ds):
    en_de = ds[ds.pandas().language.to_numpy() != "es"]
    table = en_de.associate("language")  # binary: the words of the class a feature points to
    language = en_de.pandas().language.to_numpy()
    positive = table.attrs["model"]["positive_class"]
    for row in table.head(5).itertuples():
        side = en_de[(language == positive) == (row.separation > 0)]
        assert row.fires_on == words(side, row.feature_id)
    pairs = ds.top_correlations(k=5, min_count=3)
    assert list(pairs.columns[:4]) == ["feature_a", "fires_on_a", "label_a", "feature_b"]
    for row in pairs.itertuples():
        assert (row.fires_on_a, row.fires_on_b) == (words(ds, row.feature_a), words(ds, row.feature_b))


def test_describe_feature_lists_the_words_most_specific_to_it(ds):
    description = ds.describe_feature(NON_ASCII, k=1)
    assert description.words == ds.feature_words().fires_on(NON_ASCII, 8)
    assert all(any(ord(c) > 127 for c in w) for w in description.words)  # it fires on words beyond ASCII only


# ---- labels from the dataset's own words ---------------------------------------------------------------------
def test_offline_labels_are_written_from_part_of_the_data_and_scored_on_the_rest(ds):
    table = ds.label_features_offline(features=[NON_ASCII, 10, 20, 30], held_out=0.4, seed=3, progress=False)
    assert table.feature_id.tolist() == [NON_ASCII, 10, 20, 30] and set(table.status) == {"labelled"}
    held_out = table.attrs["held_out"]
    written = np.setdiff1d(np.arange(len(ds)), held_out)
    assert len(held_out) == round(0.4 * len(ds)) and held_out.tolist() == sorted(held_out.tolist())
    label = table.set_index("feature_id").label[NON_ASCII]
    quoted = re.match(r"^'(.*)' — “(.*)”$", label)
    shown = quoted.group(1).split("', '")
    assert shown == ds[written].feature_words().fires_on(NON_ASCII, 5) and len(shown) == 5
    assert all(any(ord(c) > 127 for c in w) for w in shown) and "<<" in quoted.group(2)
    # Every word is one the feature fires on strongly in the documents the labels were written from.
    fired = set().union(*(units(ds[int(i)]) for i in written))
    assert set(shown) <= fired
    # The score kept with it is the keyword detection on the held-out documents, and it is the label now.
    expected = ds[held_out].score_labels([NON_ASCII], {NON_ASCII: label}).iloc[0]
    assert table.set_index("feature_id").balanced_accuracy[NON_ASCII] == pytest.approx(expected.balanced_accuracy)
    assert ds.feature_labels()[NON_ASCII] == label
    source = ds.label_sources().set_index("feature_id").loc[NON_ASCII]
    assert source.source == "dataset" and source.keyword_balanced_accuracy == pytest.approx(
        expected.balanced_accuracy) and pd.isna(source.balanced_accuracy)
    reopened = Dataset.load_from_file(ds.path)
    assert reopened.feature_labels()[NON_ASCII] == label


def test_labelling_again_keeps_what_is_there_and_a_killed_run_resumes(ds, monkeypatch):
    files = lambda: sorted((ds.path / "labels").glob("*.json"))  # noqa: E731
    monkeypatch.setattr(dataset_labels, "LABELS_PER_FILE", 40)
    real = ds._store.add_dataset_labels
    written = []

    def die_after_two(labels):
        if len(written) == 2:
            raise KeyboardInterrupt
        written.append(labels)
        real(labels)

    monkeypatch.setattr(ds._store, "add_dataset_labels", die_after_two)
    with pytest.raises(KeyboardInterrupt):
        ds.label_features_offline(progress=False)
    assert len(files()) == 2
    monkeypatch.setattr(ds._store, "add_dataset_labels", real)
    table = ds.label_features_offline(progress=False)
    assert (table.status == "kept").sum() == 80 and (table.status == "labelled").sum() > 80
    again = ds.label_features_offline(progress=False)
    assert set(again.status) <= {"kept", "no words"} and len(files()) == len(set(files()))
    assert again.label.tolist() == table.label.tolist()
    other = ds.label_features_offline(features=[NON_ASCII], seed=1, progress=False)  # another split: new labels
    assert other.status.tolist() == ["labelled"]


def test_a_view_is_labelled_from_its_own_documents(ds):
    spanish = ds[ds.pandas().language.to_numpy() == "es"]
    table = spanish.label_features_offline(held_out=0, progress=False)
    assert table.balanced_accuracy.isna().all()  # nothing held out: nothing scored
    fired = set().union(*(units(row) for row in spanish))
    for label in table.label[table.status == "labelled"]:
        assert set(re.match(r"^(?:\w+ words: )?'(.*)' — “", label).group(1).split("', '")) <= fired


def test_bad_arguments_are_refused_before_anything_is_written(ds):
    for bad, message in [(dict(held_out=1.0), "held_out must be below 1"), (dict(held_out=-0.1), "held_out"),
                         (dict(n_words=0), "n_words"), (dict(features=[10**6]), "feature"), (dict(seed=-1), "seed")]:
        with pytest.raises((ValueError, TypeError), match=message):
            ds.label_features_offline(progress=False, **bad)
    assert not (ds.path / "labels").exists()


# ---- the keyword score ---------------------------------------------------------------------------------------------
def test_the_keyword_score_is_the_balanced_accuracy_of_the_labels_words(ds):
    labels = {NON_ASCII: "'über', 'está', 'más' — “x”", 10: "'the', 'of' — “x”",
              20: "German compound nouns and umlauts", 30: "'?' — “why<<?>>”"}
    table = ds.score_labels(list(labels), labels).set_index("feature_id")
    pooled = ds.latents().toarray()
    for feature, label in labels.items():
        positive = pooled[:, feature] >= STRONG * pooled[:, feature].max()
        quoted = re.match(r"^'(.*)' — “", label)
        if quoted:
            wanted = set(quoted.group(1).split("', '"))
            detected = np.array([bool(units(row) & wanted) for row in ds])
        else:  # a written label: its words other than stop words, met by their stems ("nouns" meets "noun")
            wanted = {stem(w) for w in ("german", "compound", "nouns", "umlauts")}
            detected = np.array([bool({stem(w) for w in units(row)} & wanted) for row in ds])
        row = table.loc[feature]
        assert row.true_positives == (positive & detected).sum() and row.false_positives == (~positive & detected).sum()
        assert row.balanced_accuracy == pytest.approx(balanced_accuracy_score(positive, detected))
    assert table.source.unique().tolist() == ["given"]
    shipped = ds.score_labels([NON_ASCII])  # by default the current labels, named by their source
    assert shipped.source.tolist() == ["shipped"] and shipped.label.tolist() == [ds.feature_labels()[NON_ASCII]]
    with pytest.raises(ValueError, match="has no label"):
        ds.score_labels([NON_ASCII], {10: "'x' — “x”"})
