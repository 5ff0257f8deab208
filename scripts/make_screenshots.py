"""Make the README's pictures from the demo store: the report's diff view (docs/images/report.png) and plot_diff (docs/images/diff.png).

    interp-embed demo --save-path demo.iembed          # once (make demo)
    python scripts/make_screenshots.py demo.iembed     # needs Chromium and playwright (the dev extras; make test)

The report is opened from disk in headless Chromium, as tests/test_report_browser.py opens it; the first finding's
examples are unfolded, so the picture shows the words each feature fires on, its label, the difference with its
interval, and shaded excerpts of both sides.
"""
from __future__ import annotations

import argparse
import os
import shutil
import tempfile
from pathlib import Path

DOCS = Path(__file__).resolve().parents[1] / "docs" / "images"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("store", type=Path, help="the demo store")
    parser.add_argument("--chromium", default=os.environ.get("INTERP_EMBED_CHROMIUM") or shutil.which("chromium")
                        or "/usr/bin/chromium")
    args = parser.parse_args()

    from playwright.sync_api import expect, sync_playwright

    from interp_embed import Dataset
    from interp_embed.analysis import diff_features, plot_diff

    ds = Dataset.load_from_file(args.store)
    language = ds.pandas().language.to_numpy()
    german, others = ds[language == "de"], ds[language != "de"]
    plot_diff(diff_features(german, others), top=8, path=DOCS / "diff.png")
    german.name, others.name = "german", "others"
    with tempfile.TemporaryDirectory() as folder:
        report = german.report(Path(folder) / "report.html", vs=others)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=args.chromium,
                                                 args=["--no-sandbox"] if os.geteuid() == 0 else [])
            page = browser.new_page(viewport={"width": 1200, "height": 760})
            page.goto(report.resolve().as_uri() + "#diff")
            page.locator("details.finding summary").first.click()
            expect(page.locator("details.finding").first.locator("p.excerpt").first).to_be_visible()
            page.screenshot(path=DOCS / "report.png")
            browser.close()
    print(f"wrote {DOCS / 'report.png'} and {DOCS / 'diff.png'}")


if __name__ == "__main__":
    main()
