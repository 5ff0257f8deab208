"""BatchTopK (Bussmann et al. 2024): trained with a batch-level top-k, saved as the JumpReLU SAE it is at inference.

A training batch keeps its ``k`` × tokens largest activations, wherever they fall, so a token may use more
or fewer than ``k`` latents. That selection needs the whole batch; at inference a token is encoded alone,
so, as in SAELens, every training step moves one threshold toward the smallest activation the batch kept
(an exponential moving average), and inference keeps the activations above it: a JumpReLU SAE whose
latents share that threshold. That JumpReLU SAE is what is saved.
"""
from __future__ import annotations

from dataclasses import fields

import torch

from .base import SparseAutoencoder, register_architecture
from .config import BatchTopKConfig, SAEConfig
from .jumprelu import JumpReLUSAE, jump_relu
from .topk import top_k


@register_architecture("batchtopk", config=BatchTopKConfig, saelens_names=())
class BatchTopKSAE(SparseAutoencoder):
    """Training form: the batch's ``k`` × tokens largest activations; inference: those above the learned threshold."""

    cfg: BatchTopKConfig

    def __init__(self, cfg: BatchTopKConfig):
        super().__init__(cfg)
        # float64, as in SAELens: thousands of 1 % steps would lose digits in float32.
        self.register_buffer("threshold", torch.zeros((), dtype=torch.float64))

    def activation(self, pre: torch.Tensor) -> torch.Tensor:
        return jump_relu(pre, self.threshold.to(pre.dtype))

    def training_activation(self, pre: torch.Tensor) -> torch.Tensor:
        """The batch-level top-k; in training mode it also moves the threshold toward the smallest activation
        it kept (as batch norm updates its running statistics), so evaluating a trained SAE leaves it be."""
        acts = top_k(pre.flatten(), self.cfg.k * pre.shape[0]).view_as(pre)
        if self.training:
            kept = acts[acts > 0].detach()
            if kept.numel():
                rate = self.cfg.threshold_rate
                self.threshold.copy_((1 - rate) * self.threshold + rate * kept.min().to(self.threshold.dtype))
        return acts

    def inference_form(self) -> JumpReLUSAE:
        shared = {f.name: getattr(self.cfg, f.name) for f in fields(SAEConfig)}
        jump = JumpReLUSAE(SAEConfig(**{**shared, "architecture": JumpReLUSAE.architecture}))
        weights = {name: p.detach() for name, p in self.named_parameters()}
        # The threshold rounded as activation() rounds it, so both forms keep exactly the same latents.
        threshold = self.threshold.to(self.W_enc.dtype).expand(self.cfg.d_sae)
        jump.load_state_dict({**weights, "threshold": threshold})
        return jump.to(device=self.W_enc.device, dtype=self.W_enc.dtype)
