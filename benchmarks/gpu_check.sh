#!/usr/bin/env bash
# One command for a GPU machine: build cnnops for the visible GPU, run the `cuda`-marked
# tests and `cnnops bench --device cuda`, and put everything into one folder.
#
#     benchmarks/gpu_check.sh OUT_DIR
#
# Needs no network: only python, torch (a CUDA build), ninja, pytest, a CUDA toolkit and this
# checkout. rich and matplotlib are used when present (table, PNG plot), not required.
# Environment: PYTHON (default python), CUDA_HOME, MAX_JOBS (default: all cores),
# TORCH_CUDA_ARCH_LIST (default: the visible GPU's), BENCH_ARGS (extra `cnnops bench`
# arguments, e.g. "--quick" or "--ops conv2d"), TEST_WORKERS (pytest-xdist workers sharing
# the GPU; default 8 when pytest-xdist is installed), TESTS_TIMEOUT, BENCH_TIMEOUT and
# BENCH16_TIMEOUT (seconds each of those steps may run; default unlimited: a lent GPU is
# counted in minutes), FLOAT16 (0: skip the float16 bench). A step stopped at its limit is
# interrupted as by Ctrl-C, so pytest still prints its summary of what ran.
#
# On an H200 with 16 cores (2026-12-04): the machine starts in ~30 s, the build takes 58-74 s,
# tests/test_build.py ~20 s, the cuda tests 108-115 s with 12 workers (longer when workers
# crash and respawn), the float32 bench 62 s at BENCH_ARGS="--min-run-time 0.05", the
# float16 quick bench 25 s. So:
#     PYTHON=python3 MAX_JOBS=16 TEST_WORKERS=12 TESTS_TIMEOUT=150 BENCH_TIMEOUT=100 \
#       BENCH16_TIMEOUT=80 BENCH_ARGS="--min-run-time 0.05" benchmarks/gpu_check.sh /tmp/g
# then `tar czf $OUT/gpu.tgz -C /tmp g`: the device tool brings back at most 8 files.
#
# OUT_DIR receives: env.txt (machine, driver, torch), build.log, tests-build.log (the
# build's own checks, CPU), tests-cuda.log and .xml, bench-cuda.{txt,json,csv,png},
# bench-cuda-float16.{txt,json} and summary.txt (the exit status of each step). A failed
# step is recorded and the next one still runs.
set -uo pipefail
if [ $# -ne 1 ]; then
  echo "usage: $0 OUT_DIR" >&2
  exit 2
fi
mkdir -p "$1"
OUT="$(cd "$1" && pwd)"
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python}"
SUMMARY="$OUT/summary.txt"
: >"$SUMMARY"
FAILED=0

step() {  # step NAME LOG LIMIT COMMAND...: run (at most LIMIT s; 0: no limit), log, record
  local name="$1" log="$2" limit="$3"
  shift 3
  echo "== $name" | tee -a "$SUMMARY"
  local start=$SECONDS
  timeout --signal=INT --kill-after=20 "$limit" "$@" >"$log" 2>&1
  local status=$?
  echo "   exit $status after $((SECONDS - start)) s; log: $(basename "$log")" | tee -a "$SUMMARY"
  [ $status -eq 0 ] || FAILED=1
  return $status
}

{
  date -u +"%Y-%m-%dT%H:%M:%SZ"
  uname -a
  nvidia-smi 2>&1 || echo "(no nvidia-smi)"
  "$PYTHON" - <<'PY'
import torch
print("torch", torch.__version__, "cuda", torch.version.cuda, "cudnn", torch.backends.cudnn.version())
print("cuda available:", torch.cuda.is_available())
for i in range(torch.cuda.device_count()):
    p = torch.cuda.get_device_properties(i)
    print(f"device {i}: {p.name}, capability {p.major}.{p.minor}, {p.multi_processor_count} SMs, "
          f"{p.total_memory / 2**30:.1f} GiB")
for name in ("rich", "matplotlib", "pytest", "ninja"):
    try:
        __import__(name)
        print(name, "present")
    except ImportError:
        print(name, "absent")
PY
  git log -1 --oneline 2>/dev/null || true
} >"$OUT/env.txt" 2>&1

if ! "$PYTHON" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  echo "no CUDA GPU is visible to torch (see $OUT/env.txt); nothing to check here" | tee -a "$SUMMARY"
  exit 1
fi

# --no-deps: no network here, and rich/matplotlib are optional. FORCE_CUDA=1: fail loudly
# rather than build CPU-only; setup.py takes the arch list from the visible GPU.
export FORCE_CUDA=1 MAX_JOBS="${MAX_JOBS:-$(nproc)}"
if ! step build "$OUT/build.log" 0 "$PYTHON" -m pip install --no-build-isolation --no-deps -v -e .; then
  tail -n 40 "$OUT/build.log"
  echo "build failed; see $OUT/build.log" | tee -a "$SUMMARY"
  exit 1
fi
step import "$OUT/import.log" 60 "$PYTHON" -c \
  "import cnnops, sys; print('cuda kernels:', cnnops._ops._C.with_cuda()); sys.exit(0 if cnnops._ops._C.with_cuda() else 1)"

WORKERS=()
if "$PYTHON" -c "import xdist" 2>/dev/null && [ "${TEST_WORKERS:-8}" -gt 1 ]; then
  WORKERS=(-n "${TEST_WORKERS:-8}")
fi
# The build's own checks first (CPU only, ~20 s): a toolchain that links its own copy of the
# C++ runtime turns every error raised in C++ into a crash (session 18), which the cuda
# tests would meet only as crashing workers.
step tests-build "$OUT/tests-build.log" 120 "$PYTHON" -m pytest tests/test_build.py -q -rfE \
  -p no:cacheprovider
step tests-cuda "$OUT/tests-cuda.log" "${TESTS_TIMEOUT:-0}" "$PYTHON" -m pytest tests -m cuda -q \
  -rfEs -p no:cacheprovider ${WORKERS[@]+"${WORKERS[@]}"} --junitxml "$OUT/tests-cuda.xml"

PLOT=()
if "$PYTHON" -c "import matplotlib" 2>/dev/null; then PLOT=(--plot "$OUT/bench-cuda.png"); fi
# shellcheck disable=SC2086
step bench-cuda "$OUT/bench-cuda.txt" "${BENCH_TIMEOUT:-0}" "$PYTHON" -m cnnops.cli bench --device cuda \
  --json "$OUT/bench-cuda.json" --csv "$OUT/bench-cuda.csv" ${PLOT[@]+"${PLOT[@]}"} ${BENCH_ARGS:-}
# shellcheck disable=SC2086
[ "${FLOAT16:-1}" = 0 ] || step bench-cuda-float16 "$OUT/bench-cuda-float16.txt" "${BENCH16_TIMEOUT:-0}" "$PYTHON" -m cnnops.cli bench --device cuda \
  --dtype float16 --quick --json "$OUT/bench-cuda-float16.json" ${BENCH_ARGS:-}

echo "results in $OUT" | tee -a "$SUMMARY"
exit $FAILED
