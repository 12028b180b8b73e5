"""The fast tiers equal the reference tier on randomised shapes (property tests): the Numba tier
everywhere, the GPU tier (marker gpu) where a device is present."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minirobust import kernels
from minirobust.backend import to_gpu
from minirobust.errors import BackendError
from minirobust.kernels import cpu, reference
from minirobust.kernels.reference import output_size
from minirobust.layers import ReLU

from .tier_calls import HostCalls


@st.composite
def window_problems(draw):
    KH, KW = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    SH, SW = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    PH, PW = draw(st.integers(0, KH // 2)), draw(st.integers(0, KW // 2))
    H = draw(st.integers(max(KH - 2 * PH, 1), 11))
    W = draw(st.integers(max(KW - 2 * PW, 1), 11))
    N, C = draw(st.integers(1, 3)), draw(st.integers(1, 4))
    seed = draw(st.integers(0, 2**31 - 1))
    return (N, C, H, W), (KH, KW, SH, SW, PH, PW), seed


def _x(shape, seed, dtype=np.float32):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


@pytest.fixture(scope="module", params=["numba", pytest.param("gpu", marks=pytest.mark.gpu)])
def fast(request):
    """The tier under test: the Numba tier, or the GPU tier (arrays copied to the device)."""
    if request.param == "gpu":
        from minirobust.kernels import gpu  # noqa: PLC0415

        return HostCalls(gpu, to_gpu)
    return HostCalls(cpu)


@settings(max_examples=60, deadline=None)
@given(window_problems())
def test_im2col_col2im_match(fast, problem):
    _assert_im2col_col2im_match(*problem, fast)


def _assert_im2col_col2im_match(shape, win, seed, fast):
    x = _x(shape, seed)
    cols_ref = reference.im2col(x, *win)
    np.testing.assert_array_equal(fast.im2col(x, *win), cols_ref)  # pure copies: exactly equal
    g = _x(cols_ref.shape, seed + 1)
    np.testing.assert_allclose(fast.col2im(g, shape, *win), reference.col2im(g, shape, *win), rtol=1e-5, atol=1e-5)


@settings(max_examples=60, deadline=None)
@given(window_problems())
def test_maxpool_match(fast, problem):
    shape, win, seed = problem
    x = _x(shape, seed)
    y_ref, am_ref = reference.maxpool_forward(x, *win)
    y, am = fast.maxpool_forward(x, *win)
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_array_equal(am, am_ref)
    dy = _x(y.shape, seed + 1)
    np.testing.assert_allclose(fast.maxpool_backward(dy, am, shape, *win),
                               reference.maxpool_backward(dy, am_ref, shape, *win), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("shape, win", [
    ((2, 2, 3, 4), (2, 2, 1, 1, 3, 4)),  # padding wider than the kernel and the image
    ((1, 1, 5, 5), (3, 3, 2, 3, 2, 2)),  # strides that step over the image's edge
    ((3, 1, 1, 1), (1, 1, 1, 1, 2, 0)),  # a 1x1 image in rows of padding
    ((2, 2, 1, 1), (5, 5, 1, 1, 2, 2)),  # window offsets that see only padding on one side
    ((2, 3, 6, 40), (3, 5, 1, 1, 1, 2)),  # rows long enough for the slice-copy path
])
def test_im2col_col2im_match_with_big_padding(shape, win, fast):
    # padding's edge cases, which the random problems above (padding <= kernel // 2) never draw
    _assert_im2col_col2im_match(shape, win, 0, fast)


def test_col2im_is_adjoint_of_im2col(fast):
    # <im2col(x), g> == <x, col2im(g)>: the defining property of a correct backward
    shape, win = (2, 3, 7, 8), (3, 3, 2, 1, 1, 1)
    x, rng = _x(shape, 0, np.float64), np.random.default_rng(1)
    for tier in (reference, fast):
        cols = tier.im2col(x, *win)
        g = rng.standard_normal(cols.shape)
        assert np.isclose((cols * g).sum(), (x * tier.col2im(g, shape, *win)).sum())


def test_output_size():
    assert output_size(28, 5, 1, 0) == 24 and output_size(24, 3, 3, 0) == 8 and output_size(7, 3, 2, 1) == 4


def test_policy_selects_tier():
    with kernels.policy("never"):
        assert kernels.get_op("im2col") is reference.im2col
        assert set(kernels.describe().values()) == {"reference"}
    with kernels.policy("always"):
        assert kernels.get_op("im2col", np.zeros(1)) is cpu.im2col
    with pytest.raises(BackendError, match="unknown kernel policy"):
        kernels.set_policy("sometimes")
    with pytest.raises(KeyError):
        kernels.get_op("fft")


def test_a_tier_with_a_few_ops_falls_back_to_the_reference_tier_op_by_op(monkeypatch):
    # a new tier (here a stand-in with im2col only) starts small: every other op, and every
    # tuning choice it does not make, comes from the reference tier
    import types

    partial = types.SimpleNamespace(im2col=cpu.im2col, FUSED_STAGES=())
    monkeypatch.setattr(kernels, "_cpu_module", partial)
    with kernels.policy("always"):
        x = np.zeros((1, 1, 4, 4))
        assert kernels.get_op("im2col", x) is cpu.im2col and kernels.has_op("im2col", x)
        assert kernels.get_op("col2im", x) is reference.col2im and not kernels.has_op("col2im", x)
        assert kernels.op_tier("im2col", x) == "cpu" and kernels.op_tier("col2im", x) == "reference"
        assert kernels.tuning("INPUT_GRAD_CHUNK_BYTES", x) is None  # the reference tier's neutral choice
        assert not kernels.offers_fused("conv_relu_maxpool", x)  # its own choice: no fused stage
        assert kernels.describe()["maxpool_forward"] == "reference"
    with pytest.raises(KeyError, match="unknown tuning"):
        kernels.tuning("TILE_SIZE")


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 4), st.integers(1, 6), st.integers(1, 5), st.integers(1, 5), st.booleans(),
       st.integers(0, 2**31 - 1))
def test_conv_layout_ops_match(fast, N, F, OH, OW, bias, seed):
    rows = _x((F, N * OH * OW), seed)
    b = _x((F,), seed + 1) if bias else None
    y = fast.rows_to_nchw(rows, b, N, OH, OW)
    np.testing.assert_array_equal(y, reference.rows_to_nchw(rows, b, N, OH, OW))
    assert y.flags.c_contiguous and y.shape == (N, F, OH, OW)
    dy = _x((N, F, OH, OW), seed + 2)
    np.testing.assert_array_equal(fast.nchw_to_rows(dy), reference.nchw_to_rows(dy))
    if b is None:  # the two layouts are inverse to each other
        np.testing.assert_array_equal(reference.nchw_to_rows(y), rows)


# ----- the fused bias + ReLU + max-pool of a convolution's product rows ----------------------------

@st.composite
def pool_problems(draw):
    OH, OW = draw(st.integers(1, 10)), draw(st.integers(1, 10))
    KH, KW = draw(st.integers(1, min(OH, 4))), draw(st.integers(1, min(OW, 4)))
    SH, SW = draw(st.integers(1, 3)), draw(st.integers(1, 3))  # stride < kernel: overlapping windows
    N, F = draw(st.integers(1, 3)), draw(st.integers(1, 4))
    return N, F, OH, OW, (KH, KW, SH, SW), draw(st.integers(0, 2**31 - 1))


@settings(max_examples=60, deadline=None)
@given(pool_problems())
def test_rows_relu_maxpool_is_maxpool_of_relu_and_tiers_match(fast, problem):
    N, F, OH, OW, win, seed = problem
    rows = _x((F, N * OH * OW), seed)
    b = _x((F,), seed + 1)
    # the definition, from the layer-by-layer ops
    z = reference.rows_to_nchw(rows, b, N, OH, OW)
    y_def, _ = reference.maxpool_forward(z * (z > 0), *win, 0, 0)
    y_ref, pos_ref = reference.rows_relu_maxpool(rows, b, N, OH, OW, *win)
    y, pos = fast.rows_relu_maxpool(rows, b, N, OH, OW, *win)
    np.testing.assert_array_equal(y_ref, y_def)
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_array_equal(pos, pos_ref)
    assert pos.dtype == np.int32 and ((pos == -1) == (y <= 0)).all()
    # backward: the layer-by-layer chain rule (max-pool routing, then the ReLU mask)
    dy = _x(y.shape, seed + 2)
    drows_ref, db_ref = reference.relu_maxpool_to_rows(dy, pos_ref, OH, OW, *win)
    _, k = reference.maxpool_forward(z * (z > 0), *win, 0, 0)
    dz = reference.maxpool_backward(dy, k, z.shape, *win, 0, 0) * (z > 0)
    np.testing.assert_allclose(drows_ref, reference.nchw_to_rows(dz), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(db_ref, dz.sum(axis=(0, 2, 3)), rtol=1e-5, atol=1e-5)
    drows, db = fast.relu_maxpool_to_rows(dy, pos, OH, OW, *win)
    np.testing.assert_allclose(drows, drows_ref, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(db, db_ref, rtol=1e-5, atol=1e-5)


def test_rows_relu_maxpool_ties_and_nonpositive_windows(fast):
    # one image, one filter, a 2x4 plane pooled 2x2: a tie (first position wins), and a
    # window whose maximum is exactly 0 (ReLU passes nothing: position -1, output 0)
    rows = np.array([[3.0, 1.0, 0.0, -1.0,
                      3.0, 2.0, -2.0, 0.0]])
    for tier in (reference, fast):
        y, pos = tier.rows_relu_maxpool(rows, None, 1, 2, 4, 2, 2, 2, 2)
        np.testing.assert_array_equal(y.ravel(), [3.0, 0.0])
        np.testing.assert_array_equal(pos.ravel(), [0, -1])
        drows, db = tier.relu_maxpool_to_rows(np.array([[[[5.0, 7.0]]]]), pos, 2, 4, 2, 2, 2, 2)
        np.testing.assert_array_equal(drows, [[5.0, 0, 0, 0, 0, 0, 0, 0]])
        np.testing.assert_array_equal(db, [5.0])


@st.composite
def stage_problems(draw):
    """A conv -> ReLU -> pool stage: conv geometry, pool geometry, sizes (dead windows included)."""
    CK, CS, CP = draw(st.integers(1, 5)), draw(st.integers(1, 2)), draw(st.integers(0, 2))
    PK, PS = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    CP = min(CP, CK - 1)
    smallest = (PK - 1) * CS + CK  # one pooling window's worth of conv outputs
    H, W = draw(st.integers(smallest, 14)), draw(st.integers(smallest, 14))
    N, C, F = draw(st.integers(1, 3)), draw(st.integers(1, 3)), draw(st.integers(1, 5))
    return (N, C, H, W), F, (CK, CS, CP), (PK, PS), draw(st.integers(0, 2**31 - 1))


def _stage_gradient_problem(shape, F, conv, pool, seed, dtype):
    (N, C, H, W), (CK, CS, CP), (PK, PS) = shape, conv, pool
    OH, OW = output_size(H, CK, CS, CP), output_size(W, CK, CS, CP)
    weights = _x((F, C, CK, CK), seed, dtype)
    rows = weights.reshape(F, -1) @ reference.im2col(_x(shape, seed + 1, dtype), CK, CK, CS, CS, CP, CP)
    _, pos = reference.rows_relu_maxpool(rows, _x((F,), seed + 2, dtype), N, OH, OW, PK, PK, PS, PS)
    dy = _x(pos.shape, seed + 3, dtype)
    return dy, pos, weights, shape, OH, OW, PK, PK, PS, PS, (CS, CS), (CP, CP)


@settings(max_examples=60, deadline=None)
@given(stage_problems())
def test_conv_relu_maxpool_input_grad_tiers_match(problem):
    for dtype, tol in ((np.float64, 1e-12), (np.float32, 2e-5)):
        args = _stage_gradient_problem(*problem, dtype)
        want = reference.conv_relu_maxpool_input_grad(*args)
        got = cpu.conv_relu_maxpool_input_grad(*args)
        assert got.shape == args[3] and got.dtype == dtype and got.flags.c_contiguous
        np.testing.assert_allclose(got, want, rtol=tol, atol=tol)


def test_conv_relu_maxpool_input_grad_is_the_three_backward_steps():
    # the reference op against the layer-by-layer chain: pool routing, ReLU mask, conv backward
    dy, pos, weights, shape, OH, OW, *win, conv_stride, conv_pad = _stage_gradient_problem(
        (2, 2, 11, 10), 3, (3, 1, 1), (3, 2), 7, np.float64)
    drows, _ = reference.relu_maxpool_to_rows(dy, pos, OH, OW, *win)
    dcols = weights.reshape(3, -1).T @ drows
    want = reference.col2im(dcols, shape, 3, 3, 1, 1, 1, 1)
    np.testing.assert_allclose(reference.conv_relu_maxpool_input_grad(dy, pos, weights, shape, OH, OW, *win,
                                                                     conv_stride, conv_pad), want, rtol=1e-12)
    assert (pos == -1).any() and (pos >= 0).any()  # both live and dead windows took part


@pytest.mark.parametrize("size", [10, 200_000])  # below and above the size where the threads start
def test_sgd_momentum_step_tiers_match(size):
    rng = np.random.default_rng(size)
    param, grad, velocity = (rng.standard_normal(size).astype(np.float32) for _ in range(3))
    p_ref, v_ref = param.copy(), velocity.copy()
    reference.sgd_momentum_step(p_ref, grad, v_ref, 0.05, 2e-3, 0.9)
    # the formula, written out once more
    v_want = 0.9 * velocity - (0.05 * grad + 0.05 * 2e-3 * param)
    np.testing.assert_allclose(v_ref, v_want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(p_ref, param + v_want, rtol=1e-5, atol=1e-6)
    p_fast, v_fast = param.copy(), velocity.copy()
    cpu.sgd_momentum_step(p_fast, grad, v_fast, 0.05, 2e-3, 0.9)
    np.testing.assert_allclose(p_fast, p_ref, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(v_fast, v_ref, rtol=1e-6, atol=1e-7)
    with pytest.raises(ValueError, match="C-contiguous"):
        cpu.sgd_momentum_step(param[::2], grad[::2], velocity[::2], 0.05, 0.0, 0.9)


def test_nan_and_inf_propagate_through_pooling_and_the_fused_op_as_in_the_reference(fast):
    # the fast tier must never hide a NaN: a window holding one gives NaN (the first NaN wins the
    # argmax, as NumPy's does), and relu(-inf) is 0, relu(NaN) NaN, on every tier
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 7, 7))
    x[0, 1, 2, 3], x[1, 0, 0, 0], x[1, 2, 5, 5], x[0, 0, 4, 4] = np.nan, np.nan, np.inf, -np.inf
    for KH, SH in ((2, 2), (3, 2), (3, 3)):
        y_ref, am_ref = reference.maxpool_forward(x, KH, KH, SH, SH, 0, 0)
        y_fast, am_fast = fast.maxpool_forward(x, KH, KH, SH, SH, 0, 0)
        np.testing.assert_array_equal(y_fast, y_ref)  # NaN == NaN for assert_array_equal
        np.testing.assert_array_equal(am_fast, am_ref)
        assert np.isnan(y_ref).any()
    rows = x.transpose(1, 0, 2, 3).reshape(3, -1)
    b = np.array([0.1, -0.2, 0.3])
    for KH, SH in ((2, 2), (3, 3)):
        y_ref, pos_ref = reference.rows_relu_maxpool(rows, b, 2, 7, 7, KH, KH, SH, SH)
        y_fast, pos_fast = fast.rows_relu_maxpool(rows, b, 2, 7, 7, KH, KH, SH, SH)
        np.testing.assert_array_equal(y_fast, y_ref)
        np.testing.assert_array_equal(pos_fast, pos_ref)
        assert np.isnan(y_ref).any() and not (pos_ref[np.isnan(y_ref)] >= 0).any()  # NaN: no gradient
    relu = ReLU()
    np.testing.assert_array_equal(relu.forward(np.array([np.nan, -np.inf, np.inf, -1.0, 2.0])),
                                  [np.nan, 0.0, np.inf, 0.0, 2.0])
