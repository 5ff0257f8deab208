"""Analyses on anything a user can compute, through the bundled reader and SAE, on text none of them was built on:
360 Debian package descriptions (tests/data/debian_packages.jsonl, 30 from each of 12 archive sections), a random
half of them side A, and a phrase appended to 30 % of side A's descriptions. Encoded once for the module (about a
minute on two CPU cores). benchmarks/analyses_anything.py measures the same on two larger corpora.
"""
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from interp_embed import Dataset
from interp_embed.cli import app

pytestmark = [pytest.mark.reader, pytest.mark.slow]

PACKAGES = Path(__file__).parent / "data" / "debian_packages.jsonl"
PHRASE = " Offer code ZX-4417 expires soon."
TEN = ("database", "editors", "fonts", "games", "graphics", "httpd", "mail", "math", "python", "sound")


@pytest.fixture(scope="module")
def packages(tmp_path_factory):
    frame = pd.read_json(PACKAGES, lines=True)
    rng = np.random.default_rng(11)
    side_a = np.zeros(len(frame), dtype=bool)
    side_a[rng.choice(len(frame), len(frame) // 2, replace=False)] = True
    planted = np.zeros(len(frame), dtype=bool)
    planted[rng.choice(np.flatnonzero(side_a), int(round(0.3 * side_a.sum())), replace=False)] = True
    frame["text"] = [t + PHRASE if p else t for t, p in zip(frame.text, planted)]
    frame["side_a"], frame["planted"] = side_a, planted
    return Dataset(frame, save_path=tmp_path_factory.mktemp("anything-real") / "packages.iembed")


def fires_inside_phrase(ds, feature: int) -> bool:
    """In more than half of the planted documents where ``feature`` is active, its strongest token is in the phrase."""
    inside = active = 0
    for position in np.flatnonzero(ds.pandas()["planted"].to_numpy()):
        row = ds[int(position)]
        column = row.latents("all")[:, feature].toarray().ravel()
        if column.any():
            active += 1
            inside += row.spans()[int(np.argmax(column))][0] >= len(row.document) - len(PHRASE)
    return inside > active / 2


def test_a_column_of_ten_sections_finds_features_for_most_of_them(packages):
    ten = packages[packages.pandas()["section"].isin(TEN).to_numpy()]
    levels = ten.associate("section", model=False).attrs["levels"].set_index("level")
    assert (levels.n_significant > 0).sum() >= 8, levels[["n_significant", "fires_on"]]
    assert "game" in levels.loc["games", "fires_on"] and "font" in levels.loc["fonts", "fires_on"]


def test_random_categories_arrays_and_orders_find_nothing(packages):
    rng = np.random.default_rng(0)
    sections = packages.pandas()["section"].to_numpy()
    n = len(packages)
    shuffled = packages.associate(rng.permutation(sections), model=False).attrs["levels"]
    assert (shuffled.n_significant > 0).sum() <= 1, shuffled
    assert (packages.associate(rng.standard_normal(n), model=False).q_value < 0.05).sum() == 0
    assert (packages.associate(rng.integers(0, 2, n), model=False).q_value < 0.05).sum() == 0
    assert (packages.trend(rng.integers(2015, 2025, n)).q_value < 0.05).sum() <= 1


def test_a_column_added_after_encoding_survives_reload_and_is_a_target(packages):
    packages.add_column("is_games", packages.pandas()["section"] == "games", overwrite=True)
    reloaded = Dataset.load_from_file(packages.path)
    table = reloaded.associate("is_games", model=False, grouped=True)
    top = table.iloc[0]
    assert top.q_value < 1e-6 and top.separation > 0 and "game" in top.fires_on


def test_the_command_line_diffs_part_of_one_store_against_the_rest(packages):
    done = CliRunner().invoke(app, ["diff", str(packages.path), "--where", "section == 'games'", "--rows", "3"],
                              terminal_width=250)
    assert done.exit_code == 0, done.output
    assert "section == 'games' vs the rest" in done.output and "(30 vs 330 documents)" in done.output


def test_a_planted_phrase_is_one_finding(packages):
    side = packages.pandas()["side_a"].to_numpy()
    shares = {}
    for rule in ("explained", "overlap"):
        table = packages[side].diff(packages[~side], grouping=rule)
        found = table[table.q_value < 0.05]
        sizes = found.group.value_counts()
        shares[rule] = sizes.iloc[0] / len(found)
        representative = int(found[found.group == sizes.index[0]].representative.iloc[0])
        if rule == "explained":
            assert len(found) >= 20 and shares[rule] >= 0.6, sizes.head()
            assert fires_inside_phrase(packages, representative)
            grouped = packages[side].diff(packages[~side], grouped=True)
            largest = grouped.loc[grouped.n_members.idxmax()]
            assert largest.feature_id == representative and largest.n_members == sizes.iloc[0]
            assert largest.fires_on == table.set_index("feature_id").loc[representative, "fires_on"]
    assert shares["explained"] >= shares["overlap"], shares
