"""Real documents of mixed length for benchmarks: entries of Debian's `fortunes` package.

Install the texts with `apt-get install fortunes` (fortunes-min alone has one short file). Entries are
separated by lines holding only `%`. The sample is deterministic for a given seed and size, so two
benchmark runs (and both pipelines inside one run) see the same documents in the same order.
"""

from __future__ import annotations

import random
from pathlib import Path

FORTUNES_DIR = Path("/usr/share/games/fortunes")

# Fortunes are short on the whole (median ~90 characters); without stratifying, a uniform sample would
# hardly exercise padding or long sequences. Half the sample is drawn from entries at or above this length.
LONG_CHARS = 300


def load_fortunes(directory: Path = FORTUNES_DIR) -> list[str]:
    """All distinct non-empty entries of the English fortune files in `directory`, in a stable order."""
    # Top-level plain files only: the .dat indexes are binary, .u8 are symlinks to the same texts, and the
    # subdirectories hold other languages (de/, es/) and the offensive set (off/).
    files = sorted(p for p in directory.iterdir() if p.is_file() and not p.is_symlink() and p.suffix != ".dat")
    if not files:
        raise FileNotFoundError(f"no fortune files in {directory}: install them with `apt-get install fortunes`")
    entries: dict[str, None] = {}  # a dict keeps first-seen order and drops repeats across files
    for path in files:
        text = path.read_text(encoding="utf-8", errors="replace")
        for entry in text.split("\n%\n"):
            entry = entry.strip("%\n").strip()
            if entry:
                entries[entry] = None
    return list(entries)


def sample_fortunes(n: int, seed: int = 0, directory: Path = FORTUNES_DIR) -> list[str]:
    """`n` entries, half shorter and half at least LONG_CHARS characters long, shuffled together."""
    entries = load_fortunes(directory)
    long_entries = [e for e in entries if len(e) >= LONG_CHARS]
    short_entries = [e for e in entries if len(e) < LONG_CHARS]
    n_long = n // 2
    if len(long_entries) < n_long or len(short_entries) < n - n_long:
        # fortunes-min alone has no long entries: a sample without them would not be the same benchmark.
        raise ValueError(f"{directory} has {len(long_entries)} long and {len(short_entries)} short entries, too few for "
                         f"{n} documents (the full set comes with `apt-get install fortunes`)")
    rng = random.Random(seed)
    sample = rng.sample(long_entries, n_long) + rng.sample(short_entries, n - n_long)
    rng.shuffle(sample)  # input order mixes lengths, as a real dataset would
    return sample
