"""The README and the reference pages under docs/ are executed, so that they cannot drift from what the code does.

``interp-embed demo`` runs first, as the README tells its reader to, and must print the output the README shows.
Each page (README.md, docs/*.md) then runs on its own: every fenced ```python block runs, in page order, in one
namespace of that page's (blocks build on earlier ones of the same page, never on another page's), in a working
directory of its own holding a fresh copy of the demo's store, so that a page runs the same whatever ran before
it. A comment line
``# SomeError: message`` (continued on ``#   `` lines) right under a statement means that statement must raise
that error with that message. Every block of ``>>>`` examples is run by doctest in the same namespace and must
print what its page shows; a warning the library logs is part of what an example prints, as a terminal shows it.
A block right under ``<!-- not run: <reason> -->`` is skipped, and every such line must give its reason.
"""
import ast
import asyncio
import doctest
import io
import logging
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from difflib import unified_diff
from pathlib import Path

import pytest

import interp_embed

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]
"""Every page whose examples run: the front page and the reference pages it links to."""
FENCE = re.compile(r"^(\s*)```(\S*)\s*$")
NOT_RUN = re.compile(r"^\s*<!--\s*not run\b:?(.*?)-->\s*$")
EXPECTED_ERROR = re.compile(r"^\s*# ([A-Z]\w*(?:Error|Exception)): (.*)$")
CONTINUED = re.compile(r"^\s*#\s{2,}(\S.*)$")
DOCTEST_FLAGS = doctest.NORMALIZE_WHITESPACE | doctest.ELLIPSIS
NUMBER = re.compile(r"[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?")
FLOAT_RTOL = 2e-3
"""How far a shown decimal number may be from the printed one. Activations are computed in float32 and stored in
float16; a CPU of another make (other BLAS kernels, another thread count) rounds the float32 arithmetic
differently, and a value can then land one float16 step (2**-10, about 1e-3 relative) away. Whole numbers (counts,
ids, shapes) must be equal, as must all text."""


@dataclass
class Block:
    """One fenced block of a Markdown file."""

    line: int
    """The line number of its opening fence (1-based); its text starts on the next line."""
    language: str
    """The word after the opening fence ('python', 'bash', or '' for shown output)."""
    text: str
    """Its lines, without the indentation of the fence (a block inside a list item is indented)."""
    not_run: str | None
    """The reason given by a ``<!-- not run: reason -->`` line right above it; None when there is none."""

    @property
    def kind(self) -> str | None:
        """'python' (run as code), 'doctest' (``>>>`` examples, output compared) or None (not Python)."""
        if self.language == "python":
            return "python"
        if any(line.startswith(">>> ") for line in self.text.splitlines()):
            return "doctest"
        return None


def page_name(path: Path) -> str:
    """``path`` as the repository names it (``README.md``, ``docs/labels.md``), for messages."""
    return path.relative_to(ROOT).as_posix()


def parse_blocks(markdown: str, name: str = "README.md") -> list[Block]:
    """The fenced blocks of ``markdown``, in order. A ``not run`` line that is not right above a block (blank
    lines between them allowed) is an error, so that a skip cannot silently land on the wrong block."""
    lines = markdown.splitlines()
    blocks, pending, i = [], None, 0
    while i < len(lines):
        skip = NOT_RUN.match(lines[i])
        fence = FENCE.match(lines[i])
        if skip:
            pending = (i + 1, skip.group(1).strip())
        elif fence:
            indent, start = len(fence.group(1)), i
            i += 1
            while i < len(lines) and lines[i].strip() != "```":
                i += 1
            text = "\n".join(line[indent:] for line in lines[start + 1:i]) + "\n"
            blocks.append(Block(start + 1, fence.group(2), text, pending[1] if pending else None))
            pending = None
        elif lines[i].strip() and pending:
            raise ValueError(f"{name} line {pending[0]}: a 'not run' line must be right above a fenced block")
        i += 1
    return blocks


def expected_error(lines: list[str], end: int) -> str | None:
    """The ``# SomeError: message`` comment that starts at line ``end + 1`` of ``lines`` (1-based), continuation
    lines joined by one space; None when that line is not one."""
    first = EXPECTED_ERROR.match(lines[end]) if end < len(lines) else None
    if not first:
        return None
    parts = [f"{first.group(1)}: {first.group(2)}"]
    for line in lines[end + 1:]:
        more = CONTINUED.match(line)
        if not more:
            break
        parts.append(more.group(1))
    return " ".join(parts)


def squeeze(text: str) -> str:
    """``text`` with every run of whitespace made one space (a message shown over several comment lines)."""
    return " ".join(text.split())


def run_python(block: Block, namespace: dict, page: Path = README) -> None:
    """Run ``block`` of ``page`` statement by statement (top-level ``await`` allowed), with the page's line numbers
    in tracebacks, checking each ``# SomeError: message`` comment against what its statement raises."""
    lines = block.text.splitlines()
    for statement in ast.parse(block.text).body:
        where = f"{page_name(page)} line {block.line + statement.lineno}"
        expected = expected_error(lines, statement.end_lineno)
        module = ast.increment_lineno(ast.Module([statement], type_ignores=[]), block.line)
        code = compile(module, str(page), "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
        try:
            result = eval(code, namespace)
            if asyncio.iscoroutine(result):
                asyncio.run(result)
        except Exception as error:
            if expected is None:
                raise AssertionError(f"{where} (block at line {block.line}) raised {error!r}") from error
            got = f"{type(error).__name__}: {error}"
            assert squeeze(got) == squeeze(expected), f"{where}: expected\n  {expected}\ngot\n  {got}"
        else:
            assert expected is None, f"{where}: expected\n  {expected}\nbut it raised nothing"


class ToStdout(logging.Handler):
    """Writes a record's message to whatever ``sys.stdout`` is when it is logged (doctest replaces it), as
    Python's last-resort handler writes a warning to the terminal when logging is not configured."""

    def emit(self, record: logging.LogRecord) -> None:
        sys.stdout.write(self.format(record) + "\n")


def numbers_agree(want: str, got: str) -> bool:
    """``got`` reads as ``want`` (whitespace runs alike, ``...`` standing for any text) with each decimal number
    within :data:`FLOAT_RTOL` of the shown one and every whole number equal."""
    pattern, shown = [], []
    for piece in re.split(rf"(\.\.\.|\s+|{NUMBER.pattern})", want.strip()):
        if piece == "...":
            pattern.append(".*?")
        elif piece.isspace():
            pattern.append(r"\s+")
        elif NUMBER.fullmatch(piece):
            pattern.append(f"({NUMBER.pattern})")
            shown.append(piece)
        else:
            pattern.append(re.escape(piece))
    printed = re.fullmatch("".join(pattern), got.strip(), re.DOTALL)
    return printed is not None and all(
        int(a) == int(b) if a.lstrip("+-").isdigit() else abs(float(a) - float(b)) <= FLOAT_RTOL * abs(float(a))
        for a, b in zip(shown, printed.groups()))


class RoundingTolerantChecker(doctest.OutputChecker):
    """doctest's comparison, then :func:`numbers_agree` for output that differs from the README only in how
    another machine rounds."""

    def check_output(self, want: str, got: str, optionflags: int) -> bool:
        return super().check_output(want, got, optionflags) or numbers_agree(want, got)


def run_doctest(block: Block, namespace: dict, page: Path = README) -> str:
    """Run the ``>>>`` examples of ``block`` of ``page`` in ``namespace`` (updated with what they assign); doctest's
    report of every example whose output differs from the page (with its line, expected and got), or ''."""
    test = doctest.DocTestParser().get_doctest(block.text, namespace, f"{page_name(page)} block at line {block.line}",
                                               str(page), block.line)
    report = io.StringIO()
    handler, logger = ToStdout(logging.WARNING), logging.getLogger(interp_embed.__name__)
    logger.addHandler(handler)
    try:
        doctest.DocTestRunner(RoundingTolerantChecker(), optionflags=DOCTEST_FLAGS).run(test, out=report.write,
                                                                                        clear_globs=False)
    finally:
        logger.removeHandler(handler)
    namespace.update(test.globs)
    return report.getvalue()


@dataclass
class Demo:
    """What ``interp-embed demo`` left behind."""

    folder: Path
    """The working directory it ran in, holding the ``demo.iembed`` it wrote."""
    stdout: str
    """What it printed (its progress bars go to stderr)."""


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Demo:
    """``interp-embed demo`` run in a new working directory, as the README says to before its examples."""
    folder = tmp_path_factory.mktemp("readme")
    source = str(Path(interp_embed.__file__).parents[1])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [source, os.environ.get("PYTHONPATH")])))
    done = subprocess.run([sys.executable, "-m", "interp_embed", "demo"], cwd=folder, env=env,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    return Demo(folder, done.stdout)


@pytest.mark.parametrize("page", PAGES, ids=page_name)
def test_every_skip_gives_its_reason(page):
    blocks = parse_blocks(page.read_text(), page_name(page))
    assert not [b.line for b in blocks if b.not_run == ""], "a '<!-- not run: -->' line gives no reason"


def test_the_readme_has_examples_of_both_kinds():
    blocks = parse_blocks(README.read_text())
    assert [b for b in blocks if b.kind == "python"] and [b for b in blocks if b.kind == "doctest"]


LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def anchor(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation but hyphens and underscores dropped, spaces
    made hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def outside_fences(markdown: str) -> list[str]:
    """The lines of ``markdown`` that are not inside a fenced block."""
    lines, fenced = [], False
    for line in markdown.splitlines():
        if (not fenced and FENCE.match(line)) or (fenced and line.strip() == "```"):
            fenced = not fenced
        elif not fenced:
            lines.append(line)
    return lines


def anchors(markdown: str) -> set[str]:
    """The anchors of the headings of ``markdown`` (a repeated one numbered as GitHub numbers it)."""
    found = set()
    for line in outside_fences(markdown):
        if heading := re.match(r"^#{1,6} (.*)$", line):
            name, n = anchor(heading.group(1)), 1
            while name in found:
                name, n = f"{anchor(heading.group(1))}-{n}", n + 1
            found.add(name)
    return found


def links(markdown: str) -> list[str]:
    """The targets of the links and pictures of ``markdown``."""
    return [target for line in outside_fences(markdown) for target in LINK.findall(line)]


def test_a_heading_anchor_is_githubs():
    assert anchor("Out-of-core analysis and compact stores") == "out-of-core-analysis-and-compact-stores"
    assert anchor("The store: how results are kept") == "the-store-how-results-are-kept"
    assert anchors("# A\n```bash\n# not a heading\n```\n## A\n") == {"a", "a-1"}
    assert links("[a](x.md#b) ![c](d.png)\n```\n[e](f.md)\n```\n") == ["x.md#b", "d.png"]


@pytest.mark.parametrize("page", PAGES, ids=page_name)
def test_every_link_between_pages_arrives(page):
    """A link to a page names one that exists, and its ``#anchor`` a heading there; a picture's file exists."""
    broken = []
    for target in links(page.read_text()):
        if re.match(r"^[a-z]+:", target):
            continue                                # a web address
        path, _, fragment = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists():
            broken.append(f"{target}: no file {file}")
        elif fragment and fragment not in anchors(file.read_text()):
            broken.append(f"{target}: no heading #{fragment} in {page_name(file)}")
    assert not broken, f"{page_name(page)} links to what is not there:\n" + "\n".join(broken)


def test_the_readme_leads_to_every_page():
    linked = {(README.parent / target.partition("#")[0]).resolve() for target in links(README.read_text())}
    assert not [page_name(p) for p in PAGES[1:] if p.resolve() not in linked], "a docs page the README does not link"


def test_a_skip_belongs_to_the_block_under_it():
    text = "<!-- not run: needs a GPU -->\n\n```python\nx = 1\n```\n\n<!-- not run -->\n  ```python\n  y = 2\n  ```\n"
    assert [(b.line, b.not_run, b.text) for b in parse_blocks(text)] == [(3, "needs a GPU", "x = 1\n"), (8, "", "y = 2\n")]
    with pytest.raises(ValueError, match="line 1: a 'not run' line must be right above a fenced block"):
        parse_blocks("<!-- not run: needs a GPU -->\nSome text.\n\n```python\nx = 1\n```\n")


def test_a_wrong_number_fails(tmp_path):
    """A shown number that differs from the printed one by more than another machine's rounding is a failure with
    its line; so is a whole number one off."""
    block = parse_blocks("text\n\n```\n>>> round(2 / 3, 4)\n0.6667\n>>> round(1 / 3, 4)\n0.3343\n"
                         ">>> (24, 2**13 + 1)\n(24, 8192)\n```\n")[0]
    report = run_doctest(block, {})
    assert "line 6" in report and "Expected:\n    0.3343\nGot:\n    0.3333" in report, report
    assert "line 8" in report and "Expected:\n    (24, 8192)\nGot:\n    (24, 8193)" in report, report


def test_rounding_of_another_machine_passes():
    """A value one float16 step away (as another CPU's rounding can leave a stored activation) reads as shown, in
    a table whose column widths shift with it."""
    block = parse_blocks("text\n\n```\n>>> print(f'score {0.465021 * (1 + 2**-10):.6f}  n 12  q 3.06e-53')\n"
                         "score 0.465021  n 12  q 3.06e-53\n```\n")[0]
    assert run_doctest(block, {}) == ""


def test_an_expected_error_is_checked():
    run_python(Block(10, "python", "int('x')\n# ValueError: invalid literal for int() with base 10: 'x'\n", None), {})
    with pytest.raises(AssertionError, match="README.md line 11: expected"):
        run_python(Block(10, "python", "int('x')\n# ValueError: another message\n", None), {})
    with pytest.raises(AssertionError, match="raised nothing"):
        run_python(Block(10, "python", "int('1')\n# ValueError: invalid literal\n", None), {})


@pytest.mark.reader
@pytest.mark.slow
def test_demo_prints_what_the_readme_shows(demo):
    printed = demo.stdout.strip().splitlines()
    shown = [b for b in parse_blocks(README.read_text()) if b.text.startswith(printed[0])]
    assert shown, f"no block of README.md shows the demo's output, which starts with {printed[0]!r}"
    difference = "\n".join(unified_diff(shown[0].text.strip().splitlines(), printed, f"README.md line {shown[0].line}",
                                        "interp-embed demo", lineterm=""))
    assert not difference or numbers_agree(shown[0].text, demo.stdout), difference


def fresh_folder(demo: Demo, folder: Path) -> Path:
    """``folder`` holding a copy of the demo's store as the demo wrote it, for one page to run in."""
    shutil.copytree(demo.folder / "demo.iembed", folder / "demo.iembed")
    return folder


@pytest.mark.reader
@pytest.mark.slow
@pytest.mark.parametrize("page", PAGES, ids=page_name)
def test_page_runs_as_shown(page, demo, llm, tmp_path, monkeypatch):
    monkeypatch.chdir(fresh_folder(demo, tmp_path))
    monkeypatch.setenv("OPENAI_BASE_URL", llm.url)   # the labelling examples talk to the tests' local server
    namespace = {"__name__": "__main__"}
    failures = []
    for block in parse_blocks(page.read_text(), page_name(page)):
        if block.not_run is not None or block.kind is None:
            continue
        if block.kind == "python":
            run_python(block, namespace, page)
        else:
            failures.append(run_doctest(block, namespace, page))
    failures = "".join(failures)
    assert not failures, f"{page_name(page)} shows other output than its examples print:\n" + failures
