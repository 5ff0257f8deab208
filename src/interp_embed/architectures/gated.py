"""Gated SAE (Rajamanoharan et al. 2024): one path decides which latents fire, another how strongly.

Both paths share ``W_enc``: a latent fires where ``x @ W_enc + b_gate > 0``, with the magnitude
``relu(x @ (W_enc · exp(r_mag)) + b_mag)``. It has no ``b_enc``. Only loaded (SAELens' ``"gated"``), never
trained here.
"""
from __future__ import annotations

import torch

from .base import SparseAutoencoder, register_architecture
from .config import SAEConfig


@register_architecture("gated")
class GatedSAE(SparseAutoencoder):
    """A latent's gate opens where its gating pre-activation is positive; its value is the magnitude path's ReLU."""

    def __init__(self, cfg: SAEConfig):
        super().__init__(cfg)
        del self.b_enc  # the two paths have biases of their own
        self.b_gate = torch.nn.Parameter(torch.zeros(cfg.d_sae))
        self.b_mag = torch.nn.Parameter(torch.zeros(cfg.d_sae))
        self.r_mag = torch.nn.Parameter(torch.zeros(cfg.d_sae))

    def pre_activations(self, x: torch.Tensor) -> torch.Tensor:
        """The gating and the magnitude pre-activations, stacked (…, 2, d_sae); each computed as SAELens does."""
        sae_in = self.sae_input(x)
        gating = sae_in @ self.W_enc + self.b_gate
        magnitude = sae_in @ (self.W_enc * self.r_mag.exp()) + self.b_mag
        return torch.stack((gating, magnitude), dim=-2)

    def activation(self, pre: torch.Tensor) -> torch.Tensor:
        gating, magnitude = pre.unbind(-2)
        return (gating > 0) * torch.relu(magnitude)
