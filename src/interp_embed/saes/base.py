"""The interface every SAE source shares: a reader + SAE pair, described in plain JSON.

Importing this module never imports torch: a saved dataset records the spec of the SAE that encoded
it, and that spec is only turned back into models when encoding resumes.
"""
from __future__ import annotations

import hashlib
import os
from functools import cached_property
from pathlib import Path

from ..architectures.config import read_config, sae_file
from ..files import FEATURE_LABELS, SAE_ACTIVATION_SCALER, SAE_CONFIG, SAE_WEIGHTS, sha256_file
from ..reading.arithmetic import choose_arithmetic
from ..spec.arithmetic import DTYPES
from ..spec.reader import ReaderSpec, check_role
from ..store.manifest import EncoderRecord, encoder_identity
from ..validation import Bool, Choice, validate_params

Device = str | dict | None

# Methods of the original interp_embed's SAE classes, with what replaces each here.
ORIGINAL_METHODS = {
    "metadata": "spec() gives the JSON that rebuilds this SAE.",
    "load_models": "load() loads the reader and the SAE.",
    "destroy_models": "destroy() frees them.",
    "encode": "Dataset(data, sae=...) encodes documents; interp_embed.load_sae(sae.sae_folder()).encode(x) "
              "encodes hidden states.",
    "encode_chat": "Dataset(data, sae=...) wraps each document in the chat template as role= says.",
    "tokenize": "Dataset(...)[i].tokens() gives a document's tokens as slices of its text.",
    "chat_template_exists": "role='raw' reads plain text; 'assistant' or 'user' use the reader's chat template.",
}


def split_device(device: Device) -> tuple[str | None, str | None]:
    """``"cuda:0"`` → both on it; ``{"model": ..., "sae": ...}`` → each on its own (as in the original interp_embed).

    ``"auto"`` as the model's device spreads a reader larger than one GPU over every GPU (accelerate's
    ``device_map="auto"``, as the original passed its device to ``from_pretrained``); as the SAE's device it
    means the first GPU, or the CPU without one.
    """
    if device is None or isinstance(device, str):
        return device, device
    if isinstance(device, dict) and set(device) == {"model", "sae"}:
        return device["model"], device["sae"]
    raise ValueError(f"device must be a string or {{'model': ..., 'sae': ...}}, not {device!r}")


class SAE:
    """A reader model hooked at one layer plus the SAE that reads it.

    Subclasses say where the files come from (:meth:`sae_folder`) and which reader goes with them
    (:meth:`reader_spec`). ``role`` wraps each document in the reader's chat template as that role
    (``"assistant"``, the original's default, or ``"user"``), or ``"raw"`` for plain text;
    ``use_assistant_role=False`` is the original interp_embed's spelling of ``role="user"``.
    ``truncate`` is accepted for the original's sake and changes nothing: a document longer than the
    reader's window is read in overlapping windows (``EncodePlan.window_tokens``), never cut short.
    ``device`` is ``"cuda:0"``, ``"cpu"``, ``"auto"`` (a reader larger than one GPU spread over all of them)
    or ``{"model": ..., "sae": ...}`` (see :func:`split_device`); by default the first GPU, else the CPU.
    ``dtype`` is the reader's arithmetic: ``"float32"``, ``"bfloat16"`` (several times faster on a GPU or a CPU
    with bfloat16 instructions; features differ from float32's on a few percent of tokens) or ``"auto"``: the
    arithmetic of the store this SAE resumes or searches, else bfloat16 on a GPU or such a CPU and float32 elsewhere
    (see :meth:`arithmetic`). A store records it, and never mixes two. The SAE itself runs in float32.
    Constructing an SAE reads and downloads nothing; :meth:`load` (the first encoding) does.
    """

    kind = "base"

    @validate_params(truncate=Bool(), dtype=Choice(DTYPES))
    def __init__(self, device: Device = None, role: str = "assistant", use_assistant_role: bool | None = None,
                 truncate: bool = True, dtype: str = "auto"):
        if use_assistant_role is not None:
            role = "assistant" if use_assistant_role else "user"
        self.device = device
        self.role = check_role(role)
        self.dtype = dtype
        self._arithmetic = None if dtype == "auto" else dtype
        self._loaded = None

    # -- what subclasses provide ----------------------------------------------------------------
    def params(self) -> dict:
        """Constructor arguments (JSON) that rebuild this SAE, device excluded."""
        return {"role": self.role}

    def sae_folder(self) -> Path:
        raise NotImplementedError

    def reader_model(self, cfg: dict) -> str:
        raise NotImplementedError

    def _read_labels(self) -> dict[int, str]:
        return {}

    def _reader_options(self) -> dict:
        """Further keyword arguments of the ``Reader`` this SAE loads."""
        return {}

    # -- shared behaviour -----------------------------------------------------------------------
    def spec(self) -> dict:
        return {"type": self.kind, **self.params()}

    @cached_property
    def saelens_config(self) -> dict:
        return read_config(self.sae_folder() / SAE_CONFIG)

    @cached_property
    def _weights_sha256(self) -> str:
        folder = self.sae_folder()
        weights = sha256_file(sae_file(folder / SAE_WEIGHTS))
        scaler = folder / SAE_ACTIVATION_SCALER
        if not os.path.lexists(scaler):  # the weights alone decide the encoding (every store made before scalers)
            return weights
        # The input scaling factor is folded into the weights when they are loaded: it is part of them.
        return hashlib.sha256(f"{weights}:{sha256_file(sae_file(scaler))}".encode()).hexdigest()

    def fingerprint(self) -> str:
        """SHA-256 of the weights file, and of the input scaling factor's file where there is one (read once per
        object): resuming with other weights would mix two encodings."""
        return self._weights_sha256

    def feature_labels(self) -> dict[int, str]:
        """Labels shipped with or downloaded for this SAE, ``{feature id: label}`` (may be empty); a label of a
        feature the SAE does not have is refused, naming the file."""
        labels = self._read_labels()
        width = self.sae_config().d_sae if labels else 0
        outside = sorted(f for f in labels if not 0 <= f < width)
        if outside:
            raise ValueError(f"{self.sae_folder() / FEATURE_LABELS}: labels of features {outside[:5]} (of "
                             f"{len(outside)}) outside the SAE's {width} features (ids 0 to {width - 1})")
        return labels

    def sae_config(self):
        """The SAE's configuration (architecture, width, hooked layer …) read from its ``cfg.json``."""
        from ..architectures.saelens import config_from_saelens

        return config_from_saelens(self.saelens_config, source=str(self.sae_folder() / SAE_CONFIG))

    def reader_spec(self) -> ReaderSpec:
        """The reader this SAE reads: model, hook point (layer and site), role."""
        hook = self.sae_config().hook_point
        return ReaderSpec(model=self.reader_model(self.saelens_config), layer=hook.layer, site=hook.site,
                          role=self.role)

    def arithmetic(self) -> str:
        """The reader's arithmetic, ``"float32"`` or ``"bfloat16"``: ``dtype`` as given; for ``dtype="auto"``,
        settled once, by the first store this SAE meets (:meth:`adopt_arithmetic`) or else by this machine
        (:func:`~interp_embed.reading.arithmetic.choose_arithmetic`, which logs the choice and why)."""
        if self._arithmetic is None:
            self._arithmetic = choose_arithmetic(split_device(self.device)[0]).dtype
        return self._arithmetic

    def adopt_arithmetic(self, arithmetic: str) -> None:
        """Take a store's arithmetic, for ``dtype="auto"`` not settled yet: resuming a store made in bfloat16 on
        another machine continues in bfloat16. An arithmetic already settled is kept (and the store refuses it if
        it differs)."""
        if self._arithmetic is None:
            self._arithmetic = arithmetic

    def identity(self) -> dict:
        """What a store compares with its own record before this SAE may add to it or search it."""
        spec = self.reader_spec()
        return encoder_identity(spec.model, spec.layer, spec.role, self.arithmetic(), self.sae_config().to_json(),
                                self.fingerprint())

    def describe(self) -> EncoderRecord:
        """What a store records about this encoder; reads tokenizer and configs, never the models' weights."""
        from ..reading.reader import describe_reader

        return EncoderRecord(source=self.spec(), reader=describe_reader(self.reader_spec(), self.arithmetic()),
                             sae=self.sae_config().to_json(), sae_sha256=self.fingerprint())

    def load(self):
        """Load (once) and return ``(Reader, SparseAutoencoder, sae_device)``; :meth:`destroy` frees them."""
        if self._loaded is None:
            from ..architectures.saelens import load_sae
            from ..reading.arithmetic import torch_dtype
            from ..reading.reader import Reader, default_device

            model_device, sae_device = split_device(self.device)
            model_device = model_device or default_device()
            sae_device = sae_device or model_device
            if sae_device == "auto":  # the SAE is not spread: it sits whole on one device
                sae_device = default_device()
            reader = Reader(self.reader_spec(), device=model_device, dtype=torch_dtype(self.arithmetic()),
                            **self._reader_options())
            sae = load_sae(self.sae_folder(), device=sae_device)
            self._loaded = (reader, sae, sae_device)
        return self._loaded

    def is_loaded(self) -> bool:
        """Whether the models are in memory (:meth:`load` loads them, :meth:`destroy` frees them)."""
        return self._loaded is not None

    def destroy(self) -> None:
        """Free the models (they are reloaded on the next use)."""
        self._loaded = None

    def __getattr__(self, name: str):
        if name in ORIGINAL_METHODS:
            raise AttributeError(f"{type(self).__name__}.{name}() of the original interp_embed is not provided: "
                                 f"{ORIGINAL_METHODS[name]}")
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params().items())
        return f"{type(self).__name__}({args})"
