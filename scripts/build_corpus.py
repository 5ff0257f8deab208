"""Build the training corpus of the default SAE from Debian packages installable with apt-get.

Sources (prose, technical documentation, code, question-and-answer text; English, German, Spanish,
French, Italian, Portuguese) are rendered to plain text, cut into passages of at most 512 reader tokens,
deduplicated by paragraph and by passage, shuffled with a fixed seed and split into train / heldout /
labelling. Debian's ``fortunes*`` and package descriptions are never used: they are evaluation text.

    python scripts/build_corpus.py --out .corpus/corpus.parquet       # installs packages with apt-get

Writes a Parquet table (text, source, lang, split, n_tokens, ids) and prints counts per source and language.
"""
from __future__ import annotations

import argparse
import gzip
import hashlib
import html
import logging
import os
import random
import re
import subprocess
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd

logger = logging.getLogger("build_corpus")

PACKAGES = [
    "python3-doc", "linux-doc", "manpages", "manpages-de", "manpages-es", "manpages-fr", "manpages-it",
    "manpages-pt-br", "debian-faq", "debian-faq-de", "debian-faq-fr", "debian-faq-it", "debian-reference-en",
    "debian-reference-de", "debian-reference-es", "debian-reference-fr", "debian-reference-it",
    "jargon-text", "bible-kjv", "bible-kjv-text", "gnu-standards",
]
MAX_PASSAGE_TOKENS = 512
PASSAGE_CHARS = 1400  # packing target; passages still over MAX_PASSAGE_TOKENS are split again
SPLITS = {"train": 0.72, "heldout": 0.20, "labelling": 0.08}


class _TextFromHTML(HTMLParser):
    """Visible text of an HTML page, with a paragraph break at each block element."""

    BLOCK = {"p", "div", "br", "li", "h1", "h2", "h3", "h4", "h5", "h6", "pre", "tr", "dt", "dd", "table", "section"}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skip = 0
        self.in_pre = 0

    def handle_starttag(self, tag, attrs):
        if tag in ("script", "style", "head", "nav"):
            self.skip += 1
        if tag == "pre":
            self.in_pre += 1
        if tag in self.BLOCK:
            self.parts.append("\n\n")

    def handle_endtag(self, tag):
        if tag in ("script", "style", "head", "nav"):
            self.skip = max(0, self.skip - 1)
        if tag == "pre":
            self.in_pre = max(0, self.in_pre - 1)
        if tag in self.BLOCK:
            self.parts.append("\n\n")

    def handle_data(self, data):
        if not self.skip:
            self.parts.append(data if self.in_pre else re.sub(r"\s+", " ", data))


def html_text(path: Path) -> str:
    parser = _TextFromHTML()
    parser.feed(path.read_text(errors="replace"))
    return html.unescape("".join(parser.parts))


def read_maybe_gz(path: Path) -> str:
    data = path.read_bytes()
    if path.suffix == ".gz":
        data = gzip.decompress(data)
    return data.decode("utf-8", errors="replace")


def man_text(path: Path) -> str:
    """A man page rendered by man/groff with one line per paragraph (wide lines, no hyphenation)."""
    env = {**os.environ, "MANWIDTH": "1000", "MAN_KEEP_FORMATTING": "0", "LC_ALL": "C.UTF-8"}
    out = subprocess.run(["man", "-l", str(path)], capture_output=True, env=env, timeout=60).stdout
    text = out.decode("utf-8", errors="replace")
    text = re.sub(r".\x08", "", text)  # overstrike bold/underline, in case the pager kept it
    return "\n".join(line.rstrip() for line in text.splitlines())


def rst_text(path: Path) -> str:
    text = read_maybe_gz(path)
    # Drop reST directives' option lines and heading underlines; keep prose and code blocks.
    text = re.sub(r"^\s*[=\-~^\"'`#*+]{4,}\s*$", "", text, flags=re.M)
    text = re.sub(r"^\.\. [a-z\-]+::.*$", "", text, flags=re.M)
    return re.sub(r":[a-z:]+:`([^`]*)`", r"\1", text)


def bible_text() -> str:
    out = subprocess.run(["bible", "-l1000", "Gen1:1-Rev22:21"], capture_output=True, timeout=300).stdout
    lines = [re.sub(r"^\s*\d+ ", "", line) for line in out.decode("utf-8", errors="replace").splitlines()]
    return "\n".join(lines)


def sample_files(files: list[Path], seed: str) -> list[Path]:
    """Files in a seeded order, so that a token budget takes a varied, reproducible subset."""
    files = sorted(files)
    random.Random(seed).shuffle(files)
    return files


def sources() -> list[tuple[str, str, int, list, callable]]:
    """(source, lang, token budget, items in reading order, function turning an item into text)."""
    man = Path("/usr/share/man")
    doc = Path("/usr/share/doc")
    pydoc = doc / "python3.11" / "html" / "_sources"
    pylib = Path("/usr/lib/python3.11")
    ref = Path("/usr/share/debian-reference")
    faq = doc / "debian" / "FAQ"

    def man_pages(lang_dir: Path):
        return sample_files([p for p in lang_dir.glob("man[1-8]/*") if p.is_file()], str(lang_dir)), man_text

    def many(files, fn):
        return sample_files(list(files), "files"), fn

    table = [
        ("bible_kjv", "en", 700_000, ["kjv"], lambda _: bible_text()),
        ("jargon", "en", 250_000, [doc / "jargon-text" / "jargon.txt.gz"], read_maybe_gz),
        ("gnu_standards", "en", 200_000, [doc / "gnu-standards" / f for f in ("standards.text.gz", "maintain.text.gz")], read_maybe_gz),
        ("linux_doc", "en", 800_000, *many((doc / "linux-doc-6.1" / "Documentation").rglob("*.rst*"), rst_text)),
        ("python_doc", "en", 650_000, *many(pydoc.rglob("*.rst.txt"), rst_text)),
        ("python_stdlib", "code", 600_000, *many((p for p in pylib.rglob("*.py") if "test" not in p.parts and "site-packages" not in p.parts), lambda p: p.read_text(errors="replace"))),
        ("man_en", "en", 500_000, *man_pages(man)),
        ("debian_faq_en", "en", 120_000, *many(faq.glob("*.en.html"), html_text)),
    ]
    for lang, budget in (("de", 450_000), ("es", 330_000), ("fr", 400_000), ("it", 120_000), ("pt_BR", 90_000)):
        table.append((f"man_{lang}", lang.split("_")[0], budget, *man_pages(man / lang)))
    for lang in ("en", "de", "es", "fr", "it"):
        table.append((f"debian_reference_{lang}", lang, 200_000, *many(ref.glob(f"*.{lang}.html"), html_text)))
    for lang in ("de", "fr", "it"):
        table.append((f"debian_faq_{lang}", lang, 90_000, *many((faq / lang).glob(f"*.{lang}.html"), html_text)))
    return table


def paragraphs(text: str) -> list[str]:
    text = text.replace("\r\n", "\n").replace("\t", "    ")
    return [p.strip("\n") for p in re.split(r"\n\s*\n", text) if p.strip()]


def pack(paras: list[str]) -> list[str]:
    """Consecutive paragraphs joined into passages of about PASSAGE_CHARS characters."""
    out, cur = [], ""
    for para in paras:
        while len(para) > PASSAGE_CHARS:  # a long paragraph: cut at a line or space near the target
            cut = max(para.rfind("\n", 0, PASSAGE_CHARS), para.rfind(" ", 0, PASSAGE_CHARS))
            cut = cut if cut > PASSAGE_CHARS // 2 else PASSAGE_CHARS
            if cur:
                out.append(cur)
                cur = ""
            out.append(para[:cut].rstrip())
            para = para[cut:].lstrip()
        if cur and len(cur) + len(para) + 2 > PASSAGE_CHARS:
            out.append(cur)
            cur = ""
        cur = f"{cur}\n\n{para}" if cur else para
    if cur:
        out.append(cur)
    return out


def _norm_hash(text: str) -> bytes:
    return hashlib.blake2b(re.sub(r"\s+", " ", text.lower()).strip().encode(), digest_size=12).digest()


def _texts_until(pool, to_text, items, done, chunk: int = 16):
    """Texts of ``items`` in order, converted a chunk at a time in the pool, until ``done()``."""
    for start in range(0, len(items), chunk):
        for text in pool.map(to_text, items[start : start + chunk]):
            if done():
                return
            yield text


def build(out: Path, seed: int, scale: float) -> pd.DataFrame:
    from interp_embed.reading.reader import resolve_model_path
    from interp_embed.spec.reader import BUNDLED_READER
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path(BUNDLED_READER))
    seen_paras: set[bytes] = set()
    seen_passages: set[bytes] = set()
    rows = []
    for source, lang, budget, items, to_text in sources():
        budget = int(budget * scale)
        got = 0
        with ThreadPoolExecutor(2) as pool:  # man rendering is a subprocess per page
            for text in _texts_until(pool, to_text, items, lambda: got >= budget):
                fresh = []
                for para in paragraphs(text):
                    h = _norm_hash(para)
                    if len(para) > 40 and h in seen_paras:  # licence headers, "SEE ALSO" boilerplate...
                        continue
                    seen_paras.add(h)
                    fresh.append(para)
                for passage in pack(fresh):
                    if got >= budget:
                        break
                    if len(passage) < 80 or _norm_hash(passage) in seen_passages:
                        continue
                    seen_passages.add(_norm_hash(passage))
                    ids = tokenizer(passage, add_special_tokens=False, split_special_tokens=True)["input_ids"]
                    pieces = [passage] if len(ids) <= MAX_PASSAGE_TOKENS else [passage[: len(passage) // 2], passage[len(passage) // 2 :]]
                    for piece in pieces:
                        ids = tokenizer(piece, add_special_tokens=False, split_special_tokens=True)["input_ids"][:MAX_PASSAGE_TOKENS]
                        rows.append({"text": piece, "source": source, "lang": lang, "n_tokens": len(ids), "ids": ids})
                        got += len(ids)
        logger.info("%-22s %-5s %9d tokens", source, lang, got)
    rng = random.Random(seed)
    rng.shuffle(rows)
    bounds, acc = [], 0.0
    for name, frac in SPLITS.items():
        acc += frac
        bounds.append((name, int(round(acc * len(rows)))))
    start = 0
    for name, end in bounds:
        for row in rows[start:end]:
            row["split"] = name
        start = end
    table = pd.DataFrame(rows, columns=["text", "source", "lang", "split", "n_tokens", "ids"])
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    table.to_parquet(tmp, index=False)
    os.replace(tmp, out)
    return table


def print_counts(table: pd.DataFrame) -> None:
    print(table.pivot_table(index=["source", "lang"], columns="split", values="n_tokens", aggfunc="sum", fill_value=0, margins=True).to_string())
    print()
    print(table.pivot_table(index="lang", columns="split", values="n_tokens", aggfunc="sum", fill_value=0, margins=True).to_string())
    print(f"\n{len(table)} passages, {int(table.n_tokens.sum()):,} tokens (SmolLM2 tokenizer)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path(".corpus/corpus.parquet"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--scale", type=float, default=1.0, help="multiply every source's token budget (e.g. 0.01 for a smoke test)")
    ap.add_argument("--no-install", action="store_true", help="skip apt-get (packages already installed)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if not args.no_install:
        subprocess.run(["apt-get", "install", "-y", "-q", "--no-install-recommends", *PACKAGES], check=True,
                       env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
    print_counts(build(args.out, args.seed, args.scale))


if __name__ == "__main__":
    main()
