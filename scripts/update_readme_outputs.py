"""Rewrite the output the README shows under its ``>>>`` examples with what they print now (a maintainer's tool).

Runs the README as ``tests/test_readme.py`` does — ``interp-embed demo`` first, then every block in order, in one
namespace — and, for each ``>>>`` example whose printed output no longer matches the README (as the test compares
them), replaces the shown output with the printed one. Review the change with ``git diff README.md``: the test
cannot tell an improvement from a regression, you can.

    .venv/bin/python scripts/update_readme_outputs.py [--workdir DIR]

``--workdir`` reuses a folder where the demo already ran (its ``demo.iembed``); by default a new one is made.
"""
from __future__ import annotations

import argparse
import doctest
import logging
import os
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
    """A doctest runner that keeps, on each example whose output differs from the README, what it printed."""

    def report_failure(self, out, test, example, got):
        example.printed = got.rstrip("\n").splitlines()

    def report_unexpected_exception(self, out, test, example, exc_info):
        example.printed = doctest._exception_traceback(exc_info).rstrip("\n").splitlines()


def changed_outputs(block: harness.Block, namespace: dict, indent: str) -> dict[int, tuple[int, list[str]]]:
    """Run the examples of ``block`` in ``namespace``; for each whose output differs (as the README test compares):
    the README line index (0-based) of its first shown output line → (lines shown now, lines printed)."""
    test = doctest.DocTestParser().get_doctest(block.text, namespace, "README", str(harness.README), block.line)
    handler, logger = harness.ToStdout(logging.WARNING), logging.getLogger(interp_embed.__name__)
    logger.addHandler(handler)
    try:
        Recorder(harness.RoundingTolerantChecker(), optionflags=harness.DOCTEST_FLAGS).run(
            test, out=lambda text: None, clear_globs=False)
    finally:
        logger.removeHandler(handler)
    namespace.update(test.globs)
    # The block's text starts on the README line after its fence (block.line, 1-based, is the fence's).
    return {block.line + e.lineno + len(e.source.splitlines()):
            (len(e.want.splitlines()), [indent + line if line else line for line in e.printed])
            for e in test.examples if hasattr(e, "printed")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workdir", type=Path)
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="readme-"))
    if not (workdir / "demo.iembed").exists():
        env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
        subprocess.run([sys.executable, "-m", "interp_embed", "demo"], cwd=workdir, env=env, check=True,
                       capture_output=True)
    os.chdir(workdir)
    state, http = fake_llm.start()
    os.environ["OPENAI_BASE_URL"] = state.url
    lines = harness.README.read_text().splitlines()
    namespace, changes = {"__name__": "__main__"}, {}
    try:
        for block in harness.parse_blocks("\n".join(lines)):
            if block.not_run is not None or block.kind is None:
                continue
            if block.kind == "python":
                harness.run_python(block, namespace)
            else:
                indent = lines[block.line - 1][: len(lines[block.line - 1]) - len(lines[block.line - 1].lstrip())]
                changes.update(changed_outputs(block, namespace, indent))
    finally:
        http.shutdown()
    for first in sorted(changes, reverse=True):
        count, printed = changes[first]
        lines[first:first + count] = printed
    harness.README.write_text("\n".join(lines) + "\n")
    print(f"{len(changes)} example(s) rewritten in {harness.README}; review with git diff README.md")


if __name__ == "__main__":
    main()
