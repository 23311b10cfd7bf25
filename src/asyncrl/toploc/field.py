"""Polynomials over the prime field GF(65497), batched over many polynomials with numpy.

A proof stores the k coefficients of the polynomial through k points (x = a hash of where a committed
value sits, y = the bfloat16 bit pattern of the value), so every number must be a field element that fits
in 16 bits: 65497 is a prime below 2^16 and above 0xFF7F, the largest finite bfloat16 bit pattern.

Arithmetic is in uint64: operands stay below 2^16, so a product (< 2^32) plus a field element never
overflows, and unsigned `%` is about twice as fast as signed. Subtractions add PRIME first to stay
non-negative.
"""

from __future__ import annotations

from functools import cache

import numpy as np

PRIME = 65497

_P = np.uint64(PRIME)


@cache
def inverses() -> np.ndarray:
    """`inverses()[a]` is a^-1 in the field (Fermat: a^(p-2)), for every a; 0 maps to 0."""
    base = np.arange(PRIME, dtype=np.uint64)
    result = np.ones(PRIME, dtype=np.uint64)
    exponent = PRIME - 2
    while exponent:
        if exponent & 1:
            result = result * base % _P
        base = base * base % _P
        exponent >>= 1
    return result


@cache
def _difference_pairs(k: int) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """Index pairs (i, i - j) for j = 1..k-1, grouped by j, so each round of divided differences reads
    one contiguous slice; plus where each group starts."""
    high = np.concatenate([np.arange(j, k) for j in range(1, k)])
    low = np.concatenate([np.arange(0, k - j) for j in range(1, k)])
    starts = np.concatenate([[0], np.cumsum([k - j for j in range(1, k)])]).tolist()
    return high, low, starts


def interpolate(xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """Coefficients (lowest degree first) of the polynomials of degree < k through the points (xs, ys).

    `xs` and `ys` are [B, k] field elements; each row of `xs` must hold distinct values. Newton's divided
    differences, then expansion of the Newton form: O(k^2) per polynomial, in 2k vectorised rounds. The
    work runs on [k, B] arrays, so each round's slice is one contiguous block, into preallocated buffers:
    the element work, not numpy's per-call cost, then dominates from a few polynomials on.
    """
    xs = np.ascontiguousarray(xs.T, dtype=np.uint64)
    k, batch = xs.shape
    newton = np.ascontiguousarray(ys.T, dtype=np.uint64) % _P
    if k == 1:
        return newton.T.copy()
    high, low, starts = _difference_pairs(k)
    gaps = xs[high] + _P
    gaps -= xs[low]
    gaps %= _P
    inverse_gaps = inverses()[gaps]
    scratch = np.empty((k, batch), dtype=np.uint64)
    for j in range(1, k):
        step = scratch[: k - j]
        np.add(newton[j:], _P, out=step)
        step -= newton[j - 1 : -1]
        step *= inverse_gaps[starts[j - 1] : starts[j]]
        np.remainder(step, _P, out=newton[j:])
    # Horner on the Newton form: poly <- poly * (x - x_j) + c_j, from the highest coefficient down.
    minus_xs = _P - xs
    poly = np.zeros((k, batch), dtype=np.uint64)
    poly[0] = newton[k - 1]
    for degree, j in enumerate(range(k - 2, -1, -1), start=1):
        step = scratch[: degree + 1]
        np.multiply(poly[: degree + 1], minus_xs[j], out=step)
        step[1:] += poly[:degree]
        step[0] += newton[j]
        np.remainder(step, _P, out=poly[: degree + 1])
    return np.ascontiguousarray(poly.T)


def evaluate(coefficients: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """Each row's polynomial ([B, k] coefficients, lowest first) at that row's points ([B, m])."""
    coefficients = coefficients.astype(np.uint64)
    xs = xs.astype(np.uint64) % _P
    values = np.zeros(xs.shape, dtype=np.uint64)
    for j in range(coefficients.shape[1] - 1, -1, -1):
        values = (values * xs + coefficients[:, j : j + 1]) % _P
    return values
