#!/usr/bin/env bash
# Everything a lent GPU machine is for, in ONE call of under 8 minutes (device time is scarce):
# install the project, show what it sees, run the GPU tests, run the GPU benchmark.
#     bash benchmarks/gpu_check.sh            (figures also go to $OUT when it is set)
# It uses the machine's own numpy/cupy/torch (pip --no-deps: there is no network there). On a
# machine without a GPU every step still runs: the tests skip with the reason, the benchmark
# says there is no GPU.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$(mktemp -d)}
PY=${PYTHON:-python}
status=0
$PY -m pip install -q -e . --no-deps 2>&1 | grep -v "^WARNING" | tail -3
$PY -c "import minirobust; minirobust.info()" 2>&1 | tee "$OUT/info.txt"
# every test marked gpu (test_gpu.py and the gpu variants of the kernel, layer, model and trainer
# tests; CI runs the same set on a CuPy stand-in), then the nvcc, NVRTC and host-emulation tests
timeout 240 $PY -m pytest -q -p no:cacheprovider -m gpu tests 2>&1 \
    | tee "$OUT/gpu_tests.txt" | tail -25 || status=1
timeout 60 $PY -m pytest -q -p no:cacheprovider tests/test_gpu_kernels.py 2>&1 \
    | tee "$OUT/gpu_kernel_tests.txt" | tail -5 || status=1
timeout 160 $PY benchmarks/bench_gpu.py --out "$OUT/bench_gpu.json" 2>&1 | tee "$OUT/bench_gpu.txt" || status=1
echo "gpu_check: outputs in $OUT (exit $status)"
exit $status
