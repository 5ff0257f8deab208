"""JumpReLU (Rajamanoharan et al. 2024): a latent fires only above its own learned threshold."""
from __future__ import annotations

import torch

from .base import SparseAutoencoder, register_architecture
from .config import SAEConfig


def jump_relu(pre: torch.Tensor, threshold: torch.Tensor) -> torch.Tensor:
    """``pre`` where it is above both ``threshold`` (one per latent, or one for all) and 0; 0 elsewhere."""
    return pre * (pre > threshold) * (pre > 0)


@register_architecture("jumprelu")
class JumpReLUSAE(SparseAutoencoder):
    """``pre`` where it exceeds the latent's ``threshold``, else 0."""

    def __init__(self, cfg: SAEConfig):
        super().__init__(cfg)
        self.threshold = torch.nn.Parameter(torch.zeros(cfg.d_sae))

    def activation(self, pre: torch.Tensor) -> torch.Tensor:
        return jump_relu(pre, self.threshold)

    def state_from_saved(self, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        # SAELens' training form learns log(threshold); some releases were saved that way.
        if "threshold" not in state and "log_threshold" in state:
            state = dict(state)
            state["threshold"] = state.pop("log_threshold").exp()
        return state
