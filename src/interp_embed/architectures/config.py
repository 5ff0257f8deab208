"""What an SAE is, as plain data: its architecture, its shape and where in which model it reads. No torch.

:class:`SAEConfig` holds what every architecture shares and is the whole config of those without
settings of their own (ReLU, JumpReLU). An architecture with settings of its own has a subclass
(:class:`TopKConfig` adds ``k``); the registry (:mod:`interp_embed.architectures.base`) ties each
architecture's name to its config class.
"""
from __future__ import annotations

import json
import os
import stat
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..spec.hook_point import HookPoint
from ..validation import Choice, Int, OrNone, validate_fields

NORMALIZATIONS = ("layer_norm", "constant_norm_rescale")


@dataclass(frozen=True, kw_only=True)
class SAEConfig:
    """Architecture, shape and hook point of an SAE.

    >>> SAEConfig(architecture="relu", d_in=576, d_sae=8192, hook_layer=15).d_sae
    8192
    """

    architecture: str
    """The architecture's registered name: ``"relu"`` (SAELens' ``"standard"``), ``"jumprelu"``, ``"topk"``..."""
    d_in: int
    """Width of the activations the SAE reads: the reader's hidden size."""
    d_sae: int
    """Number of latents (features)."""
    hook_layer: int
    """The decoder block the SAE reads in."""
    hook_site: str = "resid_post"
    """Where in that block: ``resid_post`` (its output, the residual stream), ``attn_out``, ``mlp_out``, ``z``
    or ``resid_pre`` at layer 0; together they are :attr:`hook_point`, SAELens' ``hook_name``."""
    apply_b_dec_to_input: bool = True
    """Subtract the decoder bias from the input before encoding (SAELens' default; Goodfire's SAEs do not)."""
    normalize_activations: str | None = None
    """How the SAE rescales each input vector before encoding it (SAELens' ``normalize_activations``): None
    reads it as it is; ``"layer_norm"`` subtracts its mean and divides by its standard deviation (+ 1e-5);
    ``"constant_norm_rescale"`` scales it to norm sqrt(d_in). (A fixed scaling factor is folded into the
    weights when the SAE is loaded, so it needs no setting.)"""
    model_name: str = ""
    """The reader the SAE was trained on, as its config names it (a Hugging Face name or folder); may be empty."""
    extra: dict = field(default_factory=dict)
    """Provenance kept from the source config (dataset, trainer, training tokens...), written back on save."""

    def __post_init__(self) -> None:
        if not isinstance(self.architecture, str) or not self.architecture:
            raise ValueError(f"architecture must be the non-empty name of an architecture, not {self.architecture!r}")
        validate_fields(self, d_in=Int(min=1), d_sae=Int(min=1), hook_layer=Int(),
                        normalize_activations=OrNone(Choice(NORMALIZATIONS)))
        HookPoint(self.hook_layer, self.hook_site)  # refuses a site that does not exist

    @property
    def hook_point(self) -> HookPoint:
        """Where in the reader the SAE reads (``.name`` is SAELens' ``hook_name``)."""
        return HookPoint(self.hook_layer, self.hook_site)

    def to_json(self) -> dict:
        # Configs recorded before sites and input normalization existed name neither; they stay equal.
        unset = {"hook_site": "resid_post", "normalize_activations": None}
        return {k: v for k, v in asdict(self).items() if k not in unset or v != unset[k]}


@dataclass(frozen=True, kw_only=True)
class TopKConfig(SAEConfig):
    """A TopK SAE: each token keeps its ``k`` largest pre-activations (Gao et al. 2024).

    >>> TopKConfig(d_in=576, d_sae=8192, hook_layer=15, k=32).architecture
    'topk'
    """

    architecture: str = "topk"
    """The architecture's registered name."""
    k: int
    """Active latents per token, in [1, d_sae]."""

    def __post_init__(self) -> None:
        super().__post_init__()
        validate_fields(self, k=Int(min=1, max="d_sae"))


@dataclass(frozen=True, kw_only=True)
class BatchTopKConfig(TopKConfig):
    """A BatchTopK SAE (Bussmann et al. 2024): a training batch keeps its ``k`` × tokens largest activations.

    It only exists while training; it is saved as the JumpReLU SAE it computes at inference.
    """

    architecture: str = "batchtopk"
    """The architecture's registered name."""
    k: int
    """Active latents per token on average over a batch, in [1, d_sae]."""
    threshold_rate: float = 0.01
    """Each training step moves the inference threshold this fraction of the way toward the smallest
    activation the batch kept (an exponential moving average; SAELens' ``topk_threshold_lr``), in (0, 1]."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0 < self.threshold_rate <= 1:
            raise ValueError(f"threshold_rate must be in (0, 1], not {self.threshold_rate!r}")


def sae_file(path: Path) -> Path:
    """``path`` if it is a regular file, not a link; a ValueError naming it otherwise (a FileNotFoundError if it is
    missing). An SAE folder may come from someone else: a link in it could lead to any file of this machine, and a
    FIFO would block its reader for ever, so neither is read."""
    mode = os.lstat(path).st_mode
    if stat.S_ISLNK(mode):
        raise ValueError(f"{path} is a symbolic link; the files of an SAE folder are read only as plain files, never "
                         "through a link: copy the file itself into the folder")
    if not stat.S_ISREG(mode):
        raise ValueError(f"{path} is not a regular file")
    return Path(path)


def read_config(path: Path) -> dict:
    """A SAELens ``cfg.json`` as a dict; a file that is not a plain JSON object is refused naming it."""
    try:
        raw = json.loads(sae_file(Path(path)).read_text("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as err:
        raise ValueError(f"{path}: cannot read the SAE config ({err})") from err
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: the SAE config is not a JSON object")
    return raw
