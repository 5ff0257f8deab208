"""Where SAEs come from: the bundled default, a SAELens folder or hub release, and Goodfire's releases."""
from __future__ import annotations

import inspect
import json
import logging
import os
from pathlib import Path

from ..architectures.config import sae_file
from ..data import default_sae_folder
from ..files import FEATURE_LABELS, SAE_CONFIG, atomic_folder, write_atomically
from ..spec.reader import BUNDLED_READER
from ..validation import Bool, validate_params
from .base import SAE, Device

logger = logging.getLogger(__name__)


def _read_label_file(path: Path) -> dict[int, str]:
    """A JSON object ``{feature id: label}``; a non-string label (e.g. a dict) uses its ``label`` key."""
    if not os.path.lexists(path):
        return {}
    sae_file(path)
    try:
        raw = json.loads(path.read_text("utf-8"))
        return {int(k): str(v.get("label", "") if isinstance(v, dict) else v) for k, v in raw.items()}
    except (UnicodeDecodeError, ValueError, AttributeError, TypeError, RecursionError) as err:
        raise ValueError(f"{path}: not a label file ({type(err).__name__}: {str(err)[:200]})") from err


class DefaultSAE(SAE):
    """The bundled reader (SmolLM2-135M-Instruct, offline) with the SAE this project trained for it.

    >>> from interp_embed.saes import DefaultSAE
    >>> DefaultSAE().spec()
    {'type': 'default', 'role': 'assistant'}
    """

    kind = "default"

    def sae_folder(self) -> Path:
        folder = default_sae_folder()
        if not (folder / SAE_CONFIG).is_file():
            raise FileNotFoundError(f"{folder} holds no SAE; reinstall interp_embed")
        return folder

    def reader_model(self, cfg: dict) -> str:
        return BUNDLED_READER

    def _read_labels(self) -> dict[int, str]:
        return _read_label_file(self.sae_folder() / FEATURE_LABELS)


class LocalSAE(SAE):
    """An SAE in SAELens' layout: a local folder, or ``release`` (a Hugging Face repo or SAELens release) + ``sae_id``.

    A release named in SAELens' registry needs ``pip install 'interp_embed[saelens]'``; a release in a format
    SAELens converts on load (Gemma Scope, Llama Scope, ...) is converted once by SAELens' own loader and cached
    (see :mod:`interp_embed.saes.releases`). ``model`` is the reader (a Hugging Face name or local folder); by
    default the config's ``model_name``, for a release the model the release names.

    >>> sae = LocalSAE(path="my_sae/", model="HuggingFaceTB/SmolLM2-135M-Instruct")   # doctest: +SKIP
    >>> sae = LocalSAE(release="jbloom/my-saes", sae_id="blocks.8.hook_resid_post")    # doctest: +SKIP
    """

    kind = "local"

    def __init__(self, sae_id: str | None = None, release: str | None = None, path: str | os.PathLike | None = None,
                 model: str | None = None, device: Device = None, **kwargs):
        super().__init__(device=device, **kwargs)
        if (path is None) == (release is None):
            raise ValueError("give either path= (a folder with cfg.json and sae_weights.safetensors) or release= and sae_id=")
        if release is not None and not sae_id:
            raise ValueError("release= needs sae_id= (the folder of the SAE inside the release)")
        # Absolute, so that resuming a store from another working directory finds the same files.
        self.path = str(Path(path).resolve()) if path is not None else None
        self.release, self.sae_id, self.model = release, sae_id, model

    def params(self) -> dict:
        return {**super().params(), "path": self.path, "release": self.release, "sae_id": self.sae_id, "model": self.model}

    def sae_folder(self) -> Path:
        if self.path is not None:
            return Path(self.path)
        from ..reading.reader import cache_root
        from .releases import fetch_release

        return fetch_release(self.release, self.sae_id, cache_root())

    def reader_model(self, cfg: dict) -> str:
        name = self.model or (cfg.get("metadata") or {}).get("model_name") or cfg.get("model_name")
        if not name:
            raise ValueError(f"{self.sae_folder() / SAE_CONFIG} names no model; pass model= (a Hugging Face name or folder)")
        return name

    def _read_labels(self) -> dict[int, str]:
        return _read_label_file(self.sae_folder() / FEATURE_LABELS)


# Goodfire's releases: reader, hooked layer, weights file and where the original's labels live.
GOODFIRE_VARIANTS = {
    "Llama-3.1-8B-Instruct-SAE-l19": {
        "model": "meta-llama/Llama-3.1-8B-Instruct", "repo": "Goodfire/Llama-3.1-8B-Instruct-SAE-l19",
        "file": "Llama-3.1-8B-Instruct-SAE-l19.pth", "layer": 19,
        "labels": "goodfire/meta-llama/Llama-3.1-8B-Instruct.json",
    },
    "Llama-3.3-70B-Instruct-SAE-l50": {
        "model": "meta-llama/Llama-3.3-70B-Instruct", "repo": "Goodfire/Llama-3.3-70B-Instruct-SAE-l50",
        "file": "Llama-3.3-70B-Instruct-SAE-l50.pt", "layer": 50,
        "labels": "goodfire/meta-llama/Llama-3.3-70B-Instruct.json",
    },
}
LABELS_REPO = "nickjiang/feature_labels"
GOODFIRE_TENSORS = ("encoder_linear.weight", "encoder_linear.bias", "decoder_linear.weight", "decoder_linear.bias")


class GoodfireSAE(SAE):
    """Goodfire's ReLU SAEs for Llama 3 (the original interp_embed's default), converted once to SAELens layout.

    Goodfire ships PyTorch files; they are read with ``torch.load(weights_only=True)``, which refuses
    anything but tensors, then cached as safetensors. Their feature labels are fetched from the hub with
    the SAE and kept beside it; without a connection the SAE has no labels (one warning says so).

    ``quantize=True`` loads the reader in 8 bits with bitsandbytes, as the original does: it needs a CUDA
    GPU, and loading (the first encoding) on a machine without one raises an error that says so.
    ``device="auto"`` (or ``{"model": "auto", "sae": "cuda:0"}``) spreads a reader larger than one GPU, such
    as the 70B one, over every GPU.

    >>> sae = GoodfireSAE(variant_name="Llama-3.1-8B-Instruct-SAE-l19", device="cuda:0", quantize=True)   # doctest: +SKIP
    >>> sae = GoodfireSAE(variant_name="Llama-3.3-70B-Instruct-SAE-l50", device="auto")   # doctest: +SKIP
    """

    kind = "goodfire"

    @validate_params(quantize=Bool())
    def __init__(self, variant_name: str = "Llama-3.1-8B-Instruct-SAE-l19", device: Device = None,
                 quantize: bool = False, **kwargs):
        super().__init__(device=device, **kwargs)
        if variant_name not in GOODFIRE_VARIANTS:
            raise ValueError(f"variant_name must be one of {sorted(GOODFIRE_VARIANTS)}, not {variant_name!r}")
        self.variant_name = variant_name
        self.quantize = quantize
        self._labels_unreachable = False

    def params(self) -> dict:
        return {**super().params(), "variant_name": self.variant_name, "quantize": self.quantize}

    def load(self):
        if self.quantize:  # before downloading gigabytes that this machine could not run
            from ..reading.reader import require_8bit_loading

            require_8bit_loading()
        return super().load()

    def _reader_options(self) -> dict:
        return {"quantize": self.quantize}

    def sae_folder(self) -> Path:
        from ..reading.reader import cache_root

        folder = cache_root() / "saes" / "goodfire" / self.variant_name
        if not (folder / SAE_CONFIG).is_file():
            _convert_goodfire(GOODFIRE_VARIANTS[self.variant_name], folder)
        return folder

    def reader_model(self, cfg: dict) -> str:
        return GOODFIRE_VARIANTS[self.variant_name]["model"]

    def _read_labels(self) -> dict[int, str]:
        path = self.sae_folder() / FEATURE_LABELS
        if not path.is_file() and not self._labels_unreachable:
            labels = GOODFIRE_VARIANTS[self.variant_name]["labels"]
            try:
                from huggingface_hub import hf_hub_download

                fetched = hf_hub_download(repo_id=LABELS_REPO, filename=labels, repo_type="dataset")
                write_atomically(path, Path(fetched).read_bytes())
            except Exception as err:  # labels are optional: offline users still get activations
                self._labels_unreachable = True  # asked once per object: one warning, not one per call
                logger.warning("%s has no feature labels: %s/%s could not be fetched (%s)", self.variant_name,
                               LABELS_REPO, labels, err)
        return _read_label_file(path)


def _convert_goodfire(variant: dict, folder: Path) -> None:
    """Write Goodfire's PyTorch file of ``variant`` into ``folder`` in SAELens layout; its sizes come from the file."""
    import torch
    from huggingface_hub import hf_hub_download

    from ..architectures import SAEConfig, build_sae, save_sae

    path = hf_hub_download(repo_id=variant["repo"], filename=variant["file"])
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or not all(isinstance(state.get(k), torch.Tensor) for k in GOODFIRE_TENSORS):
        raise ValueError(f"{path}: not a Goodfire SAE (a state dict with tensors {', '.join(GOODFIRE_TENSORS)})")
    d_sae, d_in = state["encoder_linear.weight"].shape
    cfg = SAEConfig(architecture="relu", d_in=d_in, d_sae=d_sae, hook_layer=variant["layer"],
                    apply_b_dec_to_input=False, model_name=variant["model"])
    sae = build_sae(cfg)
    try:
        sae.load_state_dict({
            "W_enc": state["encoder_linear.weight"].T.contiguous(), "b_enc": state["encoder_linear.bias"],
            "W_dec": state["decoder_linear.weight"].T.contiguous(), "b_dec": state["decoder_linear.bias"],
        })
    except RuntimeError as err:  # shapes that disagree with each other
        raise ValueError(f"{path}: the Goodfire SAE's tensors do not fit together ({err})") from err
    with atomic_folder(folder, replace=False) as tmp:
        save_sae(sae, tmp)


SOURCES: dict[str, type[SAE]] = {"default": DefaultSAE, "local": LocalSAE, "goodfire": GoodfireSAE}


def sae_from_spec(spec: dict, device: Device = None) -> SAE:
    """Rebuild an SAE source from its JSON (:meth:`SAE.spec`); only the classes above can be named, with only the
    settings their constructors take (anything else is refused by name)."""
    kind = spec.get("type")
    if kind not in SOURCES:
        raise ValueError(f"unknown SAE type {kind!r} in the store; known: {sorted(SOURCES)}")
    params = {k: v for k, v in spec.items() if k != "type"}
    settings = _settings(SOURCES[kind])
    unknown = sorted(set(params) - settings)
    if unknown:
        raise ValueError(f"the SAE source {kind!r} names {', '.join(map(repr, unknown))}, not a setting of a {kind} "
                         f"SAE (those are {', '.join(sorted(settings))})")
    return SOURCES[kind](device=device, **params)


def _settings(source: type[SAE]) -> set[str]:
    """The keyword arguments ``source``'s constructor takes (its own and every SAE's), the device excepted."""
    named = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return {name for init in (source.__init__, SAE.__init__) for name, parameter in
            inspect.signature(init).parameters.items() if parameter.kind in named} - {"self", "device"}
