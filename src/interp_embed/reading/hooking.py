"""Reading a transformers model at a hook point and computing nothing after it.

Each site is the input or output of one module of the decoder block, as TransformerLens defines it for
Llama, Gemma, GPT-2 and Qwen: ``resid_pre`` the block's input, ``resid_post`` its output, ``attn_out`` the
attention's output (Gemma 2 and 3: after ``post_attention_layernorm``), ``mlp_out`` the MLP's output
(Gemma 2 and 3: after ``post_feedforward_layernorm``), ``z`` the input of the attention's output projection.
The blocks after the hooked one are dropped, and the hook raises so that nothing after it runs either.
"""
from __future__ import annotations

import torch

from ..spec.hook_point import HookPoint

_BLOCK_LISTS = ("model.layers", "model.language_model.layers", "transformer.h", "gpt_neox.layers", "model.decoder.layers")


def decoder_blocks(model: torch.nn.Module) -> tuple[torch.nn.Module, str]:
    """The owner and attribute name of the module list of decoder blocks, for the architectures transformers
    names consistently."""
    for path in _BLOCK_LISTS:
        obj, owner, name = model, None, None
        for part in path.split("."):
            owner, name = obj, part
            obj = getattr(obj, part, None)
            if obj is None:
                break
        if isinstance(obj, torch.nn.ModuleList):
            return owner, name
    raise ValueError(f"Cannot find the decoder blocks of {type(model).__name__}: tried {', '.join(_BLOCK_LISTS)}. "
                     "Open an issue with the model name.")


def _child(module: torch.nn.Module, site: str, *names: str) -> torch.nn.Module:
    for name in names:
        if isinstance(getattr(module, name, None), torch.nn.Module):
            return getattr(module, name)
    raise ValueError(f"hook site {site!r}: {type(module).__name__} has none of the modules {', '.join(names)}; "
                     "this architecture supports only resid_pre and resid_post")


def hooked_module(block: torch.nn.Module, site: str) -> tuple[torch.nn.Module, bool]:
    """The module of a decoder block that computes ``site``, and whether the site is that module's input
    (True) or its output (False)."""
    if site in ("resid_pre", "resid_post"):
        return block, site == "resid_pre"
    # Gemma 2 and 3 normalise what attention and the MLP add before adding it; TransformerLens reads it after
    # that norm. (Llama's post_attention_layernorm is the MLP's input norm, hence the test on the second one.)
    post_norms = isinstance(getattr(block, "post_feedforward_layernorm", None), torch.nn.Module)
    if site == "mlp_out":
        return _child(block, site, "post_feedforward_layernorm" if post_norms else "mlp"), False
    if site == "attn_out" and post_norms:
        return _child(block, site, "post_attention_layernorm"), False
    attention = _child(block, site, "self_attn", "attn")
    if site == "attn_out":
        return attention, False
    return _child(attention, site, "o_proj", "c_proj"), True


class _ReachedHookPoint(Exception):
    """Raised by the hook so that nothing after the hook point is computed."""


class HookedModel:
    """A causal LM cut at a hook point: later blocks dropped, every forward stopped at the hook point.

    >>> hooked = HookedModel(model, HookPoint(3, "mlp_out"), "gpt2")   # doctest: +SKIP
    >>> hooked(input_ids=ids).shape, hooked.width                        # doctest: +SKIP
    (torch.Size([1, 7, 768]), 768)
    """

    def __init__(self, model: torch.nn.Module, point: HookPoint, name: str):
        owner, attribute = decoder_blocks(model)
        blocks = getattr(owner, attribute)
        if point.layer >= len(blocks):
            raise ValueError(f"layer {point.layer} does not exist: {name} has {len(blocks)} layers (0..{len(blocks) - 1})")
        module, reads_input = hooked_module(blocks[point.layer], point.site)
        # The blocks after the hooked one are never run, so they need no memory either.
        setattr(owner, attribute, torch.nn.ModuleList(list(blocks)[: point.layer + 1]))
        if reads_input:
            module.register_forward_pre_hook(self._capture_input, with_kwargs=True)
        else:
            module.register_forward_hook(self._capture_output)
        self.model, self.point = model, point
        # Width of the activation read: the hidden size, or heads × head size at z.
        self.width = int(model.config.hidden_size) if point.site != "z" else _input_width(module)
        self._captured: torch.Tensor | None = None

    def _capture_input(self, module, args, kwargs):
        self._captured = args[0] if args else kwargs["hidden_states"]
        raise _ReachedHookPoint

    def _capture_output(self, module, inputs, output):
        self._captured = output[0] if isinstance(output, tuple) else output
        raise _ReachedHookPoint

    def __call__(self, **inputs) -> torch.Tensor:
        """The activation at the hook point for the model's keyword ``inputs``, shape (batch, tokens, width)."""
        self._captured = None
        try:
            self.model(**inputs)
        except _ReachedHookPoint:
            pass
        activation, self._captured = self._captured, None
        if activation is None:
            raise RuntimeError(f"{self.point.name} was not reached; the model's forward skipped it.")
        return activation


def _input_width(projection: torch.nn.Module) -> int:
    # nn.Linear says in_features; GPT-2's Conv1D keeps its weight as (in, out).
    return int(getattr(projection, "in_features", None) or projection.weight.shape[0])
