"""TopK (Gao et al. 2024): each token keeps its ``k`` largest pre-activations, then ReLU."""
from __future__ import annotations

import torch

from .base import SparseActivations, SparseAutoencoder, register_architecture
from .config import TopKConfig


def top_k(pre: torch.Tensor, k: int) -> torch.Tensor:
    """``relu`` of the ``k`` largest entries along the last dimension, zeros elsewhere.

    The same as the top ``k`` of ``relu(pre)``: taking ReLU after the selection only turns negatives to 0.
    """
    top = pre.topk(k, dim=-1)
    return torch.zeros_like(pre).scatter(-1, top.indices, torch.relu(top.values))


@register_architecture("topk", config=TopKConfig)
class TopKSAE(SparseAutoencoder):
    """Trains and infers with the same per-token top-k."""

    cfg: TopKConfig

    def activation(self, pre: torch.Tensor) -> torch.Tensor:
        return top_k(pre, self.cfg.k)

    @torch.inference_mode()
    def encode_sparse(self, x: torch.Tensor, token_block: int = 4096) -> SparseActivations:
        # topk already yields indices: no dense (tokens × d_sae) activation matrix is ever materialised
        # beyond the pre-activations of one block.
        ptrs, feats, vals = [torch.zeros(1, dtype=torch.int64, device=x.device)], [], []
        offset = 0
        for start in range(0, x.shape[0], token_block):
            top = self.pre_activations(x[start : start + token_block]).topk(self.cfg.k, dim=-1)
            order = top.indices.argsort(dim=-1)
            idx, val = top.indices.gather(-1, order), top.values.gather(-1, order)
            keep = val > 0
            ptrs.append(offset + keep.sum(-1).cumsum(0))
            offset += int(keep.sum())
            feats.append(idx[keep])
            vals.append(val[keep])
        return SparseActivations.concat(ptrs, feats, vals, x.device)
