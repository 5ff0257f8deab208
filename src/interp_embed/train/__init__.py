"""SAE training: harvest reader activations in a resumable stream and fit a TopK SAE (Gao et al. 2024)."""
from .config import HarvestConfig, TrainConfig
from .corpus import read_texts
from .trainer import train_from_file, train_sae

__all__ = ["HarvestConfig", "TrainConfig", "read_texts", "train_sae", "train_from_file"]
