"""The reader's arithmetic: float32, or bfloat16 on a GPU and where asked for.

bfloat16 keeps float32's range with 8 bits of mantissa: on a GPU, or a CPU with bfloat16 instructions, the reader
runs several times faster in it, and its features differ from a float32 run's on a few percent of tokens (README,
Performance). A store records the arithmetic that encoded it as part of its encoder, so the two are never mixed in
one store nor compared across stores. The SAE itself always runs in float32.

Importing this module does not import torch: a choice is made and recorded before any model loads.
"""
from __future__ import annotations

import logging
import platform
import subprocess
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

CPU_BFLOAT16_FLAGS = ("avx512_bf16", "amx_bf16", "bf16")
"""Processor features that multiply bfloat16 natively: AVX-512 BF16 (AMD Zen 4 and later, Intel Cooper Lake) and
AMX (Intel Sapphire Rapids and later) on x86; FEAT_BF16 (``bf16``) on 64-bit ARM (Graviton 3, Neoverse V1/N2,
Apple M2 and later). Without one, bfloat16 is emulated on the CPU and slower than float32. (Measured on x86 with
``avx512_bf16`` only: README, Performance.)"""


@dataclass(frozen=True)
class Choice:
    """The arithmetic ``dtype="auto"`` settled on, and why (the log says both)."""

    dtype: str
    """``float32`` or ``bfloat16``."""
    why: str
    """What decided it, in a few words."""


def cpu_features() -> frozenset[str]:
    """The processor's feature flags as the operating system lists them (lower case; empty where it cannot tell):
    ``/proc/cpuinfo`` on Linux, ``sysctl`` on macOS."""
    system = platform.system()
    if system == "Linux":
        try:
            return cpuinfo_features(Path("/proc/cpuinfo").read_text(errors="replace"))
        except OSError:
            return frozenset()
    if system == "Darwin":
        try:
            found = subprocess.run(["sysctl", "-n", "hw.optional.arm.FEAT_BF16"], capture_output=True, text=True,
                                   timeout=5).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return frozenset()
        return frozenset({"bf16"}) if found == "1" else frozenset()
    return frozenset()


def cpuinfo_features(text: str) -> frozenset[str]:
    """The feature flags of the first processor listed in the text of Linux's ``/proc/cpuinfo`` (``flags`` on x86,
    ``Features`` on ARM; every core lists the same)."""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() in ("flags", "features"):
            return frozenset(value.lower().split())
    return frozenset()


def native_bfloat16(features: frozenset[str]) -> str | None:
    """The first of :data:`CPU_BFLOAT16_FLAGS` among ``features``, or None."""
    return next((flag for flag in CPU_BFLOAT16_FLAGS if flag in features), None)


def choose_arithmetic(device: str | None) -> Choice:
    """What ``dtype="auto"`` means for a reader on ``device`` (None: the first GPU, else the CPU): bfloat16 on a
    CUDA GPU, float32 elsewhere. On a CPU that multiplies bfloat16 natively (:data:`CPU_BFLOAT16_FLAGS`) bfloat16
    encodes about 1.7x faster, but auto keeps float32: every document's features would differ a little from those a
    CPU without it computes, and stores made in two arithmetics are never compared (README, Performance); the log
    says that ``dtype="bfloat16"`` is there to take."""
    import torch  # only to ask whether there is a GPU

    where = str(device) if device else ("cuda" if torch.cuda.is_available() else "cpu")
    if where == "auto":  # spread over the GPUs by accelerate
        where = "cuda" if torch.cuda.is_available() else "cpu"
    if where.startswith("cuda"):
        choice = Choice("bfloat16", "the reader runs on a CUDA GPU")
    elif where != "cpu":
        choice = Choice("float32", f"the reader runs on {where}")
    elif (flag := native_bfloat16(cpu_features())) is None:
        choice = Choice("float32", "the reader runs on a CPU without bfloat16 instructions")
    else:
        choice = Choice("float32", f"the reader runs on a CPU, where stores match those of any other CPU in float32; "
                                   f"this one multiplies bfloat16 natively ({flag}), so dtype='bfloat16' reads faster")
    logger.info("Reader arithmetic: %s (dtype='auto': %s)", choice.dtype, choice.why)
    return choice


def torch_dtype(arithmetic: str):
    """The torch dtype of ``float32`` or ``bfloat16``."""
    import torch

    return {"float32": torch.float32, "bfloat16": torch.bfloat16}[arithmetic]
