#!/usr/bin/env bash
# Vision tower (SigLIP so400m/14 at 896 px + Gemma 3 projector, f32, random weights) on CPU:
# transformers + PyTorch against `gemma bench vision`, run alternately in separate processes
# so both see the same machine load. Prints seconds/crop (wall and process CPU) of each, the
# ratio, peak RSS of each, and sgemm GFLOP/s measured in the same processes (OpenBLAS in ours,
# torch.matmul/MKL in PyTorch's) on the model's MLP shape [4096×1152]·[1152×4304].
# A measurement, not a test: CI does not run it.
#
#   scripts/bench-vision-vs-torch.sh [ROUNDS]      (default 3 rounds; medians reported)
# Environment: PYTHON (default /work/venv/bin/python), GEMMA (a built `gemma` binary; default:
# builds with --scratch-path .build-vperf), THREADS (default 2), CROPS (default 1).
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-3}
PYTHON=${PYTHON:-/work/venv/bin/python}
THREADS=${THREADS:-2}
CROPS=${CROPS:-1}
if [[ -z "${GEMMA:-}" ]]; then
  swift build -c release --scratch-path .build-vperf --product gemma >&2
  GEMMA=$(swift build -c release --scratch-path .build-vperf --show-bin-path)/gemma
fi
export OPENBLAS_NUM_THREADS=$THREADS OMP_NUM_THREADS=$THREADS MKL_NUM_THREADS=$THREADS
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

cat > "$work/torch_vision.py" <<'PY'
import json, os, resource, sys, time
import torch
from transformers import SiglipVisionConfig, SiglipVisionModel, Gemma3Config, Gemma3TextConfig
from transformers.models.gemma3.modeling_gemma3 import Gemma3MultiModalProjector

threads, crops = int(sys.argv[1]), int(sys.argv[2])
torch.set_num_threads(threads)
torch.manual_seed(0)
vision = SiglipVisionConfig(hidden_size=1152, image_size=896, intermediate_size=4304, num_attention_heads=16,
                            num_hidden_layers=27, patch_size=14, layer_norm_eps=1e-6, vision_use_head=False)
config = Gemma3Config(vision_config=vision.to_dict(),
                      text_config=Gemma3TextConfig(hidden_size=2560, num_hidden_layers=1).to_dict(),
                      mm_tokens_per_image=256)
setup = time.perf_counter()
with torch.no_grad():
    tower = SiglipVisionModel(config.vision_config).eval().float()
    projector = Gemma3MultiModalProjector(config).eval().float()
    projector.mm_input_projection_weight.normal_(0, 1152 ** -0.5)
    pixels = torch.rand(crops, 3, 896, 896) * 2 - 1
setup = time.perf_counter() - setup

# sgemm on the MLP shape, best of 3 (same threads, same process).
a, b = torch.rand(4096, 1152) - 0.5, torch.rand(1152, 4304) - 0.5
best = float("inf")
for _ in range(3):
    t = time.perf_counter(); torch.matmul(a, b); best = min(best, time.perf_counter() - t)
sgemm = 2 * 4096 * 1152 * 4304 / best / 1e9
del a, b

with torch.inference_mode():
    wall, cpu = time.perf_counter(), time.process_time()
    hidden = tower(pixel_values=pixels).last_hidden_state
    tokens = projector(hidden)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
assert tokens.shape == (crops, 256, 2560) and torch.isfinite(tokens).all()
print(json.dumps({"seconds_per_crop": wall / crops, "cpu_seconds_per_crop": cpu / crops, "sgemm_gflops": sgemm,
                  "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                  "setup_seconds": setup, "attn_implementation": tower.config._attn_implementation,
                  "torch": torch.__version__}))
PY

: > "$work/torch.jsonl"; : > "$work/ours.jsonl"
for round in $(seq 1 "$ROUNDS"); do
  echo "round $round/$ROUNDS: PyTorch" >&2
  "$PYTHON" "$work/torch_vision.py" "$THREADS" "$CROPS" | tail -n 1 | tee -a "$work/torch.jsonl" >&2
  echo "round $round/$ROUNDS: ours" >&2
  "$GEMMA" bench vision --threads "$THREADS" --crops "$CROPS" --json | tail -n 1 | tee -a "$work/ours.jsonl" >&2
done

"$PYTHON" - "$work/torch.jsonl" "$work/ours.jsonl" <<'PY'
import json, statistics, sys
torch = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
ours = [json.loads(l) for l in open(sys.argv[2]) if l.strip()]
def med(rows, key): return statistics.median(r[key] for r in rows)
flop = 5.4635e12  # matrix-product FLOP per crop (VisionBenchmark.flopsPerCrop of so400m/896)
t, o = med(torch, "seconds_per_crop"), med(ours, "seconds_per_crop")
tc, oc = med(torch, "cpu_seconds_per_crop"), med(ours, "cpu_seconds_per_crop")
print(f"rounds: {len(torch)} (alternating; medians)")
print(f"PyTorch : {t:7.2f} s/crop  {tc:7.2f} CPU-s/crop  {flop / t / 1e9:6.1f} GFLOP/s  "
      f"peak RSS {max(r['peak_rss_bytes'] for r in torch) / 1e9:.2f} GB  sgemm (MKL) {med(torch, 'sgemm_gflops'):.1f} GFLOP/s")
print(f"ours    : {o:7.2f} s/crop  {oc:7.2f} CPU-s/crop  {flop / o / 1e9:6.1f} GFLOP/s  "
      f"peak RSS {max(r['peak_rss_bytes'] for r in ours) / 1e9:.2f} GB  sgemm (OpenBLAS) {med(ours, 'sgemm_gflops'):.1f} GFLOP/s")
print(f"speed-up (PyTorch time / ours): wall {t / o:.2f}x, CPU {tc / oc:.2f}x")
print("per round (torch s, ours s): " + ", ".join(f"({a['seconds_per_crop']:.1f}, {b['seconds_per_crop']:.1f})" for a, b in zip(torch, ours)))
PY
