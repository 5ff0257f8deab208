"""The interface every SAE architecture shares, and the registry that names them.

Every architecture computes ``pre = (normalize(x) - b_dec·[apply_b_dec_to_input]) @ W_enc + b_enc`` and differs in
how it turns ``pre`` into activations: :meth:`~SparseAutoencoder.activation` at inference and
:meth:`~SparseAutoencoder.training_activation` while training (the same function unless the architecture
says otherwise). ``encode_sparse`` returns activations already in CSR form, on the SAE's device, so a
dense (tokens × features) array never reaches the host.

An architecture is one class in one module of this package, registered with :func:`register_architecture`,
which names it, gives its config class and the spellings SAELens' ``cfg.json`` uses for it.
"""
from __future__ import annotations

import pkgutil
import sys
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from importlib import import_module
from typing import ClassVar, TypeVar

import torch

from .config import SAEConfig

SAEClass = TypeVar("SAEClass", bound=type)

_REGISTRY: dict[str, type[SparseAutoencoder]] = {}


def register_architecture(name: str, *, config: type[SAEConfig] = SAEConfig,
                          saelens_names: tuple[str, ...] | None = None) -> Callable[[SAEClass], SAEClass]:
    """Class decorator that makes an architecture loadable by name.

    ``name`` is its ``architecture`` in our configs; ``config`` its config class; ``saelens_names`` the
    spellings of SAELens' ``cfg.json`` read as this architecture, the first one written on save (default:
    ``name``; empty for an architecture that is only trained and saved as another).

    >>> @register_architecture("relu", saelens_names=("standard", "relu"))   # doctest: +SKIP
    ... class ReLUSAE(SparseAutoencoder): ...
    """

    def register(cls: SAEClass) -> SAEClass:
        spellings = (name,) if saelens_names is None else tuple(saelens_names)
        taken = {spelling for known in _REGISTRY.values() for spelling in known.saelens_names}
        clashes = sorted(({name} & _REGISTRY.keys()) | (taken & set(spellings)))
        if clashes:
            raise ValueError(f"{', '.join(map(repr, clashes))} already registered: architecture names and SAELens "
                             f"spellings name one architecture each (registering {cls.__name__} as {name!r})")
        cls.architecture, cls.config_class, cls.saelens_names = name, config, spellings
        _REGISTRY[name] = cls
        return cls

    return register


def architectures() -> dict[str, type[SparseAutoencoder]]:
    """Every registered architecture class by name."""
    _import_architecture_modules()
    return dict(_REGISTRY)


@cache
def _import_architecture_modules() -> None:
    # A class registers itself when its module is imported; importing every module of this package
    # means that adding an architecture is adding a module, with no list to keep in step.
    for module in pkgutil.iter_modules(sys.modules[__package__].__path__):
        import_module(f"{__package__}.{module.name}")


def build_sae(cfg: SAEConfig) -> SparseAutoencoder:
    """A zero-initialised SAE of ``cfg``'s architecture."""
    known = architectures()
    if cfg.architecture not in known:
        raise ValueError(f"architecture must be one of {', '.join(sorted(known))}, not {cfg.architecture!r}")
    return known[cfg.architecture](cfg)


@dataclass
class SparseActivations:
    """Per-token sparse activations in CSR form: row ``i`` is ``values[ptr[i]:ptr[i+1]]`` at ``features[...]``."""

    ptr: torch.Tensor  # int64 (n_tokens + 1,)
    features: torch.Tensor  # int64 (nnz,), ascending within a row
    values: torch.Tensor  # float (nnz,), all > 0

    @classmethod
    def concat(cls, ptrs: list[torch.Tensor], features: list[torch.Tensor], values: list[torch.Tensor],
               device: torch.device) -> SparseActivations:
        """Join blocks whose pointers already carry the offsets of the blocks before them."""
        return cls(
            ptr=torch.cat(ptrs),
            features=torch.cat(features) if features else torch.zeros(0, dtype=torch.int64, device=device),
            values=torch.cat(values) if values else torch.zeros(0, device=device),
        )


class SparseAutoencoder(torch.nn.Module, ABC):
    """Parameters, reconstruction and the CSR encoding shared by every architecture."""

    # Set by register_architecture.
    architecture: ClassVar[str]
    config_class: ClassVar[type[SAEConfig]]
    saelens_names: ClassVar[tuple[str, ...]]

    def __init__(self, cfg: SAEConfig):
        super().__init__()
        if type(cfg) is not self.config_class or cfg.architecture != self.architecture:
            raise ValueError(f"{type(self).__name__} needs a {self.config_class.__name__} with architecture="
                             f"{self.architecture!r}, not a {type(cfg).__name__} with architecture="
                             f"{cfg.architecture!r}")
        self.cfg = cfg
        self.W_enc = torch.nn.Parameter(torch.zeros(cfg.d_in, cfg.d_sae))
        self.b_enc = torch.nn.Parameter(torch.zeros(cfg.d_sae))
        self.W_dec = torch.nn.Parameter(torch.zeros(cfg.d_sae, cfg.d_in))
        self.b_dec = torch.nn.Parameter(torch.zeros(cfg.d_in))

    def normalize(self, x: torch.Tensor) -> tuple[torch.Tensor, Callable[[torch.Tensor], torch.Tensor]]:
        """``x`` rescaled as the SAE reads it (``cfg.normalize_activations``), and the map of a reconstruction
        back to the scale of ``x``."""
        if self.cfg.normalize_activations == "layer_norm":
            mean = x.mean(-1, keepdim=True)
            std = (x - mean).std(-1, keepdim=True)
            return (x - mean) / (std + 1e-5), lambda y: y * std + mean
        if self.cfg.normalize_activations == "constant_norm_rescale":
            scale = self.cfg.d_in**0.5 / x.norm(dim=-1, keepdim=True)
            return x * scale, lambda y: y / scale
        return x, lambda y: y

    def sae_input(self, x: torch.Tensor) -> torch.Tensor:
        """What the encoder multiplies: ``x`` in the SAE's dtype, normalized, less ``b_dec`` if the SAE says so."""
        x, _ = self.normalize(x.to(self.W_enc.dtype))
        return x - self.b_dec if self.cfg.apply_b_dec_to_input else x

    def pre_activations(self, x: torch.Tensor) -> torch.Tensor:
        return self.sae_input(x) @ self.W_enc + self.b_enc

    @abstractmethod
    def activation(self, pre: torch.Tensor) -> torch.Tensor:
        """Activations (…, d_sae) from pre-activations, as the SAE computes them at inference."""

    def training_activation(self, pre: torch.Tensor) -> torch.Tensor:
        """Activations from the pre-activations of one training batch (tokens, d_sae)."""
        return self.activation(pre)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Dense activations (…, d_sae); for training and checks, not for the encoding pipeline."""
        return self.activation(self.pre_activations(x))

    def decode(self, acts: torch.Tensor) -> torch.Tensor:
        """The reconstruction of the input as the SAE reads it: normalized, for an SAE that normalizes its input
        (:meth:`forward` maps it back to the input's scale)."""
        return acts.to(self.W_dec.dtype) @ self.W_dec + self.b_dec

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The reconstruction of ``x``, at the scale of ``x``."""
        _, to_input_scale = self.normalize(x.to(self.W_enc.dtype))
        return to_input_scale(self.decode(self.encode(x)))

    @torch.inference_mode()
    def encode_sparse(self, x: torch.Tensor, token_block: int = 1024) -> SparseActivations:
        """CSR activations of ``x`` (tokens, d_in), computed ``token_block`` tokens at a time to bound memory."""
        ptrs, feats, vals = [torch.zeros(1, dtype=torch.int64, device=x.device)], [], []
        offset = 0
        for start in range(0, x.shape[0], token_block):
            dense = self.encode(x[start : start + token_block])
            rows, cols = dense.nonzero(as_tuple=True)  # row-major, columns ascending: canonical CSR
            counts = torch.bincount(rows, minlength=dense.shape[0])
            ptrs.append(offset + counts.cumsum(0))
            offset += int(rows.numel())
            feats.append(cols)
            vals.append(dense[rows, cols])
        return SparseActivations.concat(ptrs, feats, vals, x.device)

    def inference_form(self) -> SparseAutoencoder:
        """The SAE that computes at inference what this one does, as it is saved; itself unless overridden."""
        return self

    def state_for_saving(self) -> dict[str, torch.Tensor]:
        """Tensors named as SAELens saves them."""
        return {name: p.detach().contiguous() for name, p in self.named_parameters()}

    def state_from_saved(self, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Saved tensors renamed to this class's parameters (an architecture whose files vary overrides it)."""
        return state
