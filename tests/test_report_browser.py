"""The HTML report in a real browser: headless Chromium (Debian's package `chromium`) driven by Playwright.

The report is opened from disk (file://) as a user would open it. Without Chromium or Playwright these tests fail
and say what to install (`make test` installs both); they are never skipped, since a report nobody has seen render
is not tested.
"""
import json
import os
import re
import shutil
from contextlib import ExitStack

import pandas as pd
import pytest

from interp_embed.report import write_report

from synthetic import NON_ASCII, PUNCTUATION, synthetic_dataset
from test_report import HOSTILE, HOSTILE_TITLE, embedded

CHROMIUM = os.environ.get("INTERP_EMBED_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"


def launch(stack: ExitStack):
    """Headless Debian Chromium under Playwright, closed with ``stack``; or why it cannot start (a string)."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as err:
        return (f"the browser tests need the Python package playwright ({err}); install the dev extras: "
                "pip install -e '.[dev]' (make test does)")
    if not os.path.exists(CHROMIUM):
        return (f"the browser tests need Chromium at {CHROMIUM}: apt-get install chromium (make test does), or set "
                "INTERP_EMBED_CHROMIUM to a Chromium executable")
    playwright = stack.enter_context(sync_playwright())
    # Chromium refuses to run as root inside its sandbox; the page is our own file, opened offline.
    arguments = ["--no-sandbox"] if os.geteuid() == 0 else []
    try:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=arguments)
    except Exception as err:  # noqa: BLE001 - whatever stops it, the tests must say why
        return f"Chromium at {CHROMIUM} could not start: {err}"
    stack.callback(chromium.close)
    return chromium


@pytest.fixture(scope="module")
def browser():
    """``browser()``: one Chromium for the module, started inside the first test that needs it, so that a browser
    that cannot start fails each test with the reason (rather than erroring in a fixture, or skipping)."""
    outcome = []
    with ExitStack() as stack:
        def started():
            if not outcome:
                outcome.append(launch(stack))
            if isinstance(outcome[0], str):
                pytest.fail(outcome[0], pytrace=False)
            return outcome[0]
        yield started


@pytest.fixture
def open_report(browser):
    """``open_report(path, hash)``: a page showing the report, failing the test on any script error or any
    request that leaves the file."""
    pages = []

    def open_(path, fragment=""):
        page = browser().new_page(viewport={"width": 1280, "height": 900})
        page.errors, page.requests = [], []
        page.on("pageerror", lambda err: page.errors.append(str(err)))
        page.on("console", lambda message: message.type == "error" and page.errors.append(message.text))
        page.on("request", lambda request: page.requests.append(request.url))
        page.goto(path.resolve().as_uri() + fragment)
        page.wait_for_selector("#view[data-page]")
        pages.append(page)
        return page

    yield open_
    for page in pages:
        assert page.errors == [], page.errors
        assert {url.split("#")[0] for url in page.requests} <= {page.url.split("#")[0]}, page.requests
        page.close()


FREQUENCY = 7
"""The column of the feature table holding the frequency (after feature, fires on, label, label from, keyword score,
LLM score)."""


def visible_rows(page, table: str) -> list[str]:
    return page.locator(f"#{table} tbody tr:not(.detail)").all_inner_texts()


def test_feature_table_search_and_sort(synthetic, tmp_path, open_report):
    path = write_report(synthetic, tmp_path / "report.html", max_features=20)
    page = open_report(path)
    assert page.title() == "Features of synthetic"
    assert len(visible_rows(page, "feature-table")) == 20
    assert "60 (60 encoded)" in page.locator("dl.facts").inner_text()

    page.fill("#search", "hashed to 1")
    rows = visible_rows(page, "feature-table")
    assert 0 < len(rows) < 20 and all("hashed to 1" in row for row in rows)
    page.fill("#search", "")
    assert len(visible_rows(page, "feature-table")) == 20

    header = page.locator("#feature-table th[data-key=frequency]")
    header.click()
    assert header.get_attribute("data-sort") == "desc"
    cells = page.locator(f"#feature-table tbody td:nth-child({FREQUENCY})").all_inner_texts()
    frequencies = [float(c.rstrip("%")) for c in cells]
    assert frequencies == sorted(frequencies, reverse=True)
    header.click()
    assert header.get_attribute("data-sort") == "asc"
    ids = page.locator("#feature-table tbody td:nth-child(1)").all_inner_texts()
    frequencies = [float(c.rstrip("%")) for c in
                   page.locator(f"#feature-table tbody td:nth-child({FREQUENCY})").all_inner_texts()]
    assert frequencies == sorted(frequencies) and len(set(ids)) == 20


def test_feature_page_shades_the_active_tokens(synthetic, tmp_path, open_report):
    path = write_report(synthetic, tmp_path / "report.html", features=[NON_ASCII, PUNCTUATION, 40, 41])
    data = embedded(path)
    page = open_report(path)
    page.click(f"#feature-table a[href='#feature/{PUNCTUATION}'] >> nth=0")
    page.wait_for_selector("#feature-heading")
    assert page.inner_text("#feature-heading") == f"Feature {PUNCTUATION}"
    assert page.locator("svg.histogram rect.bar").count() == len(data["features"][1]["histogram"])

    feature = next(f for f in data["features"] if f["id"] == PUNCTUATION)
    examples = feature["top"] + feature["quantile"]
    shaded = page.locator("p.excerpt span.act")
    assert shaded.count() == sum(len(e["marks"]) for e in examples) > 0
    first = examples[0]
    text = data["texts"][first["text"]]
    excerpt = page.locator("p.excerpt").first
    assert excerpt.inner_text().strip("…") == text  # the document's own characters, all of them
    spans = excerpt.locator("span.act")
    for i, (start, end, value) in enumerate(first["marks"]):
        span = spans.nth(i)
        assert span.inner_text() == text[start:end]
        assert span.get_attribute("title").startswith(f"feature {PUNCTUATION}: ")
        assert float(span.get_attribute("data-activation")) == value
        assert span.evaluate("node => getComputedStyle(node).backgroundColor").startswith("rgba(255, 128, 0")
    page.screenshot(path=tmp_path / "feature.png", full_page=True)
    assert (tmp_path / "feature.png").stat().st_size > 10_000

    if feature["correlated"]:  # the co-occurring features are links to their pages
        other = feature["correlated"][0]["id"]
        page.click(f"#correlated a[href='#feature/{other}']")
        from playwright.sync_api import expect  # imported here: without playwright, launch() says how to install it

        # Waited for with a locator: a string given to wait_for_function is evaluated as code, which the report's
        # Content-Security-Policy rightly forbids (no 'unsafe-eval').
        expect(page.locator("#feature-heading")).to_have_text(f"Feature {other}")


def test_diff_view_draws_differences_with_intervals(synthetic, tmp_path, open_report):
    language = synthetic.pandas().language.to_numpy()
    de, rest = synthetic[language == "de"], synthetic[language != "de"]
    de.name, rest.name = "german", "others"
    clustering = de.cluster(features=[NON_ASCII, PUNCTUATION, 40], n_clusters=2)
    path = write_report(de, tmp_path / "report.html", vs=rest, max_features=8, clusters=clustering)
    data = embedded(path)
    page = open_report(path)
    page.click("#nav-diff")
    page.wait_for_selector("#diff-table")
    assert page.inner_text("main h2") == "german vs others"
    assert len(visible_rows(page, "diff-table")) == len(data["diff"]["findings"]) == 8
    assert page.locator("svg.difference").count() == 8
    assert page.locator("svg.difference line.ci").count() == 3 * 8  # the interval and its two ends
    first = data["diff"]["findings"][0]
    row = page.locator("#diff-table tbody tr:not(.detail)").first
    assert row.get_attribute("data-id") == str(first["id"])

    finding = page.locator("details.finding").first
    finding.locator("summary").click()
    assert finding.locator("p.excerpt").count() == len(first["examples_a"]) + len(first["examples_b"])
    assert finding.locator("span.act[title]").count() > 0
    page.screenshot(path=tmp_path / "diff.png", full_page=True)
    assert (tmp_path / "diff.png").stat().st_size > 10_000

    page.click("th[data-key=q_value]")
    assert page.get_attribute("th[data-key=q_value]", "data-sort") == "desc"
    page.click("#nav-clusters")
    page.wait_for_selector("#cluster-table")
    assert len(visible_rows(page, "cluster-table")) == len(data["clusters"]["rows"])


def test_a_hostile_document_is_shown_as_text_and_runs_nothing(sample, tmp_path, open_report):
    frame = pd.concat([sample.head(3), pd.DataFrame({"text": [HOSTILE], "language": ["en"]})], ignore_index=True)
    frame["title"] = ["one", "two", "three", HOSTILE_TITLE]
    ds = synthetic_dataset(tmp_path / "hostile.iembed", frame)
    ds.set_label(PUNCTUATION, "label </script><img src=x onerror='window.__pwned = 4'>")
    path = write_report(ds, tmp_path / "report.html", features=[PUNCTUATION], title="<b onmouseover=alert(1)>t</b>",
                        title_column="title")
    page = open_report(path, f"#feature/{PUNCTUATION}")
    assert page.evaluate("typeof window.__pwned") == "undefined"
    assert page.locator("img").count() == 0 and page.locator("main script").count() == 0
    shown = page.locator("p.excerpt").all_inner_texts()
    assert any("</script><script>window.__pwned = 1</script><img src=x" in text for text in shown)
    assert "</script><img src=x" in page.inner_text("main p.label")
    assert HOSTILE_TITLE in page.locator(".example .doc-title").all_inner_texts()
    assert page.inner_text("#title") == "<b onmouseover=alert(1)>t</b>"
    assert json.loads(page.evaluate("JSON.stringify(document.title)")) == "<b onmouseover=alert(1)>t</b>"
    page.screenshot(path=tmp_path / "hostile.png")
    assert re.search("Feature 2", page.inner_text("#feature-heading"))


def test_a_feature_reads_by_its_words_first_then_its_label_and_scores(synthetic, tmp_path, open_report):
    from playwright.sync_api import expect

    path = write_report(synthetic, tmp_path / "report.html", features=[NON_ASCII, PUNCTUATION, 40, 41],
                        title_column="language")
    data = embedded(path)
    page = open_report(path)
    headers = page.locator("#feature-table th").all_inner_texts()
    assert headers.index("fires on (here)") < headers.index("label") < headers.index("keyword score")
    for feature in data["features"]:
        row = page.locator(f"#feature-table tr[data-id='{feature['id']}']")
        expect(row.locator("td.words")).to_have_text(" · ".join(feature["fires_on"]))
    word = next(f for f in data["features"] if f["id"] == NON_ASCII)["fires_on"][0]
    page.fill("#search", word)  # the words are searched too
    assert f"#{NON_ASCII}" in " ".join(visible_rows(page, "feature-table"))

    page.goto(path.resolve().as_uri() + f"#feature/{NON_ASCII}")
    expect(page.locator("#feature-heading")).to_have_text(f"Feature {NON_ASCII}")
    feature = next(f for f in data["features"] if f["id"] == NON_ASCII)
    expect(page.locator("#fires-on")).to_have_text(" · ".join(feature["fires_on"]))
    order = page.locator("main p").all_inner_texts()
    assert next(i for i, t in enumerate(order) if t.startswith("fires on")) < next(
        i for i, t in enumerate(order) if t.startswith("label:"))
    expect(page.locator("#keyword-score")).to_contain_text(f"keyword score {feature['keyword']['balanced_accuracy']:.3g}")
    metas = page.locator(".example .meta").all_inner_texts()
    assert metas and all(m.startswith(("de", "en", "es")) and " · row " in m for m in metas)  # titled, never a bare number


def test_a_feature_not_in_the_report_says_how_to_include_it(synthetic, tmp_path, open_report):
    from playwright.sync_api import expect

    path = write_report(synthetic, tmp_path / "report.html", features=[NON_ASCII])
    page = open_report(path, "#feature/200")
    expect(page.locator("#not-embedded")).to_contain_text("Feature 200 is not in this report")
    expect(page.locator("pre.command")).to_have_text("interp-embed report synthetic.iembed --features 200 -o report.html")


def test_a_feature_the_cluster_table_links_to_opens_its_page(synthetic, tmp_path, open_report):
    from playwright.sync_api import expect

    clustering = synthetic.cluster(features=[NON_ASCII, PUNCTUATION, 40], n_clusters=2)
    path = write_report(synthetic, tmp_path / "report.html", features=[NON_ASCII], clusters=clustering)
    data = embedded(path)
    other = next(p["id"] for p in data["features"] if p["linked"])
    page = open_report(path, "#clusters")
    page.click(f"#cluster-table a[href='#feature/{other}'] >> nth=0")
    expect(page.locator("#feature-heading")).to_have_text(f"Feature {other}")
    expect(page.locator("#linked")).to_contain_text("shown because the cluster table links to it")
    assert page.locator(".example").count() == len(next(p for p in data["features"] if p["id"] == other)["top"]) > 0


def test_the_diff_table_shows_the_words_first(synthetic, tmp_path, open_report):
    from playwright.sync_api import expect

    language = synthetic.pandas().language.to_numpy()
    de, rest = synthetic[language == "de"], synthetic[language != "de"]
    de.name, rest.name = "german", "others"
    path = write_report(de, tmp_path / "report.html", vs=rest, max_features=8)
    data = embedded(path)
    page = open_report(path, "#diff")
    headers = page.locator("#diff-table th").all_inner_texts()
    assert headers.index("fires on (where more frequent)") < headers.index("label")
    for finding in data["diff"]["findings"]:
        cell = page.locator(f"#diff-table tr[data-id='{finding['id']}'] td.words")
        expect(cell).to_have_text(" · ".join(finding["fires_on"]) or "—")
