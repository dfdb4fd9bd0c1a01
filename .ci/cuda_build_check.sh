#!/usr/bin/env bash
# CI: build linsgd with LINSGD_CUDA=ON (needs nvcc, not a GPU) into a scratch directory, check
# that the wheel holds linsgd._cuda, install it into a throwaway target directory (never over
# the main install) and check there that linsgd imports and that the CUDA backend is reported
# unavailable with the reason on a machine without a GPU (or, with one, that it agrees with the
# CPU backend bit for bit). About 3 minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore

if ! command -v nvcc >/dev/null 2>&1; then
    echo "cuda_build_check: nvcc is not on PATH; cannot build the CUDA module" >&2
    exit 1
fi

scratch=$(mktemp -d "${TMPDIR:-/tmp}/linsgd-cuda-check.XXXXXX")
trap 'rm -rf "$scratch"' EXIT

echo "== build the wheel with LINSGD_CUDA=ON (nvcc: $(nvcc --version | tail -n 1))"
start=$(date +%s)
# Its own build directory, so that the editable install's build/ is left alone; the build
# requirements from this environment when it has them (no download), else an isolated build.
isolation=--no-build-isolation
python -c "import scikit_build_core, pybind11" 2>/dev/null || isolation=
python -m pip wheel . --no-deps $isolation -w "$scratch/wheel" \
    -C cmake.define.LINSGD_CUDA=ON -C build-dir="$scratch/build"
echo "built in $(( $(date +%s) - start )) s"

wheel=$(ls "$scratch"/wheel/linsgd-*.whl)
python - "$wheel" <<'EOF'
import sys, zipfile
names = zipfile.ZipFile(sys.argv[1]).namelist()
mods = [n for n in names if n.startswith("linsgd/_cuda") and n.endswith((".so", ".pyd"))]
if not mods:
    sys.exit(f"linsgd._cuda is missing from {sys.argv[1]}: {sorted(names)}")
print("wheel holds", mods[0])
EOF

echo "== install into a scratch target and import it there"
python -m pip install --no-deps --no-compile --target "$scratch/site" "$wheel" >/dev/null
# -S: no site-packages processing, so the editable install's import hook and .pth stay out;
# the dependencies come from the site-packages directories of this interpreter (a virtualenv's
# own when run in one, as site computes them), appended after the scratch install.
site_dirs=$(python -c 'import os, site; print(os.pathsep.join(site.getsitepackages() + [site.getusersitepackages()]))')
(cd "$scratch" && python -S - "$scratch/site" "$site_dirs" <<'EOF'
import os, sys
target = sys.argv[1]
sys.path.insert(0, target)
for path in sys.argv[2].split(os.pathsep):
    if path and path not in sys.path:
        sys.path.append(path)

import numpy as np
import linsgd
import linsgd._cuda as cuda_module

assert linsgd.__file__.startswith(target), f"imported linsgd from {linsgd.__file__}, not {target}"
assert cuda_module.__file__.startswith(target), cuda_module.__file__
print("imported", linsgd.__file__)
print("backends:", linsgd.available_backends())
if cuda_module.device_available():
    assert "cuda" in linsgd.available_backends()
    rng = np.random.default_rng(0)
    X, Y = rng.standard_normal((200, 9)), rng.standard_normal((200, 2))
    out = {}
    for backend in ("cuda", "cpp"):
        W, b = np.zeros((2, 9)), np.zeros(2)
        res = linsgd.kernels.train(X, Y, W, b, batch_size=16, epochs=3, lr=0.01, momentum=0.9,
                                   backend=backend)
        out[backend] = (W, b, res.losses)
    assert all(np.array_equal(a, c) for a, c in zip(out["cuda"], out["cpp"]))
    print("a CUDA device is visible: the CUDA backend agrees with the CPU backend bit for bit")
else:
    assert "cuda" not in linsgd.available_backends()
    try:
        linsgd.kernels.backend_name("cuda")
    except ValueError as exc:
        assert "no CUDA device is visible" in str(exc), exc
        print("CUDA unavailable, as expected without a GPU:", exc)
    else:
        sys.exit("backend_name('cuda') did not raise without a device")
EOF
)
echo "== cuda build check passed"
