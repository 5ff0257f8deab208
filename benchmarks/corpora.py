"""Labelled corpora from Debian packages for benchmarks: each document has a ``text`` and a ``label`` (its topic).

- :func:`fortunes_by_topic`: entries of Debian's ``fortunes`` package, labelled by the topic file they come from
  (``food``, ``law``, ``startrek``...; Spanish ones from ``es/amistad.fortunes``...). An entry found in two topic files is left out: its label is ambiguous.
- :func:`package_descriptions`: package descriptions (short description + first paragraph of the long one),
  labelled by archive section, built as ``scripts/make_package_descriptions.py`` builds the tests' fixture but
  with other packages (the fixture's are left out) and more of them. Needs apt's English Translation index:
  ``apt-get update -o Acquire::Languages=en``.

Both are deterministic for a seed. ``held_out`` documents per topic are drawn apart from the rest (a column
``held_out`` marks them), so a benchmark can use them as examples that are never among the documents it ranks.
"""
from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import make_package_descriptions as packages  # noqa: E402

FORTUNES = Path("/usr/share/games/fortunes")
FIXTURE = ROOT / "tests" / "data" / "debian_packages.jsonl"
MAX_FORTUNE_CHARS = 700  # the few longer entries (whole stories) would dominate encoding time


def _entries(path: Path) -> list[str]:
    """The entries of one fortune file: text between lines holding only ``%``, stripped, empty ones dropped."""
    text = path.read_text(encoding="utf-8", errors="replace")
    return [e.strip() for e in text.split("\n%\n") if e.strip("%\n").strip()]


def _sample(pool: dict[str, list[dict]], per_topic: int, held_out: int, seed: int) -> pd.DataFrame:
    """``per_topic + held_out`` rows of each topic's pool (sorted first, so the draw depends on the seed only),
    the last ``held_out`` of them marked; all rows shuffled together."""
    rng = random.Random(seed)
    rows = []
    for topic in sorted(pool):
        candidates = sorted(pool[topic], key=lambda r: r["text"])
        if len(candidates) < per_topic + held_out:
            raise ValueError(f"topic {topic!r} has {len(candidates)} documents, fewer than {per_topic + held_out}")
        drawn = rng.sample(candidates, per_topic + held_out)
        rows += [{**r, "label": topic, "held_out": i >= per_topic} for i, r in enumerate(drawn)]
    rng.shuffle(rows)
    return pd.DataFrame(rows)


def fortunes_by_topic(topics: tuple[str, ...], per_topic: int = 100, held_out: int = 3, seed: int = 0,
                      directory: Path = FORTUNES, suffix: str = "") -> pd.DataFrame:
    """``per_topic`` fortunes of each topic file (``directory/topic + suffix``; at most MAX_FORTUNE_CHARS
    characters), plus ``held_out``."""
    found = {topic: _entries(directory / f"{topic}{suffix}") for topic in topics}
    seen: dict[str, int] = {}
    for texts in found.values():
        for text in set(texts):
            seen[text] = seen.get(text, 0) + 1
    pool = {topic: [{"text": t} for t in dict.fromkeys(texts) if seen[t] == 1 and len(t) <= MAX_FORTUNE_CHARS]
            for topic, texts in found.items()}
    return _sample(pool, per_topic, held_out, seed)


def package_descriptions(sections: tuple[str, ...], per_section: int = 45, held_out: int = 3, seed: int = 0,
                         lists: Path = packages.LISTS) -> pd.DataFrame:
    """``per_section`` package descriptions of each archive section, plus ``held_out``: one package per source
    package, none of the tests' fixture, no transitional or dummy package."""
    fixture = {json.loads(line)["package"] for line in FIXTURE.read_text("utf-8").splitlines() if line.strip()}
    long = packages.long_descriptions(lists)
    dump = subprocess.run(["apt-cache", "dumpavail"], check=True, capture_output=True, text=True).stdout
    pool: dict[str, dict[str, dict]] = {section: {} for section in sections}
    for s in packages.stanzas(dump):
        section = s.get("Section", "").split("/")[-1]  # contrib/games is games
        source = s.get("Source", s["Package"]).split()[0]
        if (section not in pool or s["Package"] in fixture
                or any(w in s.get("Description", "").lower() for w in packages.SKIP_WORDS)):
            continue
        text = packages.document(long.get(s.get("Description-md5"), ""))
        best = pool[section].get(source)
        if text is not None and (best is None or s["Package"] < best["package"]):
            pool[section][source] = {"package": s["Package"], "text": text}
    return _sample({section: list(rows.values()) for section, rows in pool.items()}, per_section, held_out, seed)
