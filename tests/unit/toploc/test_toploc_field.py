"""Polynomials over GF(65497): interpolation through a proof's points reads back every value."""

from __future__ import annotations

import numpy as np

from asyncrl.toploc.field import PRIME, evaluate, interpolate, inverses


def test_every_nonzero_element_times_its_inverse_is_one():
    elements = np.arange(1, PRIME, dtype=np.uint64)
    assert ((elements * inverses()[1:]) % PRIME == 1).all()


def test_the_interpolated_polynomials_pass_through_every_point():
    rng = np.random.default_rng(0)
    xs = np.stack([rng.choice(PRIME, 128, replace=False) for _ in range(5)])
    ys = rng.integers(0, PRIME, (5, 128))
    coefficients = interpolate(xs, ys)
    assert coefficients.shape == (5, 128)
    assert (evaluate(coefficients, xs) == ys).all()


def test_interpolation_of_one_or_two_points():
    one = interpolate(np.array([[7]]), np.array([[42]]))
    assert evaluate(one, np.array([[7, 8, 9]])).tolist() == [[42, 42, 42]]
    line = interpolate(np.array([[1, 3]]), np.array([[10, 20]]))
    assert evaluate(line, np.array([[1, 3, 5]])).tolist() == [[10, 20, 30]]


def test_a_changed_point_changes_the_values_read_elsewhere():
    xs = np.arange(128)[None, :]
    ys = np.arange(128)[None, :] * 3
    moved = ys.copy()
    moved[0, 5] += 1
    probe = np.arange(200, 328)[None, :]
    assert (evaluate(interpolate(xs, ys), probe) != evaluate(interpolate(xs, moved), probe)).mean() > 0.9
