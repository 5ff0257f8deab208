"""The HTML report's content, without a browser: the embedded data is right, bounded, escaped, and bad calls are refused.

(tests/test_report_browser.py opens the same reports in Chromium.)"""
import doctest
import json
import re

import numpy as np
import pandas as pd
import pytest

from interp_embed import Dataset, highlight
from interp_embed.analysis import diff_features
from interp_embed.report import collect, excerpts, render, write_report

from synthetic import ANY_TOKEN, D_SAE, NON_ASCII, PUNCTUATION, synthetic_dataset, synthetic_sae_folder

HOSTILE = ('Fine words. </script><script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2">'
           ' <!-- {{script}} --> & done.')

HOSTILE_TITLE = "<img src=x onerror=\"window.__pwned = 5\"></script><script>window.__pwned = 6</script>"


def embedded(path) -> dict:
    """The report's data, read back from its JSON block."""
    html = path.read_text("utf-8")
    blocks = re.findall(r'<script type="application/json" id="report-data">(.*?)</script>', html, re.S)
    assert len(blocks) == 1
    return json.loads(blocks[0])


def expected_marks(row, feature: int, offset: int, length: int) -> list:
    """The active tokens of ``feature`` inside [offset, offset + length), leading whitespace left out, from the
    store's own spans and values (computed here without the report's code)."""
    values = row.latents("all")[:, feature].toarray().ravel()
    marks = []
    for (start, end), value in zip(row.spans(), values):
        while start < end and row.document[start].isspace():
            start += 1
        if value > 0 and start < end and offset <= start and end <= offset + length:
            marks.append([int(start) - offset, int(end) - offset, float(value)])
    return marks


@pytest.fixture(scope="module")
def hostile(sample, tmp_path_factory):
    frame = pd.concat([sample.head(5), pd.DataFrame({"text": [HOSTILE], "language": ["en"]})], ignore_index=True)
    frame["title"] = [f"fortune {i}" for i in range(5)] + [HOSTILE_TITLE]
    ds = synthetic_dataset(tmp_path_factory.mktemp("stores") / "hostile.iembed", frame)
    ds.set_label(PUNCTUATION, "ends with </script><script>window.__pwned = 3</script>")
    return ds


def test_excerpts_hold_the_stores_spans_and_values(synthetic, tmp_path):
    path = write_report(synthetic, tmp_path / "r.html", features=[NON_ASCII, PUNCTUATION, 40], top_documents=4,
                        quantile_documents=3)
    data = embedded(path)
    column = synthetic.latents("max").toarray()
    encoded = synthetic.encoded_mask()
    for page in data["features"]:
        f = page["id"]
        assert page["frequency"] == pytest.approx((column[encoded, f] > 0).mean())
        assert page["max"] == pytest.approx(column[:, f].max())
        assert sum(page["histogram"]) == page["count"] == (column[:, f] > 0).sum()
        top = [e["document"] for e in page["top"]]
        assert top == [int(i) for i in np.argsort(-column[:, f], kind="stable")[:len(top)]]
        assert not set(top) & {e["document"] for e in page["quantile"]}
        for example in page["top"] + page["quantile"]:
            row = synthetic[example["document"]]
            text = data["texts"][example["text"]]
            assert text == row.document[example["offset"]:example["offset"] + len(text)]
            assert example["marks"] == expected_marks(row, f, example["offset"], len(text))
            assert example["marks"] and example["peak"] == max(m[2] for m in example["marks"])


def test_default_features_are_frequent_but_not_ubiquitous(synthetic, tmp_path):
    data = embedded(write_report(synthetic, tmp_path / "r.html", max_features=5, correlated=2))
    shown = [page["id"] for page in data["features"]]
    assert len(shown) == 5 and ANY_TOKEN not in shown  # feature 0 fires on every token
    frequencies = [page["frequency"] for page in data["features"]]
    assert frequencies == sorted(frequencies, reverse=True) and max(frequencies) <= collect.MAX_COVERAGE
    shown = data["shown"]
    assert {k: shown[k] for k in ("features", "linked", "of", "top_documents", "quantile_documents", "correlated",
                                  "excerpt_tokens", "specificity", "title_column", "store")} == {
        "features": 5, "linked": 0, "of": D_SAE, "top_documents": 10, "quantile_documents": 10, "correlated": 2,
        "excerpt_tokens": excerpts.EXCERPT_TOKENS, "specificity": None, "title_column": None,
        "store": "synthetic.iembed"}
    assert "ships no statistics of its labelling corpus" in shown["rule"]  # the synthetic store records no SAE
    ids = [page["id"] for page in data["features"]]
    for page in data["features"]:
        assert len(page["correlated"]) <= 2 and all(c["id"] in ids and c["npmi"] > 0 for c in page["correlated"])
    o = data["overview"]
    assert (o["documents"], o["encoded"]) == (len(synthetic), synthetic.encoded_mask().sum())
    assert o["tokens"] == sum(len(row.spans()) for row in synthetic)
    assert o["reader"] is None and o["sae"]["d_sae"] == D_SAE


def test_a_view_reports_its_own_rows(synthetic, tmp_path):
    view = synthetic[synthetic.pandas().language.to_numpy() == "de"]
    data = embedded(view.report(tmp_path / "de.html", features=[NON_ASCII]))
    assert data["overview"]["documents"] == len(view) == 20
    assert data["overview"]["tokens"] == sum(len(row.spans()) for row in view)
    for example in data["features"][0]["top"]:
        assert data["texts"][example["text"]] in view[example["document"]].document


def test_sizes_are_bounded_by_the_options(synthetic, tmp_path):
    data = embedded(write_report(synthetic, tmp_path / "r.html", max_features=3, top_documents=2,
                                 quantile_documents=1, correlated=0))
    assert len(data["features"]) == 3
    for page in data["features"]:
        assert len(page["top"]) <= 2 and len(page["quantile"]) <= 1 and page["correlated"] == []
    # Ten top documents, none across the range: a feature active in fewer documents shows what there is.
    data = embedded(write_report(synthetic, tmp_path / "r.html", features=[NON_ASCII], quantile_documents=0))
    assert len(data["features"][0]["top"]) == 10 and data["features"][0]["quantile"] == []


def test_long_documents_and_long_tokens_are_cut(sample, tmp_path):
    words = " ".join(f"word{i}," for i in range(3000))
    frame = pd.DataFrame({"text": [words, "x" * 50_000 + " tail,", "short one,"]})
    ds = synthetic_dataset(tmp_path / "long.iembed", frame, chunk_chars=10**6)
    data = embedded(write_report(ds, tmp_path / "r.html", features=[PUNCTUATION]))
    by_document = {e["document"]: e for e in data["features"][0]["top"]}
    long_words, long_token, short = by_document[0], by_document[1], by_document[2]
    assert not long_words["cut_before"] and long_words["cut_after"]  # every word fires it alike: the first is the peak
    assert len(long_words["marks"]) == excerpts.EXCERPT_TOKENS
    assert len(data["texts"][long_token["text"]]) <= excerpts.EXCERPT_CHARS and long_token["cut_before"]
    assert not short["cut_before"] and not short["cut_after"] and data["texts"][short["text"]] == "short one,"
    assert len(json.dumps(data)) < 100_000


def test_a_hostile_document_cannot_inject_code(hostile, tmp_path):
    path = write_report(hostile, tmp_path / "r.html", features=[PUNCTUATION], title="<script>alert(1)</script>",
                        title_column="title")
    html = path.read_text("utf-8")
    assert html.count("<script") == 2 and html.count("</script>") == 2  # the data block and the page's script
    assert "<img" not in html and "window.__pwned" not in html.split('id="report-data">')[0]
    assert "<title>&lt;script&gt;alert(1)&lt;/script&gt;</title>" in html
    data = embedded(path)
    assert data["title"] == "<script>alert(1)</script>"
    assert data["features"][0]["label"] == "ends with </script><script>window.__pwned = 3</script>"
    shown = [data["texts"][e["text"]] for e in data["features"][0]["top"]]
    assert HOSTILE in shown  # the text is all there, as data
    assert HOSTILE_TITLE in [data["names"][e["name"]]["title"] for e in data["features"][0]["top"]]
    # The script runs only by its hash; no other script, and nothing from the network, is allowed.
    policy = re.search(r'http-equiv="Content-Security-Policy" content="([^"]*)"', html).group(1)
    assert "default-src 'none'" in policy and "script-src 'sha256-" in policy and "unsafe-inline" not in policy.split(";")[1]


def test_diff_view_holds_the_grouped_findings(synthetic, tmp_path):
    language = synthetic.pandas().language.to_numpy()
    de, rest = synthetic[language == "de"], synthetic[language != "de"]
    de.name, rest.name = "de", "rest"
    data = embedded(write_report(de, tmp_path / "r.html", vs=rest, max_features=4))
    diff = data["diff"]
    grouped = diff_features(de, rest, grouped=True).sort_values(["q_value", "p_value", "feature_id"]).head(4)
    assert [f["id"] for f in diff["findings"]] == grouped.feature_id.tolist() == [p["id"] for p in data["features"]]
    non_ascii = next(f for f in diff["findings"] if f["id"] == NON_ASCII)  # German has ä, ö, ü in most fortunes
    assert non_ascii["freq_a"] > non_ascii["freq_b"] and non_ascii["difference"] > 0
    for finding, (_, row) in zip(diff["findings"], grouped.iterrows()):
        assert finding["freq_a"] == pytest.approx(row.freq_de) and finding["q_value"] == pytest.approx(row.q_value)
        assert finding["ci_low"] <= finding["difference"] <= finding["ci_high"]
        assert finding["n_members"] == row.n_members and finding["members"] == list(row.members)
        assert len(finding["examples_a"]) <= collect.DIFF_EXAMPLES
        for example in finding["examples_b"]:  # the other side's documents, by their position in it
            assert data["texts"][example["text"]] in rest[example["document"]].document
    assert (diff["name_a"], diff["name_b"], diff["n_a"], diff["n_b"]) == ("de", "rest", 20, 40)
    # Features asked for: their own rows, with the size of the group each belongs to.
    data = embedded(write_report(de, tmp_path / "r.html", vs=rest, features=[NON_ASCII, 40]))
    assert {f["id"] for f in data["diff"]["findings"]} <= {NON_ASCII, 40}
    assert [p["id"] for p in data["features"]] == [NON_ASCII, 40]


def test_clusters_table(synthetic, tmp_path):
    clustering = synthetic.cluster(features=[NON_ASCII, PUNCTUATION, 40, 41], n_clusters=2)
    data = embedded(write_report(synthetic, tmp_path / "r.html", max_features=5, clusters=clustering))
    c = data["clusters"]
    assert c["total_rows"] == len(clustering.clusters) == len(c["rows"])
    assert c["documents"] == len(clustering.assignments) and c["axis"] == [NON_ASCII, PUNCTUATION, 40, 41]
    assert {r["cluster"] for r in c["rows"]} == set(clustering.clusters.cluster)
    # Each cluster's typical documents are named as every document of the report is.
    data = embedded(write_report(synthetic, tmp_path / "r.html", max_features=5, clusters=clustering,
                                 title_column="language"))
    examples = [e for summary in data["clusters"]["summaries"] for e in summary["examples"]]
    assert examples and all(data["names"][e["name"]]["title"] == synthetic.pandas().language.iloc[e["document"]]
                            for e in examples)


@pytest.mark.parametrize("options, error, message", [
    ({"max_features": 0}, ValueError, "max_features must be an integer in"),
    ({"max_features": 2.5}, TypeError, "max_features"),
    ({"top_documents": -1}, ValueError, "top_documents"),
    ({"top_documents": 101}, ValueError, "top_documents"),
    ({"quantile_documents": "3"}, TypeError, "quantile_documents"),
    ({"correlated": 51}, ValueError, "correlated"),
    ({"features": [D_SAE]}, ValueError, "features contains ids outside"),
    ({"features": []}, ValueError, "features is empty"),
    ({"features": [1, 2, 3], "max_features": 2}, ValueError, "more than max_features=2"),
    ({"vs": "other.iembed"}, TypeError, "vs must be an interp_embed Dataset"),
    ({"clusters": "clusters"}, TypeError, "clusters must be the result of ds.cluster"),
    ({"clusters": (pd.DataFrame(), pd.DataFrame())}, ValueError, "clusters lacks the columns"),
    ({"title": ""}, TypeError, "title must be a non-empty string"),
    ({"title": 3}, TypeError, "title must be a non-empty string"),
    ({"title_column": "nope"}, ValueError, "title_column='nope' is not a column of the dataset's table; its columns "
                                           "are ['language', 'source']"),
    ({"title_column": 3}, TypeError, "title_column must be the name of a column"),
])
def test_bad_parameters_are_refused(synthetic, tmp_path, options, error, message):
    with pytest.raises(error, match=re.escape(message)):
        write_report(synthetic, tmp_path / "r.html", **options)
    assert not (tmp_path / "r.html").exists()


def test_bad_datasets_and_paths_are_refused(synthetic, tmp_path):
    with pytest.raises(TypeError, match="ds must be an interp_embed Dataset"):
        write_report(synthetic.pandas(), tmp_path / "r.html")
    with pytest.raises(IsADirectoryError, match="is a folder"):
        write_report(synthetic, tmp_path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        write_report(synthetic, tmp_path / "missing" / "r.html")
    with pytest.raises(TypeError, match="path must be a file path"):
        write_report(synthetic, 42)
    clustering = synthetic[:10].cluster(features=[NON_ASCII, PUNCTUATION], n_clusters=1)
    clustering.assignments["document"] += len(synthetic)  # documents of another dataset
    with pytest.raises(ValueError, match="outside this dataset"):
        write_report(synthetic, tmp_path / "r.html", clusters=clustering)


def lift(ds, f: int, share: float, tokens_corpus_free: float = collect.PSEUDO_TOKENS) -> float:
    """The specificity of feature ``f`` in ``ds``, computed here from the token activations themselves."""
    active = sum(int((row.latents("all")[:, f].toarray() > 0).sum()) for row in ds)
    tokens = sum(len(row.spans()) for row in ds)
    return (active + tokens_corpus_free) / (tokens * share + tokens_corpus_free)


def test_default_features_are_the_most_specific_to_the_data(sample, tmp_path):
    # The labelling corpus: every token fires ANY_TOKEN there as here; NON_ASCII is rare there (a corpus of English),
    # PUNCTUATION as common as here; the word features are as frequent there as here, except 40 which never fired.
    ds0 = synthetic_dataset(tmp_path / "plain.iembed", sample)
    tokens = sum(len(row.spans()) for row in ds0)
    here = np.asarray(ds0.latents("count").sum(axis=0)).ravel() / tokens
    shares = {f: float(here[f]) for f in range(D_SAE) if here[f] > 0 and f != 40}
    shares[ANY_TOKEN], shares[NON_ASCII] = 1.0, 0.0005
    folder = synthetic_sae_folder(tmp_path / "sae", shares)
    ds = synthetic_dataset(tmp_path / "s.iembed", sample, sae_folder=folder)
    data = embedded(write_report(ds, tmp_path / "r.html", max_features=10, correlated=0))
    shown = [page["id"] for page in data["features"]]
    docs = (ds.latents("max").toarray() > 0).sum(axis=0)
    candidates = [f for f in range(D_SAE) if docs[f] >= collect.MIN_DOCUMENTS]
    expected = sorted(candidates, key=lambda f: (-lift(ds, f, shares.get(f, 0.0)), -docs[f], f))[:10]
    assert shown == expected and NON_ASCII == shown[0] and ANY_TOKEN not in shown
    assert (40 in shown) == (docs[40] >= collect.MIN_DOCUMENTS)  # a feature never seen in the corpus is specific
    for page in data["features"]:
        f = page["id"]
        assert page["specificity"]["lift"] == pytest.approx(lift(ds, f, shares.get(f, 0.0)), rel=1e-6)
        assert page["specificity"]["corpus"] == pytest.approx(shares.get(f, 0.0))
    assert "the features most specific to this dataset" in data["shown"]["rule"] and data["shown"]["specificity"]
    # The SAE's weights changed since: its statistics are not this store's, and the report says it cannot compare.
    (folder / "sae_weights.safetensors").write_bytes(b"other weights")
    again = embedded(write_report(Dataset.load_from_file(ds.path), tmp_path / "r.html", max_features=10))
    assert again["shown"]["specificity"] is None and all(p["specificity"] is None for p in again["features"])


def test_every_feature_shows_the_words_it_fires_on_here(synthetic, tmp_path):
    data = embedded(write_report(synthetic, tmp_path / "r.html", features=[NON_ASCII, PUNCTUATION, 40]))
    words = synthetic.feature_words()
    for page in data["features"]:
        assert page["fires_on"] == words.fires_on(page["id"], collect.FIRES_ON_SHOWN) and page["fires_on"]
        assert page["fires_on_in"] is None
    non_ascii = next(p for p in data["features"] if p["id"] == NON_ASCII)
    assert all(any(ord(c) > 127 for c in w) for w in non_ascii["fires_on"])  # ä, ñ, é … words, read from the text
    assert "most specific to the feature first" in data["shown"]["fires_on"]


def test_a_diff_shows_the_words_of_the_side_where_a_feature_is_more_frequent(synthetic, tmp_path):
    language = synthetic.pandas().language.to_numpy()
    de, rest = synthetic[language == "de"], synthetic[language != "de"]
    de.name, rest.name = "de", "rest"
    data = embedded(write_report(de, tmp_path / "r.html", vs=rest, max_features=30))
    expected = diff_features(de, rest).set_index("feature_id")
    pages = {p["id"]: p for p in data["features"]}
    sides = set()
    for finding in data["diff"]["findings"]:
        side = "a" if finding["freq_a"] >= finding["freq_b"] else "b"
        sides.add(side)
        assert finding["side"] == side
        assert " · ".join(finding["fires_on"]) == expected.loc[finding["id"], "fires_on"]
        words = (de if side == "a" else rest).feature_words().fires_on(finding["id"], collect.FIRES_ON_SHOWN)
        assert pages[finding["id"]]["fires_on"] == words
        assert pages[finding["id"]]["fires_on_in"] == ("de" if side == "a" else "rest")
    assert sides == {"a", "b"}


def test_each_label_is_scored_for_its_own_feature(sample, tmp_path):
    ds = synthetic_dataset(tmp_path / "k.iembed", sample)
    language = ds.pandas().language.to_numpy()
    de, rest = ds[language == "de"], ds[language != "de"]
    ids = diff_features(de, rest, grouped=True).sort_values(["q_value", "p_value", "feature_id"]).feature_id.head(12)
    words = de.feature_words()
    for f in ids:  # labels of the user's that find different documents
        ds.set_label(int(f), " ".join(words.fires_on(int(f), 2)) or "nothing")
    de, rest = ds[language == "de"], ds[language != "de"]
    data = embedded(write_report(de, tmp_path / "r.html", vs=rest, max_features=12))
    shown = [p["id"] for p in data["features"]]
    assert shown != sorted(shown)  # the diff's order, not the ids'
    scores = de.score_labels(shown).set_index("feature_id")
    assert scores.true_positives.nunique() > 2
    for page in data["features"]:
        row = scores.loc[page["id"]]
        assert (page["keyword"]["true_positives"], page["keyword"]["false_positives"]) == (row.true_positives,
                                                                                          row.false_positives)


def test_labels_carry_their_source_and_a_keyword_score(synthetic, tmp_path):
    ds = synthetic_dataset(tmp_path / "l.iembed", synthetic.pandas().reset_index(drop=True)[["text", "language"]])
    ds.label_features_offline([NON_ASCII], held_out=0.5)
    ds.set_label(40, "rabbits and kittens")
    data = embedded(write_report(ds, tmp_path / "r.html", features=[NON_ASCII, PUNCTUATION, 40]))
    pages = {p["id"]: p for p in data["features"]}
    sources = ds.label_sources().set_index("feature_id")
    # A dataset label: its own held-out score, as written.
    assert pages[NON_ASCII]["source"] == "dataset" and pages[NON_ASCII]["keyword"]["scored_on"] == "held out"
    assert pages[NON_ASCII]["keyword"]["balanced_accuracy"] == pytest.approx(
        sources.loc[NON_ASCII, "keyword_balanced_accuracy"])
    # Shipped and user labels: scored here by the same keyword detector.
    scores = ds.score_labels([PUNCTUATION, 40], {PUNCTUATION: pages[PUNCTUATION]["label"], 40: "rabbits and kittens"})
    for f, source in ((PUNCTUATION, "shipped"), (40, "user")):
        keyword, row = pages[f]["keyword"], scores.set_index("feature_id").loc[f]
        assert pages[f]["source"] == source and keyword["scored_on"] == "this dataset"
        assert (keyword["true_positives"], keyword["false_negatives"]) == (row.true_positives, row.false_negatives)
        assert keyword["balanced_accuracy"] == (None if np.isnan(row.balanced_accuracy)
                                                else pytest.approx(row.balanced_accuracy))
    assert "held out from writing it" in data["shown"]["keyword_score"]


def test_documents_are_named_by_a_column_or_their_first_words(sample, tmp_path):
    frame = sample.assign(title=[f"Fortune {i}: {t.split()[0]}" for i, t in enumerate(sample.text)],
                          source=["fortunes"] * len(sample))
    ds = synthetic_dataset(tmp_path / "t.iembed", frame)
    for column, expected in (("title", lambda i: f"Fortune {i}: {frame.text[i].split()[0]}"),
                             ("language", lambda i: frame.language[i])):
        data = embedded(write_report(ds, tmp_path / "r.html", features=[NON_ASCII], title_column=column))
        assert data["shown"]["title_column"] == column
        for example in data["features"][0]["top"]:
            name = data["names"][example["name"]]
            assert name["title"] == expected(example["document"]) and name["title_from"] == "column"
            assert ["source", "fortunes"] in name["meta"] and column not in [c for c, _ in name["meta"]]
    data = embedded(write_report(ds, tmp_path / "r.html", features=[NON_ASCII]))  # the column named title, by default
    assert data["shown"]["title_column"] == "title"
    plain = synthetic_dataset(tmp_path / "p.iembed", sample[["text"]])
    data = embedded(write_report(plain, tmp_path / "r.html", features=[NON_ASCII]))
    for example in data["features"][0]["top"]:
        name = data["names"][example["name"]]
        assert name["title_from"] == "text" and name["meta"] == []
        assert sample.text[example["document"]].split()[0] in name["title"]


def test_features_the_cluster_table_links_to_get_a_page(synthetic, tmp_path):
    clustering = synthetic.cluster(features=[NON_ASCII, PUNCTUATION, 40], n_clusters=2)
    data = embedded(write_report(synthetic, tmp_path / "r.html", features=[NON_ASCII], clusters=clustering,
                                 top_documents=5))
    linked = [f for f in dict.fromkeys(clustering.clusters.feature_id.head(collect.MAX_CLUSTER_ROWS)) if f >= 0]
    pages = {p["id"]: p for p in data["features"]}
    assert set(linked) <= set(pages) and data["shown"]["linked"] == len(set(linked) - {NON_ASCII}) > 0
    for f in set(linked) - {NON_ASCII}:
        assert pages[f]["linked"] == "the cluster table" and pages[f]["quantile"] == []
        assert 0 < len(pages[f]["top"]) <= collect.LINKED_DOCUMENTS and pages[f]["fires_on"]
    assert pages[NON_ASCII]["linked"] is None and len(pages[NON_ASCII]["top"]) == 5


@pytest.mark.parametrize("module", [highlight, collect, render])
def test_docstring_examples(module):
    result = doctest.testmod(module, extraglobs={"np": np}, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0
