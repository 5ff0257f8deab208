"""The standard SAE (SAELens' ``"standard"``): ``relu(pre)``."""
from __future__ import annotations

import torch

from .base import SparseAutoencoder, register_architecture


@register_architecture("relu", saelens_names=("standard", "relu"))
class ReLUSAE(SparseAutoencoder):
    """Every latent whose pre-activation is positive fires."""

    def activation(self, pre: torch.Tensor) -> torch.Tensor:
        return torch.relu(pre)
