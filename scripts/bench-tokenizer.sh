#!/usr/bin/env bash
# Tokenizer encode throughput on one text, in one run: Python sentencepiece (reference),
# our tokenizer in process, and through the tokenizer service on a Unix socket.
# A benchmark, not a test. Usage: scripts/bench-tokenizer.sh [GGUF]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
bash scripts/setup.sh >/dev/null
"$GEMMA_VENV/bin/python" -m pip install --quiet --disable-pip-version-check sentencepiece gguf
model=${1:-$(gemma_model_path)}
swift build $GEMMA_SWIFT_FLAGS >/dev/null
bin=$(swift build $GEMMA_SWIFT_FLAGS --show-bin-path)
work=$(mktemp -d); trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
echo "== Python sentencepiece (tokenizer.model rebuilt from the GGUF by tools/make_tokenizer_fixtures.py)"
"$GEMMA_VENV/bin/python" tools/make_tokenizer_fixtures.py --model "$model" --bench --bench-text-out "$work/text.txt"
"$bin/gemma-tokenizer" --model "$model" --listen "unix:$work/tok.sock" --max-text-bytes 16777216 2>/dev/null &
until [ -S "$work/tok.sock" ]; do sleep 0.1; done
echo "== gemma (same text)"
"$bin/gemma" bench tokenizer --model "$model" --text-file "$work/text.txt" --through-services --tokenizer "unix:$work/tok.sock"
