"""Ship the bundled reader's first layers to another machine in its own quantised bytes, and rebuild it there.

The bundled GGUF (94 MB) is too big for some transports. A *pack* keeps, byte for byte, the GGUF tensors
of blocks ``0..layer`` and only the embedding rows of the tokens a corpus uses, in a safetensors file of
raw ``uint8`` blocks. ``unpack_reader`` de-quantises them with the same arithmetic as ``gguf`` (which
transformers uses to load GGUF files), undoes llama.cpp's q/k row permutation as transformers does, and
writes a plain transformers folder that :class:`~interp_embed.reading.reader.Reader` loads. The weights of
the kept layers are then bit-identical to the bundled reader's; embedding rows of unused tokens are zero.
Needs ``gguf`` only to pack, and only numpy/safetensors/transformers to unpack.
"""
from __future__ import annotations

import json
import lzma
from pathlib import Path

import numpy as np
import torch
from safetensors.numpy import load_file, save_file

# GGUF tensor types we meet in the bundled file: (name, elements per block, bytes per block)
_F32, _Q4_1, _Q8_0 = 0, 3, 8
_BLOCK = {_Q4_1: (32, 20), _Q8_0: (32, 34)}
_HF_NAMES = {
    "attn_norm": "input_layernorm", "ffn_norm": "post_attention_layernorm", "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj", "attn_output": "self_attn.o_proj",
    "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj", "ffn_down": "mlp.down_proj",
}
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja")


def pack_reader(gguf_path: str | Path, model_dir: str | Path, layer: int, token_ids: np.ndarray, out: str | Path) -> Path:
    """Write ``out/`` with ``reader_pack.safetensors`` + the config and tokenizer files of ``model_dir``."""
    from gguf import GGUFReader

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows = np.unique(np.asarray(token_ids, dtype=np.int64))
    tensors, meta = {"embed_rows": rows}, {}
    for t in GGUFReader(str(gguf_path)).tensors:
        parts = t.name.split(".")
        if t.name == "token_embd.weight":
            data = np.asarray(t.data).reshape(int(t.shape[1]), -1)[rows]  # one quantised row per token
        elif parts[0] == "blk" and int(parts[1]) <= layer:
            data = np.asarray(t.data)
        else:
            continue
        tensors[t.name] = np.ascontiguousarray(data).view(np.uint8).reshape(-1)
        meta[t.name] = {"type": int(t.tensor_type), "shape": [int(s) for s in reversed(t.shape)]}
    save_file(tensors, str(out / "reader_pack.safetensors"))
    config = json.loads((Path(model_dir) / "config.json").read_text())
    (out / "pack.json").write_text(json.dumps({"layer": layer, "config": config, "tensors": meta}, indent=1))
    for name in _TOKENIZER_FILES:  # tokenizer.json is 3.5 MB of text: xz makes it 0.45 MB
        if (Path(model_dir) / name).is_file():
            (out / f"{name}.xz").write_bytes(lzma.compress((Path(model_dir) / name).read_bytes()))
    return out


def dequantize(raw: np.ndarray, qtype: int, shape: list[int]) -> np.ndarray:
    """float32 values of GGUF bytes, with gguf's own formulas (d * q + m for Q4_1, d * q for Q8_0)."""
    if qtype == _F32:
        return raw.view(np.float32).reshape(shape)
    size, nbytes = _BLOCK[qtype]
    blocks = raw.reshape(-1, nbytes)
    d = blocks[:, :2].copy().view(np.float16).astype(np.float32)
    if qtype == _Q8_0:
        q = blocks[:, 2:].copy().view(np.int8).astype(np.float32)
        return (d * q).reshape(shape)
    m = blocks[:, 2:4].copy().view(np.float16).astype(np.float32)
    qs = blocks[:, 4:]
    q = np.concatenate([qs & 0x0F, qs >> 4], axis=1).astype(np.float32)  # low nibbles first, then high
    return (d * q + m).reshape(shape)


def _unpermute(w: np.ndarray, n_head: int) -> np.ndarray:
    """Undo llama.cpp's rotary row interleaving of q/k weights (as transformers' GGUF loader does)."""
    dim = w.shape[0] // n_head // 2
    return w.reshape(n_head, dim, 2, *w.shape[1:]).swapaxes(2, 1).reshape(w.shape)


def unpack_reader(pack_dir: str | Path, out: str | Path) -> Path:
    """A transformers folder with blocks ``0..layer`` of the packed reader, loadable by ``Reader``."""
    from safetensors.torch import save_file as save_torch

    pack_dir, out = Path(pack_dir), Path(out)
    info = json.loads((pack_dir / "pack.json").read_text())
    raw = load_file(str(pack_dir / "reader_pack.safetensors"))
    config = dict(info["config"], num_hidden_layers=info["layer"] + 1)
    heads, kv_heads = config["num_attention_heads"], config["num_key_value_heads"]
    state = {}
    for name, meta in info["tensors"].items():
        shape = meta["shape"]
        if name == "token_embd.weight":
            rows = raw["embed_rows"]
            part = dequantize(raw[name], meta["type"], [len(rows), shape[1]])
            full = np.zeros(shape, dtype=np.float32)
            full[rows] = part
            state["model.embed_tokens.weight"] = full
            continue
        _, block, kind, _ = name.split(".")
        w = dequantize(raw[name], meta["type"], shape)
        if kind == "attn_q":
            w = _unpermute(w, heads)
        elif kind == "attn_k":
            w = _unpermute(w, kv_heads)
        state[f"model.layers.{block}.{_HF_NAMES[kind]}.weight"] = w
    # The final norm is never reached (the reader stops at the hooked block); ones keep the folder loadable.
    state["model.norm.weight"] = np.ones(config["hidden_size"], dtype=np.float32)
    out.mkdir(parents=True, exist_ok=True)
    save_torch({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in state.items()}, str(out / "model.safetensors"))
    (out / "config.json").write_text(json.dumps(config, indent=1))
    for name in _TOKENIZER_FILES:
        if (pack_dir / f"{name}.xz").is_file():
            (out / name).write_bytes(lzma.decompress((pack_dir / f"{name}.xz").read_bytes()))
    return out
