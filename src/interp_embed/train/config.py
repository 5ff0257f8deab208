"""Configuration of SAE training: one dataclass for harvesting activations, one for the optimisation. No torch."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Literal

from ..spec.reader import ReaderSpec
from ..validation import Int, InvalidParameterError, validate_fields

B_DEC_INITS: tuple[str, ...] = ("geometric_median", "mean")


@dataclass(frozen=True)
class HarvestConfig(ReaderSpec):
    """Which reader activations the SAE learns from (the reader's model, layer, role and site, as a
    :class:`~interp_embed.spec.reader.ReaderSpec` describes any reader), and how they are batched and shuffled.

    Documents are wrapped in the reader's chat template as ``role`` (the encoding pipeline's default), and only
    the document's own tokens are kept, exactly the tokens the pipeline pools. They are read by
    :mod:`interp_embed.reading.activations`, the path encoding reads through, in windows without overlap.

    >>> HarvestConfig(layer=15).role
    'assistant'
    >>> HarvestConfig(layer=3, site="mlp_out").reader
    ReaderSpec(model='bundled:SmolLM2-135M-Instruct', layer=3, role='assistant', site='mlp_out')
    """

    forward_tokens: int = 8192
    """Padded document tokens per reader forward pass (the template prefix, computed once, not counted), >= 1."""
    buffer_tokens: int = 131_072
    """Activations shuffled together, >= 1; they take buffer_tokens × d_model × 4 bytes of memory."""
    max_doc_tokens: int = 512
    """Longer documents are read in windows of this many tokens (without overlap), >= 1."""

    def __post_init__(self) -> None:
        if not isinstance(self.model, str) or not self.model:
            raise InvalidParameterError(f"model must be a model name or folder, not {self.model!r}")
        super().__post_init__()
        validate_fields(self, forward_tokens=Int(min=1), buffer_tokens=Int(min=1), max_doc_tokens=Int(min=1))

    @property
    def reader(self) -> ReaderSpec:
        """The reader alone, as stores and SAE sources describe it."""
        return ReaderSpec(model=self.model, layer=self.layer, role=self.role, site=self.site)

    @classmethod
    def from_json(cls, data: dict) -> "HarvestConfig":
        """The config :meth:`to_json` wrote (a run's ``state.json`` records it under ``harvest``)."""
        return cls(**data)


@dataclass(frozen=True)
class TrainConfig:
    """A TopK (or BatchTopK) SAE trained as in Gao et al. 2024 ("Scaling and evaluating sparse autoencoders").

    >>> TrainConfig(d_sae=16384).learning_rate()
    0.0002
    """

    d_sae: int = 8192
    """Number of latents, >= 1."""
    k: int = 32
    """Active latents per token (per token on average with ``batch_topk``), in [1, d_sae]."""
    batch_topk: bool = False
    """Train a BatchTopK SAE (Bussmann et al. 2024): a batch keeps its k × tokens largest activations
    wherever they fall. It is saved as the JumpReLU SAE it computes at inference."""
    batch_topk_threshold_rate: float = 0.01
    """BatchTopK only: each step moves the saved JumpReLU threshold this fraction of the way toward the
    smallest activation the batch kept (an exponential moving average, as in SAELens), in (0, 1]."""
    k_aux: int = 256
    """Latents in the AuxK reconstruction of the residual (the dead latents' top-k), >= 1."""
    auxk_alpha: float = 1 / 32
    """Weight of the AuxK loss, >= 0; 0 disables it."""
    dead_tokens: int = 1_000_000
    """A latent is dead after this many training tokens without firing, >= 1."""
    lr: float | None = None
    """Adam's learning rate, > 0; None: 2e-4 / sqrt(d_sae / 2**14), the paper's scaling law."""
    warmup_steps: int = 100
    """Steps of linear learning-rate warm-up, >= 0."""
    decay_fraction: float = 0.2
    """The last fraction of steps decays the learning rate linearly to 0, in [0, 1)."""
    batch_size: int = 4096
    """Tokens per optimisation step, >= 1."""
    epochs: int = 1
    """Passes over the corpus, >= 1."""
    b_dec_init: Literal["geometric_median", "mean"] = "geometric_median"
    """Where the decoder bias starts: the geometric median or the mean of the first buffer's activations."""
    seed: int = 0
    """Seed of the initialisation and of the data order, >= 0."""
    checkpoint_every: int = 500
    """Steps between checkpoints, >= 0; 0 writes only the final state."""
    log_every: int = 50
    """Steps between entries of the training curve, >= 1."""
    device: str | None = None
    """Where to train (``"cpu"``, ``"cuda:1"``...); None: CUDA when present, else the CPU."""

    def __post_init__(self) -> None:
        validate_fields(self, d_sae=Int(min=1), k=Int(min=1, max="d_sae"), k_aux=Int(min=1), dead_tokens=Int(min=1),
                        warmup_steps=Int(), batch_size=Int(min=1), epochs=Int(min=1), seed=Int(),
                        checkpoint_every=Int(), log_every=Int(min=1))
        if not 0 < self.batch_topk_threshold_rate <= 1:
            raise InvalidParameterError(f"batch_topk_threshold_rate must be in (0, 1], not "
                                        f"{self.batch_topk_threshold_rate!r}")
        if not self.auxk_alpha >= 0:
            raise InvalidParameterError(f"auxk_alpha must be >= 0, not {self.auxk_alpha!r}")
        if self.lr is not None and not self.lr > 0:
            raise InvalidParameterError(f"lr must be > 0 or None (the scaling law), not {self.lr!r}")
        if not 0 <= self.decay_fraction < 1:
            raise InvalidParameterError(f"decay_fraction must be in [0, 1), not {self.decay_fraction!r}")
        if self.b_dec_init not in B_DEC_INITS:
            raise InvalidParameterError(f"b_dec_init must be one of {', '.join(map(repr, B_DEC_INITS))}, not "
                                        f"{self.b_dec_init!r}")

    def learning_rate(self) -> float:
        return self.lr if self.lr is not None else 2e-4 / math.sqrt(self.d_sae / 2**14)

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> "TrainConfig":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})
