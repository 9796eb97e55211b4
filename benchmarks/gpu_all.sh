#!/usr/bin/env bash
# Everything to check on a GPU, in one call: the GPU tests, bench_gpu.py, the per-op
# profile with the quick and camvid presets' steps, and the quick preset itself. Each part has its own timeout
# and log; the whole stays under 8 minutes. Run from the repository root:
#
#     OUT=/tmp/gpu bash benchmarks/gpu_all.sh          # logs in $OUT (default: gpu-logs/)
#
# It needs numpy, scipy, pillow, tqdm, pytest and CuPy; torch is used by bench_gpu.py when present.
# The `camvid` preset's own run on the held-out drive is benchmarks/gpu_camvid.sh (it needs CamVid there).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-gpu-logs}"
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
PY="${PYTHON:-python3}"

part() {  # part NAME SECONDS COMMAND...: run it with a timeout, log to $OUT/NAME.log, report the status
    local name="$1" seconds="$2"
    shift 2
    local start=$SECONDS
    timeout --signal=INT --kill-after=10 "$seconds" "$@" >"$OUT/$name.log" 2>&1
    local status=$?
    echo "$name: exit $status in $((SECONDS - start)) s (limit $seconds s) -> $OUT/$name.log" | tee -a "$OUT/summary.txt"
}

: >"$OUT/summary.txt"
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "nvidia-smi: none"
  "$PY" -c "import cupy, numpy; print('cupy', cupy.__version__, 'numpy', numpy.__version__)" 2>/dev/null || echo "cupy: not importable"; } | tee -a "$OUT/summary.txt"

part gpu_tests 200 "$PY" -m pytest -o addopts=-ra -m gpu -q -p no:cacheprovider -x --durations=10
part bench_gpu 100 "$PY" benchmarks/bench_gpu.py --repeats 20
part profile_gpu 80 "$PY" benchmarks/profile_gpu.py
part quick_preset 100 "$PY" -m minifcn.train --device cuda --out "$OUT/quick"
tail -n 3 "$OUT/gpu_tests.log" "$OUT/quick_preset.log" | tee -a "$OUT/summary.txt"
