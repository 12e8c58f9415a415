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
# arguments, e.g. "--quick" or "--ops conv2d").
#
# OUT_DIR receives: env.txt (machine, driver, torch), build.log, tests-cuda.log and .xml,
# bench-cuda.{txt,json,csv,png}, bench-cuda-float16.{txt,json} and summary.txt (the exit
# status of each step). A failed step is recorded and the next one still runs.
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

step() {  # step NAME LOG COMMAND...: run, log, record the exit status
  local name="$1" log="$2"
  shift 2
  echo "== $name" | tee -a "$SUMMARY"
  local start=$SECONDS
  "$@" >"$log" 2>&1
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
if ! step build "$OUT/build.log" "$PYTHON" -m pip install --no-build-isolation --no-deps -v -e .; then
  tail -n 40 "$OUT/build.log"
  echo "build failed; see $OUT/build.log" | tee -a "$SUMMARY"
  exit 1
fi
step import "$OUT/import.log" "$PYTHON" -c \
  "import cnnops, sys; print('cuda kernels:', cnnops._ops._C.with_cuda()); sys.exit(0 if cnnops._ops._C.with_cuda() else 1)"

step tests-cuda "$OUT/tests-cuda.log" "$PYTHON" -m pytest tests -m cuda -q -rs \
  --junitxml "$OUT/tests-cuda.xml"

PLOT=()
if "$PYTHON" -c "import matplotlib" 2>/dev/null; then PLOT=(--plot "$OUT/bench-cuda.png"); fi
# shellcheck disable=SC2086
step bench-cuda "$OUT/bench-cuda.txt" "$PYTHON" -m cnnops.cli bench --device cuda \
  --json "$OUT/bench-cuda.json" --csv "$OUT/bench-cuda.csv" ${PLOT[@]+"${PLOT[@]}"} ${BENCH_ARGS:-}
# shellcheck disable=SC2086
step bench-cuda-float16 "$OUT/bench-cuda-float16.txt" "$PYTHON" -m cnnops.cli bench --device cuda \
  --dtype float16 --quick --json "$OUT/bench-cuda-float16.json" ${BENCH_ARGS:-}

echo "results in $OUT" | tee -a "$SUMMARY"
exit $FAILED
