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
# --no-build-isolation: a build-isolated install would fetch setuptools, and there is no network;
# where even that fails, the source tree on PYTHONPATH serves the same code
if ! $PY -m pip install -q -e . --no-deps --no-build-isolation 2>&1 | grep -v "^WARNING" | tail -3; then :; fi
$PY -c "import minirobust" 2>/dev/null || export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
$PY -c "import minirobust; minirobust.info()" 2>&1 | tee "$OUT/info.txt"
# every test marked gpu (test_gpu.py and the gpu variants of the kernel, layer, model and trainer
# tests; CI runs the same set on a CuPy stand-in), then the nvcc, NVRTC and host-emulation tests
timeout 240 $PY -m pytest -q -p no:cacheprovider -m gpu tests 2>&1 \
    | tee "$OUT/gpu_tests.txt" | tail -25 || status=1
timeout 60 $PY -m pytest -q -p no:cacheprovider tests/test_gpu_kernels.py 2>&1 \
    | tee "$OUT/gpu_kernel_tests.txt" | tail -5 || status=1
timeout 160 $PY benchmarks/bench_gpu.py --out "$OUT/bench_gpu.json" 2>&1 | tee "$OUT/bench_gpu.txt" || status=1
# one real training epoch on the card, when MNIST is at hand (MINIROBUST_DATA): the user's view
if [ -n "${MINIROBUST_DATA:-}" ] && [ -d "$MINIROBUST_DATA/mnist" ] \
   && $PY -c "import sys; from minirobust.backend import gpu_available; sys.exit(not gpu_available()[0])"; then
    for spec in "plain:" "linf:--norm inf --eps 0.062"; do
        name=${spec%%:*}
        timeout 120 $PY -m minirobust.cli train --backend gpu --epochs 1 ${spec#*:} --no-progress \
            --out "$(mktemp -d)/$name" 2>&1 | tee "$OUT/train_gpu_$name.txt" | tail -4 || status=1
    done
fi
echo "gpu_check: outputs in $OUT (exit $status)"
exit $status
