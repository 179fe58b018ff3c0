#!/usr/bin/env bash
# Installs what lpcc needs to build and test, from Debian's and PyPI's registries.
# Idempotent: installs only what is missing. Safe to run on every build.
set -euo pipefail

apt_packages=(
  cmake make gcc clang libclang-rt-dev pkg-config
  protobuf-c-compiler libprotobuf-c-dev
  libcmocka-dev libjansson-dev libpcre2-dev
  libonnx-testdata zlib1g-dev
)
# scikit-build-core builds the Python package (pyproject.toml); pytest tests it
py_packages=(onnx==1.23.2 onnxruntime==1.31.1 numpy scikit-build-core pytest)

missing=()
for p in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${missing[*]}"
  sudo_cmd=""
  [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

python3 - "${py_packages[@]}" 2>/dev/null <<'PY' || { echo "setup: installing Python packages"; python3 -m pip install -q "${py_packages[@]}"; }
import importlib.metadata as md, sys
for spec in sys.argv[1:]:
    name, _, want = spec.partition("==")
    have = md.version(name)
    if want and have != want:
        sys.exit(1)
PY
