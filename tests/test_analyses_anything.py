"""Analyses on anything a user can compute, on real text with synthetic activations (no model): targets given as
values, categories level by level, conditions on metadata read safely, trends, columns added after encoding, grouping
by explanation, and the correlations' defaults. tests/test_analyses_real.py repeats the key checks with the reader.
"""
import json
import re

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from scipy import stats
from statsmodels.stats.contingency_tables import StratifiedTable, Table
from typer.testing import CliRunner

from interp_embed import Dataset
from interp_embed import analysis as A
from interp_embed.analysis.where import WhereError, where_mask
from interp_embed.cli import app
from interp_embed.data import demo_sample
from interp_embed.files import ADDED_COLUMNS, MANIFEST
from interp_embed.store import Store, StoreCorruptError
from interp_embed.store import writing
from interp_embed.store.errors import StoreLockedError
from synthetic import NON_ASCII, synthetic_dataset


@pytest.fixture(scope="module")
def fortunes(tmp_path_factory):
    """The 240 bundled fortunes (English, German, Spanish) with synthetic activations, and an ordered column."""
    frame = demo_sample()
    frame["year"] = 2000 + np.random.default_rng(0).integers(0, 8, len(frame))
    return synthetic_dataset(tmp_path_factory.mktemp("anything") / "fortunes.iembed", frame, chunk_chars=3000)


@pytest.fixture
def fresh(fortunes, tmp_path):
    """A copy of the store to write columns into."""
    return Dataset.load_from_file(fortunes.save_to_file(tmp_path / "copy.iembed"))


# ---- targets of any kind -------------------------------------------------------------------------------------

def test_a_target_given_as_values_is_the_column_it_would_be(fresh):
    german = (fresh.pandas()["language"] == "de").to_numpy()
    fresh.add_column("german", german)
    expected = fresh.associate("german")
    frame = fresh.pandas()
    shuffled = frame["language"].eq("de").sample(frac=1, random_state=0)  # matched by its index, not its order
    for target in (german, german.tolist(), frame["language"] == "de", shuffled, pd.Series(german).rename("german")):
        got = fresh.associate(target)
        pd.testing.assert_frame_equal(got, expected, check_exact=True)
        assert got.attrs["model"]["held_out"] == expected.attrs["model"]["held_out"]
    assert fresh.associate(german).attrs["model"]["target"] == "target"
    with pytest.raises(ValueError, match="has 239 values for the dataset's 240 documents"):
        fresh.associate(german[1:])
    with pytest.raises(ValueError, match="one-dimensional"):
        fresh.associate(np.zeros((240, 2)))
    with pytest.raises(TypeError, match="pick one column"):
        fresh.associate(frame[["language", "source"]])
    with pytest.raises(KeyError, match="ds.add_column"):
        fresh.associate("no such column")
    # A view's target is one value per row of the view.
    view = fresh[::2]
    pd.testing.assert_frame_equal(view.associate(german[::2], model=False), view.associate("german", model=False))


def test_a_categorical_target_tests_each_level_against_the_rest(fortunes):
    table = fortunes.associate("language", model=False)
    assert table.columns[0] == "level" and set(table.level) == {"de", "en", "es"}
    assert "selected" not in table.columns and table.attrs["model"] is None
    np.testing.assert_array_equal(table.q_value, A.benjamini_hochberg(table.p_value.to_numpy()))  # one BH family
    for level in ("de", "en", "es"):  # each level is the binary target "this level or not"
        alone = fortunes.associate(fortunes.pandas()["language"] == level, model=False, grouping="overlap")
        rows = table[table.level == level].set_index("feature_id")
        np.testing.assert_array_equal(rows.loc[alone.feature_id, "p_value"], alone.p_value)
    assert table.group.is_unique is False and table.groupby("group")["level"].nunique().max() == 1  # groups per level
    levels = table.attrs["levels"].set_index("level")
    assert levels.loc[["de", "en", "es"], "n_documents"].tolist() == [80, 80, 80]
    # Letters beyond ASCII point to German and Spanish, never to English.
    non_ascii = table[table.feature_id == NON_ASCII].set_index("level")
    assert non_ascii.loc["de", "separation"] > 0 and non_ascii.loc["es", "separation"] > 0
    assert non_ascii.loc["en", "separation"] < 0 and (non_ascii.q_value < 1e-4).all()
    assert levels.loc["de", "n_significant"] > 0 and (table.fires_on != "").any()
    grouped = fortunes.associate("language", model=False, grouped=True)
    assert grouped.n_members.sum() == len(table) and grouped.attrs["levels"].equals(table.attrs["levels"])


def test_a_categorical_target_with_models_and_under_a_memory_limit(fortunes):
    table = fortunes.associate("language")
    assert set(table.attrs["model"]) == {"de", "en", "es"} and table.attrs["model"]["de"]["positive_class"] == "de"
    assert table.attrs["levels"].held_out_auc.min() > 0.6
    bounded = fortunes.associate("language", memory_limit="2MB")
    pd.testing.assert_frame_equal(bounded, table, check_exact=True)


def test_target_values_that_cannot_be_tested_are_refused_by_name(fortunes):
    with pytest.raises(ValueError, match="no two documents sharing one"):
        fortunes.associate("text")
    with pytest.raises(ValueError, match="one value only"):
        fortunes.associate(np.full(len(fortunes), "same"))
    many = np.array([f"v{i % 120}" for i in range(len(fortunes))])
    with pytest.raises(ValueError, match="120 distinct values; each is tested against the rest, up to 100"):
        fortunes.associate(many)
    # A level with one document is not tested, and the summary says so.
    rare = np.where(np.arange(len(fortunes)) == 0, "once", fortunes.pandas()["language"].to_numpy())
    levels = fortunes.associate(rare, model=False).attrs["levels"].set_index("level")
    assert levels.loc["once", "status"].startswith("not tested") and "once" in levels.index


# ---- conditions on metadata ----------------------------------------------------------------------------------

def test_conditions_are_read_as_data_never_run(tmp_path):
    frame = pd.DataFrame({"section": ["games", "libs", None, "games"], "year": [2020, 2010, 2015, np.nan],
                          "release date": [1, 2, 3, 4], "ok": [True, False, True, False]})
    cases = {"section == 'games'": [1, 0, 0, 1], "section != 'games'": [0, 1, 1, 0], "year >= 2015 and ok": [1, 0, 1, 0],
             "`release date` in [1, 3]": [1, 0, 1, 0], "~ok | (year < 2012)": [0, 1, 0, 1], "section.isna()": [0, 0, 1, 0],
             "2010 < year <= 2020": [1, 0, 1, 0], "not ok": [0, 1, 0, 1], "section not in ('libs',)": [1, 0, 1, 1]}
    for condition, expected in cases.items():
        np.testing.assert_array_equal(where_mask(frame, condition), np.array(expected, dtype=bool), err_msg=condition)
        assert where_mask(frame, condition).tolist() == frame.eval(condition.replace(".isna()", ".isna()"),
                                                                   engine="python").fillna(False).astype(bool).tolist()
    marker = tmp_path / "ran"
    refused = {f"__import__('os').system('touch {marker}')": "is not allowed",
               f"open('{marker}', 'w')": "is not allowed", "year + 1 > 3": "'year + 1' is not allowed",
               "section.str.len() > 3": "is not allowed", "().__class__": "is not allowed",
               "section": "holds True and False", "foo == 1": "'foo' is not a column", "year ==": "cannot be read",
               "'a' == 'b'": "a column on one side", "section is None": "use == or !=", "(" * 200 + "ok" + ")" * 200: "",
               "ok and " * 2000 + "ok": "too long"}
    for condition, words in refused.items():
        if not words:  # deeply nested, yet short: read or refused, never a crash
            assert where_mask(frame, condition).tolist() == frame.ok.tolist()
            continue
        with pytest.raises(WhereError, match=re.escape(words)):
            where_mask(frame, condition)
    assert not marker.exists()


# ---- the stratified test and grouping by explanation ---------------------------------------------------------

def test_the_stratified_test_is_cochran_mantel_haenszel_and_cochran_armitage():
    rng = np.random.default_rng(0)
    for seed in range(5):
        rng = np.random.default_rng(seed)
        n = 300
        side = rng.random(n) < 0.4
        stratum = rng.random(n) < 0.3 + 0.4 * side
        feature = rng.random(n) < 0.2 + 0.3 * stratum
        tables, sums, counts, sizes, means, variances = [], [], [], [], [], []
        for k in (True, False):
            s, g = side[stratum == k], feature[stratum == k]
            tables.append(np.array([[np.sum(s & g), np.sum(s & ~g)], [np.sum(~s & g), np.sum(~s & ~g)]]))
            sums.append([s[g].sum()]), counts.append([g.sum()]), sizes.append(s.size)
            means.append(s.mean()), variances.append(s.var())
        _, p = A.stratified_score_test(np.array(sums), np.array(counts), np.array(sizes), np.array(means),
                                       np.array(variances))
        assert p[0] == pytest.approx(StratifiedTable(tables).test_null_odds(correction=False).pvalue, rel=1e-9)
        level = rng.integers(0, 4, n)
        present = rng.random(n) < 0.1 + 0.05 * level
        table = np.array([[np.sum((level == v) & present) for v in range(4)],
                          [np.sum((level == v) & ~present) for v in range(4)]])
        expected = Table(table).test_ordinal_association(row_scores=np.array([1, 0]), col_scores=np.arange(4))
        z, p = A.stratified_score_test(np.array([[level[present].sum()]]), np.array([[present.sum()]]), np.array([n]),
                                       np.array([level.mean()]), np.array([level.var()]))
        assert z[0] == pytest.approx(expected.zscore, rel=1e-9) and p[0] == pytest.approx(expected.pvalue, rel=1e-9)


def planted_matrix(seed=0, n=600):
    """Side A is the first half; a phrase is planted in 30 % of it; a second cause in another 30 % of it.

    Columns: 0 the phrase, 1 part of the phrase plus background in 25 % of all documents, 2 the phrase with a few
    misses, 3 the second cause, 4 background only."""
    rng = np.random.default_rng(seed)
    side = np.arange(n) < n // 2
    phrase = side & (rng.random(n) < 0.3)
    second = side & (rng.random(n) < 0.3)
    columns = [phrase, phrase | (rng.random(n) < 0.25), phrase & (rng.random(n) < 0.9), second, rng.random(n) < 0.3]
    return sp.csr_matrix(np.column_stack(columns).astype(np.int32)), side


def test_a_feature_explained_by_the_representative_joins_its_group():
    P, side = planted_matrix()
    counts_a = np.asarray(P[side].sum(axis=0)).ravel()
    counts_b = np.asarray(P[~side].sum(axis=0)).ravel()
    table = A.diff_counts(counts_a, int(side.sum()), counts_b, int((~side).sum()))
    assert (table.set_index("feature_id").loc[[0, 1, 2, 3], "q_value"] < 1e-4).all()
    explained = A.add_groups(table, P, "frequency_difference", 0.05, 0.5, scores=side.astype(float),
                             rule="explained").set_index("feature_id")
    overlap = A.add_groups(table, P, "frequency_difference", 0.05, 0.5, scores=side.astype(float),
                           rule="overlap").set_index("feature_id")
    # The phrase plus background overlaps the phrase little, but the phrase explains its difference.
    assert explained.loc[1, "overlap"] < 0.5 and explained.loc[1, "p_given_representative"] >= 0.05
    assert explained.loc[[0, 1, 2], "group"].nunique() == 1 and overlap.loc[1, "group"] != overlap.loc[0, "group"]
    # A second, independent cause stays apart under both rules.
    assert explained.loc[3, "group"] != explained.loc[0, "group"] and explained.loc[3, "representative"] == 3
    assert explained.loc[0, "representative"] in (0, 2)
    # A representative that separates the sides perfectly leaves nothing to compare: only overlap can join then.
    separated = A.add_groups(table, sp.hstack([sp.csr_matrix(side[:, None].astype(np.int32)), P]).tocsr(),
                             "frequency_difference", 0.05, 0.5, scores=side.astype(float), rule="explained")
    first = A.diff_counts(np.r_[side.sum(), counts_a], int(side.sum()), np.r_[0, counts_b], int((~side).sum()))
    separated = A.add_groups(first, sp.hstack([sp.csr_matrix(side[:, None].astype(np.int32)), P]).tocsr(),
                             "frequency_difference", 0.05, 0.5, scores=side.astype(float),
                             rule="explained").set_index("feature_id")
    assert separated.loc[0, "representative"] == 0 and (separated.loc[[1, 2, 4], "group"] != separated.loc[0, "group"]).all()


def test_grouping_by_explanation_is_the_same_under_a_memory_limit(fortunes):
    english = (fortunes.pandas()["language"] == "en").to_numpy()
    a, b = fortunes[english], fortunes[~english][::-1]
    for rule in ("explained", "overlap"):
        expected = a.diff(b, grouping=rule)
        pd.testing.assert_frame_equal(a.diff(b, grouping=rule, memory_limit="1MB"), expected, check_exact=True)
    with pytest.raises(ValueError, match="'explained', 'overlap'"):
        a.diff(b, grouping="jaccard")


# ---- trends --------------------------------------------------------------------------------------------------

def test_a_trend_is_a_rank_test_of_presence_against_the_order(fortunes):
    table = fortunes.trend("year", n_permutations=2000)
    years = fortunes.pandas()["year"].to_numpy()
    X = fortunes.latents("binarize").toarray() > 0
    assert [c for c in table.columns if c.startswith("freq_")] == [f"freq_{y}" for y in range(2000, 2008)]
    for _, row in table[table.p_method == "rank-sum"].head(20).iterrows():
        present = X[:, row.feature_id]
        expected = stats.mannwhitneyu(years[present], years[~present], method="asymptotic").pvalue
        assert row.p_value == pytest.approx(expected, rel=1e-9)
        assert row.spearman == pytest.approx(stats.spearmanr(present, years).statistic, rel=1e-9)
        assert row.slope == pytest.approx(np.polyfit(years - 2000, present.astype(float), 1)[0], rel=1e-9)
        assert row["freq_2000"] == pytest.approx(present[years == 2000].mean())
    assert (table.q_value < 0.05).sum() <= 1  # the years were drawn at random
    levels = table.attrs["levels"]
    assert levels.level.tolist() == [str(y) for y in range(2000, 2008)] and levels.n_documents.sum() == 240
    assert table.fires_on.ne("").any() and table.attrs["column"] == "year"


def test_a_trend_follows_the_order_of_its_column(fortunes, tmp_path):
    n = len(fortunes)
    language = fortunes.pandas()["language"].to_numpy()
    versions = np.where(language == "en", "v2", np.where(language == "de", "v10", "v9"))  # natural order: 2, 9, 10
    table = fortunes.trend(versions)
    assert table.attrs["levels"].level.tolist() == ["v2", "v9", "v10"]
    german = table.set_index("feature_id").loc[NON_ASCII]
    assert german.spearman > 0 and german.q_value < 1e-10 and german["freq_v2"] < german["freq_v10"]
    reordered = fortunes.trend(versions, order=["v10", "v9", "v2"]).set_index("feature_id").loc[NON_ASCII]
    assert reordered.spearman == pytest.approx(-german.spearman)
    with pytest.raises(ValueError, match="does not list"):
        fortunes.trend(versions, order=["v2", "v9"])
    dates = pd.Series(pd.date_range("2020-01-01", periods=n, freq="D"))
    binned = fortunes.trend(dates, max_levels=4).attrs["levels"]  # 240 days in 4 bins of consecutive days
    assert binned.n_documents.tolist() == [60, 60, 60, 60] and binned.level[0].startswith("2020-01-01–2020-02-")
    assert binned.level[3].endswith("–2020-08-27") and binned["values"][0][:2] == ["2020-01-01", "2020-01-02"]
    with pytest.raises(ValueError, match="at least two"):
        fortunes.trend(np.ones(n))
    grouped = fortunes.trend(versions, grouped=True)
    assert grouped.n_members.sum() == len(table)
    A.plot_trends(table, path=tmp_path / "trends.png")
    assert (tmp_path / "trends.png").stat().st_size > 10_000
    # The level columns are read from the table's record of its levels, never guessed by a prefix.
    from interp_embed.analysis.trend import level_columns

    assert level_columns(grouped) == level_columns(table) == [f"freq_{v}" for v in table.attrs["levels"].level]
    A.plot_trends(grouped, path=tmp_path / "grouped.png")
    with pytest.raises(ValueError, match="pass the DataFrame returned by feature_trends"):
        A.plot_trends(pd.DataFrame(table.to_dict()), path=tmp_path / "bare.png")


# ---- columns added after encoding ----------------------------------------------------------------------------

def test_a_column_added_after_encoding_survives_reload_concat_and_save(fresh, tmp_path):
    chunks = sorted(p.name for p in (fresh.path / "chunks").iterdir())
    latents = fresh.latents()
    german = fresh.pandas()["language"] == "de"
    fresh.add_column("german", german)
    assert fresh.pandas()["german"].tolist() == german.tolist()  # every view of the store sees it at once
    reloaded = Dataset.load_from_file(fresh.path)
    assert reloaded.pandas()["german"].tolist() == german.tolist() and reloaded[3].row["german"] == german.iloc[3]
    assert (reloaded.latents() != latents).nnz == 0 and sorted(p.name for p in (fresh.path / "chunks").iterdir()) == chunks
    pd.testing.assert_frame_equal(reloaded.associate("german"), fresh.associate(german.to_numpy()), check_exact=True)
    saved = Dataset.load_from_file(reloaded.save_to_file(tmp_path / "saved.iembed"))
    part = Dataset.load_from_file(reloaded[10:20].save_to_file(tmp_path / "part.iembed"))
    both = Dataset.concat([reloaded[:5], reloaded[5:9]], save_path=tmp_path / "both.iembed")
    assert saved.pandas()["german"].tolist() == german.tolist()
    assert part.pandas()["german"].tolist() == german.iloc[10:20].tolist()
    assert both.pandas()["german"].tolist() == german.iloc[:9].tolist()
    # On a view, the documents it does not show get a missing value; a name that exists is refused by name.
    spanish = fresh[(fresh.pandas()["language"] == "es").to_numpy()]
    spanish.add_column("score", np.arange(len(spanish)))
    assert fresh.pandas()["score"].notna().sum() == 80 and fresh.pandas()["score"].max() == 79
    with pytest.raises(ValueError, match="column 'german' exists .* overwrite=True"):
        fresh.add_column("german", german)
    with pytest.raises(ValueError, match="column 'language' exists"):
        fresh.add_column("language", german)
    fresh.add_column("language", german.map({True: "DE", False: "other"}), overwrite=True)
    assert Dataset.load_from_file(fresh.path).pandas()["language"].iloc[german.to_numpy()].eq("DE").all()
    with pytest.raises(ValueError, match="'text' is the text column"):
        fresh.add_column("text", german, overwrite=True)
    with pytest.raises(ValueError, match="shows a document more than once"):
        fresh[[0, 0, 1]].add_column("twice", [1, 2, 3])
    with pytest.raises(ValueError, match="has 3 values for the dataset's 240 documents"):
        fresh.add_column("short", [1, 2, 3])
    # Replaced columns' files are removed by the next writer.
    fresh.add_column("german", ~german, overwrite=True)
    fresh.set_label(1, "mine")  # any writer
    listed = json.loads((fresh.path / MANIFEST).read_text())["body"]["columns"]
    assert sorted(p.name for p in (fresh.path / ADDED_COLUMNS).iterdir()) == sorted(f"{c['sha256']}.parquet"
                                                                                    for c in listed)


def test_adding_a_column_is_atomic_and_locked(fresh, monkeypatch):
    german = fresh.pandas()["language"] == "de"

    def crash(store):
        raise KeyboardInterrupt("killed before the manifest was written")

    monkeypatch.setattr(writing, "write_manifest", crash)
    with pytest.raises(KeyboardInterrupt):
        fresh.add_column("german", german)
    monkeypatch.undo()
    reopened = Dataset.load_from_file(fresh.path)  # the column file was written, the manifest was not: no column
    assert "german" not in reopened.pandas().columns and len(list((fresh.path / ADDED_COLUMNS).iterdir())) == 1
    reopened.add_column("german", german)
    assert len(list((fresh.path / ADDED_COLUMNS).iterdir())) == 1  # the leftover was removed by the next writer
    other = Store.open(fresh.path)
    with other.writing():
        with pytest.raises(StoreLockedError, match="being written by process"):
            fresh.add_column("again", german)
    [column] = (fresh.path / ADDED_COLUMNS).iterdir()
    column.write_bytes(column.read_bytes()[:-10])
    with pytest.raises(StoreCorruptError, match="does not match its checksum|bytes; the manifest says"):
        Dataset.load_from_file(fresh.path).pandas()


def test_a_manifest_naming_a_column_file_by_anything_but_its_checksum_is_refused(fresh):
    fresh.add_column("german", fresh.pandas()["language"] == "de")
    raw = json.loads((fresh.path / MANIFEST).read_text())
    raw["body"]["columns"][0]["sha256"] = "../../documents"
    from interp_embed.files import canonical_json, sha256_json

    raw["sha256"] = sha256_json(raw["body"])
    (fresh.path / MANIFEST).write_text(canonical_json(raw))
    with pytest.raises(StoreCorruptError, match="64 hex digits"):
        Dataset.load_from_file(fresh.path)


# ---- correlations' defaults ----------------------------------------------------------------------------------

def test_correlations_leave_out_rare_and_ubiquitous_features_and_say_so(fortunes):
    pairs = fortunes.top_correlations(k=10)
    pd.testing.assert_frame_equal(pairs, fortunes.top_correlations(k=10, min_count=10, max_coverage=0.5))
    counts = np.asarray((fortunes.latents("binarize") > 0).sum(axis=0)).ravel()
    rare = int(((counts > 0) & (counts < 10)).sum())
    ubiquitous = int(((counts >= 10) & (counts > 120)).sum())
    assert pairs.attrs["excluded"] == {"rare": rare, "ubiquitous": ubiquitous} and ubiquitous >= 1
    assert pairs.attrs["excluded_text"] == (f"left out: {rare:,} features active in fewer than 10 documents and "
                                            f"{ubiquitous:,} in more than 50% of the 240")
    assert (pairs.count_a <= 120).all() and (pairs.count_b <= 120).all() and (pairs.count_a >= 10).all()
    assert fortunes.feature_correlations().attrs["excluded"] == pairs.attrs["excluded"]


# ---- the command line ----------------------------------------------------------------------------------------

runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args], terminal_width=250)


def test_the_command_line_compares_parts_of_one_store(fresh, tmp_path):
    done = run("diff", fresh.path, "--where", "language == 'de'", "--rows", 3, "--csv", tmp_path / "d.csv")
    assert done.exit_code == 0, done.output
    assert "language == 'de' vs the rest" in done.output and "(80 vs 160 documents)" in done.output
    frame = fresh.pandas()
    expected = fresh[(frame.language == "de").to_numpy()].diff(fresh[(frame.language != "de").to_numpy()])
    assert pd.read_csv(tmp_path / "d.csv").feature_id.tolist() == expected.feature_id.tolist()
    done = run("diff", fresh.path, "--where", "language == 'de'", "--where-b", "language == 'es'", "--rows", 3)
    assert done.exit_code == 0 and "(80 vs 80 documents)" in done.output
    done = run("diff", fresh.path)
    assert done.exit_code == 2 and "--where" in done.output
    done = run("diff", fresh.path, "--where", "__import__('os').system('true')")
    assert done.exit_code == 1 and "is not allowed" in done.output
    done = run("diff", fresh.path, "--where", "language == 'fr'")
    assert done.exit_code == 1 and "no document of" in done.output
    done = run("associate", fresh.path, "--target", "language", "--where", "year >= 2002", "--rows", 3)
    assert done.exit_code == 0, done.output
    assert "each value of 'language' against the rest" in done.output and "significant" in done.output, done.output


def test_the_command_line_adds_a_column_from_a_file_and_follows_trends(fresh, tmp_path):
    frame = fresh.pandas().reset_index(drop=True)
    table = pd.DataFrame({"key": np.arange(len(frame))[::-1], "rating": np.arange(len(frame))[::-1] % 5})
    table = table.iloc[:-10]  # ten documents get no rating
    table.to_csv(tmp_path / "ratings.csv", index=False)
    fresh.add_column("key", np.arange(len(frame)))
    done = run("add-column", fresh.path, "rating", "--from", tmp_path / "ratings.csv", "--on", "key")
    assert done.exit_code == 0, done.output
    assert "230 of 240 documents have a value" in done.output
    ratings = Dataset.load_from_file(fresh.path).pandas()["rating"]
    assert ratings.isna().sum() == 10 and ratings.iloc[20] == (20 % 5)
    done = run("add-column", fresh.path, "rating", "--from", tmp_path / "ratings.csv", "--on", "key")
    assert done.exit_code == 1 and "--overwrite" in done.output
    pd.DataFrame({"key": [1, 1], "rating": [2, 3]}).to_csv(tmp_path / "twice.csv", index=False)
    done = run("add-column", fresh.path, "other", "--from", tmp_path / "twice.csv", "--on", "key", "--column", "rating")
    assert done.exit_code == 1 and "key 1 appears 2 times" in done.output
    done = run("trend", fresh.path, "--column", "rating", "--rows", 3, "--plot", tmp_path / "t.png")
    assert done.exit_code == 0, done.output
    assert "levels (documents): 0 (46), 1 (46), 2 (46), 3 (46), 4 (46)" in done.output and (tmp_path / "t.png").exists()
    done = run("correlate", fresh.path, "--k", 3)
    assert done.exit_code == 0 and "left out:" in done.output and "--min-count, --max-coverage" in done.output
    done = run("cluster", fresh.path, "--features", "1,2,3", "--n-clusters", 2, "--where", "language != 'en'")
    assert done.exit_code == 0, done.output
    done = run("report", fresh.path, "--where", "language == 'es'", "-o", tmp_path / "r.html", "--max-features", 5)
    assert done.exit_code == 0 and (tmp_path / "r.html").stat().st_size > 10_000, done.output
