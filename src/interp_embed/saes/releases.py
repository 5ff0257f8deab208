"""SAELens' registry of pretrained releases, and turning one of its SAEs into a folder in SAELens' layout.

The registry is the ``pretrained_saes.yaml`` the ``sae-lens`` package ships (``pip install
'interp_embed[saelens]'``); it is read as data, without importing SAELens. An SAE of a release is fetched
from the Hugging Face hub once and kept under ``cache_root()/saes/saelens/<release>/<sae_id>``:

- in SAELens' own format, its ``cfg.json`` and ``sae_weights.safetensors`` are downloaded as they are;
- in a format SAELens converts on load (Gemma Scope's ``params.npz``, Llama Scope, ...), SAELens' own loader
  reads it and its config and weights are written in SAELens' layout.

Either way the release's settings from the registry come along (its config overrides, and the scaling
factor of ``normalize_activations="expected_average_only_in"`` as ``activation_scaler.json``), and the
folder is then read by :func:`interp_embed.architectures.load_sae` like any other.
"""
from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path, PurePosixPath

from ..architectures.config import read_config
from ..files import SAE_ACTIVATION_SCALER, SAE_CONFIG, SAE_WEIGHTS, atomic_folder, write_atomically

INSTALL = "pip install 'interp_embed[saelens]'"
REGISTRY_FILE = "pretrained_saes.yaml"


@dataclass(frozen=True)
class ReleaseSAE:
    """Where one SAE of a SAELens release lives on the hub, and what the registry says about it."""

    release: str
    """The release's name in the registry (``"gemma-scope-2b-pt-res-canonical"``)."""
    sae_id: str
    """The SAE's id within the release (``"layer_12/width_16k/canonical"``)."""
    repo_id: str
    """The Hugging Face repository that holds the release."""
    folder: str
    """The SAE's folder inside that repository."""
    model: str
    """The reader the release was trained on, as the registry names it."""
    conversion: str | None = None
    """The SAELens loader that converts the release's files (``"gemma_2"``...); None for SAELens' own format."""
    norm_scaling_factor: float | None = None
    """The input scaling factor of an SAE trained with ``normalize_activations="expected_average_only_in"``."""
    config_overrides: dict = field(default_factory=dict)
    """Config keys the registry sets for every SAE of the release, over the ones in its files."""


def registry_path() -> Path:
    """The registry file of the installed ``sae-lens`` package, found without importing it."""
    spec = importlib.util.find_spec("sae_lens")
    if spec is None or spec.origin is None:
        raise ImportError(f"SAELens' named releases need the sae-lens package: {INSTALL}")
    return Path(spec.origin).parent / REGISTRY_FILE


@cache
def _read_registry(path: Path) -> dict:
    import yaml

    try:
        with path.open(encoding="utf-8") as file:
            data = yaml.load(file, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
        raise ValueError(f"{path}: cannot read SAELens' registry of releases ({err})") from err
    if not isinstance(data, dict):
        raise ValueError(f"{path}: SAELens' registry of releases is not a mapping of release names")
    return data


def find_release(release: str, sae_id: str, registry: Path | None = None) -> ReleaseSAE | None:
    """The SAE ``sae_id`` of the named ``release`` in SAELens' registry (``registry``: its YAML file; default,
    the installed sae-lens package's); None if no release has that name. An unknown ``sae_id`` is an error
    that lists some of the release's ids."""
    path = registry or registry_path()
    entry = _read_registry(path).get(release)
    if entry is None:
        return None
    try:
        saes = {str(sae["id"]): sae for sae in entry["saes"]}
        if sae_id not in saes:
            shown = ", ".join(map(repr, list(saes)[:5])) + (", ..." if len(saes) > 5 else "")
            raise ValueError(f"release {release!r} of SAELens has no SAE {sae_id!r}; its ids are {shown}")
        sae = saes[sae_id]
        return ReleaseSAE(release=release, sae_id=sae_id, repo_id=str(entry["repo_id"]), folder=str(sae["path"]),
                          model=str(entry["model"]), conversion=entry.get("conversion_func"),
                          norm_scaling_factor=sae.get("norm_scaling_factor"),
                          config_overrides=dict(entry.get("config_overrides") or {}))
    except (KeyError, TypeError) as err:
        raise ValueError(f"{path}: release {release!r} is malformed ({err!r})") from err


def fetch_release(release: str, sae_id: str, cache_root: Path, registry: Path | None = None) -> Path:
    """The folder, in SAELens' layout, of SAE ``sae_id`` of ``release``: a release in SAELens' registry
    (``registry``: its YAML file; default, the installed sae-lens package's), or a Hugging Face repository
    whose folder ``sae_id`` is in SAELens' layout."""
    try:
        registry = registry or registry_path()
    except ImportError:
        registry = None
    found = find_release(release, sae_id, registry) if registry else None
    if found is None:
        if "/" in release:
            return _download_saelens_folder(release, _relative(sae_id), cache_root)
        if registry is None:
            raise ImportError(f"release {release!r} is not a Hugging Face repository (owner/name); SAELens' named "
                              f"releases need the sae-lens package: {INSTALL}")
        raise ValueError(f"release {release!r} is neither in SAELens' registry nor a Hugging Face repository "
                         "(owner/name)")
    folder = cache_root / "saes" / "saelens" / found.release / _relative(found.sae_id)
    if not (folder / SAE_CONFIG).is_file():
        with atomic_folder(folder, replace=False) as tmp:
            _write_release(found, tmp)
    return folder


def _relative(sae_id: str) -> str:
    """``sae_id`` as a folder inside a repository: relative, and never climbing out of it."""
    path = PurePosixPath(sae_id)
    if path.is_absolute() or ".." in path.parts or not path.parts:
        raise ValueError(f"sae_id must name a folder inside the release, not {sae_id!r}")
    return str(path)


def _download_saelens_folder(repo_id: str, folder: str, cache_root: Path) -> Path:
    import shutil

    from huggingface_hub import snapshot_download

    # The hub's own cache (which also answers offline) links its files to blobs, and an SAE folder's links are
    # refused: the folder is copied once into our cache as plain files.
    snapshot = Path(snapshot_download(repo_id=repo_id, allow_patterns=[f"{folder}/*"]))
    if not (snapshot / folder / SAE_CONFIG).is_file():
        raise FileNotFoundError(
            f"{repo_id} has no SAE folder {folder!r} with {SAE_CONFIG}; a release SAELens converts on load "
            f"(such as Gemma Scope's params.npz) is loaded by its SAELens release name ({INSTALL})")
    target = cache_root / "saes" / "hub" / repo_id / folder
    if not (target / SAE_CONFIG).is_file():
        with atomic_folder(target, replace=False) as tmp:
            shutil.copytree(snapshot / folder, tmp, dirs_exist_ok=True)
    return target


def _write_release(found: ReleaseSAE, tmp: Path) -> None:
    """Write the release's SAE into ``tmp`` in SAELens' layout, with the registry's settings."""
    import torch
    from safetensors.torch import save_file

    if found.conversion in (None, "sae_lens"):
        from huggingface_hub import hf_hub_download

        cfg = read_config(Path(hf_hub_download(found.repo_id, f"{found.folder}/{SAE_CONFIG}")))
        cfg.update(found.config_overrides)  # as SAELens applies them: over the file's top-level keys
        weights = Path(hf_hub_download(found.repo_id, f"{found.folder}/{SAE_WEIGHTS}"))
        write_atomically(tmp / SAE_WEIGHTS, weights.read_bytes())
    else:
        cfg, state = _convert_with_saelens(found)
        state = {name: tensor.to("cpu", torch.float32).contiguous() for name, tensor in state.items()}
        save_file(state, str(tmp / SAE_WEIGHTS))
    if found.norm_scaling_factor is not None:
        write_atomically(tmp / SAE_ACTIVATION_SCALER, json.dumps({"scaling_factor": found.norm_scaling_factor}))
    meta = cfg.get("metadata") if isinstance(cfg.get("metadata"), dict) else cfg
    meta["model_name"] = _hugging_face_name(str(meta.get("model_name") or found.model))
    write_atomically(tmp / SAE_CONFIG, json.dumps(cfg, indent=2))


def _convert_with_saelens(found: ReleaseSAE) -> tuple[dict, dict]:
    """Config and weights of a release SAELens converts on load, read by SAELens' own loader for its format."""
    try:
        from sae_lens.loading.pretrained_sae_loaders import NAMED_PRETRAINED_SAE_LOADERS, handle_config_defaulting
    except ImportError as err:
        raise ImportError(f"release {found.release!r} is stored in the {found.conversion!r} format, which SAELens "
                          f"converts on load: {INSTALL}") from err
    if found.conversion not in NAMED_PRETRAINED_SAE_LOADERS:
        raise ValueError(f"release {found.release!r} needs SAELens' {found.conversion!r} loader, which the installed "
                         "sae-lens lacks; upgrade it: pip install -U sae-lens")
    # As SAE.from_pretrained calls it: float32 on the CPU (a release's own dtype, such as Llama Scope's
    # bfloat16, would round the weights before they are converted).
    cfg, state, _ = NAMED_PRETRAINED_SAE_LOADERS[found.conversion](
        repo_id=found.repo_id, folder_name=found.folder, device="cpu", force_download=False,
        cfg_overrides={**found.config_overrides, "device": "cpu", "dtype": "float32"})
    return handle_config_defaulting(cfg), state


def _hugging_face_name(model: str) -> str:
    """The Hugging Face name of a model SAELens names as TransformerLens does (``gpt2-small`` → ``gpt2``),
    where TransformerLens (installed with sae-lens) knows it; else ``model`` as it is."""
    try:
        from transformer_lens.loading_from_pretrained import get_official_model_name
    except ImportError:
        return model
    try:
        return get_official_model_name(model)
    except ValueError:
        return model
