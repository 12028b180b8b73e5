"""The gradient checker itself is tested: it must catch broken backward passes."""

from __future__ import annotations

import numpy as np
import pytest

from minirobust.errors import InputError
from minirobust.gradcheck import check_grad
from minirobust.layers import Conv2D, Dense, MaxPool2D, ReLU

from .conftest import tie_free


@pytest.fixture
def sign_flipped_relu(monkeypatch):
    """ReLU with a deliberately broken backward (the gradient's sign flipped)."""
    original = ReLU.backward
    monkeypatch.setattr(ReLU, "backward", lambda self, dy, param_grads=True: -original(self, dy, param_grads))
    return ReLU()


def test_catches_sign_flip(sign_flipped_relu):
    report = check_grad(sign_flipped_relu, tie_free((2, 3, 4)))
    assert report.verdict == "bad" and not report.ok()
    with pytest.raises(AssertionError, match="gradient check failed"):
        report.assert_ok()


@pytest.mark.parametrize("mode", ["elementwise", "directional"])
def test_catches_wrong_parameter_gradient(mode, monkeypatch):
    layer = Dense(4, 3, seed=0, dtype=np.float64)
    original = Dense.backward

    def broken(self, dy, param_grads=True):
        dx = original(self, dy, param_grads)
        self.grads["W"] = self.grads["W"] * 1.01  # a 1% error in dW only
        return dx

    monkeypatch.setattr(Dense, "backward", broken)
    report = check_grad(layer, tie_free((5, 4)), mode=mode)
    by_name = {c.name: c for c in report.checks}
    assert by_name["W"].max_rel_error > 1e-3
    assert by_name["x"].max_rel_error < 1e-6 and by_name["b"].max_rel_error < 1e-6
    assert not report.ok()


def test_catches_transposed_output_with_random_dy(monkeypatch):
    # a backward that swaps two output positions passes with dy = ones, not with random dy
    layer = MaxPool2D(2, 2)
    original = MaxPool2D.backward
    monkeypatch.setattr(MaxPool2D, "backward",
                        lambda self, dy, param_grads=True: original(self, dy[:, :, ::-1, :], param_grads))
    x = tie_free((1, 1, 4, 4))
    assert check_grad(layer, x, dy=np.ones((1, 1, 2, 2))).ok()  # the blind spot of an all-ones dy
    assert not check_grad(layer, x).ok()  # the default random dy catches it


def test_directional_mode_passes_correct_layers():
    layer = Conv2D(3, 4, 3, padding=1, seed=0, dtype=np.float64)
    report = check_grad(layer, tie_free((2, 3, 8, 8)), mode="directional")
    report.assert_ok(1e-6)
    assert all(c.index == () for c in report.checks)


def test_detects_modified_dy(monkeypatch):
    def in_place(self, dy, param_grads=True):
        dy *= self._mask
        return dy

    monkeypatch.setattr(ReLU, "backward", in_place)
    report = check_grad(ReLU(), tie_free((3, 4)))
    assert report.dy_modified and report.verdict == "bad"
    assert any("modified" in w for w in report.warnings)


def test_kink_warning():
    x = tie_free((1, 6))
    x[0, 2] = 0.0  # ReLU evaluated exactly at its kink
    report = check_grad(ReLU(), x)
    assert report.checks[0].kink and report.checks[0].index == (0, 2)
    assert "kink" in str(report)


def test_report_lists_worst_entry_and_requires_float64():
    report = check_grad(Dense(3, 2, seed=0, dtype=np.float64), tie_free((2, 3)))
    assert "verdict" in str(report) and report.worst.name in {"x", "W", "b"}
    with pytest.raises(InputError, match="float64"):
        check_grad(Dense(3, 2, seed=0), tie_free((2, 3)))
