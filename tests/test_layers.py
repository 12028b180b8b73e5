"""Every layer and the loss pass check_grad in float64, input AND parameter gradients, on every
kernel tier: the reference tier, the Numba tier and (marker gpu, where a device is present) the
GPU tier with the layer and its input on the device."""

from __future__ import annotations

import numpy as np
import pytest

from minirobust import kernels
from minirobust.backend import get_backend, set_backend, to_device, to_host
from minirobust.errors import InputError
from minirobust.gradcheck import check_grad
from minirobust.layers import Conv2D, Dense, Dropout, Flatten, MaxPool2D, Normalize, ReLU
from minirobust.losses import SoftmaxCrossEntropy

from .conftest import tie_free

TOL = 1e-6  # float64 central differences reach ~1e-8 here; 1e-6 leaves margin, bugs give > 1e-2

CONV_CASES = [
    # (N, C, H, W, F, kernel, stride, padding)
    (2, 3, 7, 6, 4, 3, 1, 0),
    (1, 2, 9, 9, 3, 3, 2, 1),  # batch 1, stride 2, padding
    (2, 1, 5, 7, 2, (3, 2), (2, 1), (1, 0)),  # odd sizes, rectangular kernel
    (3, 2, 6, 6, 2, 5, 1, 2),  # 'same' padding
]


@pytest.fixture(params=["never", "always", pytest.param("gpu", marks=pytest.mark.gpu)],
                ids=["reference", "numba", "gpu"])
def tier(request):
    """The kernel policy ("never": reference, "always": Numba), or the gpu backend: new layers and
    ``to_device`` arrays then live on the GPU, and the GPU tier runs their ops."""
    if request.param == "gpu":
        old = get_backend()
        set_backend("gpu")
        try:
            yield "gpu"
        finally:
            set_backend(old)
    else:
        with kernels.policy(request.param):
            yield request.param


@pytest.mark.parametrize("case", CONV_CASES)
def test_conv2d_gradients(case, tier):
    N, C, H, W, F, k, s, p = case
    layer = Conv2D(C, F, k, stride=s, padding=p, seed=1, dtype=np.float64)
    layer.params["b"] = to_device(np.random.default_rng(2).standard_normal(F))
    report = check_grad(layer, to_device(tie_free((N, C, H, W))))
    report.assert_ok(TOL)
    assert {c.name for c in report.checks} == {"x", "W", "b"}


POOL_CASES = [
    # (N, C, H, W, kernel, stride, padding)
    (2, 2, 6, 6, 2, 2, 0),
    (1, 3, 7, 7, 3, 2, 0),  # overlapping, batch 1, odd size
    (2, 1, 9, 8, 3, 2, 1),  # overlapping and padded (-inf padding)
    (2, 2, 9, 9, 3, 3, 0),  # the paper's 3x3/3
    (1, 1, 5, 6, (2, 3), (1, 2), (1, 1)),
]


@pytest.mark.parametrize("case", POOL_CASES)
def test_maxpool_gradients(case, tier):
    N, C, H, W, k, s, p = case
    check_grad(MaxPool2D(k, s, padding=p), to_device(tie_free((N, C, H, W), seed=3))).assert_ok(TOL)


def test_maxpool_padding_never_wins():
    x = -np.ones((1, 1, 3, 3)) * 5.0  # all inputs negative: a 0 pad would win, -inf must not
    for pol in ("never", "always"):
        with kernels.policy(pol):
            y = MaxPool2D(3, 1, padding=1).forward(x)
        assert np.all(y == -5.0), pol


def test_maxpool_ties_go_to_first():
    x = np.zeros((1, 1, 2, 2))
    for pol in ("never", "always"):
        with kernels.policy(pol):
            layer = MaxPool2D(2, 2)
            layer.forward(x)
            dx = layer.backward(np.ones((1, 1, 1, 1)))
        assert dx[0, 0, 0, 0] == 1 and dx.sum() == 1, pol


def test_dense_relu_flatten_normalize_gradients(backend_name):
    check_grad(Dense(7, 5, seed=0, dtype=np.float64), to_device(tie_free((3, 7)))).assert_ok(TOL)
    check_grad(ReLU(), to_device(tie_free((2, 3, 4, 5)))).assert_ok(TOL)
    check_grad(Flatten(), to_device(tie_free((2, 3, 4)))).assert_ok(TOL)
    check_grad(Normalize([0.1, 0.2, 0.3], [0.5, 2.0, 0.25]), to_device(tie_free((2, 3, 4, 4)))).assert_ok(TOL)
    check_grad(Normalize(0.13, 0.31), to_device(tie_free((4, 6)))).assert_ok(TOL)


def test_dropout_gradient_with_fixed_mask(backend_name):
    layer = Dropout(0.4, seed=0)

    class FixedMask:  # re-seed before every forward so each evaluation uses the same mask
        params, grads = {}, {}

        def forward(self, x):
            layer.rng = np.random.default_rng(7)
            return layer.forward(x, train=True)

        def backward(self, dy):
            return layer.backward(dy)

    check_grad(FixedMask(), to_device(tie_free((4, 10)))).assert_ok(TOL)
    x = to_device(tie_free((4, 10)))
    assert np.array_equal(layer.forward(x, train=False), x)  # identity in evaluation
    kept = layer.forward(to_device(np.ones((1000, 100))), train=True)
    assert abs((kept == 0).mean() - 0.4) < 0.01 and np.isclose(kept.max(), 1 / 0.6)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_softmax_cross_entropy_gradient(reduction, backend_name):
    logits = to_device(tie_free((5, 4), low=-3, high=3))
    labels = to_device(np.array([0, 3, 1, 1, 2]))
    report = check_grad(SoftmaxCrossEntropy(reduction), logits, forward_kwargs={"labels": labels})
    report.assert_ok(TOL)
    if reduction == "none":  # a scalar upstream gradient goes to every example (the attacks use 1.0)
        per_example, summed = SoftmaxCrossEntropy("none"), SoftmaxCrossEntropy("sum")
        per_example.forward(logits, labels), summed.forward(logits, labels)
        np.testing.assert_array_equal(to_host(per_example.backward(1.0)), to_host(summed.backward(1.0)))
        np.testing.assert_allclose(to_host(per_example.backward(0.5)),
                                   to_host(per_example.backward(to_device(np.full(5, 0.5)))))


def test_softmax_cross_entropy_is_stable_and_correct():
    loss = SoftmaxCrossEntropy()
    big = np.array([[1000.0, 0.0, -1000.0]])
    assert np.isfinite(loss.forward(big, np.array([0])))
    assert np.isclose(loss.forward(big, np.array([1])), 1000.0)
    z = np.array([[1.0, 2.0, 3.0]])
    expected = -np.log(np.exp(2.0) / np.exp(z).sum())
    assert np.isclose(loss.forward(z, np.array([1])), expected)


def test_noncontiguous_inputs():
    base = tie_free((2, 3, 10, 12))
    view = base[:, :, ::2, 1::2]  # (2, 3, 5, 6), strided
    assert not view.flags.c_contiguous
    for pol in ("never", "always"):
        with kernels.policy(pol):
            check_grad(Conv2D(3, 2, 3, padding=1, seed=0, dtype=np.float64), view).assert_ok(TOL)
            check_grad(MaxPool2D(3, 2, padding=1), view).assert_ok(TOL)
    check_grad(Dense(6, 3, seed=0, dtype=np.float64), tie_free((6, 4)).T).assert_ok(TOL)


def test_backward_does_not_modify_dy():
    rng = np.random.default_rng(0)
    x = tie_free((2, 2, 6, 6))
    for layer in (Conv2D(2, 3, 3, seed=0, dtype=np.float64), MaxPool2D(3, 2), ReLU(), Normalize(0.1, 0.2)):
        y = layer.forward(x)
        dy = rng.standard_normal(y.shape)
        saved = dy.copy()
        layer.backward(dy)
        assert np.array_equal(dy, saved), type(layer).__name__


def test_param_grads_can_be_skipped():
    layer = Conv2D(1, 2, 3, seed=0)
    x = tie_free((2, 1, 5, 5), dtype=np.float32)
    y = layer.forward(x)
    dx = layer.backward(np.ones_like(y), param_grads=False)
    assert layer.grads == {} and dx.shape == x.shape


@pytest.mark.parametrize("bad, match", [
    (np.zeros((2, 3, 5)), "4 axes"),
    (np.zeros((2, 2, 5, 5)), "channels"),
    (np.zeros((2, 3, 5, 5), dtype=np.int32), "dtype int32"),
    (np.zeros((0, 3, 5, 5)), "empty batch"),
    (np.zeros((1, 3, 2, 2)), "smaller than the kernel"),
    ([[1.0]], "must be an array"),
])
def test_conv_bad_input_errors(bad, match):
    with pytest.raises(InputError, match=match):
        Conv2D(3, 4, 3, seed=0).forward(bad)


def test_layer_construction_errors():
    with pytest.raises(InputError, match="padding"):
        MaxPool2D(2, 2, padding=2)
    with pytest.raises(InputError, match="kernel_size"):
        Conv2D(1, 1, "3")
    with pytest.raises(InputError, match="init"):
        Dense(2, 2, init="zeros")
    with pytest.raises(InputError, match="std"):
        Normalize(0.0, 0.0)
    with pytest.raises(InputError, match="features"):
        Dense(4, 2, seed=0).forward(np.zeros((3, 5), dtype=np.float32))


def test_conv2d_is_its_forward_and_backward_pair():
    # issue 27 item 2: the fused stage's needs live in fused.py and in the shared product functions,
    # not as stage-only methods of the layer
    from minirobust.layers import Conv2D

    public = {name for name, value in vars(Conv2D).items() if callable(value) and not name.startswith("_")}
    assert public == {"forward", "backward", "forget", "config", "output_shape", "check_input"}, public


def test_each_layer_declares_the_shapes_it_stores():
    # issue 27 item 7: the checkpoint's size check reads these declarations, so they must be true
    from minirobust import nets
    from minirobust.layers import LAYER_TYPES

    layers = [layer for net in (nets.paper_mnist(), nets.large_mnist(), nets.paper_cifar10(width=0.25))
              for layer in net.layers]
    seen = set()
    for layer in layers:
        stored = {**layer.params, **layer.running}
        declared = LAYER_TYPES[layer.kind].declared_shapes(layer.config())
        assert {k: tuple(v.shape) for k, v in stored.items()} == declared, layer.kind
        seen.add(layer.kind)
    assert {"conv2d", "dense", "batchnorm2d", "maxpool2d", "relu", "flatten"} <= seen, seen
