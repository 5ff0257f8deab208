"""Configuration of SAE training: one dataclass for harvesting activations, one for the optimisation. No torch."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Literal

from ..spec.reader import ReaderSpec
from ..validation import check_int

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
            raise ValueError(f"model must be a model name or folder, not {self.model!r}")
        super().__post_init__()
        for name in ("forward_tokens", "buffer_tokens", "max_doc_tokens"):
            check_int(getattr(self, name), name, minimum=1)

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
        check_int(self.d_sae, "d_sae", minimum=1)
        check_int(self.k, "k", minimum=1, maximum=self.d_sae, maximum_name="d_sae")
        if not 0 < self.batch_topk_threshold_rate <= 1:
            raise ValueError(f"batch_topk_threshold_rate must be in (0, 1], not {self.batch_topk_threshold_rate!r}")
        check_int(self.k_aux, "k_aux", minimum=1)
        if not self.auxk_alpha >= 0:
            raise ValueError(f"auxk_alpha must be >= 0, not {self.auxk_alpha!r}")
        check_int(self.dead_tokens, "dead_tokens", minimum=1)
        if self.lr is not None and not self.lr > 0:
            raise ValueError(f"lr must be > 0 or None (the scaling law), not {self.lr!r}")
        check_int(self.warmup_steps, "warmup_steps", minimum=0)
        if not 0 <= self.decay_fraction < 1:
            raise ValueError(f"decay_fraction must be in [0, 1), not {self.decay_fraction!r}")
        check_int(self.batch_size, "batch_size", minimum=1)
        check_int(self.epochs, "epochs", minimum=1)
        if self.b_dec_init not in B_DEC_INITS:
            raise ValueError(f"b_dec_init must be one of {', '.join(map(repr, B_DEC_INITS))}, not {self.b_dec_init!r}")
        check_int(self.seed, "seed", minimum=0)
        check_int(self.checkpoint_every, "checkpoint_every", minimum=0)
        check_int(self.log_every, "log_every", minimum=1)

    def learning_rate(self) -> float:
        return self.lr if self.lr is not None else 2e-4 / math.sqrt(self.d_sae / 2**14)

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> "TrainConfig":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})
