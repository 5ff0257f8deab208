"""The arithmetics a reader may run in: what an SAE may be asked for, and what a store records. Pure data, no torch.

Which one ``dtype="auto"`` settles on, on this machine, is :mod:`interp_embed.reading.arithmetic`'s concern.
"""
from __future__ import annotations


DTYPES = ("auto", "float32", "bfloat16")
"""What an SAE may be asked to run its reader in; ``auto`` is decided on the machine that runs it by
:func:`interp_embed.reading.arithmetic.choose_arithmetic`."""
ARITHMETICS = ("float32", "bfloat16")
"""What a store records: the arithmetic that encoded it."""


