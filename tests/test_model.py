"""Sequential: input gradient of a whole net, the paper's net, training, bad input."""

from __future__ import annotations

import numpy as np
import pytest

from minirobust import fused, kernels, nets
from minirobust.backend import get_xp, to_device, to_host
from minirobust.data import iterate_minibatches, separable_images
from minirobust.errors import BackendMismatchError, CheckpointError, InputError
from minirobust.gradcheck import check_grad
from minirobust.layers import Conv2D, MaxPool2D, ReLU
from minirobust.model import Sequential
from minirobust.kernels import cpu as cpu_tier
from minirobust.kernels import reference
from minirobust.optim import SGD
from minirobust.robust import fast_method, pgd

from .conftest import tie_free


@pytest.mark.parametrize("fuse", ["auto", True, False])
@pytest.mark.parametrize("pol", ["never", "always"])
def test_whole_net_input_gradient_matches_finite_differences(pol, fuse):
    model = nets.tiny_convnet(in_channels=2, size=9, classes=3, seed=0)  # conv-pool-conv-pool-dense-dense
    model.fuse = fuse
    x = tie_free((2, 2, 9, 9), low=0.0, high=1.0)
    with kernels.policy(pol):
        report = check_grad(model, x)
        ran = [type(s).__name__ for s in model._stages]
    report.assert_ok(1e-6)
    assert len(report.checks) == 1 + len(model.parameters())
    # "auto" fuses where the tier offers it (the Numba tier, not the reference tier); True and
    # False are obeyed on either tier
    assert ("ConvReluPool" in ran) == (fuse is True or (fuse == "auto" and pol == "always"))


@pytest.mark.parametrize("path", ["default", "rows", "rows-one-image-chunks", "winners"])
@pytest.mark.parametrize("pol", ["never", "always"])
@pytest.mark.parametrize("build", [nets.paper_mnist, nets.large_mnist])
def test_fused_stages_give_the_layer_by_layer_numbers(build, pol, path, backend_name, monkeypatch):
    tier = reference if pol == "never" else cpu_tier
    if path.startswith("rows"):  # the input gradient through drows -> W.T @ drows -> col2im
        monkeypatch.setattr(tier, "prefers_winners_input_grad", lambda *geometry: False)
    if path == "rows-one-image-chunks":  # ... and a chunk of images at a time
        monkeypatch.setattr(tier, "INPUT_GRAD_CHUNK_BYTES", 1)
    if path == "winners":  # straight from the pool winners, on either tier
        monkeypatch.setattr(tier, "prefers_winners_input_grad", lambda *geometry: True)
    model = build(seed=0, dtype=np.float64)
    x, y = to_device(np.random.default_rng(1).random((6, 1, 28, 28))), to_device(np.arange(6))
    results = {}
    for fuse in (False, True):
        model.fuse = fuse
        with kernels.policy(pol):
            loss, grads, dx = model.loss_and_grads(x, y)
            ascent_dx = model.input_gradient(x, y)
            logits = model.forward(x, train=True)
            model.backward(logits - logits.mean(), input_grad=False)  # descent-only backward
            results[fuse] = (loss, to_host(dx), to_host(ascent_dx), {k: to_host(v) for k, v in grads.items()},
                             {k: to_host(v) for k, v in model.gradients().items()},
                             [type(s).__name__ for s in model._stages])
    (l0, dx0, a0, g0, d0, s0), (l1, dx1, a1, g1, d1, s1) = results[False], results[True]
    assert s0.count("ConvReluPool") == 0 and s1.count("ConvReluPool") == 2
    assert l0 == pytest.approx(l1, rel=1e-12)
    for got, want in ((dx1, dx0), (a1, a0)):
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)
    for name in g0:
        np.testing.assert_allclose(g1[name], g0[name], rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(d1[name], d0[name], rtol=1e-9, atol=1e-12)


def test_which_stages_take_the_input_gradient_from_the_pool_winners():
    # the Numba tier's rule (cpu.WINNERS_MAX_WORK) picks the winners kernel where it is less work
    # than the product: both benchmark nets' stages; not a 2x2 pool over a 1x1 convolution
    x = np.random.default_rng(0).random((2, 1, 28, 28), dtype=np.float32)
    pointwise = Sequential([Conv2D(1, 4, 1), ReLU(), MaxPool2D(2)])
    for model, expected in ((nets.paper_mnist(seed=0), [True, True]), (nets.large_mnist(seed=0), [True, True]),
                            (pointwise, [False])):
        with kernels.policy("always"):
            model.forward(x)
            stages = [s for s in model._stages if isinstance(s, fused.ConvReluPool)]
            assert [s._input_grad_from_winners(x) for s in stages] == expected
        with kernels.policy("never"):  # the reference tier's op IS the rows path: nothing to choose
            assert not any(s._input_grad_from_winners(x) for s in stages)


def test_image_chunks_cover_the_batch_in_near_equal_parts():
    assert fused.image_chunks(10, 100, budget=1000) == [(0, 10)]
    assert fused.image_chunks(10, 100, budget=400) == [(0, 4), (4, 8), (8, 10)]
    assert fused.image_chunks(5, 100, budget=1) == [(i, i + 1) for i in range(5)]  # at least one image
    assert fused.image_chunks(7, 100, budget=None) == [(0, 7)]  # a tier without a chunk size
    chunks = fused.image_chunks(100, 627_200, budget=cpu_tier.INPUT_GRAD_CHUNK_BYTES)  # larger net's conv 2
    assert chunks[0] == (0, 13) and chunks[-1][1] == 100 and len(chunks) == 8


def test_repr_and_summary_show_the_fusion_choice():
    model = nets.paper_mnist(seed=0)
    with kernels.policy("always"):
        text, table = repr(model), model.summary((1, 28, 28))
        assert "fuse='auto': fused stages on the cpu tier" in text
        assert "[1-3] ConvReluPool: Conv2D(" in text and "[4-6] ConvReluPool" in text
        assert table.count("fused 1-3") == 3 and table.count("fused 4-6") == 3
        model.fuse = False
        assert "fuse=False: layer by layer on the cpu tier" in repr(model)
        assert "ConvReluPool" not in repr(model) and "fused" not in model.summary((1, 28, 28)).split("\n", 1)[1]
    with kernels.policy("never"):
        model.fuse = "auto"
        assert "fuse='auto': layer by layer on the reference tier" in repr(model)
        model.fuse = True
        assert "fuse=True: fused stages on the reference tier" in repr(model)


def test_one_call_steps_layer_by_layer_on_the_fast_tier(backend_name):
    model = nets.paper_mnist(seed=0)  # on backend_name's device: the Numba tier, or the GPU tier
    x = to_device(np.random.default_rng(0).random((3, 1, 28, 28), dtype=np.float32))
    with kernels.policy("always"):
        model.forward(x)  # fused: the ReLU and pool layers hold nothing of their own
        assert model.layers[2]._mask is None and model.layers[3]._argmax is None
        assert f"fused stages on the {backend_name} tier" in repr(model)
        with model.layer_by_layer():  # the one call; the kernels stay on the fast tier
            assert kernels.tier_for(x) == backend_name
            model.forward(x)
            stages = [type(s).__name__ for s in model._stages]
            relu, pool = model.layers[2], model.layers[3]
            assert relu._mask.shape == (3, 32, 24, 24) and pool._argmax.shape == (3, 32, 8, 8)
            assert all(layer._x_shape is not None for layer in (model.layers[1], model.layers[4], pool))
        assert "ConvReluPool" not in stages and model.fuse == "auto"  # restored afterwards
        model.forward(x)  # fused again: the stale per-layer state is cleared, not left behind
        assert model.layers[2]._mask is None and model.layers[3]._argmax is None and model.layers[1]._cols is None
        with pytest.raises(RuntimeError, match="ReLU.backward called before forward"):
            model.layers[2].backward(x)  # stepping through a layer the fused stage replaced says so


def test_fuse_rejects_unknown_choices():
    model = nets.paper_mnist(seed=0)
    for bad in ("yes", 1, None):
        with pytest.raises(InputError, match="fuse must be 'auto', True or False"):
            model.fuse = bad
    assert Sequential(model.layers, fuse=False).fuse is False


def test_a_device_array_given_to_a_host_model_is_a_named_error():
    class FakeCupyArray:  # an object whose type lives in a 'cupy' module, like cupy.ndarray
        shape, dtype, ndim = (2, 1, 28, 28), np.dtype(np.float32), 4

    FakeCupyArray.__module__ = "cupy._core.core"
    model = nets.paper_mnist(seed=0)
    assert model.device == "cpu"
    for call in (lambda: model.forward(FakeCupyArray()), lambda: model.input_gradient(FakeCupyArray()),
                 lambda: fast_method(model, FakeCupyArray()), lambda: pgd(model, FakeCupyArray())):
        with pytest.raises(BackendMismatchError, match="model input|attack input"):
            call()
    x = np.zeros((2, 1, 28, 28), np.float32)
    with pytest.raises(BackendMismatchError, match="labels is a CuPy"):
        model.loss_and_grads(x, FakeCupyArray())


def test_host_arrays_are_moved_to_the_models_device(backend_name):
    # on the cpu backend this is the identity; on a GPU (marker gpu) the host batch is copied over
    model = nets.paper_mnist(seed=0).to(backend_name)
    x, y = np.random.default_rng(0).random((4, 1, 28, 28), dtype=np.float32), np.arange(4)
    assert model.device == backend_name
    logits = model.forward(x)
    loss, grads, dx = model.loss_and_grads(x, y)
    adv = fast_method(model, x, y, eps=0.1)
    assert all(get_xp(a) is get_xp(model.parameters()["1_conv2d.W"]) for a in (logits, dx, adv.x_adv))
    host = nets.paper_mnist(seed=0).to("cpu")  # the active backend is backend_name's
    np.testing.assert_allclose(to_host(logits), host.forward(x), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(to_host(dx), host.loss_and_grads(x, y)[2], rtol=1e-3, atol=1e-6)


def test_loss_and_grads_input_gradient_matches_finite_differences():
    model = nets.tiny_convnet(seed=3)
    x, y = tie_free((3, 1, 8, 8), low=0.0, high=1.0), np.array([0, 2, 1])

    class LossOfModel:  # the scalar loss as a function of x, for check_grad
        params, grads = {}, {}

        def forward(self, x):
            return np.array(model.loss_and_grads(x, y)[0])

        def backward(self, dy):
            return model.loss_and_grads(x, y)[2] * dy

    check_grad(LossOfModel(), x).assert_ok(1e-6)
    # input_gradient (sum reduction, eval mode) is N times the mean-loss gradient
    np.testing.assert_allclose(model.input_gradient(x, y), 3 * model.loss_and_grads(x, y)[2], rtol=1e-10)


def test_paper_mnist_architecture():
    model = nets.paper_mnist(seed=0)
    assert model.num_parameters() == 105_506
    kinds = [layer.kind for layer in model.layers]
    assert kinds == ["normalize", "conv2d", "relu", "maxpool2d", "conv2d", "relu", "maxpool2d",
                     "flatten", "dense", "relu", "dense"]
    assert model.layers[3].kernel_size == (3, 3) and model.layers[3].stride == (3, 3)
    x = np.random.default_rng(0).random((2, 1, 28, 28), dtype=np.float32)
    assert model.forward(x).shape == (2, 10)
    assert "105,506" in model.summary((1, 28, 28))


def test_same_seed_same_weights_and_float64_on_request():
    a, b = nets.paper_mnist(seed=5), nets.paper_mnist(seed=5)
    for k, v in a.parameters().items():
        assert np.array_equal(v, b.parameters()[k]) and v.dtype == np.float32
    c = nets.paper_mnist(seed=6)
    assert not np.array_equal(a.parameters()["1_conv2d.W"], c.parameters()["1_conv2d.W"])
    d = a.astype("float64")
    assert all(v.dtype == np.float64 for v in d.parameters().values())
    assert nets.paper_mnist(seed=5, dtype=np.float64).parameters()["8_dense.W"].dtype == np.float64


def test_float32_end_to_end():
    model = nets.paper_mnist(seed=0)
    x = np.random.default_rng(0).random((3, 1, 28, 28))  # float64 input is cast, not promoted
    loss, grads, dx = model.loss_and_grads(x, np.array([1, 2, 3]))
    assert dx.dtype == np.float32 and all(g.dtype == np.float32 for g in grads.values())


def test_paper_mnist_trains_on_separable_task():
    x, y = separable_images(1500, seed=0)
    xt, yt = separable_images(500, seed=1)
    model = nets.paper_mnist(seed=0, mean=float(x.mean()), std=float(x.std()))
    opt = SGD(model, lr=0.01, momentum=0.9)
    rng = np.random.default_rng(0)
    for _ in range(2):
        for xb, yb in iterate_minibatches(x, y, 50, rng=rng):
            _, grads, _ = model.loss_and_grads(xb, yb)
            opt.step(grads)
    assert model.accuracy(xt, yt) > 0.95


def test_backward_skipping_param_grads_gives_same_input_gradient():
    model = nets.paper_mnist(seed=0)
    x, y = np.random.default_rng(1).random((4, 1, 28, 28), dtype=np.float32), np.array([0, 1, 2, 3])
    _, _, dx_full = model.loss_and_grads(x, y, reduction="sum", train=False)
    for layer in model.layers:
        layer.grads = {}
    dx_only = model.input_gradient(x, y)
    np.testing.assert_allclose(dx_only, dx_full, rtol=1e-6)
    assert model.gradients() == {}  # nothing computed


def test_input_gradient_defaults_to_predicted_labels():
    model = nets.paper_mnist(seed=0)
    x = np.random.default_rng(1).random((4, 1, 28, 28), dtype=np.float32)
    np.testing.assert_array_equal(model.input_gradient(x), model.input_gradient(x, model.predict(x)))


def test_state_dict_round_trip_and_config():
    model = nets.paper_mnist(seed=0)
    clone = Sequential.from_config(model.config())
    clone.load_state_dict(model.state_dict())
    x = np.random.default_rng(1).random((2, 1, 28, 28), dtype=np.float32)
    np.testing.assert_array_equal(model.forward(x), clone.forward(x))
    bad = model.state_dict()
    bad["1_conv2d.W"] = bad["1_conv2d.W"][:, :, :3]
    with pytest.raises(CheckpointError, match="shape"):
        clone.load_state_dict(bad)
    with pytest.raises(CheckpointError, match="missing"):
        clone.load_state_dict({})


@pytest.mark.parametrize("bad, match", [
    (np.zeros((2, 3, 28, 28), dtype=np.float32), "channels"),
    (np.zeros((2, 28, 28), dtype=np.float32), "4 axes"),
    (np.zeros((2, 1, 28, 28), dtype=np.uint8), "dtype uint8"),
    (np.full((2, 1, 28, 28), np.nan, dtype=np.float32), "NaN"),
    (np.full((2, 1, 28, 28), np.inf, dtype=np.float32), "inf"),
    (np.zeros((0, 1, 28, 28), dtype=np.float32), "empty batch"),
])
def test_bad_model_input(bad, match):
    with pytest.raises(InputError, match=match):
        nets.paper_mnist(seed=0).forward(bad)


def test_bad_labels():
    model = nets.paper_mnist(seed=0)
    x = np.zeros((2, 1, 28, 28), dtype=np.float32)
    with pytest.raises(InputError, match="out of range"):
        model.loss_and_grads(x, np.array([0, 10]))
    with pytest.raises(InputError, match="integers"):
        model.loss_and_grads(x, np.array([0.0, 1.0]))
    with pytest.raises(InputError, match=r"shape \(2,\)"):
        model.loss_and_grads(x, np.array([0, 1, 2]))


def test_backward_can_skip_the_input_gradient():
    model = nets.paper_mnist(seed=0)
    x, y = np.random.default_rng(1).random((4, 1, 28, 28), dtype=np.float32), np.array([0, 1, 2, 3])
    _, full, _ = model.loss_and_grads(x, y)
    full = {k: v.copy() for k, v in full.items()}
    from minirobust.losses import SoftmaxCrossEntropy

    loss = SoftmaxCrossEntropy()
    loss.forward(model.forward(x, train=True), y)
    assert model.backward(loss.backward(), input_grad=False) is None
    for k, v in model.gradients().items():
        np.testing.assert_array_equal(v, full[k])


@pytest.mark.parametrize("fuse", [True, False])
def test_a_nan_weight_gives_nan_logits_on_every_tier(fuse):
    # one NaN filter in the first convolution: every tier, fused or not, must say NaN where the
    # layer-by-layer reference tier does (the fused stage once pooled it away)
    model = nets.paper_mnist(seed=0, dtype=np.float64)
    model.parameters()["1_conv2d.W"][3] = np.nan
    model.fuse = fuse
    x = np.random.default_rng(0).random((4, 1, 28, 28))
    with kernels.policy("never"), model.layer_by_layer():
        want = model.forward(x)
    with kernels.policy("always"):
        got = model.forward(x)
    assert np.isnan(want).all()
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
