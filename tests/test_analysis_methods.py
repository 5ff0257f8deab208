"""The analyses on a small synthetic corpus with planted structure, through a stand-in of the Dataset interface.

The stand-in implements exactly the interface the analyses use (latents, encoded_mask, d_sae, feature_labels,
pandas, rows with token_activations), from token-level activations, so these tests pin the math and the
plumbing without a reader model; tests/test_analysis_real.py repeats the key checks on real text.
"""
import math

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from matplotlib.figure import Figure
from scipy import stats
from sklearn.metrics import adjusted_rand_score
from statsmodels.stats.multitest import multipletests

from interp_embed import analysis as A
from interp_embed.validation import InvalidParameterError
from interp_embed.analysis.diff import canonical_diff
from interp_embed.analysis import grouping
from interp_embed.store import FeatureWords

from conftest import run_without_torch

D_SAE = 40
LABELS = {0: "English function words", 1: "German function words", 2: "animals and pets",
          3: "weather, rain and snow", 4: "programming and software bugs", 5: "any token"}
VOCAB = {  # word -> features it fires (value)
    "the": {0: 2.0}, "and": {0: 1.5}, "of": {0: 1.0}, "is": {0: 1.2},
    "der": {1: 2.0}, "und": {1: 1.5}, "nicht": {1: 1.0}, "ist": {1: 1.2},
    "cat": {2: 3.0}, "dog": {2: 2.5}, "rain": {3: 2.0}, "snow": {3: 1.8}, "code": {4: 2.2}, "bug": {4: 2.0},
}
FUNCTION = {"en": ["the", "and", "of", "is"], "de": ["der", "und", "nicht", "ist"]}
TOPICS = {"pets": ["cat", "dog"], "weather": ["rain", "snow"], "code": ["code", "bug"]}


class StandInRow:
    def __init__(self, tokens: list[str], acts: sp.csr_matrix):
        self.tokens, self.acts = tokens, acts

    def token_activations(self, feature, as_string=True, left_marker="<<", right_marker=">>"):
        values = self.acts[:, feature].toarray().ravel()
        return " ".join(f"{left_marker}{t}{right_marker}" if v > 0 else t for t, v in zip(self.tokens, values))


class StandInDataset:
    """Token-level activations in memory; ``encoded`` False rows have no activations (the user skipped them)."""

    field = "text"

    def __init__(self, token_lists, meta: pd.DataFrame, encoded=None, rng_seed=0, labels=LABELS):
        rng = np.random.default_rng(rng_seed)
        self._rows, self._meta, self._labels = [], meta.reset_index(drop=True), dict(labels)
        self._encoded = np.ones(len(token_lists), bool) if encoded is None else np.asarray(encoded, bool)
        for tokens in token_lists:
            acts = sp.lil_matrix((len(tokens), D_SAE), dtype=np.float32)
            for i, t in enumerate(tokens):
                for f, v in VOCAB.get(t, {}).items():
                    acts[i, f] = v
                acts[i, 5] = 0.5
                if rng.random() < 0.3:  # background noise features
                    acts[i, rng.integers(6, D_SAE)] = rng.uniform(0.1, 1.0)
            self._rows.append(StandInRow(tokens, acts.tocsr()))

    d_sae = D_SAE
    encoder = None  # no store, so no record of an SAE to name in errors

    def __len__(self):
        return len(self._rows)

    def __getitem__(self, i):
        if isinstance(i, (int, np.integer)):
            return self._rows[i]
        idx = np.arange(len(self))[i]
        view = object.__new__(StandInDataset)
        view._rows = [self._rows[j] for j in idx]
        view._meta = self._meta.iloc[idx].reset_index(drop=True)
        view._encoded, view._labels = self._encoded[idx], self._labels
        return view

    def latents(self, aggregation_method="max", activated_threshold=0.0):
        assert aggregation_method in ("max", "count")  # count: tokens where each feature fires (search and clusters)
        pool = (lambda a: a.max(axis=0)) if aggregation_method == "max" else (lambda a: sp.csr_matrix((a > 0).sum(axis=0)))
        rows = [pool(r.acts) if e else sp.csr_matrix((1, D_SAE), dtype=np.float32)
                for r, e in zip(self._rows, self._encoded)]
        return sp.vstack(rows, format="csr").astype(np.float32)

    def encoded_mask(self):
        return self._encoded.copy()

    def feature_labels(self):
        return dict(self._labels)

    def pandas(self):
        return self._meta.copy()


def make_corpus(n, lang, topic_of=None, seed=0):
    """n token lists in one language; topic_of(i) picks a topic name or None."""
    rng = np.random.default_rng(seed)
    docs, topics = [], []
    for i in range(n):
        topic = topic_of(i) if topic_of else None
        words = list(rng.choice(FUNCTION[lang], size=4))
        if topic:
            words += list(rng.choice(TOPICS[topic], size=2))
        rng.shuffle(words)
        docs.append([str(w) for w in words])
        topics.append(topic)
    return docs, topics


def standin(n, lang, topic_of=None, seed=0, encoded=None, **meta):
    docs, topics = make_corpus(n, lang, topic_of, seed)
    df = pd.DataFrame({"text": [" ".join(d) for d in docs], "topic": topics, **meta})
    return StandInDataset(docs, df, encoded=encoded, rng_seed=seed + 1)


@pytest.fixture(scope="module")
def english():
    return standin(60, "en", lambda i: ["pets", "weather", None][i % 3], seed=1)


@pytest.fixture(scope="module")
def german():
    return standin(50, "de", lambda i: ["code", None][i % 2], seed=2)


# ---------------------------------------------------------------- diffing

def test_diff_recovers_the_planted_language_feature(english, german):
    table = A.diff_features(english, german)
    assert list(table.columns) == ["feature_id", "fires_on", "label", "count_a", "count_b", "freq_a", "freq_b",
                                   "frequency_difference", "ci_low", "ci_high", "p_value", "q_value", "group",
                                   "representative", "overlap", "p_given_representative"]
    # A stand-in cannot tell what its features fire on, and the table says so.
    assert (table.fires_on == "").all() and "has no feature_words" in table.attrs["fires_on"]
    top, bottom = table.iloc[0], table.iloc[-1]
    assert (top.feature_id, top.freq_a, top.freq_b) == (0, 1.0, 0.0) and top.label == "English function words"
    assert bottom.feature_id == 1 and bottom.frequency_difference == -1.0
    assert top.q_value < 1e-20 and top.ci_low > 0.9
    row = table.set_index("feature_id").loc[2]  # pets: a third of English docs, no German doc
    assert row.count_a == 20 and row.freq_a == pytest.approx(20 / 60)
    assert row.p_value == pytest.approx(stats.fisher_exact([[20, 40], [0, 50]]).pvalue)
    assert table["frequency_difference"].is_monotonic_decreasing
    np.testing.assert_allclose(table["q_value"], multipletests(table["p_value"], method="fdr_bh")[1])
    assert 5 in set(table.feature_id) and table.set_index("feature_id").loc[5, "p_value"] == 1.0


def test_diff_relative_metric_and_coverage_filter(english, german):
    rel = A.diff_features(english, german, metric="relative").set_index("feature_id")
    assert rel.loc[2, "frequency_difference"] == 1.0 and rel.loc[1, "frequency_difference"] == -1.0
    # Features rarer than 50% in either dataset are excluded (original semantics) and leave the BH family.
    kept = A.diff_features(english, german, min_coverage=0.5)
    assert set(kept.feature_id) == {5}
    assert kept.q_value.tolist() == kept.p_value.tolist()


def test_diff_ignores_documents_that_were_not_encoded(english, german):
    encoded = np.ones(60, bool)
    encoded[:15] = False
    partial = standin(60, "en", lambda i: ["pets", "weather", None][i % 3], seed=1, encoded=encoded)
    table = A.diff_features(partial, german).set_index("feature_id")
    assert table.loc[0, "count_a"] == 45 and table.loc[0, "freq_a"] == 1.0
    assert table.loc[2, "count_a"] == sum(1 for i in range(15, 60) if i % 3 == 0)


def test_diff_many_is_one_vs_rest_with_one_bh_family(english, german):
    third = standin(40, "en", lambda i: "code", seed=3)
    table = A.diff_many({"en": english, "de": german, "en_code": third})
    assert set(table.dataset) == {"en", "de", "en_code"}
    de = table[table.dataset == "de"].set_index("feature_id")
    assert de.index[0] == 1 and de.loc[1, "freq_in"] == 1.0 and de.loc[1, "freq_rest"] == 0.0
    # The rest of "de" is the union of the English sets: 100 documents, all with feature 0.
    assert de.loc[0, "count_rest"] == 100
    assert de.loc[4, "p_value"] == pytest.approx(stats.fisher_exact([[25, 25], [40, 60]]).pvalue)
    np.testing.assert_allclose(table.q_value, multipletests(table.p_value, method="fdr_bh")[1])


def test_diff_columns_take_the_datasets_names(english, german):
    english.name, german.name = "english", "german"
    try:
        table = A.diff_features(english, german)
        assert {"count_english", "count_german", "freq_english", "freq_german"} <= set(table.columns)
        assert not {"freq_a", "freq_b"} & set(table.columns)
        # Code reading a diff gets the canonical columns back from the table's attrs, whatever the names.
        del english.name
        unnamed = A.diff_features(english, german)
        english.name = "english"
        pd.testing.assert_frame_equal(canonical_diff(table), unnamed)
        assert canonical_diff(unnamed).columns.tolist() == unnamed.columns.tolist()
        assert len(A.plot_diff(table, top=3).axes[0].patches) == len(A.plot_diff(unnamed, top=3).axes[0].patches) > 0
        german.name = "english"  # the same name twice cannot tell the sides apart
        assert {"freq_a", "freq_b"} <= set(A.diff_features(english, german).columns)
    finally:
        del english.name, german.name


def grouping_table(p, q, effect):
    return pd.DataFrame({"feature_id": np.arange(len(p)), "p_value": p, "q_value": q, "frequency_difference": effect})


def test_grouping_joins_features_present_in_the_same_documents(monkeypatch, caplog):
    rng = np.random.default_rng(0)
    base = rng.random(200) < 0.3
    other = rng.random(200) < 0.3
    nudged = base.copy()
    nudged[np.flatnonzero(base)[:6]] = False  # nearly the same documents as base
    columns = [base, nudged, base, other, base, base]
    P = sp.csr_matrix(np.column_stack(columns).astype(np.float32))
    #          0 leads   1 joins   2 opposite 3 elsewhere 4 not significant 5 joins
    p = np.array([1e-9, 1e-8, 1e-7, 1e-6, 0.3, 1e-5])
    q = np.array([1e-8, 1e-7, 1e-6, 1e-5, 0.4, 1e-4])
    effect = np.array([0.3, 0.25, -0.3, 0.2, 0.2, 0.1])
    table = A.add_groups(grouping_table(p, q, effect), P, "frequency_difference", alpha=0.05, min_overlap=0.5)
    g = table.set_index("feature_id")
    assert g.loc[[0, 1, 5], "group"].tolist() == [0, 0, 0] and (g.loc[[0, 1, 5], "representative"] == 0).all()
    jaccard = (base & nudged).sum() / (base | nudged).sum()
    assert g.loc[1, "overlap"] == pytest.approx(jaccard) and g.loc[5, "overlap"] == 1.0
    assert g.loc[2, "group"] == 1 and g.loc[2, "representative"] == 2  # same documents, opposite direction
    assert g.loc[3, "group"] == 2 and g.loc[4, "group"] == 3 and g.loc[4, "representative"] == 4
    # Raising the bar above the nudged feature's overlap splits it off; nothing else moves.
    strict = A.add_groups(grouping_table(p, q, effect), P, "frequency_difference", alpha=0.05,
                          min_overlap=(jaccard + 1) / 2).set_index("feature_id")
    assert strict.loc[1, "representative"] == 1 and strict.loc[5, "representative"] == 0
    rows = A.one_row_per_group(table)
    assert rows.feature_id.tolist() == [0, 2, 3, 4] and rows.members[0] == [0, 1, 5] and rows.n_members.tolist() == [3, 1, 1, 1]
    # Past the work bound the features left stay groups of their own, and the log says so.
    monkeypatch.setattr(grouping, "MAX_WORK", P[base].nnz)  # the first representative's documents only
    with caplog.at_level("WARNING"):
        capped = A.add_groups(grouping_table(p, q, effect), P, "frequency_difference", alpha=0.05, min_overlap=0.5)
    assert capped.group.tolist() == [0, 0, 1, 2, 3, 0] and "2 significant features left" in caplog.text


def test_diff_and_associate_group_on_request(english, german):
    flat = A.diff_features(english, german)
    grouped = A.diff_features(english, german, grouped=True)
    assert len(grouped) == flat.group.nunique() and set(grouped.feature_id) == set(flat.representative)
    assert grouped.n_members.sum() == len(flat)
    for _, row in grouped.iterrows():  # the representative has the smallest p-value of its group
        members = flat.set_index("feature_id").loc[row.members]
        assert members.p_value.min() == row.p_value and (members.group == row.group).all()
    many = A.diff_many({"en": english, "de": german}, grouped=True)
    assert many.groupby("dataset").n_members.sum().to_dict() == A.diff_many({"en": english, "de": german}).dataset.value_counts().to_dict()
    both = standin(60, "en", lambda i: ["pets", None][i % 2], seed=4, pets=[i % 2 == 0 for i in range(60)])
    table = A.associate_features(both, "pets", grouped=True)
    assert {"members", "n_members", "representative"} <= set(table.columns) and table.iloc[0].feature_id == 2


# ---------------------------------------------------------------- correlations

def brute_force_pairs(X: np.ndarray, min_count: int):
    """NPMI, one-sided Fisher p and BH q for every pair, with plain loops and scipy/statsmodels."""
    n, d = X.shape
    counts = X.sum(axis=0)
    cand = [f for f in range(d) if min_count <= counts[f] < n]  # a feature in every document is never tested
    rows = []
    for ii, i in enumerate(cand):
        for j in cand[ii + 1:]:
            ab = int((X[:, i] & X[:, j]).sum())
            pa, pb, pab = counts[i] / n, counts[j] / n, ab / n
            if ab == 0:
                value = -1.0
            elif ab == n:
                value = 1.0
            else:
                value = math.log(pab / (pa * pb)) / -math.log(pab)
            table = [[ab, counts[i] - ab], [counts[j] - ab, n - counts[i] - counts[j] + ab]]
            rows.append((i, j, ab, value, stats.fisher_exact(table, alternative="greater").pvalue))
    df = pd.DataFrame(rows, columns=["feature_a", "feature_b", "count_ab", "npmi", "p_value"])
    df["q_value"] = multipletests(df.p_value, method="fdr_bh")[1]
    return df[df.count_ab > 0]


def test_npmi_and_tests_match_brute_force():
    rng = np.random.default_rng(5)
    X = rng.random((80, 12)) < np.linspace(0.05, 0.7, 12)
    X[:, 3] = X[:, 2] | (rng.random(80) < 0.05)  # correlated pairs
    X[:, 5] = X[:, 4] | (rng.random(80) < 0.2)
    X[:, 9] = X[:, 8] & (rng.random(80) < 0.7)
    X[:, 7] = ~X[:, 6] & (rng.random(80) < 0.5)  # an exclusive pair (never co-occurs)
    X[:, 11] = True  # in every document
    X[:, 0] = False
    X[:2, 0] = True  # below min_count
    P = sp.csr_matrix(X.astype(np.int32))
    got = A.correlate_presence(P, min_count=3, block_size=5, exact_q_below=0.5)
    want = brute_force_pairs(X, 3)
    assert len(got) == len(want) and 0 not in set(got.feature_a) | set(got.feature_b)
    merged = got.merge(want, on=["feature_a", "feature_b"], suffixes=("", "_ref"))
    assert len(merged) == len(want)
    np.testing.assert_array_equal(merged.count_ab, merged.count_ab_ref)
    np.testing.assert_allclose(merged.npmi, merged.npmi_ref, atol=1e-12)
    np.testing.assert_allclose(merged.p_value, merged.p_value_ref, rtol=1e-9)
    # q-values below exact_q_below are exact; the others are upper bounds (BH saw only the p-values <= p_cutoff).
    assert got.attrs["n_tests"] == 45 and got.attrs["p_cutoff"] < 0.5  # 10 candidates: 1..10
    exact = merged.q_value_ref < 0.5
    assert exact.sum() >= 3 and (merged.p_value[exact] <= got.attrs["p_cutoff"]).all()
    np.testing.assert_allclose(merged.q_value[exact], merged.q_value_ref[exact], rtol=1e-9)
    assert (merged.q_value[~exact] >= 0.5).all()
    assert (merged.q_value[~exact] >= merged.q_value_ref[~exact] - 1e-12).all()
    assert got.iloc[0][["feature_a", "feature_b"]].tolist() == [2, 3]
    assert got.npmi.is_monotonic_decreasing


def test_blocks_and_top_k_do_not_change_any_pair():
    # 3,000 documents, 300 features, some planted pairs: many blocks, chunked pair lists, a truncated BH family.
    rng = np.random.default_rng(6)
    X = rng.random((3000, 300)) < rng.uniform(0.002, 0.05, 300)
    X[:, 1::7] |= X[:, 0::7][:, :X[:, 1::7].shape[1]] & (rng.random((3000, 43)) < 0.3)
    P = sp.csr_matrix(X.astype(np.int32))
    full = A.correlate_presence(P, min_count=5, exact_q_below=0.1)
    small = A.correlate_presence(P, min_count=5, exact_q_below=0.1, block_size=7, block_bytes=4_000)
    pd.testing.assert_frame_equal(small, full)
    assert full.attrs == small.attrs and full.attrs["p_cutoff"] < 0.1
    assert 10 < (full.q_value < 0.1).sum() < (full.p_value <= 0.1).sum()
    top = A.correlate_presence(P, min_count=5, exact_q_below=0.1, top=200, block_size=11, block_bytes=4_000)
    pd.testing.assert_frame_equal(top, full.head(200))
    # Exact Fisher p for every pair, BH over the whole family (non-co-occurring pairs have p = 1).
    want = multipletests(np.concatenate([full.p_value, np.ones(full.attrs["n_tests"] - len(full))]),
                         method="fdr_bh")[1][:len(full)]
    exact = want < 0.1
    np.testing.assert_allclose(full.q_value[exact], want[exact], rtol=1e-9)
    assert (full.q_value[~exact] >= np.maximum(0.1, want[~exact] - 1e-12)).all()


def test_top_correlations_streams_the_same_answer(english):
    full = A.feature_correlations(english, min_count=2)
    top = A.top_correlations(english, k=7, min_count=2, block_size=3)
    pd.testing.assert_frame_equal(top.reset_index(drop=True), full.head(7).reset_index(drop=True))
    # "Any token" features fire in every document: no variation, so they are never tested.
    assert not ({0, 5} & (set(full.feature_a) | set(full.feature_b)))
    only = A.feature_correlations(english, features=[0, 2, 3])
    assert set(only.feature_a) | set(only.feature_b) <= {0, 2, 3}
    none_common = A.feature_correlations(english, min_count=2, max_coverage=0.5)
    assert not ({0, 5} & (set(none_common.feature_a) | set(none_common.feature_b)))


# ---------------------------------------------------------------- association

def test_associate_binary_target(english, german):
    both = _concat(english, german)
    table = A.associate_features(both, target="is_german", random_state=0)
    best = table.iloc[0]
    assert best.feature_id in (0, 1) and best.q_value < 1e-20
    row = table.set_index("feature_id").loc[1]
    assert row.mean_active == 1.0 and row.mean_inactive == 0.0 and row.separation == 1.0
    model = table.attrs["model"]
    assert model["metric"] == "auc" and model["held_out"] > 0.95 and model["positive_class"] == 1
    assert table.query("selected").feature_id.isin([0, 1]).any()
    np.testing.assert_allclose(table.q_value, multipletests(table.p_value, method="fdr_bh")[1])


def test_associate_numeric_target_matches_scipy_and_says_how():
    # 150 documents: the weather feature is present in 50, so both groups are large enough for the normal
    # approximation of the rank-sum test; the pets feature in 25 of 125 known values is tested by permutation.
    ds = standin(150, "en", lambda i: ["pets", "weather", None][i % 3], seed=7)
    rng = np.random.default_rng(0)
    topic = ds.pandas().topic
    y = rng.lognormal(0, 1, len(ds)) + 1.5 * (topic == "weather") + 0.8 * (topic == "pets")  # skewed
    y[::6] = np.nan  # missing values are skipped
    ds._meta["score"] = y
    table = A.associate_features(ds, target="score", n_permutations=20_000).set_index("feature_id")
    known = ~np.isnan(y)
    latents = ds.latents().toarray()
    weather, pets = latents[:, 3] > 0, latents[:, 2] > 0
    reference = stats.mannwhitneyu(y[known & weather], y[known & ~weather], method="asymptotic")
    assert table.loc[3, "p_method"] == "rank-sum"
    assert table.loc[3, "p_value"] == pytest.approx(reference.pvalue, rel=1e-9)
    welch = stats.ttest_ind(y[known & weather], y[known & ~weather], equal_var=False).confidence_interval()
    assert (table.loc[3, "ci_low"], table.loc[3, "ci_high"]) == pytest.approx((welch.low, welch.high), rel=1e-9)
    assert table.loc[3, "separation"] == pytest.approx(y[known & weather].mean() - y[known & ~weather].mean())
    exact = stats.mannwhitneyu(y[known & pets], y[known & ~pets], method="exact").pvalue
    assert table.loc[2, "p_method"] == "rank-sum permutation" and np.isnan(table.loc[2, "ci_low"])
    assert abs(table.loc[2, "p_value"] - exact) < 4 * np.sqrt(exact * (1 - exact) / 20_000) + 1 / 20_001
    assert table.attrs["model"]["metric"] == "r2" and table.attrs["model"]["n_documents"] == known.sum()


# ---------------------------------------------------------------- clustering and retrieval

def test_directed_clustering_recovers_topics(english):
    assignments, clusters = A.cluster_documents(english, features=[2, 3], n_clusters=2)
    topic = english.pandas().topic
    has_axis = topic.isin(["pets", "weather"]).to_numpy()
    assert (assignments.cluster >= 0).all()  # every document assigned, those without an axis feature too
    assert adjusted_rand_score(topic[has_axis], assignments.cluster[has_axis]) == 1.0
    best = clusters.query("rank == 1 and cluster >= 0").set_index("cluster")
    assert set(best.feature_id) == {2, 3} and (best["size"] >= 20).all() and best["size"].sum() == 60
    by_query, described = A.cluster_documents(english, query="weather pets", n_clusters=2)
    axis = described.attrs["axis_table"]  # each part's heaviest feature is its topic's, whatever feedback adds
    assert set(axis.loc[axis.groupby("part").weight.idxmax(), "feature_id"]) == {2, 3}
    assert adjusted_rand_score(topic[has_axis], by_query.cluster[has_axis]) == 1.0
    hd, _ = A.cluster_documents(english, features=[2, 3], method="hdbscan", min_cluster_size=5)
    assert adjusted_rand_score(topic[has_axis], hd.cluster[has_axis]) == 1.0


def test_search_documents_returns_highlighted_evidence(english):
    hits = A.search_documents(english, query="animals", k=5, feedback=False)
    assert len(hits) == 5 and (hits.feature_id == 2).all()
    assert (english.pandas().topic.iloc[hits.document] == "pets").all()
    assert hits.score.is_monotonic_decreasing
    for text in hits.highlighted:
        marked = {w[2:-2] for w in text.split() if w.startswith("<<")}
        assert marked and marked <= {"cat", "dog"}
    assert hits.attrs["features"].feature_id.iloc[0] == 2
    explicit = A.search_documents(english, features=[3], k=100, highlight=False)
    assert len(explicit) == 20 and "highlighted" not in explicit


class FiredWordsStandIn(StandInDataset):
    """The stand-in without background noise, able to tell which words each feature fires on (the optional
    ``feature_words``): each feature's summed activations on each vocabulary word."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for row in self._rows:  # only the planted features fire
            row.acts = row.acts.multiply(np.arange(D_SAE) < 6).tocsr()

    def feature_words(self):
        words = sorted(VOCAB)
        mass = np.zeros((D_SAE, len(words)), np.float32)
        for row in self._rows:
            for token, acts in zip(row.tokens, row.acts):
                mass[acts.indices, words.index(token)] += acts.data
        return FeatureWords(mass=sp.csr_matrix(mass), words=np.array(words, dtype=object))


def test_search_matches_the_words_features_fire_on():
    docs, topics = make_corpus(60, "en", lambda i: ["pets", "weather", None][i % 3], seed=1)
    fired = FiredWordsStandIn(docs, pd.DataFrame({"text": [" ".join(d) for d in docs], "topic": topics}))
    # No label says "cat"; feature 2 fires on it (and on "dog"), so it is found, and the table says why.
    hits = A.search_documents(fired, query="cats", k=30, feedback=False)
    assert set(hits.feature_id) == {2} and len(hits) == 20
    assert (fired.pandas().topic.iloc[hits.document] == "pets").all()
    assert hits.attrs["features"].fires_on.tolist() == ["cat · dog"]
    labels_only = standin(60, "en", lambda i: "pets")  # a dataset that cannot tell: labels alone count
    with pytest.raises(ValueError, match="no word of query"):
        A.search_documents(labels_only, query="cats")
    assert A.search_documents(labels_only, query="animals", feedback=False).feature_id.iloc[0] == 2


def test_feedback_never_loses_what_the_first_search_found():
    # Every document is about pets, so the feature found for "animals" fires in all of them. With the background
    # features, feedback scores only the documents that share one with the first ten: the others still follow.
    noisy = standin(60, "en", lambda i: "pets")
    first = A.search_documents(noisy, query="animals", k=100, feedback=False, highlight=False)
    again = A.search_documents(noisy, query="animals", k=100, highlight=False)
    assert len(first) == len(again) == 60 and "feedback" in set(again.attrs["features"].source)
    missed = again[again.score == 0]
    assert len(missed) and missed.document.tolist() == [d for d in first.document if d in set(missed.document)]
    assert (missed.feature_id == 2).all() and (again.score.iloc[: len(again) - len(missed)] > 0).all()
    # Without them, every feature of what was found fires in most documents: nothing specific, the first ranking.
    docs, topics = make_corpus(60, "en", lambda i: "pets", seed=1)
    planted = FiredWordsStandIn(docs, pd.DataFrame({"text": [" ".join(d) for d in docs], "topic": topics}))
    plain = A.search_documents(planted, query="animals", k=100, feedback=False, highlight=False)
    fed = A.search_documents(planted, query="animals", k=100, highlight=False)
    assert len(plain) == 60 and fed.document.tolist() == plain.document.tolist()
    assert set(fed.attrs["features"].source) == {"label match"}


def test_search_never_picks_a_feature_that_does_not_fire_in_the_dataset(english):
    # Feature 1's label is "German function words", but no English document fires it: nothing to find.
    assert english.latents()[:, 1].nnz == 0
    with pytest.raises(ValueError, match="no word of query 'German'"):
        A.search_documents(english, query="German")
    with pytest.raises(ValueError, match="no word of query 'German'"):
        A.cluster_documents(english, query="German")


def test_clustering_on_a_one_part_query_still_makes_the_clusters_asked_for(english, caplog):
    # The axis of one query part is the features specific to what it finds (the feedback features), not one
    # feature, so k-means can make the three clusters asked for; every document is assigned.
    assignments, clusters = A.cluster_documents(english, query="animals", n_clusters=3)
    assert 2 in clusters.attrs["query_features"] and len(clusters.attrs["axis"]) > 1
    assert set(clusters.attrs["axis_table"].part) == {"animals"}
    assert (assignments.cluster >= 0).all() and assignments.cluster.nunique() == 3
    # An axis the user chose stays as given; one feature makes one cluster, and the log says why.
    chosen, _ = A.cluster_documents(english, features=[2], n_clusters=3)
    pets = (english.pandas().topic == "pets").to_numpy()
    assert set(chosen.cluster[pets]) == {0} and "distinct axis profiles" in caplog.text


# ---------------------------------------------------------------- plots

def test_plots_return_figures_and_save(tmp_path, english, german):
    diff = A.diff_features(english, german)
    pairs = A.feature_correlations(english, min_count=2)
    _, clusters = A.cluster_documents(english, features=[2, 3, 4], n_clusters=2)
    for name, fig in [("diff", A.plot_diff(diff, top=5, path=tmp_path / "diff.png")),
                      ("npmi", A.plot_correlations(pairs, top=10, path=tmp_path / "npmi.png")),
                      ("clusters", A.plot_clusters(clusters, path=tmp_path / "clusters.png"))]:
        assert isinstance(fig, Figure)
        assert (tmp_path / f"{name}.png").stat().st_size > 1000
    assert len(A.plot_diff(diff, top=3).axes[0].patches) == 6
    # Each bar is named by the words its feature fires on (from the side where it is more frequent).
    shown = [t.get_text() for t in A.plot_diff(diff, top=3).axes[0].get_yticklabels()]
    by_id = diff.set_index("feature_id")
    for name in shown:
        feature, _, text = name.partition(": ")
        words = by_id.loc[int(feature), "fires_on"] or by_id.loc[int(feature), "label"]
        assert words.startswith(text.rstrip("…"))
    with pytest.raises(ValueError, match="diff_features"):
        A.plot_diff(pairs)


# ---------------------------------------------------------------- validation at the door

@pytest.mark.parametrize("call, error, message", [
    (lambda e, g: A.diff_features(e, g, metric="ratio"), InvalidParameterError, "'absolute', 'relative'"),
    (lambda e, g: A.diff_features(e, g, min_coverage=0.6, max_coverage=0.5), InvalidParameterError, "must not exceed"),
    (lambda e, g: A.diff_features(e, "not a dataset"), InvalidParameterError, "Dataset"),
    (lambda e, g: A.diff_many({"a": e}), InvalidParameterError, "at least two"),
    (lambda e, g: A.feature_correlations(e, features=[0, 99]), InvalidParameterError, "outside"),
    (lambda e, g: A.top_correlations(e, k=0), InvalidParameterError, "k must be"),
    (lambda e, g: A.top_correlations(e, exact_q_below=1.0), InvalidParameterError, "exact_q_below must lie"),
    (lambda e, g: A.associate_features(e, target="nope"), KeyError, "columns are"),
    (lambda e, g: A.associate_features(e, target="text"), ValueError, "no two documents sharing one"),
    (lambda e, g: A.cluster_documents(e, method="dbscan"), InvalidParameterError, "'kmeans', 'hdbscan'"),
    (lambda e, g: A.cluster_documents(e, features=[1], query="x"), InvalidParameterError, "not both"),
    (lambda e, g: A.search_documents(e, query="zebra"), ValueError, "no word of query"),
    (lambda e, g: A.search_documents(e), InvalidParameterError, "exactly one"),
    (lambda e, g: A.diff_features(e, g, activated_threshold=-1), InvalidParameterError, "activated_threshold"),
    (lambda e, g: A.diff_features(e, g, grouped="yes"), InvalidParameterError, "grouped must be True or False"),
    (lambda e, g: A.diff_features(e, g, min_overlap=0), InvalidParameterError, "min_overlap must lie"),
    (lambda e, g: A.associate_features(e, target="topic", alpha=2), InvalidParameterError, "alpha must lie"),
])
def test_bad_parameters_say_what_to_do(english, german, call, error, message):
    """A bad parameter raises InvalidParameterError, which is both a ValueError and a TypeError (code that catches
    either keeps working); a missing column (KeyError) or data that admit no answer are other errors."""
    with pytest.raises(error, match=message) as raised:
        call(english, german)
    if error is InvalidParameterError:
        assert isinstance(raised.value, ValueError) and isinstance(raised.value, TypeError)


def test_dataset_with_nothing_encoded_is_refused(german):
    empty = standin(5, "en", encoded=np.zeros(5, bool))
    with pytest.raises(ValueError, match="no encoded documents"):
        A.diff_features(empty, german)


# ---------------------------------------------------------------- the torch boundary

def test_analysis_runs_without_torch_or_transformers():
    out = run_without_torch("""
        import test_analysis_methods as t
        from interp_embed import analysis as A
        e, g = t.standin(30, "en", lambda i: "pets" if i % 2 else None), t.standin(30, "de", seed=4)
        A.diff_features(e, g); A.top_correlations(e, k=3, min_count=2); A.search_documents(e, query="pets")
        A.cluster_documents(e, features=[2], n_clusters=1); A.plot_diff(A.diff_features(e, g))
        e._meta["y"] = [i % 2 for i in range(30)]; A.associate_features(e, target="y")
        print("ok")
    """)
    assert out.strip().endswith("ok")


def _concat(english, german):
    """One stand-in holding both corpora, with an is_german column."""
    both = object.__new__(StandInDataset)
    both._rows = english._rows + german._rows
    both._meta = pd.concat([english.pandas().assign(is_german=False), german.pandas().assign(is_german=True)],
                           ignore_index=True)
    both._encoded = np.ones(len(both._rows), bool)
    both._labels = english._labels
    return both


def test_label_match_below_the_minimum_score_is_an_error():
    labels = np.array(["German words", "code snippets", ""], dtype=object)
    assert A.match_features(labels, "German", k=2)["feature_id"].tolist() == [0]
    with pytest.raises(ValueError, match="well enough"):
        A.match_features(labels, "German", min_score=0.99)


def test_an_axis_query_without_commas_keeps_names_whole_and_drops_stop_words():
    from interp_embed.analysis.clustering import query_parts

    # The issue's own axis: "Star" and "Trek" apart made six parts for five clusters and lost the topic.
    assert query_parts("computers food law sports Star Trek") == ["computers", "food", "law", "sports", "Star Trek"]
    assert query_parts("law and order New York") == ["law", "order", "New York"]
    assert query_parts("Computers Food Law") == ["Computers", "Food", "Law"]  # all capitalised: words, not one name
    assert query_parts("computers, law and order, Star Trek") == ["computers", "law and order", "Star Trek"]
    assert query_parts("the and") == ["the", "and"]  # nothing but stop words: kept, so the search says what it finds


def test_a_symbol_or_number_a_feature_fires_on_is_described_by_its_unicode_name_and_category():
    from interp_embed.analysis.label_search import query_terms, word_terms

    assert word_terms("games") == ("gam",)
    assert set(query_terms("exclamations")) <= set(word_terms("!"))  # EXCLAMATION MARK, other punctuation
    assert set(query_terms("questions")) <= set(word_terms("¿"))  # INVERTED QUESTION MARK
    assert set(query_terms("currency")) <= set(word_terms("€")) and "dollar" in word_terms("$")
    assert word_terms("1984") == word_terms("7") == ("decim", "numb")  # a number by its category, not spelled out
    assert set(query_terms("numbers")) <= set(word_terms("1984"))
    assert word_terms("\x00") == ("control",) and word_terms("\ue000") == ("privat", "use")
    labels = np.array(["", "", ""], dtype=object)
    words = FeatureWords(words=np.array(["!", "?", "game"], dtype=object),
                         mass=sp.csr_matrix(np.eye(3, dtype=np.float32)))
    assert A.match_features(labels, "exclamations", words=words)["feature_id"].tolist() == [0]
