#!/usr/bin/env bash
# CI: build linsgd._core with AddressSanitizer + UndefinedBehaviorSanitizer (LINSGD_SANITIZE=ON)
# into a scratch directory and run the kernel tests against it. Any sanitizer report, or any
# failing test, fails this script.
#
#   .ci/sanitize.sh                 # the default test selection below
#   .ci/sanitize.sh -k cpp tests/test_x.py   # other pytest arguments instead
#
# The installed linsgd is not touched: the sanitized module goes into a scratch copy of
# python/linsgd, imported ahead of any installed (or editable) linsgd.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

PYTHON=${PYTHON:-python}
SCRATCH=$(mktemp -d "${TMPDIR:-/tmp}/linsgd-sanitize.XXXXXX")
trap '[ -n "${KEEP_SCRATCH:-}" ] || rm -rf "$SCRATCH"' EXIT

# This build runs CMake directly, outside pip's isolated build environment: it needs pybind11's
# CMake files in the running Python (a clean virtual environment has none).
"$PYTHON" -m pybind11 --cmakedir >/dev/null 2>&1 || "$PYTHON" -m pip install -q "pybind11>=2.12"

echo "== configure and build _core with -DLINSGD_SANITIZE=ON (in $SCRATCH)"
GEN=()
if command -v ninja >/dev/null 2>&1; then GEN=(-G Ninja); fi
cmake -S "$ROOT" -B "$SCRATCH/build" "${GEN[@]}" \
  -DCMAKE_BUILD_TYPE=Release \
  -DLINSGD_SANITIZE=ON \
  -DLINSGD_CUDA=OFF \
  -DPython_EXECUTABLE="$(command -v "$PYTHON")" \
  -Dpybind11_DIR="$("$PYTHON" -m pybind11 --cmakedir)" >"$SCRATCH/configure.log" 2>&1 \
  || { cat "$SCRATCH/configure.log"; exit 1; }
cmake --build "$SCRATCH/build" --target _core -j "$(nproc 2>/dev/null || echo 2)" >"$SCRATCH/build.log" 2>&1 \
  || { tail -n 60 "$SCRATCH/build.log"; exit 1; }

mkdir -p "$SCRATCH/pkg"
cp -r "$ROOT/python/linsgd" "$SCRATCH/pkg/linsgd"
rm -rf "$SCRATCH/pkg/linsgd/__pycache__" "$SCRATCH/pkg/linsgd"/_core*.so "$SCRATCH/pkg/linsgd"/_cuda*.so
CORE=$(find "$SCRATCH/build" -maxdepth 2 -name '_core*.so' | head -n 1)
[ -n "$CORE" ] || { echo "no _core*.so was built"; exit 1; }
cp "$CORE" "$SCRATCH/pkg/linsgd/"

# python is not instrumented, so the ASan runtime must be preloaded; libstdc++ with it, or
# ASan cannot find the real __cxa_throw and aborts on the first C++ exception.
ASAN_LIB=$(gcc -print-file-name=libasan.so)
STDCXX_LIB=$(gcc -print-file-name=libstdc++.so)
[ -f "$ASAN_LIB" ] || { echo "libasan.so not found (gcc -print-file-name=libasan.so)"; exit 1; }

if [ "$#" -eq 0 ]; then
  set -- -k "not numba and not large_shapes" tests/test_kernels.py tests/test_reliability_inputs.py tests/test_hypothesis_kernels.py tests/test_kernel_paths.py tests/test_split_step.py tests/test_finite_in_pass.py tests/test_shuffle.py tests/test_sparse.py tests/test_sparse_hypothesis.py
fi

# A launcher that imports linsgd from the scratch copy even where an editable install's import
# hook would redirect it to the source tree, checks that it did, then runs pytest.
cat >"$SCRATCH/run_pytest.py" <<'EOF'
import sys

scratch = sys.argv[1]
sys.path.insert(0, scratch)
sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in type(f).__module__.lower()]
import linsgd._core  # noqa: E402

if not linsgd._core.__file__.startswith(scratch):
    sys.exit(f"sanitize.sh: imported {linsgd._core.__file__}, not the sanitized module in {scratch}")
print(f"sanitize.sh: testing {linsgd._core.__file__} (variant {linsgd._core.cpu_variant()})", flush=True)
import pytest  # noqa: E402

# --capture=sys: a sanitizer writes its report straight to file descriptor 2, which pytest's
# default (fd-level) capture would swallow together with the process it aborts.
sys.exit(pytest.main(["-p", "no:cacheprovider", "--capture=sys", *sys.argv[2:]]))
EOF

echo "== pytest $* (sanitized _core, cpp backend)"
LOG="$SCRATCH/pytest.log"
set +e
# The numba backend is left out: its JIT code is not ours to sanitize, and under ASan it is
# slow. LINSGD_TEST_BACKENDS narrows the property tests, -k the fixture-driven ones.
env LD_PRELOAD="$ASAN_LIB $STDCXX_LIB" \
  ASAN_OPTIONS="detect_leaks=0:halt_on_error=1:abort_on_error=1:detect_stack_use_after_return=1:log_path=$SCRATCH/report" \
  UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1" \
  PYTHONMALLOC=malloc \
  LINSGD_TEST_BACKENDS=cpp \
  "$PYTHON" "$SCRATCH/run_pytest.py" "$SCRATCH/pkg" -q "$@" 2>&1 | tee "$LOG"
status=${PIPESTATUS[0]}
set -e
# ASan also writes its reports to files (UBSan, a separate runtime here, only to stderr).
if compgen -G "$SCRATCH/report*" >/dev/null; then
  echo "sanitize.sh: a sanitizer reported an error:"
  cat "$SCRATCH"/report*
  exit 1
fi
if grep -qE "ERROR: AddressSanitizer|runtime error:|UndefinedBehaviorSanitizer" "$LOG"; then
  echo "sanitize.sh: a sanitizer reported an error (see above)"
  exit 1
fi
if [ "$status" -ne 0 ]; then
  echo "sanitize.sh: pytest failed with status $status"
  exit "$status"
fi
echo "sanitize.sh: no sanitizer report"
