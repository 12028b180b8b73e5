"""The GPU tier without a GPU: every CUDA source compiles with nvcc, and every kernel, run
serially on the host through its real wrapper in kernels/gpu.py (g++ and host_shim.h, see
tests/cuda_emulation.py), gives the reference tier's numbers in float32 and float64; so does a
whole robust training step with every op on the emulated GPU tier. Tests that need a real GPU
(marker gpu) are in test_gpu.py."""

from __future__ import annotations

import ctypes
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from minirobust import kernels, nets
from minirobust.backend import to_gpu
from minirobust.kernels import gpu, reference
from minirobust.kernels.reference import output_size
from minirobust.robust import RobustTrainer, TrainConfig

from .cuda_emulation import emulated_builder
from .tier_calls import HostCalls

REAL_BUILDER = gpu.build_kernels  # CuPy's, before any fixture swaps in the host emulation
ARCHS = ("sm_90", "sm_75")  # the H200's, and the oldest CUDA 13 still compiles for


@pytest.mark.parametrize("real", ["float", "double"])
@pytest.mark.parametrize("source", gpu.SOURCES)
def test_every_cuda_source_compiles_with_nvcc(source, real, tmp_path):
    if shutil.which("nvcc") is None:
        pytest.skip("nvcc is not on the PATH: cannot compile the CUDA sources here")
    for arch in ARCHS:
        cmd = ["nvcc", f"-arch={arch}", "-cubin", "-std=c++14", f"-DREAL={real}", f"-I{gpu.SOURCE_DIR}",
               str(gpu.SOURCE_DIR / source), "-o", str(tmp_path / f"{source}.{arch}.cubin")]
        run = subprocess.run(cmd, capture_output=True, text=True)
        assert run.returncode == 0, f"nvcc {arch} {source} REAL={real}:\n{run.stderr}"
        assert (tmp_path / f"{source}.{arch}.cubin").stat().st_size > 0


def _nvrtc_library():
    """libnvrtc from the nvidia-cuda-nvrtc wheel (a [dev] dependency on Linux), or None."""
    try:
        import nvidia  # noqa: PLC0415
    except ImportError:
        return None
    found = sorted(p for base in nvidia.__path__ for p in Path(base).glob("cu*/lib/libnvrtc.so*"))
    return ctypes.CDLL(str(found[0])) if found else None


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_nvrtc_compiles_the_module_as_cupy_will(dtype):
    # CuPy builds the GPU tier with NVRTC from gpu.source_code() and gpu.compile_options(): the same
    # call here, without a GPU (NVRTC needs none), then every kernel gpu.py launches is in the PTX
    lib = _nvrtc_library()
    if lib is None:
        pytest.skip("libnvrtc not found (pip install nvidia-cuda-nvrtc)")
    prog = ctypes.c_void_p()
    assert lib.nvrtcCreateProgram(ctypes.byref(prog), gpu.source_code().encode(), b"minirobust.cu", 0, None, None) == 0
    # CuPy 14 adds these to ours (cupy/cuda/compiler.py); -arch=compute_90 gives PTX to read back
    cupy_adds = [b"-arch=compute_90", b"--device-as-default-execution-space", b"-ftz=true"]
    options = [o.encode() for o in gpu.compile_options(dtype)] + cupy_adds
    result = lib.nvrtcCompileProgram(prog, len(options), (ctypes.c_char_p * len(options))(*options))
    size = ctypes.c_size_t()
    lib.nvrtcGetProgramLogSize(prog, ctypes.byref(size))
    log = ctypes.create_string_buffer(size.value)
    lib.nvrtcGetProgramLog(prog, log)
    assert result == 0, log.value.decode()
    lib.nvrtcGetPTXSize(prog, ctypes.byref(size))
    ptx = ctypes.create_string_buffer(size.value)
    lib.nvrtcGetPTX(prog, ptx)
    lib.nvrtcDestroyProgram(ctypes.byref(prog))
    entries = set(re.findall(r"\.entry (\w+)", ptx.value.decode()))
    launched = set(re.findall(r'launch\("(\w+)"', Path(gpu.__file__).read_text()))
    launched |= set(re.findall(r'_op\("(\w+)"', Path(gpu.__file__).read_text()))
    assert launched and launched <= entries, launched - entries


def test_the_kernels_hard_code_no_float_type():
    for source in gpu.SOURCES:
        text = (gpu.SOURCE_DIR / source).read_text()
        code = "\n".join(line.split("//")[0] for line in text.splitlines())
        assert " float" not in code and " double" not in code and "(float)" not in code, source


@pytest.fixture(scope="module")
def host_builder(tmp_path_factory):
    """The kernels compiled for the host once per module (the builder caches each dtype's library)."""
    if shutil.which("g++") is None:
        pytest.skip("g++ is not on the PATH: cannot emulate the CUDA kernels")
    return emulated_builder(tmp_path_factory.mktemp("cuda_host"))


def _swapped_builder(builder):
    saved = gpu.build_kernels, gpu._built
    gpu.build_kernels, gpu._built = builder, {}
    return saved


@pytest.fixture
def emulated(host_builder):
    """kernels/gpu.py with its kernels compiled for the host; NumPy arrays in and out. Swapped in
    for one test and back out after it, so a test on the card never meets the emulation."""
    saved = _swapped_builder(host_builder)
    yield gpu
    gpu.build_kernels, gpu._built = saved


@pytest.fixture(params=["host-emulation", pytest.param("device", marks=pytest.mark.gpu)])
def gpu_tier(request):
    """The GPU tier's ops with NumPy arrays in and out: run serially on the host (every CI run),
    or (marker gpu) on the card, with the builder the backend had at import (CuPy's)."""
    if request.param != "device":
        yield request.getfixturevalue("emulated")
        return
    saved = _swapped_builder(REAL_BUILDER)
    yield HostCalls(gpu, to_gpu)
    gpu.build_kernels, gpu._built = saved


GEOMETRIES = [  # (N, C, H, W, KH, KW, SH, SW, PH, PW): padding, stride > 1, overlap, odd sizes
    (2, 3, 7, 7, 3, 3, 1, 1, 1, 1),
    (1, 2, 9, 8, 3, 2, 2, 1, 1, 0),
    (3, 1, 6, 6, 2, 2, 2, 2, 0, 0),
    (2, 2, 5, 7, 5, 3, 1, 2, 2, 1),
]


def _tol(dtype):
    return dict(rtol=1e-5, atol=1e-6) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("geometry", GEOMETRIES)
def test_im2col_col2im_and_pooling_equal_the_reference(gpu_tier, geometry, dtype):
    N, C, H, W, KH, KW, SH, SW, PH, PW = geometry
    rng = np.random.default_rng(sum(geometry))
    x = rng.permutation(np.linspace(-1, 1, N * C * H * W)).reshape(N, C, H, W).astype(dtype)  # no ties
    args = (KH, KW, SH, SW, PH, PW)
    np.testing.assert_array_equal(gpu_tier.im2col(x, *args), reference.im2col(x, *args))
    cols = rng.standard_normal(reference.im2col(x, *args).shape).astype(dtype)
    np.testing.assert_allclose(gpu_tier.col2im(cols, x.shape, *args), reference.col2im(cols, x.shape, *args),
                               **_tol(dtype))
    if PH <= KH // 2 and PW <= KW // 2:  # max-pool's own rule for padding
        y, argmax = gpu_tier.maxpool_forward(x, *args)
        y_ref, argmax_ref = reference.maxpool_forward(x, *args)
        np.testing.assert_array_equal(y, y_ref)
        np.testing.assert_array_equal(argmax, argmax_ref)
        dy = rng.standard_normal(y.shape).astype(dtype)
        np.testing.assert_allclose(gpu_tier.maxpool_backward(dy, argmax, x.shape, *args),
                                   reference.maxpool_backward(dy, argmax_ref, x.shape, *args), **_tol(dtype))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("pool", [(2, 2, 2, 2), (3, 3, 3, 3), (3, 3, 2, 2), (2, 3, 1, 2)])
def test_the_fused_ops_and_layouts_equal_the_reference(gpu_tier, pool, dtype):
    KH, KW, SH, SW = pool
    N, F, OH, OW = 3, 4, 9, 8
    rng = np.random.default_rng(KH * 10 + SH)
    rows = rng.permutation(np.linspace(-2, 0.5, F * N * OH * OW)).reshape(F, N * OH * OW).astype(dtype)
    b = rng.standard_normal(F).astype(dtype) * 0.1
    for bias in (b, None):
        np.testing.assert_array_equal(gpu_tier.rows_to_nchw(rows, bias, N, OH, OW),
                                      reference.rows_to_nchw(rows, bias, N, OH, OW))
        y, pos = gpu_tier.rows_relu_maxpool(rows, bias, N, OH, OW, KH, KW, SH, SW)
        y_ref, pos_ref = reference.rows_relu_maxpool(rows, bias, N, OH, OW, KH, KW, SH, SW)
        np.testing.assert_array_equal(y, y_ref)
        np.testing.assert_array_equal(pos, pos_ref)
        assert (pos == -1).any() and (pos >= 0).any()  # both live and ReLU-blocked windows
    dy = rng.standard_normal(y.shape).astype(dtype)
    drows, db = gpu_tier.relu_maxpool_to_rows(dy, pos, OH, OW, KH, KW, SH, SW)
    drows_ref, db_ref = reference.relu_maxpool_to_rows(dy, pos_ref, OH, OW, KH, KW, SH, SW)
    np.testing.assert_allclose(drows, drows_ref, **_tol(dtype))
    np.testing.assert_allclose(db, db_ref, **_tol(dtype))
    nchw = rng.standard_normal((N, F, OH, OW)).astype(dtype)
    np.testing.assert_array_equal(gpu_tier.nchw_to_rows(nchw), reference.nchw_to_rows(nchw))
    assert output_size(OH, KH, SH, 0) == y.shape[2]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_nan_and_inf_propagate_as_in_the_reference(gpu_tier, dtype):
    x = np.random.default_rng(2).standard_normal((2, 3, 7, 7)).astype(dtype)
    x[0, 1, 2, 3], x[1, 0, 0, 0], x[1, 2, 5, 5], x[0, 0, 4, 4] = np.nan, np.nan, np.inf, -np.inf
    y, argmax = gpu_tier.maxpool_forward(x, 3, 3, 2, 2, 0, 0)
    y_ref, argmax_ref = reference.maxpool_forward(x, 3, 3, 2, 2, 0, 0)
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_array_equal(argmax, argmax_ref)
    rows = np.ascontiguousarray(x.transpose(1, 0, 2, 3).reshape(3, -1))
    b = np.array([0.1, -0.2, 0.3], dtype=dtype)
    y, pos = gpu_tier.rows_relu_maxpool(rows, b, 2, 7, 7, 2, 2, 2, 2)
    y_ref, pos_ref = reference.rows_relu_maxpool(rows, b, 2, 7, 7, 2, 2, 2, 2)
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_array_equal(pos, pos_ref)
    assert np.isnan(y_ref).any()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sgd_momentum_step_equals_the_reference(gpu_tier, dtype):
    rng = np.random.default_rng(0)
    param, grad, velocity = (rng.standard_normal((7, 5)).astype(dtype) for _ in range(3))
    p_ref, v_ref = param.copy(), velocity.copy()
    gpu_tier.sgd_momentum_step(param, grad, velocity, 0.1, 2e-3, 0.9)
    reference.sgd_momentum_step(p_ref, grad, v_ref, dtype(0.1), dtype(2e-3), dtype(0.9))
    np.testing.assert_allclose(param, p_ref, **_tol(dtype))
    np.testing.assert_allclose(velocity, v_ref, **_tol(dtype))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_steepest_ascent_steps_and_projections_equal_the_reference(gpu_tier, dtype):
    rng = np.random.default_rng(5)
    g = rng.standard_normal((6, 2, 5, 4)).astype(dtype)
    g[2] = 0.0  # a zero gradient: a zero step, never NaN
    g[3, 0, 1, 1] = g[3, 1, 2, 2] = np.abs(g[3]).max() * 2  # a tie for the l_1 step: the first wins
    tol = _tol(dtype)
    for eps in (0.0, 0.3, 2.0):
        for op in ("linf_ascent_step", "l2_ascent_step", "l1_ascent_step"):
            np.testing.assert_allclose(getattr(gpu_tier, op)(g, eps), getattr(reference, op)(g, eps), **tol)
        for p in (1.5, 3.0):
            np.testing.assert_allclose(gpu_tier.lp_ascent_step(g, p, eps), reference.lp_ascent_step(g, p, eps),
                                       rtol=1e-4 if dtype == np.float32 else 1e-10, atol=1e-6)
        delta = (g * 0.5).astype(dtype)
        delta[4] *= 1e-3  # one example already inside every ball
        for op in ("linf_projection", "l2_projection"):
            np.testing.assert_allclose(getattr(gpu_tier, op)(delta, eps), getattr(reference, op)(delta, eps), **tol)
        # l_1: bisection brackets theta, then it is computed exactly: equal up to summation order
        np.testing.assert_allclose(gpu_tier.l1_projection(delta, eps), reference.l1_projection(delta, eps),
                                   rtol=1e-4 if dtype == np.float32 else 1e-10, atol=1e-6 if dtype == np.float32
                                   else 1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_adam_step_equals_the_reference(gpu_tier, dtype):
    rng = np.random.default_rng(1)
    param, grad = rng.standard_normal((9, 4)).astype(dtype), rng.standard_normal((9, 4)).astype(dtype)
    m, v = np.zeros_like(param), np.zeros_like(param)
    ref = [param.copy(), m.copy(), v.copy()]
    for t in (1, 2, 3):
        gpu_tier.adam_step(param, grad, m, v, 1e-3, 2e-3, 0.9, 0.999, 1e-8, t)
        reference.adam_step(*ref[:1], grad, *ref[1:], 1e-3, 2e-3, 0.9, 0.999, 1e-8, t)
    for got, want in zip((param, m, v), ref):
        np.testing.assert_allclose(got, want, **_tol(dtype))


@pytest.mark.parametrize("norm", ["inf", "2", "1"])
def test_a_robust_training_step_on_the_emulated_gpu_tier_equals_the_reference_tier(emulated, norm, monkeypatch):
    # every op the GPU tier has runs through kernels/gpu.py (its wrappers and its kernels, on the
    # host), the fused stages included; the rest falls back to the reference tier as on a GPU
    x = np.random.default_rng(0).random((6, 1, 28, 28))
    y = np.arange(6)
    params = {}
    for tier in ("reference", "gpu"):
        model = nets.paper_mnist(seed=0, dtype=np.float64)
        trainer = RobustTrainer(model, TrainConfig(norm=norm, eps=0.1), log=None, progress=False)
        if tier == "gpu":
            monkeypatch.setattr(kernels, "tier_for", lambda x=None: "gpu")
            assert kernels.get_op("im2col") is gpu.im2col and model.fuses()
        with kernels.policy("never" if tier == "reference" else "auto"):
            losses = [trainer.train_step(x, y)[0] for _ in range(2)]
        monkeypatch.undo()
        params[tier] = losses, {k: v.copy() for k, v in model.parameters().items()}
    (l_ref, p_ref), (l_gpu, p_gpu) = params["reference"], params["gpu"]
    np.testing.assert_allclose(l_gpu, l_ref, rtol=1e-12)
    for name in p_ref:
        np.testing.assert_allclose(p_gpu[name], p_ref[name], rtol=1e-10, atol=1e-12)


def test_scalars_reach_a_kernel_at_its_own_width(emulated):
    # a float32 eps for a float64 kernel (or the other way) is cast to the kernel's real_t, ints
    # to its index_t: a 4-byte float read as an 8-byte double would be garbage
    g = np.random.default_rng(0).standard_normal((3, 4))
    for eps in (np.float32(0.25), np.float64(0.25), 0.25):
        out = np.empty_like(g)
        emulated.launch("linf_ascent_step", g.dtype, g.size, g, out, eps, np.int32(g.size))
        np.testing.assert_array_equal(out, reference.linf_ascent_step(g, 0.25))
