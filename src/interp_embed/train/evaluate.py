"""Held-out quality of an SAE on a reader: FVU, L0 and dead latents over the activations of
:func:`~interp_embed.reading.activations.read_windows`."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..architectures import SparseAutoencoder


@dataclass
class Quality:
    fvu: float
    l0: float
    dead_fraction: float
    tokens: int

    def to_json(self) -> dict:
        return {"fvu": self.fvu, "l0": self.l0, "dead_fraction": self.dead_fraction, "tokens": self.tokens}


@torch.inference_mode()
def reconstruction_quality(sae: SparseAutoencoder, chunks) -> Quality:
    """FVU = sum ||x - x_hat||^2 / sum ||x - mean(x)||^2 over all tokens; dead = latents that never fired.

    ``chunks`` yields ``(anything, activations)`` pairs, as :func:`~interp_embed.reading.activations.read_windows`
    does."""
    sq_err = sum_x = sum_x2 = 0.0
    n = active = 0
    fired = None
    for _, x in chunks:
        x = x.to(sae.W_enc.device, sae.W_enc.dtype)
        acts = sae.encode(x)
        _, to_input_scale = sae.normalize(x)  # an SAE that normalizes its input reconstructs the normalized input
        sq_err += float((x - to_input_scale(sae.decode(acts))).double().pow(2).sum())
        sum_x = sum_x + x.double().sum(0)
        sum_x2 += float(x.double().pow(2).sum())
        n += x.shape[0]
        on = acts > 0
        active += int(on.sum())
        fired = on.any(0) if fired is None else fired | on.any(0)
    total_var = sum_x2 - float((sum_x * sum_x).sum()) / n
    return Quality(fvu=sq_err / total_var, l0=active / n, dead_fraction=float((~fired).float().mean()), tokens=n)
