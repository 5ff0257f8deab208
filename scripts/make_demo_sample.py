"""Rebuild src/interp_embed/data/demo/fortunes.jsonl: short Debian fortunes in English, German and Spanish.

Fortunes are evaluation text for this project (the default SAE never trains on them), so the demo
shows what the SAE does on text it has not seen. Needs the Debian packages fortunes, fortunes-de, fortunes-es.
"""
import json
import random
from pathlib import Path

ROOT = Path("/usr/share/games/fortunes")
OUT = Path(__file__).resolve().parents[1] / "src/interp_embed/data/demo/fortunes.jsonl"
PER_LANGUAGE = 80


def entries(path: Path) -> list[str]:
    text = path.read_text("utf-8", errors="replace")
    return [e.strip() for e in text.split("\n%\n") if 20 <= len(e.strip()) <= 300]


def fortune_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix not in (".dat", ".u8"))


def main() -> None:
    rng = random.Random(0)
    rows = []
    for language, folder in (("en", ROOT), ("de", ROOT / "de"), ("es", ROOT / "es")):
        pool = [(e, p.name.split(".")[0]) for p in fortune_files(folder) for e in entries(p)]
        for text, source in rng.sample(pool, PER_LANGUAGE):
            rows.append({"text": text, "language": language, "source": source})
    rng.shuffle(rows)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), "utf-8")
    print(f"wrote {len(rows)} rows to {OUT}")


if __name__ == "__main__":
    main()
