"""Rewrite the output the README and the pages under docs/ show under their ``>>>`` examples with what they print now
(a maintainer's tool).

Runs the pages as ``tests/test_readme.py`` does — ``interp-embed demo`` first, then each page (README.md, docs/*.md)
on its own, every block in order in one namespace, in a folder holding a fresh copy of the demo's store — and, for
each ``>>>`` example whose printed output no longer matches the page (as the test compares them), replaces the shown
output with the printed one. Review the change with ``git diff README.md docs/``: the test cannot tell an
improvement from a regression, you can.

    .venv/bin/python scripts/update_readme_outputs.py [--workdir DIR] [PAGE ...]

``--workdir`` reuses a folder where the demo already ran (its ``demo.iembed``); by default a new one is made.
``PAGE`` limits the run to those pages (``README.md``, ``docs/labels.md``); by default every page runs.
"""
from __future__ import annotations

import argparse
import doctest
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
import fake_llm  # noqa: E402  (the tests' local chat-completions server, for the labelling examples)
import test_readme as harness  # noqa: E402

import interp_embed  # noqa: E402


class Recorder(doctest.DocTestRunner):
    """A doctest runner that keeps, on each example whose output differs from the page, what it printed."""

    def report_failure(self, out, test, example, got):
        example.printed = got.rstrip("\n").splitlines()

    def report_unexpected_exception(self, out, test, example, exc_info):
        example.printed = doctest._exception_traceback(exc_info).rstrip("\n").splitlines()


def changed_outputs(block: harness.Block, namespace: dict, indent: str,
                    page: Path) -> dict[int, tuple[int, list[str]]]:
    """Run the examples of ``block`` of ``page`` in ``namespace``; for each whose output differs (as the test
    compares): the page's line index (0-based) of its first shown output line → (lines shown now, lines printed)."""
    test = doctest.DocTestParser().get_doctest(block.text, namespace, harness.page_name(page), str(page), block.line)
    handler, logger = harness.ToStdout(logging.WARNING), logging.getLogger(interp_embed.__name__)
    logger.addHandler(handler)
    try:
        Recorder(harness.RoundingTolerantChecker(), optionflags=harness.DOCTEST_FLAGS).run(
            test, out=lambda text: None, clear_globs=False)
    finally:
        logger.removeHandler(handler)
    namespace.update(test.globs)
    # The block's text starts on the page's line after its fence (block.line, 1-based, is the fence's).
    return {block.line + e.lineno + len(e.source.splitlines()):
            (len(e.want.splitlines()), [indent + line if line else line for line in e.printed])
            for e in test.examples if hasattr(e, "printed")}


def rewrite(page: Path, folder: Path) -> int:
    """Run ``page`` in ``folder`` (the working directory) and rewrite its changed outputs; how many were rewritten."""
    os.chdir(folder)
    lines = page.read_text().splitlines()
    namespace, changes = {"__name__": "__main__"}, {}
    for block in harness.parse_blocks("\n".join(lines), harness.page_name(page)):
        if block.not_run is not None or block.kind is None:
            continue
        if block.kind == "python":
            harness.run_python(block, namespace, page)
        else:
            indent = lines[block.line - 1][: len(lines[block.line - 1]) - len(lines[block.line - 1].lstrip())]
            changes.update(changed_outputs(block, namespace, indent, page))
    for first in sorted(changes, reverse=True):
        count, printed = changes[first]
        lines[first:first + count] = printed
    page.write_text("\n".join(lines) + "\n")
    return len(changes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workdir", type=Path)
    parser.add_argument("pages", nargs="*", type=Path, help="pages to run (default: every page)")
    args = parser.parse_args()
    pages = [(ROOT / page).resolve() for page in args.pages] or harness.PAGES
    unknown = [str(page) for page in pages if page not in harness.PAGES]
    if unknown:
        parser.error(f"not a page the test runs: {', '.join(unknown)}")
    workdir = (args.workdir or Path(tempfile.mkdtemp(prefix="readme-"))).resolve()
    if not (workdir / "demo.iembed").exists():
        env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
        subprocess.run([sys.executable, "-m", "interp_embed", "demo"], cwd=workdir, env=env, check=True,
                       capture_output=True)
    state, http = fake_llm.start()
    os.environ["OPENAI_BASE_URL"] = state.url
    try:
        for page in pages:
            folder = Path(tempfile.mkdtemp(prefix="page-", dir=workdir))
            shutil.copytree(workdir / "demo.iembed", folder / "demo.iembed")
            count = rewrite(page, folder)
            print(f"{count} example(s) rewritten in {harness.page_name(page)}")
    finally:
        http.shutdown()
    print("review with: git diff README.md docs/")


if __name__ == "__main__":
    main()
