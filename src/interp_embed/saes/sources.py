"""Where SAEs come from: the bundled default, a SAELens folder or hub release, and Goodfire's releases."""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from ..data import default_sae_folder
from ..files import FEATURE_LABELS, SAE_CONFIG, atomic_folder, write_atomically
from ..validation import check_bool
from .base import SAE, Device

logger = logging.getLogger(__name__)


def _read_label_file(path: Path) -> dict[int, str]:
    """A JSON object ``{feature id: label}``; a non-string label (e.g. a dict) uses its ``label`` key."""
    if not path.is_file():
        return {}
    try:
        raw = json.loads(path.read_text("utf-8"))
        return {int(k): str(v.get("label", "") if isinstance(v, dict) else v) for k, v in raw.items()}
    except (UnicodeDecodeError, json.JSONDecodeError, ValueError, AttributeError) as err:
        raise ValueError(f"{path}: not a label file ({err})") from err


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
        from ..encode.config import BUNDLED_READER

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
        from ..encode.reader import cache_root
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
        "file": "Llama-3.1-8B-Instruct-SAE-l19.pth", "layer": 19, "d_in": 4096, "d_sae": 65536,
        "labels": "goodfire/meta-llama/Llama-3.1-8B-Instruct.json",
    },
    "Llama-3.3-70B-Instruct-SAE-l50": {
        "model": "meta-llama/Llama-3.3-70B-Instruct", "repo": "Goodfire/Llama-3.3-70B-Instruct-SAE-l50",
        "file": "Llama-3.3-70B-Instruct-SAE-l50.pt", "layer": 50, "d_in": 8192, "d_sae": 65536,
        "labels": "goodfire/meta-llama/Llama-3.3-70B-Instruct.json",
    },
}
LABELS_REPO = "nickjiang/feature_labels"


class GoodfireSAE(SAE):
    """Goodfire's ReLU SAEs for Llama 3 (the original interp_embed's default), converted once to SAELens layout.

    Goodfire ships PyTorch files; they are read with ``torch.load(weights_only=True)``, which refuses
    anything but tensors, then cached as safetensors.

    ``quantize=True`` asks for the reader in 8 bits (bitsandbytes, CUDA only). It is not available in
    this version: loading the models (the first encoding) raises an error that says what is missing,
    instead of running the reader at another precision than asked.

    >>> sae = GoodfireSAE(variant_name="Llama-3.1-8B-Instruct-SAE-l19", device="cuda:0")   # doctest: +SKIP
    """

    kind = "goodfire"

    def __init__(self, variant_name: str = "Llama-3.1-8B-Instruct-SAE-l19", device: Device = None,
                 quantize: bool = False, **kwargs):
        super().__init__(device=device, **kwargs)
        if variant_name not in GOODFIRE_VARIANTS:
            raise ValueError(f"variant_name must be one of {sorted(GOODFIRE_VARIANTS)}, not {variant_name!r}")
        self.variant_name = variant_name
        self.quantize = check_bool(quantize, "quantize")

    def params(self) -> dict:
        return {**super().params(), "variant_name": self.variant_name, "quantize": self.quantize}

    def load(self):
        if self.quantize:
            _refuse_quantized_reader()
        return super().load()

    def sae_folder(self) -> Path:
        from ..encode.reader import cache_root

        folder = cache_root() / "saes" / "goodfire" / self.variant_name
        if not (folder / SAE_CONFIG).is_file():
            _convert_goodfire(GOODFIRE_VARIANTS[self.variant_name], folder)
        return folder

    def reader_model(self, cfg: dict) -> str:
        return GOODFIRE_VARIANTS[self.variant_name]["model"]

    def _read_labels(self) -> dict[int, str]:
        folder = self.sae_folder()
        if not (folder / FEATURE_LABELS).is_file():
            try:
                from huggingface_hub import hf_hub_download

                path = hf_hub_download(repo_id=LABELS_REPO, filename=GOODFIRE_VARIANTS[self.variant_name]["labels"],
                                       repo_type="dataset")
                write_atomically(folder / FEATURE_LABELS, Path(path).read_bytes())
            except Exception as err:  # labels are optional: offline users still get activations
                logger.warning("No labels for %s (%s)", self.variant_name, err)
                return {}
        return _read_label_file(folder / FEATURE_LABELS)


def _refuse_quantized_reader() -> None:
    """Say why ``quantize=True`` cannot load here: what the machine lacks, or that 8-bit loading is not built yet."""
    import importlib.util

    import torch

    missing = ([] if torch.cuda.is_available() else ["a CUDA GPU"]) + \
        ([] if importlib.util.find_spec("bitsandbytes") else ["the bitsandbytes package (pip install bitsandbytes)"])
    if missing:
        raise RuntimeError(f"GoodfireSAE(quantize=True) loads the reader in 8 bits with bitsandbytes, which needs "
                           f"{' and '.join(missing)}, which this machine lacks. Use quantize=False to run the "
                           "reader at full precision.")
    raise NotImplementedError("GoodfireSAE(quantize=True): 8-bit loading of the reader is not available in this "
                              "version yet; use quantize=False (bfloat16 on a GPU).")


def _convert_goodfire(variant: dict, folder: Path) -> None:
    import torch
    from huggingface_hub import hf_hub_download

    from ..architectures import SAEConfig, build_sae, save_sae

    path = hf_hub_download(repo_id=variant["repo"], filename=variant["file"])
    state = torch.load(path, map_location="cpu", weights_only=True)
    cfg = SAEConfig(architecture="relu", d_in=variant["d_in"], d_sae=variant["d_sae"], hook_layer=variant["layer"],
                    apply_b_dec_to_input=False, model_name=variant["model"])
    sae = build_sae(cfg)
    sae.load_state_dict({
        "W_enc": state["encoder_linear.weight"].T.contiguous(), "b_enc": state["encoder_linear.bias"],
        "W_dec": state["decoder_linear.weight"].T.contiguous(), "b_dec": state["decoder_linear.bias"],
    })
    with atomic_folder(folder, replace=False) as tmp:
        save_sae(sae, tmp)


SOURCES: dict[str, type[SAE]] = {"default": DefaultSAE, "local": LocalSAE, "goodfire": GoodfireSAE}


def sae_from_spec(spec: dict, device: Device = None) -> SAE:
    """Rebuild an SAE source from the JSON a store recorded; only the classes above can be named."""
    kind = spec.get("type")
    if kind not in SOURCES:
        raise ValueError(f"unknown SAE type {kind!r} in the store; known: {sorted(SOURCES)}")
    params = {k: v for k, v in spec.items() if k != "type"}
    return SOURCES[kind](device=device, **params)
