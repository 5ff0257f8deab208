"""Configuration of SAE training: one dataclass for harvesting activations, one for the optimisation."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Literal

from ..encode.config import BUNDLED_READER, Role


@dataclass(frozen=True)
class HarvestConfig:
    """Which reader activations the SAE learns from, and how they are batched and shuffled.

    Documents are wrapped in the reader's chat template as ``role`` (the encoding pipeline's default),
    and only the document's own tokens are kept, exactly the tokens the pipeline pools.
    """

    model: str = BUNDLED_READER
    layer: int = 15
    role: Role = "assistant"
    forward_tokens: int = 8192  # padded tokens per reader forward pass
    buffer_tokens: int = 131_072  # activations shuffled together (x d_model x 4 bytes of memory)
    max_doc_tokens: int = 512  # longer documents are read in windows of this many tokens

    def to_json(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class TrainConfig:
    """A TopK SAE trained as in Gao et al. 2024 ("Scaling and evaluating sparse autoencoders").

    >>> TrainConfig(d_sae=16384).learning_rate()
    0.0002
    """

    d_sae: int = 8192
    k: int = 32
    batch_topk: bool = False  # select k x batch activations over the whole batch (Bussmann et al. 2024)
    k_aux: int = 256  # latents in the AuxK reconstruction of the residual
    auxk_alpha: float = 1 / 32  # weight of the AuxK loss; 0 disables it
    dead_tokens: int = 1_000_000  # a latent is dead after this many tokens without firing
    lr: float | None = None  # None: 2e-4 / sqrt(d_sae / 2**14), the paper's scaling law
    warmup_steps: int = 100
    decay_fraction: float = 0.2  # the last fraction of steps decays the learning rate linearly to 0
    batch_size: int = 4096
    epochs: int = 1
    b_dec_init: Literal["geometric_median", "mean"] = "geometric_median"
    seed: int = 0
    checkpoint_every: int = 500  # steps; 0 writes only the final state
    log_every: int = 50
    device: str | None = None

    def learning_rate(self) -> float:
        return self.lr if self.lr is not None else 2e-4 / math.sqrt(self.d_sae / 2**14)

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> "TrainConfig":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})
