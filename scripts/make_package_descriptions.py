"""Rebuild tests/data/debian_packages.jsonl: Debian package descriptions labelled by their archive section.

Real text with a ground truth for retrieval: each row is one package's short description and the first
paragraph of its long description, and its section ("games", "fonts", ...) says what it is about. The
default SAE never trained on package descriptions, so this is unseen text for it. One package per source
package (no near-duplicates like fonts-noto-*), transitional and dummy packages left out, drawn with a
fixed seed.

Sections and short descriptions come from ``apt-cache dumpavail``; long descriptions from apt's
Translation-en index, which many container images do not download. Fetch it with
``apt-get update -o Acquire::Languages=en`` (the fixture was made from Debian bookworm main, amd64).
"""
import argparse
import json
import random
import subprocess
from collections.abc import Iterator
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "tests/data/debian_packages.jsonl"
LISTS = Path("/var/lib/apt/lists")
SECTIONS = ("games", "fonts", "sound", "libs", "python", "math", "graphics", "mail", "httpd", "editors",
            "database", "vcs")
PER_SECTION = 30
PARAGRAPH_CHARS = (60, 400)  # first paragraphs outside this range are a name only, or too long to encode quickly
SKIP_WORDS = ("transitional", "dummy", "debug symbols", "metapackage")


def stanzas(text: str) -> Iterator[dict[str, str]]:
    """The paragraphs of a Debian control file as {field: value}; continuation lines keep their newline."""
    for block in text.split("\n\n"):
        fields, key = {}, None
        for line in block.splitlines():
            if line[:1] in (" ", "\t") and key is not None:
                fields[key] += "\n" + line[1:]
            elif ":" in line:
                key, _, value = line.partition(":")
                fields[key] = value.strip()
        if fields:
            yield fields


def long_descriptions(lists: Path) -> dict[str, str]:
    """Description-md5 → English long description, from every Translation-en index under ``lists``."""
    files = sorted(lists.glob("*_i18n_Translation-en*"))
    if not files:
        raise SystemExit(f"no Translation-en index in {lists}; run: apt-get update -o Acquire::Languages=en")
    out = {}
    for path in files:  # apt-helper reads the index whatever its compression
        text = subprocess.run(["/usr/lib/apt/apt-helper", "cat-file", str(path)], check=True, capture_output=True,
                              text=True).stdout
        out.update((s["Description-md5"], s["Description-en"]) for s in stanzas(text) if "Description-en" in s)
    return out


def document(description: str) -> str | None:
    """The short description, a newline, and the first paragraph of the long one; None if that paragraph is
    missing or outside PARAGRAPH_CHARS."""
    short, _, body = description.partition("\n")
    paragraph = " ".join(body.split("\n.\n")[0].split())
    if not PARAGRAPH_CHARS[0] <= len(paragraph) <= PARAGRAPH_CHARS[1]:
        return None
    return f"{short.strip()}\n{paragraph}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lists", type=Path, default=LISTS, help="apt's lists folder holding Translation-en")
    args = parser.parse_args()
    long = long_descriptions(args.lists)
    packages = subprocess.run(["apt-cache", "dumpavail"], check=True, capture_output=True, text=True).stdout
    candidates: dict[str, dict[str, dict]] = {section: {} for section in SECTIONS}
    for s in stanzas(packages):
        section, source = s.get("Section"), s.get("Source", s["Package"]).split()[0]
        if section not in candidates or any(w in s.get("Description", "").lower() for w in SKIP_WORDS):
            continue
        text = document(long.get(s.get("Description-md5"), ""))
        if text is not None:  # one package per source package: the alphabetically first
            best = candidates[section].get(source)
            if best is None or s["Package"] < best["package"]:
                candidates[section][source] = {"package": s["Package"], "section": section, "text": text}
    rng = random.Random(0)
    rows = []
    for section in SECTIONS:
        pool = sorted(candidates[section].values(), key=lambda r: r["package"])
        rows += rng.sample(pool, PER_SECTION)
    rng.shuffle(rows)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), "utf-8")
    print(f"wrote {len(rows)} rows ({OUT.stat().st_size // 1024} KB) to {OUT}")


if __name__ == "__main__":
    main()
