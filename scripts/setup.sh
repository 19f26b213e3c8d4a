#!/usr/bin/env bash
# Create the project virtualenv (default .venv) with the pinned CPU torch and every runtime.
# Idempotent: re-running only installs what changed. Usage: scripts/setup.sh [VENV_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${1:-.venv}"
python="${PYTHON:-python3.11}"

# Debian packages: adb (client + server) for the device benchmark and its loopback tests.
if ! command -v adb >/dev/null 2>&1; then
  sudo=""
  [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1 && sudo="sudo"
  if [ "$(id -u)" -eq 0 ] || [ -n "$sudo" ]; then
    echo "setup: installing Debian package adb"
    $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq adb >/dev/null
  else
    echo "setup: adb is missing and apt is not usable here: install it (apt install adb) for the adb tests" >&2
  fi
fi

if ! command -v "$python" >/dev/null 2>&1; then
  echo "setup: $python not found: edgesr needs CPython 3.11 (the CPU torch 2.13.0 wheel is cp311); set PYTHON=..." >&2
  exit 2
fi
if [ ! -x "$venv/bin/python" ]; then
  echo "setup: creating $venv with $($python --version)"
  "$python" -m venv "$venv"
fi
pip() { "$venv/bin/python" -m pip "$@" 2>&1 | grep -v "^WARNING: Location" || true; }

echo "setup: installing edgesr and its dependencies (torch pinned by constraints.txt; a few minutes the first time)"
pip install -q -c constraints.txt -e ".[dev]"
# pip's resolver has been seen to drop a requirement on a first install: check every import.
check='import torch, onnx, onnxruntime, onnxscript, onnxsim, tensorflow, ai_edge_litert, executorch, skimage, pytest
assert torch.__version__.startswith("2.13.0"), torch.__version__
print("setup: ok: torch", torch.__version__, "| onnxruntime", onnxruntime.__version__, "| tensorflow", tensorflow.__version__)'
if ! TF_CPP_MIN_LOG_LEVEL=3 "$venv/bin/python" -c "$check" 2>/dev/null; then
  echo "setup: an import failed; retrying the install once"
  pip install -q -c constraints.txt -e ".[dev]" onnxscript
  TF_CPP_MIN_LOG_LEVEL=3 "$venv/bin/python" -c "$check"
fi
