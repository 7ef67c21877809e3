"""Differences of -2lnL from the exact gradient (``fitaas.fast.differences``)."""

from __future__ import annotations

import numpy as np
import pytest

from fitaas.fast.differences import Anchors, line_difference

# a function of O(1) whose evaluation adds and takes away terms of 6e12 (as a Poisson
# constraint of a shapesys gamma of width 2e-6 does), rounded by ~1e-3; its gradient is not
BIG = 6e12
WIDTHS = np.array([2e-6, 1.0, 0.3])


def _value(x: np.ndarray) -> float:
    y = x / WIDTHS
    return (BIG + float(np.sum(y**2) + 0.1 * y[0] ** 3 + np.exp(0.2 * y[1]))) - BIG


def _gradient(x: np.ndarray) -> np.ndarray:
    y = x / WIDTHS
    g = 2 * y + np.array([0.3 * y[0] ** 2, 0.2 * np.exp(0.2 * y[1]), 0.0])
    return g / WIDTHS


def _exact(a: np.ndarray, b: np.ndarray) -> float:
    def rest(x: np.ndarray) -> float:
        y = x / WIDTHS
        return float(np.sum(y**2) + 0.1 * y[0] ** 3 + np.exp(0.2 * y[1]))

    return rest(b) - rest(a)


def test_a_difference_is_known_far_below_the_rounding_of_the_values() -> None:
    a = np.array([1e-6, 0.5, -0.2])
    b = np.array([-3e-6, 1.5, 0.4])
    rounded = _value(b) - _value(a)
    found = line_difference(_gradient, a, b)
    assert found is not None
    assert found == pytest.approx(_exact(a, b), abs=1e-9)
    assert abs(rounded - _exact(a, b)) > 1e-6  # (the values alone cannot tell it)


def test_a_kink_on_the_way_gives_no_difference() -> None:
    def kinked(x: np.ndarray) -> np.ndarray:
        return np.sign(x) * (1.0 + np.abs(x))

    assert line_difference(kinked, np.array([-1.0]), np.array([2.0])) is None
    assert line_difference(kinked, np.array([0.5]), np.array([2.0])) == pytest.approx(3.375)


def test_anchored_values_are_consistent_per_dataset() -> None:
    anchors = Anchors(lambda x, data: _gradient(x), noise=1e-3)
    data, other = np.array([1.0, 2.0]), np.array([3.0])
    a = np.array([1e-6, 0.5, -0.2])
    b = np.array([-3e-6, 1.5, 0.4])
    first = anchors.value(data, a, _value(a))
    assert first == _value(a)  # the anchor keeps its own value
    second = anchors.value(data, b, _value(b))
    assert second - first == pytest.approx(_exact(a, b), abs=1e-9)
    assert anchors.value(other, b, _value(b)) == _value(b)  # another dataset, its own anchor
    # a value that disagrees with the integral by far more than the noise keeps its own
    assert anchors.value(data, b, _value(b) + 1.0) == _value(b) + 1.0
