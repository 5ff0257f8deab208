"""How the tests compare floats computed in different ways.

Bit-for-bit equality holds only between computations of the same shapes, in the same order, on the same machine:
that is what resuming a store and the Ray engine promise, and the tests that check those promises compare
exactly (each says so). Anything else — matrices multiplied in blocks of another size, a reference computed by
SAELens on another machine, another CPU's BLAS kernels, another thread count — agrees up to rounding only, and is
compared with the tolerances here.
"""
from __future__ import annotations

import numpy as np
import torch

RTOL = 1e-5
"""Relative tolerance: float32 results of the same arithmetic in another order differ in their last few bits."""
STORED_RTOL = 2 ** -9
"""Relative tolerance for activations read from a store, which keeps them in float16: values that differ by
rounding before storage may land one float16 step (2**-10 relative) apart."""
ATOL_OF_LARGEST = 1e-6
"""Absolute tolerance, as a share of the largest value compared: a sum of products rounds at the scale of its
terms, so a value that is small by cancellation (a latent just above its threshold) differs by rounding of that
scale (about 8 float32 units of the largest value)."""


def _tensors(*arrays) -> list[torch.Tensor]:
    return [a if isinstance(a, torch.Tensor) else torch.as_tensor(np.asarray(a)) for a in arrays]


def _atol(expected: torch.Tensor) -> float:
    return ATOL_OF_LARGEST * max(1.0, float(expected.abs().max()))


def assert_equal_up_to_rounding(got, expected, rtol: float = RTOL) -> None:
    """``got`` equals ``expected`` up to float32 rounding (relative to each value and to the largest one)."""
    got, expected = _tensors(got, expected)
    torch.testing.assert_close(got, expected, rtol=rtol, atol=_atol(expected))


def assert_same_latents(got, expected, rtol: float = RTOL) -> None:
    """The same latents fire with the same values up to rounding.

    A latent active on one side only must be one whose value is within rounding of zero on the other (a
    pre-activation at the threshold), so a latent that truly fires on one side only fails, as does any value that
    differs by more than rounding.
    """
    got, expected = _tensors(got, expected)
    assert_equal_up_to_rounding(got, expected, rtol)
    flipped = (got > 0) != (expected > 0)
    assert not flipped.any() or float(torch.maximum(got.abs(), expected.abs())[flipped].max()) <= _atol(expected), (
        f"{int(flipped.sum())} latent(s) fire on one side only")
