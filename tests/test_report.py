"""The HTML report's content, without a browser: the embedded data is right, bounded, escaped, and bad calls are refused.

(tests/test_report_browser.py opens the same reports in Chromium.)"""
import doctest
import json
import re

import numpy as np
import pandas as pd
import pytest

from interp_embed import highlight
from interp_embed.analysis import diff_features
from interp_embed.report import collect, excerpts, render, write_report

from synthetic import ANY_TOKEN, D_SAE, NON_ASCII, PUNCTUATION, synthetic_dataset

HOSTILE = ('Fine words. </script><script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2">'
           ' <!-- {{script}} --> & done.')


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
    assert data["shown"] == {"features": 5, "of": D_SAE, "rule": data["shown"]["rule"], "top_documents": 10,
                             "quantile_documents": 10, "correlated": 2, "excerpt_tokens": excerpts.EXCERPT_TOKENS}
    for page in data["features"]:
        assert len(page["correlated"]) <= 2 and all(c["id"] in shown and c["npmi"] > 0 for c in page["correlated"])
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
    path = write_report(hostile, tmp_path / "r.html", features=[PUNCTUATION], title="<script>alert(1)</script>")
    html = path.read_text("utf-8")
    assert html.count("<script") == 2 and html.count("</script>") == 2  # the data block and the page's script
    assert "<img" not in html and "window.__pwned" not in html.split('id="report-data">')[0]
    assert "<title>&lt;script&gt;alert(1)&lt;/script&gt;</title>" in html
    data = embedded(path)
    assert data["title"] == "<script>alert(1)</script>"
    assert data["features"][0]["label"] == "ends with </script><script>window.__pwned = 3</script>"
    shown = [data["texts"][e["text"]] for e in data["features"][0]["top"]]
    assert HOSTILE in shown  # the text is all there, as data
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


@pytest.mark.parametrize("module", [highlight, collect, render])
def test_docstring_examples(module):
    result = doctest.testmod(module, extraglobs={"np": np}, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0
