"""SAE training: harvest reader activations in a resumable stream and fit a TopK or BatchTopK SAE (Gao et al. 2024).

The configs and the corpus reader import without torch; ``train_sae`` and ``train_from_file`` load it on first use.
"""
from ..lazy import lazy_exports
from .config import HarvestConfig, TrainConfig
from .corpus import read_texts

__all__ = ["HarvestConfig", "TrainConfig", "read_texts", "train_sae", "train_from_file"]

__getattr__ = lazy_exports(__name__, {"train_sae": ".trainer", "train_from_file": ".trainer"})
