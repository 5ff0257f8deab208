"""SAELens' on-disk layout: a folder with ``cfg.json`` and ``sae_weights.safetensors``.

The weights are ``W_enc`` (d_in, d_sae), ``b_enc`` (d_sae), ``W_dec`` (d_sae, d_in), ``b_dec`` (d_in) and
whatever else the architecture has (JumpReLU's ``threshold``). Both the flat config of SAELens ≤ 5 and
the v6 config (with ``metadata``) are read; the v6 one is written, so SAELens and Neuronpedia tools read
our files too. Weights are safetensors only, so loading a folder can never execute code.

A loaded SAE encodes as SAELens' ``SAE.load_from_disk(folder).encode`` does, or the folder is refused with
the reason: an architecture SAELens ships that is not built here, a setting not built here, or a config key
this module does not know (a newer SAELens may have added it, and it might change the encoding). Two
settings SAELens can fold into the weights are folded when loading, as SAELens' own ``fold_*`` methods do:
``rescale_acts_by_decoder_norm`` (TopK) and ``normalize_activations="expected_average_only_in"`` with the
scaling factor a training checkpoint keeps in ``activation_scaler.json``.
"""
from __future__ import annotations

import json
import os
from dataclasses import MISSING, fields
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from ..files import SAE_ACTIVATION_SCALER, SAE_CONFIG, SAE_WEIGHTS, write_atomically
from ..spec.hook_point import HookPoint
from .base import SparseAutoencoder, architectures, build_sae
from .config import SAEConfig, read_config, sae_file

_SHARED_FIELDS = {f.name for f in fields(SAEConfig)}
_KEPT_METADATA = ("dataset_path", "context_size", "trainer", "training_tokens")

# Architectures SAELens ships that are not built here, and why.
_REFUSED_ARCHITECTURES = {
    "abstopk": "its activations may be negative, and an embedding keeps positive activations only",
    "matching_pursuit": "it encodes by iterative matching pursuit, not by one encoder pass",
    "temporal": "its encoder attends over earlier tokens, so a token's features depend on its context",
    "transcoder": "a transcoder predicts another hook's output; load it as an SAE of its input hook yourself",
    "skip_transcoder": "a transcoder predicts another hook's output; load it as an SAE of its input hook yourself",
    "jumprelu_transcoder": "a transcoder predicts another hook's output; load it as an SAE of its input hook yourself",
    "jumprelu_skip_transcoder": "a transcoder predicts another hook's output; load it as an SAE of its input "
                                "hook yourself",
    "batchtopk": "it is a training checkpoint (SAELens cannot load it either); use the folder the finished run "
                 "saved, a jumprelu SAE",
    "matryoshka_batchtopk": "it is a training checkpoint (SAELens cannot load it either); use the folder the "
                            "finished run saved, a jumprelu SAE",
}
# normalize_activations values that are folded into the weights on loading, or refused, and why.
_FOLDED_NORMALIZATION = "expected_average_only_in"
_REFUSED_NORMALIZATIONS = {
    "covariance_whitening": "its whitening statistics are folded into the weights when SAELens finishes "
                            "training; this folder holds a checkpoint from before that",
}
# Top-level keys of a SAELens v6 cfg.json that are read here (the rest of the encoding is in the weights).
_READ_KEYS = {"architecture", "d_in", "d_sae", "apply_b_dec_to_input", "normalize_activations",
              "reshape_activations", "metadata", "k", "rescale_acts_by_decoder_norm", "hook_name", "model_name",
              "activation_fn_str", "activation_fn_kwargs", "hook_head_index", "finetuning_scaling_factor"}
# Keys that cannot change an encoding: the weights' dtype and device (loading chooses both), provenance a release's
# registry entry may set (model_from_pretrained_kwargs is checked above), and the training settings SAELens
# writes into a checkpoint's config (penalties, schedules, initialisation, threshold steps).
_HARMLESS_KEYS = {
    "dtype", "device", "dataset_path", "model_from_pretrained_kwargs",
    "decoder_init_norm", "l1_coefficient", "lp_norm", "l1_warm_up_steps", "aux_loss_coefficient",
    "use_sparse_activations", "topk_threshold_lr", "matryoshka_widths", "use_matryoshka_aux_loss",
    "jumprelu_init_threshold", "jumprelu_bandwidth", "jumprelu_sparsity_loss_mode", "l0_coefficient",
    "l0_warm_up_steps", "pre_act_loss_coefficient", "jumprelu_tanh_scale", "jumprelu_ste_to_input", "target_l0",
}


def _refuse_what_is_not_built(raw: dict, source: str) -> None:
    """Refuse, by name, an architecture, setting or config key whose encoding this module does not compute."""
    meta = raw.get("metadata") or {}
    architecture = raw.get("architecture")
    if architecture in _REFUSED_ARCHITECTURES:
        raise ValueError(f"{source}: architecture {architecture!r} is not supported: "
                         f"{_REFUSED_ARCHITECTURES[architecture]}")
    norm = raw.get("normalize_activations")
    if norm in _REFUSED_NORMALIZATIONS:
        raise ValueError(f"{source}: normalize_activations={norm!r} is not supported: {_REFUSED_NORMALIZATIONS[norm]}")
    tl_kwargs = meta.get("model_from_pretrained_kwargs") or raw.get("model_from_pretrained_kwargs") or {}
    if isinstance(tl_kwargs, dict) and tl_kwargs.get("center_writing_weights"):
        raise ValueError(f"{source}: model_from_pretrained_kwargs center_writing_weights=True is not supported: the "
                         "SAE read TransformerLens' centred residual stream, which transformers' model does not give")
    if raw.get("finetuning_scaling_factor"):
        raise ValueError(f"{source}: finetuning_scaling_factor is not supported: it rescales the activations by a "
                         "tensor SAELens 6 no longer reads")
    if raw.get("rescale_acts_by_decoder_norm") and architecture != "topk":
        raise ValueError(f"{source}: rescale_acts_by_decoder_norm is only read for topk SAEs, not {architecture!r}")
    # A flat (SAELens ≤ 5) cfg.json holds the whole training run's settings, and that format no longer
    # changes; a v6 one holds the SAE's own, so a key unknown there is new and may change the encoding.
    unknown = sorted(set(raw) - _READ_KEYS - _HARMLESS_KEYS) if "metadata" in raw else []
    if unknown:
        raise ValueError(f"{source}: config keys {', '.join(map(repr, unknown))} are not known here and may change "
                         "the encoding; the SAE is refused rather than encoded without them")


def config_from_saelens(raw: dict, source: str = SAE_CONFIG) -> SAEConfig:
    """Our config of a SAELens ``cfg.json`` (flat ≤ 5 style or v6 style); errors name ``source``."""
    _refuse_what_is_not_built(raw, source)
    meta = raw.get("metadata") or {}
    by_spelling = {spelling: cls for cls in architectures().values() for spelling in cls.saelens_names}
    spelling = raw.get("architecture") or raw.get("activation_fn_str") or "standard"
    if spelling not in by_spelling:
        raise ValueError(f"{source}: architecture {spelling!r} is not supported (use {', '.join(by_spelling)})")
    # SAELens ≤ 5 wrote a TopK SAE as architecture "standard" with activation_fn_str "topk".
    cls = by_spelling["topk" if raw.get("activation_fn_str") == "topk" else spelling]
    # SAELens ≤ 5 wrote True for what is now "expected_average_only_in".
    norm = raw.get("normalize_activations")
    norm = _FOLDED_NORMALIZATION if norm is True else "none" if norm in (False, None) else norm
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
        d_in=_whole(raw.get("d_in"), "d_in", source),
        d_sae=_whole(raw.get("d_sae"), "d_sae", source),
        hook_layer=hook.layer,
        hook_site=hook.site,
        apply_b_dec_to_input=bool(raw.get("apply_b_dec_to_input", True)),
        normalize_activations=None if norm in ("none", _FOLDED_NORMALIZATION) else norm,
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


def _whole(value, name: str, source: str) -> int:
    """A width from a config: a JSON integer (or a float with no fraction, as some writers spell one)."""
    if isinstance(value, bool) or not (isinstance(value, int) or (isinstance(value, float) and value.is_integer())):
        raise ValueError(f"{source}: {name} must be a whole number, not {value!r}")
    return int(value)


def config_to_saelens(cfg: SAEConfig, dtype: torch.dtype = torch.float32) -> dict:
    """The ``cfg.json`` SAELens v6 writes for ``cfg``, weights stored as ``dtype``."""
    own = {f.name: getattr(cfg, f.name) for f in fields(cfg) if f.name not in _SHARED_FIELDS}
    return {
        "architecture": architectures()[cfg.architecture].saelens_names[0],
        "d_in": cfg.d_in,
        "d_sae": cfg.d_sae,
        "dtype": str(dtype).removeprefix("torch."),
        "apply_b_dec_to_input": cfg.apply_b_dec_to_input,
        "normalize_activations": cfg.normalize_activations or "none",
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
        if not os.path.lexists(path):
            raise FileNotFoundError(f"{path} is missing: an SAE folder holds {SAE_CONFIG} and {SAE_WEIGHTS}")
        sae_file(path)
    raw_cfg = read_config(cfg_path)
    cfg = config_from_saelens(raw_cfg, source=str(cfg_path))
    # Sizes are checked against the weights file's header before anything is allocated: a config can claim any
    # width, and building the SAE first would allocate what it claims.
    with torch.device("meta"):
        shell = build_sae(cfg)
    expected = {name: tuple(p.shape) for name, p in shell.named_parameters()}
    found = _saved_shapes(weights_path, shell)
    if found != expected:
        raise ValueError(f"{weights_path}: expected tensors {expected} for {shell.architecture}, found {found}")
    sae = build_sae(cfg)
    state = sae.state_from_saved(load_file(str(weights_path)))
    # Some SAELens releases carry a scaling_factor of ones that changes nothing; SAELens drops it too.
    if "scaling_factor" in state and torch.allclose(state["scaling_factor"], torch.ones(())):
        state = {name: t for name, t in state.items() if name != "scaling_factor"}
    found = {name: tuple(t.shape) for name, t in state.items()}
    if found != expected:
        raise ValueError(f"{weights_path}: expected tensors {expected} for {sae.architecture}, found {found}")
    for name, tensor in state.items():  # NaN weights would encode every token as nothing at all, silently
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise ValueError(f"{weights_path}: {name} holds values that are not finite (NaN or infinite); an SAE with "
                             "such weights cannot encode")
    state = _fold_saved_settings(state, raw_cfg, folder)
    sae.load_state_dict(state)
    return sae.to(device=device, dtype=dtype).eval()


def _saved_shapes(weights_path: Path, shell: SparseAutoencoder) -> dict[str, tuple[int, ...]]:
    """The shapes of the tensors a weights file holds, from its header alone (no data is read), named as ``shell``'s
    architecture names them; a scaling factor SAELens may add is left out (it is checked once loaded)."""
    try:
        with safe_open(str(weights_path), framework="pt") as weights:
            saved = {name: torch.empty(weights.get_slice(name).get_shape(), device="meta") for name in weights.keys()}
    except Exception as err:  # noqa: BLE001 — safetensors raises its own errors for a damaged file
        raise ValueError(f"{weights_path}: not a safetensors file ({err})") from err
    return {name: tuple(t.shape) for name, t in shell.state_from_saved(saved).items() if name != "scaling_factor"}


def _fold_saved_settings(state: dict[str, torch.Tensor], raw_cfg: dict, folder: Path) -> dict[str, torch.Tensor]:
    """The weights with two of SAELens' settings folded in, in the order and the arithmetic of SAELens' own
    ``fold_activation_norm_scaling_factor`` and ``fold_W_dec_norm``, so the plain architecture computes
    what the setting computes."""
    state = dict(state)
    norm = raw_cfg.get("normalize_activations")
    if norm in (True, _FOLDED_NORMALIZATION):
        # The SAE was trained on inputs times a factor: x·s @ W_enc = x @ (s·W_enc), and b_dec is in those units.
        factor = _scaling_factor(folder)
        state["W_enc"] = state["W_enc"] * factor
        state["W_dec"] = state["W_dec"] / factor
        state["b_dec"] = state["b_dec"] / factor
    if raw_cfg.get("rescale_acts_by_decoder_norm"):
        # TopK ranks pre-activations times the decoder rows' norms: folded, every decoder row has norm 1.
        norms = state["W_dec"].norm(dim=-1).clamp(min=1e-8)
        state["W_enc"] = state["W_enc"] * norms
        state["b_enc"] = state["b_enc"] * norms
        state["W_dec"] = state["W_dec"] / norms[:, None]
    return state


def _scaling_factor(folder: Path) -> float:
    """The input scaling factor a SAELens training checkpoint keeps beside its weights."""
    path = folder / SAE_ACTIVATION_SCALER
    reason = f"{folder / SAE_CONFIG}: normalize_activations='expected_average_only_in' multiplies every input by " \
             f"a scaling factor estimated in training, and {path}"
    if not os.path.lexists(path):
        raise ValueError(f"{reason} is missing, so the factor is unknown (a release's factor is in SAELens' registry: "
                         "load it with LocalSAE(release=..., sae_id=...))")
    try:
        factor = json.loads(sae_file(path).read_text())["scaling_factor"]
    except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, RecursionError) as err:
        raise ValueError(f"{reason} is not a JSON object with a scaling_factor ({err!r})") from err
    if isinstance(factor, bool) or not isinstance(factor, (int, float)) or not factor > 0:
        raise ValueError(f"{reason} gives scaling_factor={factor!r}, not a positive number")
    return float(factor)


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
