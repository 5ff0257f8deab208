"""Files shipped inside the package: the default SAE (with its labels) and the demo's sample of real text."""
from __future__ import annotations

from importlib import resources
from pathlib import Path

import pandas as pd


def default_sae_folder() -> Path:
    """The folder of the bundled SAE, in SAELens' layout plus ``feature_labels.json``/``feature_summaries.json``."""
    return Path(str(resources.files(__name__) / "default_sae"))


def demo_sample() -> pd.DataFrame:
    """240 short Debian fortunes — 80 English, 80 German, 80 Spanish — with ``text``, ``language``, ``source``.

    Fortunes are text the default SAE never trained on (see scripts/make_demo_sample.py).
    """
    return pd.read_json(resources.files(__name__) / "demo" / "fortunes.jsonl", lines=True)
