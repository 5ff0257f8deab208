"""Benchmark (not a test): peak memory of loading a reader cut after its hooked block, two ways.

    PYTHONPATH=src .venv/bin/python benchmarks/reader_memory.py

A random Llama of 16 blocks, 1,024 wide, with a 4,096-token vocabulary (the blocks dominate, as in Llama 3),
saved in float32 and loaded in bfloat16, hooked at block 2, is loaded in a process of its own each way,
which reports how far its peak RSS rose above its RSS before loading (Linux: /proc/self/status):

- whole, then cut: `from_pretrained` of the whole model, then the blocks after the hooked one dropped;
- cut config (what `Reader` does): `from_pretrained` with a config of 3 blocks, so the others are never read.

With `device_map="auto"` the same holds on GPUs: what is never read is never placed on one.
"""
from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

LAYERS, HOOKED = 16, 2


def make_model(folder: Path) -> None:
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from interp_embed.reading.reader import resolve_model_path
    from interp_embed.spec.reader import BUNDLED_READER

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=4096, hidden_size=1024, intermediate_size=4096, num_hidden_layers=LAYERS,
                         num_attention_heads=16, num_key_value_heads=4)
    LlamaForCausalLM(config).save_pretrained(folder)
    AutoTokenizer.from_pretrained(resolve_model_path(BUNDLED_READER)).save_pretrained(folder)


def status_kib(field: str) -> int:
    """A memory figure of this process from /proc/self/status (Linux), in KiB."""
    line = next(line for line in Path("/proc/self/status").read_text().splitlines() if line.startswith(field + ":"))
    return int(line.split()[1])


def load(way: str, folder: str) -> None:
    """Load the model one way and print by how many bytes its peak RSS rose above the RSS before loading."""
    import torch
    from transformers import AutoModelForCausalLM

    from interp_embed.reading.reader import Reader
    from interp_embed.spec.reader import ReaderSpec

    Path("/proc/self/clear_refs").write_text("5")  # restart the peak (VmHWM) from the current RSS
    before = status_kib("VmRSS")
    if way == "whole":
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.bfloat16)
        model.model.layers = torch.nn.ModuleList(list(model.model.layers)[: HOOKED + 1])
    else:
        model = Reader(ReaderSpec(model=folder, layer=HOOKED, role="raw"), device="cpu", dtype=torch.bfloat16).model
    assert len(model.model.layers) == HOOKED + 1
    print((status_kib("VmHWM") - before) * 1024)


def peak_growth(way: str, folder: Path) -> int:
    result = subprocess.run([sys.executable, __file__, way, str(folder)], capture_output=True, text=True, check=True)
    return int(result.stdout.split()[-1])


def main() -> None:
    if len(sys.argv) == 3:
        load(*sys.argv[1:])
        return
    with tempfile.TemporaryDirectory(prefix="reader-memory-") as tmp:
        make_model(Path(tmp))
        size = sum(f.stat().st_size for f in Path(tmp).glob("*.safetensors"))
        whole, cut = peak_growth("whole", Path(tmp)), peak_growth("cut", Path(tmp))
    print(f"random Llama, {LAYERS} blocks, 1,024 wide, {size / 2**20:,.0f} MiB of float32 weights, hooked at block {HOOKED}:")
    print(f"  whole, then cut:       peak RSS raised by {whole / 2**20:7,.0f} MiB")
    print(f"  cut config (Reader):   peak RSS raised by {cut / 2**20:7,.0f} MiB   ({cut / whole:.2f} of the other)")


if __name__ == "__main__":
    main()
