"""SAELens' on-disk layout: a folder with ``cfg.json`` and ``sae_weights.safetensors``.

The weights are ``W_enc`` (d_in, d_sae), ``b_enc`` (d_sae), ``W_dec`` (d_sae, d_in), ``b_dec`` (d_in) and
whatever else the architecture has (JumpReLU's ``threshold``). Both the flat config of SAELens ≤ 5 and
the v6 config (with ``metadata``) are read; the v6 one is written, so SAELens and Neuronpedia tools read
our files too. Weights are safetensors only, so loading a folder can never execute code.
"""
from __future__ import annotations

import json
from dataclasses import MISSING, fields
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from ..encode.hook_point import HookPoint
from ..files import SAE_CONFIG, SAE_WEIGHTS, write_atomically
from .base import SparseAutoencoder, architectures, build_sae
from .config import SAEConfig

_SHARED_FIELDS = {f.name for f in fields(SAEConfig)}
_KEPT_METADATA = ("dataset_path", "context_size", "trainer", "training_tokens")


def config_from_saelens(raw: dict, source: str = SAE_CONFIG) -> SAEConfig:
    """Our config of a SAELens ``cfg.json`` (flat ≤ 5 style or v6 style); errors name ``source``."""
    meta = raw.get("metadata") or {}
    by_spelling = {spelling: cls for cls in architectures().values() for spelling in cls.saelens_names}
    spelling = raw.get("architecture") or raw.get("activation_fn_str") or "standard"
    if spelling not in by_spelling:
        raise ValueError(f"{source}: architecture {spelling!r} is not supported (use {', '.join(by_spelling)})")
    # SAELens ≤ 5 wrote a TopK SAE as architecture "standard" with activation_fn_str "topk".
    cls = by_spelling["topk" if raw.get("activation_fn_str") == "topk" else spelling]
    norm = raw.get("normalize_activations") or "none"
    if norm != "none":
        raise ValueError(f"{source}: normalize_activations={norm!r} is not supported; only 'none'")
    hook_name = meta.get("hook_name") or raw.get("hook_name") or ""
    try:
        hook = HookPoint.parse(hook_name)
    except ValueError as err:
        raise ValueError(f"{source}: {err}") from err
    # SAELens reads hook_z as (heads, head size); an SAE of all heads side by side says reshape_activations
    # "hook_z" (configs before SAELens 6 did not say it, and flattened every hook_z).
    flattened = "hook_z" if hook.site == "z" else "none"
    reshape = raw.get("reshape_activations", flattened)
    head = meta.get("hook_head_index", raw.get("hook_head_index"))
    if reshape != flattened or head is not None:
        raise ValueError(f"{source}: reshape_activations={reshape!r}, hook_head_index={head!r} with hook "
                         f"{hook_name!r} is not supported; use reshape_activations={flattened!r} and no "
                         "hook_head_index (an SAE reads all attention heads at once)")
    shared = dict(
        architecture=cls.architecture,
        d_in=int(raw["d_in"]),
        d_sae=int(raw["d_sae"]),
        hook_layer=hook.layer,
        hook_site=hook.site,
        apply_b_dec_to_input=bool(raw.get("apply_b_dec_to_input", True)),
        model_name=str(meta.get("model_name") or raw.get("model_name") or ""),
        extra={key: meta[key] for key in _KEPT_METADATA if key in meta},
    )
    # The architecture's own settings (TopK's k) sit at the top level in v6, in activation_fn_kwargs before.
    kwargs = raw.get("activation_fn_kwargs") or {}
    own, missing = {}, []
    for f in fields(cls.config_class):
        if f.name in _SHARED_FIELDS:
            continue
        if f.name in raw or f.name in kwargs:
            own[f.name] = raw.get(f.name, kwargs.get(f.name))
        elif f.default is MISSING and f.default_factory is MISSING:
            missing.append(f.name)
    if missing:
        raise ValueError(f"{source}: a {cls.architecture} SAE needs {', '.join(missing)} in its config")
    try:
        return cls.config_class(**shared, **own)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{source}: {err}") from err


def config_to_saelens(cfg: SAEConfig, dtype: torch.dtype = torch.float32) -> dict:
    """The ``cfg.json`` SAELens v6 writes for ``cfg``, weights stored as ``dtype``."""
    own = {f.name: getattr(cfg, f.name) for f in fields(cfg) if f.name not in _SHARED_FIELDS}
    return {
        "architecture": architectures()[cfg.architecture].saelens_names[0],
        "d_in": cfg.d_in,
        "d_sae": cfg.d_sae,
        "dtype": str(dtype).removeprefix("torch."),
        "apply_b_dec_to_input": cfg.apply_b_dec_to_input,
        "normalize_activations": "none",
        "reshape_activations": "hook_z" if cfg.hook_site == "z" else "none",
        "metadata": {
            "model_name": cfg.model_name,
            "hook_name": cfg.hook_point.name,
            **cfg.extra,
        },
        **own,
    }


def load_sae(folder: str | Path, device: str = "cpu", dtype: torch.dtype = torch.float32) -> SparseAutoencoder:
    """Load an SAE saved in SAELens' layout: ``encode(x)`` gives dense activations, ``encode_sparse(x)`` CSR ones.

    >>> sae = load_sae("path/to/sae")       # doctest: +SKIP
    >>> sae.cfg.architecture, sae.cfg.d_sae  # doctest: +SKIP
    ('topk', 8192)
    """
    folder = Path(folder)
    cfg_path, weights_path = folder / SAE_CONFIG, folder / SAE_WEIGHTS
    for path in (cfg_path, weights_path):
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing: an SAE folder holds {SAE_CONFIG} and {SAE_WEIGHTS}")
    try:
        raw_cfg = json.loads(cfg_path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{cfg_path} is not valid JSON: {err}") from err
    sae = build_sae(config_from_saelens(raw_cfg, source=str(cfg_path)))
    state = sae.state_from_saved(load_file(str(weights_path)))
    expected = {name: tuple(p.shape) for name, p in sae.named_parameters()}
    found = {name: tuple(t.shape) for name, t in state.items() if name in expected}
    if found != expected:
        raise ValueError(f"{weights_path}: expected tensors {expected} for {sae.architecture}, found {found}")
    sae.load_state_dict({name: state[name] for name in expected})
    return sae.to(device=device, dtype=dtype).eval()


def save_sae(sae: SparseAutoencoder, folder: str | Path, dtype: torch.dtype = torch.float32) -> Path:
    """Write the SAE as it computes at inference (:meth:`~SparseAutoencoder.inference_form`) in SAELens' layout.

    Each file is written atomically, the weights first and the config last, so a folder whose config is
    readable holds weights.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    sae = sae.inference_form()
    state = {name: t.to("cpu", dtype) for name, t in sae.state_for_saving().items()}
    write_atomically(folder / SAE_WEIGHTS, lambda tmp: save_file(state, str(tmp)))
    write_atomically(folder / SAE_CONFIG, json.dumps(config_to_saelens(sae.cfg, dtype), indent=2))
    return folder
