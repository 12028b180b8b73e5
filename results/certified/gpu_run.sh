#!/usr/bin/env bash
# How results/certified's IBP nets were trained: the four IBP runs of `reproduce certified` side by
# side on one GPU, each under a time limit, in ONE call to a lent machine (device time is scarce).
#     MINIROBUST_DATA=<folder with mnist/> bash results/certified/gpu_run.sh [minutes]
# Each run folder is packed into $OUT as a tarball; unpack them under runs/certified and run
# `minirobust reproduce certified --nets none` here to assemble the results.
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-$(mktemp -d)}
MINUTES=${1:-6}
BACKEND=${BACKEND:-gpu}  # cpu, with EXTRA="--n-train 200 --epochs 1 --n-suite 20": a dry run of this script
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
python -c "import minirobust; minirobust.info()" > "$OUT/log_info.txt" 2>&1
for net in large-mnist paper-mnist; do
    for eps in 0.1 0.3; do
        python -m minirobust.cli reproduce certified --nets $net --eps-list $eps --backend "$BACKEND" ${EXTRA:-} \
            --time-limit "$MINUTES" --no-progress --runs-dir "$OUT/runs" \
            --results-dir "$OUT/results_${net}_$eps" > "$OUT/log_${net}_$eps.txt" 2>&1 &
    done
done
wait
cd "$OUT" && for d in runs/*/ibp-*; do
    tar -cf "$(echo "$d" | cut -d/ -f2)_$(basename "$d").tar" --exclude=checkpoint.npz --exclude=.lock "$d"
done
cat log_*.txt > logs.txt && rm -rf runs results_* log_*.txt
ls -la "$OUT"
