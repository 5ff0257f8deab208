"""Sparse autoencoder architectures (ReLU, TopK, JumpReLU) behind one interface, and SAELens' on-disk layout.

Every architecture computes ``pre = (x - b_dec·[apply_b_dec_to_input]) @ W_enc + b_enc`` and differs only
in how it turns ``pre`` into sparse activations. ``encode_sparse`` returns activations already in CSR
form (on the SAE's device), so a dense (tokens × features) array never reaches the host.

On disk (SAELens layout): a folder with ``cfg.json`` and ``sae_weights.safetensors`` holding
``W_enc`` (d_in, d_sae), ``b_enc`` (d_sae), ``W_dec`` (d_sae, d_in), ``b_dec`` (d_in) and, for JumpReLU,
``threshold`` (d_sae). Both the flat SAELens ≤5 config and the v6 config (with ``metadata``) are read.
"""
from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import torch
from safetensors.torch import load_file, save_file

from ..files import SAE_CONFIG, SAE_WEIGHTS, write_atomically

Architecture = Literal["relu", "topk", "jumprelu"]
_ARCHITECTURE_ALIASES = {"standard": "relu", "relu": "relu", "topk": "topk", "jumprelu": "jumprelu"}


@dataclass(frozen=True)
class SAEConfig:
    """Plain-JSON description of an SAE: shape, architecture and where in which model it reads.

    >>> SAEConfig(architecture="topk", d_in=576, d_sae=8192, k=32, hook_layer=15).k
    32
    """

    architecture: Architecture
    d_in: int
    d_sae: int
    hook_layer: int
    k: int | None = None
    apply_b_dec_to_input: bool = True
    model_name: str = ""
    extra: dict = field(default_factory=dict)  # provenance kept from the source config (dataset, trainer...)

    def __post_init__(self) -> None:
        if self.architecture not in ("relu", "topk", "jumprelu"):
            raise ValueError(f"architecture must be relu, topk or jumprelu, not {self.architecture!r}")
        if self.architecture == "topk" and not (self.k and 0 < self.k <= self.d_sae):
            raise ValueError(f"a topk SAE needs 0 < k <= d_sae ({self.d_sae}); got k={self.k}")

    def to_saelens(self) -> dict:
        """The cfg.json SAELens v6 writes, so SAELens and Neuronpedia tools read our files too."""
        cfg = {
            "architecture": "standard" if self.architecture == "relu" else self.architecture,
            "d_in": self.d_in,
            "d_sae": self.d_sae,
            "dtype": "float32",
            "apply_b_dec_to_input": self.apply_b_dec_to_input,
            "normalize_activations": "none",
            "metadata": {
                "model_name": self.model_name,
                "hook_name": f"blocks.{self.hook_layer}.hook_resid_post",
                **self.extra,
            },
        }
        if self.k is not None:
            cfg["k"] = self.k
        return cfg

    @classmethod
    def from_saelens(cls, cfg: dict, source: str = SAE_CONFIG) -> "SAEConfig":
        """Read a SAELens cfg.json (flat ≤5 style or v6 style with ``metadata``)."""
        meta = cfg.get("metadata") or {}
        arch_name = cfg.get("architecture") or cfg.get("activation_fn_str") or "standard"
        if arch_name not in _ARCHITECTURE_ALIASES:
            raise ValueError(f"{source}: architecture {arch_name!r} is not supported (use standard/relu, topk or jumprelu)")
        architecture = _ARCHITECTURE_ALIASES[arch_name]
        if cfg.get("activation_fn_str") == "topk":
            architecture = "topk"
        norm = cfg.get("normalize_activations") or "none"
        if norm != "none":
            raise ValueError(f"{source}: normalize_activations={norm!r} is not supported; only 'none'")
        hook_name = meta.get("hook_name") or cfg.get("hook_name") or ""
        # The residual stream before block N is the one after block N-1, so both hook names map to a layer.
        match = re.fullmatch(r"blocks\.(\d+)\.hook_resid_(pre|post)", hook_name)
        if match is None or int(match.group(1)) - (match.group(2) == "pre") < 0:
            raise ValueError(
                f"{source}: hook {hook_name!r} is not a residual-stream hook after a decoder block "
                "(blocks.N.hook_resid_post or blocks.N.hook_resid_pre with N >= 1)"
            )
        layer = int(match.group(1)) - (match.group(2) == "pre")
        k = cfg.get("k", (cfg.get("activation_fn_kwargs") or {}).get("k"))
        keep = {key: meta[key] for key in ("dataset_path", "context_size", "trainer", "training_tokens") if key in meta}
        return cls(
            architecture=architecture,
            d_in=int(cfg["d_in"]),
            d_sae=int(cfg["d_sae"]),
            hook_layer=layer,
            k=int(k) if k is not None and architecture == "topk" else None,
            apply_b_dec_to_input=bool(cfg.get("apply_b_dec_to_input", True)),
            model_name=str(meta.get("model_name") or cfg.get("model_name") or ""),
            extra=keep,
        )

    def to_json(self) -> dict:
        return asdict(self)


@dataclass
class SparseActivations:
    """Per-token sparse activations in CSR form: row ``i`` is ``values[ptr[i]:ptr[i+1]]`` at ``features[...]``."""

    ptr: torch.Tensor  # int64 (n_tokens + 1,)
    features: torch.Tensor  # int64 (nnz,), ascending within a row
    values: torch.Tensor  # float (nnz,), all > 0


class SparseAutoencoder(torch.nn.Module):
    """Base class: parameters, reconstruction and the CSR encoding shared by every architecture."""

    def __init__(self, cfg: SAEConfig):
        super().__init__()
        self.cfg = cfg
        self.W_enc = torch.nn.Parameter(torch.zeros(cfg.d_in, cfg.d_sae))
        self.b_enc = torch.nn.Parameter(torch.zeros(cfg.d_sae))
        self.W_dec = torch.nn.Parameter(torch.zeros(cfg.d_sae, cfg.d_in))
        self.b_dec = torch.nn.Parameter(torch.zeros(cfg.d_in))

    def pre_activations(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.W_enc.dtype)
        if self.cfg.apply_b_dec_to_input:
            x = x - self.b_dec
        return x @ self.W_enc + self.b_enc

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Dense activations (…, d_sae); for training and checks, not for the encoding pipeline."""
        raise NotImplementedError

    def decode(self, acts: torch.Tensor) -> torch.Tensor:
        return acts.to(self.W_dec.dtype) @ self.W_dec + self.b_dec

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))

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
        return _concat(ptrs, feats, vals, x.device)

    def state_for_saving(self) -> dict[str, torch.Tensor]:
        return {name: p.detach().contiguous() for name, p in self.named_parameters()}


def _concat(ptrs, feats, vals, device) -> SparseActivations:
    empty_i = torch.zeros(0, dtype=torch.int64, device=device)
    return SparseActivations(
        ptr=torch.cat(ptrs),
        features=torch.cat(feats) if feats else empty_i,
        values=torch.cat(vals) if vals else torch.zeros(0, device=device),
    )


class ReLUSAE(SparseAutoencoder):
    """The standard SAE: ``relu(pre)``."""

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.pre_activations(x))


class JumpReLUSAE(SparseAutoencoder):
    """``pre`` where it exceeds a learned per-feature threshold, else 0 (Rajamanoharan et al. 2024)."""

    def __init__(self, cfg: SAEConfig):
        super().__init__(cfg)
        self.threshold = torch.nn.Parameter(torch.zeros(cfg.d_sae))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        pre = self.pre_activations(x)
        return pre * (pre > self.threshold) * (pre > 0)


class TopKSAE(SparseAutoencoder):
    """Keeps the ``k`` largest pre-activations of each token, then ReLU (Gao et al. 2024)."""

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        pre = self.pre_activations(x)
        top = pre.topk(self.cfg.k, dim=-1)
        return torch.zeros_like(pre).scatter_(-1, top.indices, torch.relu(top.values))

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
        return _concat(ptrs, feats, vals, x.device)


ARCHITECTURES: dict[str, type[SparseAutoencoder]] = {"relu": ReLUSAE, "topk": TopKSAE, "jumprelu": JumpReLUSAE}


def build_sae(cfg: SAEConfig) -> SparseAutoencoder:
    return ARCHITECTURES[cfg.architecture](cfg)


def load_sae(folder: str | Path, device: str = "cpu", dtype: torch.dtype = torch.float32) -> SparseAutoencoder:
    """Load an SAE saved in SAELens' layout; safetensors only, so loading can never execute code.

    >>> sae = load_sae("path/to/sae")       # doctest: +SKIP
    >>> sae.cfg.architecture, sae.cfg.d_sae  # doctest: +SKIP
    ('topk', 8192)
    """
    folder = Path(folder)
    cfg_path, weights_path = folder / SAE_CONFIG, folder / SAE_WEIGHTS
    for path in (cfg_path, weights_path):
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing: an SAE folder holds cfg.json and sae_weights.safetensors")
    try:
        raw_cfg = json.loads(cfg_path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{cfg_path} is not valid JSON: {err}") from err
    cfg = SAEConfig.from_saelens(raw_cfg, source=str(cfg_path))
    state = load_file(str(weights_path))
    if cfg.architecture == "jumprelu" and "threshold" not in state and "log_threshold" in state:
        state["threshold"] = state.pop("log_threshold").exp()
    sae = build_sae(cfg)
    expected = {name: tuple(p.shape) for name, p in sae.named_parameters()}
    found = {name: tuple(t.shape) for name, t in state.items() if name in expected}
    if found != expected:
        raise ValueError(f"{weights_path}: expected tensors {expected} for {cfg.architecture}, found {found}")
    sae.load_state_dict({name: state[name] for name in expected})
    return sae.to(device=device, dtype=dtype).eval()


def save_sae(sae: SparseAutoencoder, folder: str | Path, dtype: torch.dtype = torch.float32) -> Path:
    """Write ``cfg.json`` + ``sae_weights.safetensors`` (SAELens layout), each file atomically.

    The weights are written first and the config last, so a folder whose config is readable holds weights.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    cfg = sae.cfg.to_saelens()
    cfg["dtype"] = str(dtype).removeprefix("torch.")
    state = {k: v.to("cpu", dtype) for k, v in sae.state_for_saving().items()}
    write_atomically(folder / SAE_WEIGHTS, lambda tmp: save_file(state, str(tmp)))
    write_atomically(folder / SAE_CONFIG, json.dumps(cfg, indent=2))
    return folder
