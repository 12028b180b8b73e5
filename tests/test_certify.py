"""Certified robustness: interval bounds are sound (every point of the box, random or found by an
attack, has logits inside them), exact at eps 0, and their backward passes equal finite
differences in float64; Lipschitz constants against exact singular values; randomized smoothing
against a linear model whose answer is known; certified <= attacked <= clean per example."""

from __future__ import annotations

import math

import numpy as np
import pytest

from minirobust import nets
from minirobust.backend import to_host
from minirobust.certify import (IntervalPass, clopper_pearson_lower, ibp, ibp_loss_and_grads, input_box,
                                layer_norms, lipschitz_certify, smooth, spectral_norm)
from minirobust.certify.intervals import rule_for
from minirobust.data import separable_images
from minirobust.layers import BatchNorm1D, BatchNorm2D, Conv2D, Dense, Flatten, MaxPool2D, Normalize, ReLU
from minirobust.model import Sequential
from minirobust.robust import RobustTrainer, TrainConfig, pgd

from .helpers import mnist_arrays


def _bn_net(seed=0):
    """conv + BatchNorm (eval mode, non-trivial statistics) + pool + dense: every rule at once."""
    rng = np.random.default_rng(seed)
    bn2, bn1 = BatchNorm2D(3, dtype=np.float64), BatchNorm1D(6, dtype=np.float64)
    for bn in (bn2, bn1):
        C = bn.num_features
        bn.params["gamma"] = rng.uniform(-1.5, 1.5, C)  # a negative gamma flips the box
        bn.params["beta"] = rng.standard_normal(C)
        bn.running["mean"], bn.running["var"] = rng.standard_normal(C), rng.uniform(0.5, 2, C)
    return Sequential([Normalize(0.4, 0.3), Conv2D(1, 3, 3, padding=1, seed=1, dtype=np.float64), bn2, ReLU(),
                       MaxPool2D(2, 2), Flatten(), Dense(48, 6, seed=2, dtype=np.float64), bn1, ReLU(),
                       Dense(6, 4, seed=3, dtype=np.float64)], dtype=np.float64)


NETS = {"tiny_convnet": lambda: nets.tiny_convnet(seed=0), "batchnorm": _bn_net,
        "paper_mnist": lambda: nets.paper_mnist(seed=0, dtype=np.float64)}
SHAPES = {"tiny_convnet": (1, 8, 8), "batchnorm": (1, 8, 8), "paper_mnist": (1, 28, 28)}


@pytest.mark.parametrize("name", list(NETS))
@pytest.mark.parametrize("eps", [0.02, 0.1])
def test_every_point_of_the_box_has_logits_inside_the_bounds(name, eps):
    model, rng = NETS[name](), np.random.default_rng(1)
    x = rng.random((3, *SHAPES[name]))
    lo, hi = IntervalPass(model).logit_bounds(x, eps)
    box_lo, box_hi = input_box(x, eps)
    for _ in range(20):  # random points of the box, corners included
        t = rng.random(x.shape) if _ % 2 else rng.integers(0, 2, x.shape).astype(float)
        z = model.forward(box_lo + t * (box_hi - box_lo))
        assert np.all(z >= lo - 1e-9) and np.all(z <= hi + 1e-9)
    y = model.predict(x)  # the attack's best points too, and the margins' elided bounds
    x_adv = to_host(pgd(model, x, y, norm="inf", eps=eps, steps=20, rng=0).x_adv)
    z = model.forward(x_adv)
    assert np.all(z >= lo - 1e-9) and np.all(z <= hi + 1e-9)
    lower = IntervalPass(model).margin_bounds(x, y, eps)
    true_margins = z[np.arange(3), y][:, None] - z
    assert np.all(true_margins >= lower - 1e-9)
    # elision is tighter than subtracting logit bounds
    naive = lo[np.arange(3), y][:, None] - hi
    assert np.all(lower >= naive - 1e-9)


@pytest.mark.parametrize("name", list(NETS))
def test_at_eps_0_the_bounds_are_the_logits(name):
    model = NETS[name]()
    x = np.random.default_rng(2).random((2, *SHAPES[name]))
    lo, hi = IntervalPass(model).logit_bounds(x, 0.0)
    z = model.forward(x)
    np.testing.assert_allclose(lo, z, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(hi, z, rtol=1e-10, atol=1e-12)


def _rule_objective(layer, l, u, wl, wu):
    rule = rule_for(layer)
    lo, hi = rule.forward(l, u)
    return float((wl * lo).sum() + (wu * hi).sum()), rule


LAYERS = {
    "dense": (lambda: Dense(5, 4, seed=0, dtype=np.float64), (3, 5)),
    "conv2d": (lambda: Conv2D(2, 3, 3, stride=2, padding=1, seed=0, dtype=np.float64), (2, 2, 5, 5)),
    "relu": (ReLU, (3, 7)),
    "maxpool": (lambda: MaxPool2D(3, 2, padding=1), (2, 2, 5, 5)),
    "normalize": (lambda: Normalize([0.2, 0.5], [0.3, 0.7]), (2, 2, 3, 3)),
    "batchnorm2d": (lambda: _bn_net().layers[2], (2, 3, 4, 4)),
    "flatten": (Flatten, (2, 2, 3, 3)),
}


@pytest.mark.parametrize("kind", list(LAYERS))
def test_each_bound_rule_backward_equals_finite_differences(kind):
    make, shape = LAYERS[kind]
    layer, rng = make(), np.random.default_rng(3)
    layer.name = "layer"
    centre = rng.permutation(np.linspace(-1, 1, int(np.prod(shape)))).reshape(shape) + 0.013
    radius = rng.uniform(0.05, 0.3, shape)
    l, u = centre - radius, centre + radius
    out_l, _ = rule_for(layer).forward(l, u)
    wl, wu = rng.standard_normal(out_l.shape), rng.standard_normal(out_l.shape)
    value, rule = _rule_objective(layer, l, u, wl, wu)
    dl, du = rule.backward(wl, wu)
    h = 1e-6

    def numeric(array, idx):
        old = array[idx]
        array[idx] = old + h
        up = _rule_objective(layer, l, u, wl, wu)[0]
        array[idx] = old - h
        down = _rule_objective(layer, l, u, wl, wu)[0]
        array[idx] = old
        return (up - down) / (2 * h)

    for array, grad in ((l, dl), (u, du)):
        for idx in zip(*[rng.integers(0, s, 8) for s in shape]):
            assert abs(numeric(array, idx) - grad[idx]) < 1e-6, (kind, idx)
    for key, param in layer.params.items():
        for flat in rng.choice(param.size, size=min(param.size, 8), replace=False):
            idx = np.unravel_index(flat, param.shape)
            assert abs(numeric(param, idx) - rule.grads[key][idx]) < 1e-6, (kind, key, idx)


@pytest.mark.parametrize("name", ["tiny_convnet", "batchnorm"])
def test_the_ibp_loss_gradient_equals_finite_differences_for_the_whole_net(name):
    model, rng = NETS[name](), np.random.default_rng(4)
    x = rng.random((4, *SHAPES[name]))
    y = np.array([0, 1, 2, 1]) % model.layers[-1].out_features
    loss, grads, _ = ibp_loss_and_grads(model, x, y, 0.05)
    h = 1e-6
    for pname, param in model.parameters().items():
        for flat in rng.choice(param.size, size=min(param.size, 5), replace=False):
            idx = np.unravel_index(flat, param.shape)
            old = param[idx]
            param[idx] = old + h
            up = ibp_loss_and_grads(model, x, y, 0.05)[0]
            param[idx] = old - h
            down = ibp_loss_and_grads(model, x, y, 0.05)[0]
            param[idx] = old
            assert abs((up - down) / (2 * h) - grads[pname][idx]) < 1e-6 * max(1, abs(grads[pname][idx])), (pname, idx)
    # and the input: the box's ends move with x (away from the [0, 1] clip)
    interval = IntervalPass(model)
    x = 0.2 + 0.6 * x
    from minirobust.losses import SoftmaxCrossEntropy  # noqa: PLC0415

    def ibp_ce(xx):
        ce = SoftmaxCrossEntropy()
        value = float(ce.forward(-IntervalPass(model).margin_bounds(xx, y, 0.05), y))
        return value, ce

    _, ce = ibp_ce(x)
    interval.margin_bounds(x, y, 0.05)
    dl, du = interval.backward(-ce.backward())
    dx = dl + du  # both ends of the box are x -/+ eps
    for idx in zip(*[rng.integers(0, s, 6) for s in x.shape]):
        old = x[idx]
        x[idx] = old + h
        up = ibp_ce(x)[0]
        x[idx] = old - h
        down = ibp_ce(x)[0]
        x[idx] = old
        assert abs((up - down) / (2 * h) - dx[idx]) < 1e-6, idx


def test_ibp_certifies_only_what_attacks_cannot_break():
    # IBP training on 3,000 MNIST digits (warm-up, then eps and kappa ramped): some points certify,
    # and per example certified <= survives PGD <= correct
    x, y, xt, yt, mean, std = mnist_arrays()
    model = nets.paper_mnist(seed=0, mean=mean, std=std)
    RobustTrainer(model, TrainConfig(epochs=4, batch_size=50, norm="inf", eps=0.1, method="ibp", weight_decay=0,
                                     eps_warmup_epochs=1, eps_ramp_epochs=2), log=None, progress=False).fit(x[:3000], y[:3000])
    xt, yt = xt[:300], yt[:300]
    cert = ibp(model, xt, yt, 0.1)
    assert cert.certified_acc > 0.25
    clean_ok = to_host(model.predict(xt)) == yt
    attacked_ok = clean_ok & ~to_host(pgd(model, xt, yt, norm="inf", eps=0.1, steps=20, rng=0).success)
    assert np.all(cert.certified <= attacked_ok) and attacked_ok.mean() < clean_ok.mean()
    assert ibp(model, xt, yt, 0.0).certified_acc == pytest.approx(clean_ok.mean())


def test_spectral_norms_equal_the_exact_singular_values():
    dense = Dense(7, 5, seed=0, dtype=np.float64)
    assert spectral_norm(dense, (7,)) == pytest.approx(np.linalg.svd(dense.params["W"], compute_uv=False)[0], rel=1e-6)
    conv = Conv2D(2, 3, 3, stride=1, padding=1, seed=0, dtype=np.float64)
    # the convolution's matrix, column by column, from the layer itself
    basis = np.eye(2 * 5 * 5).reshape(-1, 2, 5, 5)
    conv.params["b"][:] = 0
    A = conv.forward(basis).reshape(len(basis), -1).T
    # its top two singular values are 0.02% apart, so power iteration creeps up slowly: from below
    sigma = np.linalg.svd(A, compute_uv=False)[0]
    assert sigma * (1 - 1e-3) <= spectral_norm(conv, (2, 5, 5)) <= sigma * (1 + 1e-12)
    inf_norms = dict(layer_norms(Sequential([conv, Flatten(), Dense(75, 4, seed=1, dtype=np.float64)],
                                            dtype=np.float64), (2, 5, 5), "inf"))
    assert inf_norms[conv.name] >= np.abs(A).sum(axis=1).max() - 1e-12  # padding only removes terms


def test_the_lipschitz_radius_is_never_beaten_by_an_attack():
    x, y = separable_images(100, seed=4)
    model = nets.mlp(784, hidden=(32,), classes=10, seed=0, dtype=np.float64)
    RobustTrainer(model, TrainConfig(epochs=3, batch_size=50), log=None, progress=False).fit(x, y)
    cert = lipschitz_certify(model, x, y, 0.0, norm="2")
    for i in np.flatnonzero(cert.margins > 0)[:10]:
        r = cert.margins[i]
        res = pgd(model, x[i : i + 1], y[i : i + 1], norm="2", eps=r, steps=50, rng=0, bounds=None)
        assert not res.success[0]


def test_clopper_pearson_matches_its_closed_forms_and_its_definition():
    assert clopper_pearson_lower(100, 100, 0.001) == pytest.approx(0.001 ** 0.01, rel=1e-12)
    assert clopper_pearson_lower(0, 50, 0.01) == 0.0
    p = clopper_pearson_lower(70, 100, 0.05)
    tail = sum(math.comb(100, i) * p**i * (1 - p) ** (100 - i) for i in range(70, 101))
    assert tail == pytest.approx(0.05, rel=1e-6) and 0.6 < p < 0.7


def test_smoothing_radius_on_a_linear_model_matches_the_distance_to_the_boundary():
    # f(x) = class 1 iff w.x + b > 0: the smoothed classifier's exact radius is |w.x + b| / ||w||
    w, b = np.array([3.0, -4.0]), 0.5
    layer = Dense(2, 2, dtype=np.float64)
    layer.params["W"] = np.stack([np.zeros(2), w], axis=1)
    layer.params["b"] = np.array([0.0, b])
    model = Sequential([layer], dtype=np.float64)
    x = np.array([[0.1, -0.05], [0.3, 0.2]])
    distance = np.abs(x @ w + b) / np.linalg.norm(w)
    cert = smooth(model, x, None, sigma=0.5, n0=100, n=20000, alpha=0.001, rng=0)
    assert np.all(cert.margins <= distance + 1e-9)  # a lower bound (at level alpha)
    assert np.all(cert.margins >= distance - 0.1)  # and a close one, with 20,000 samples


def test_a_stored_evaluation_of_another_model_counts_while_its_evaluation_settings_match(tmp_path):
    """Changing how the IBP nets train must not throw away evaluations of models trained elsewhere;
    changing how models are evaluated (here the number of test images) must."""
    import json
    from dataclasses import asdict, replace

    from minirobust.experiments.certified import CertifiedReproduction, CertifiedRun, CertifiedSettings

    old = CertifiedSettings(epochs=12, n_eval=100)
    record = CertifiedRun(net="paper-mnist", method="pgd", eps=0.1, clean_acc=99.0, pgd_acc=90.0, suite_acc=89.0,
                          certified_acc=0.0, settings=asdict(old))
    (tmp_path / "runs" / "others" / "paper-mnist_pgd").mkdir(parents=True)
    (tmp_path / "runs" / "others" / "paper-mnist_pgd" / "result.json").write_text(json.dumps([asdict(record)]))

    def assembled(settings):
        return CertifiedReproduction(settings, nets_=("none",), results_dir=tmp_path / "res",
                                     runs_dir=tmp_path / "runs", log=lambda *_: None).assemble()["runs"]

    assert list(assembled(replace(old, epochs=30, lr_halve_every=10))) == ["paper-mnist/pgd/0.1"]
    assert assembled(replace(old, n_eval=1000)) == {}
