#!/usr/bin/env python3
"""Builds the multimodal (decoder + vision) parity fixtures under Tests/Fixtures/multimodal/
(run with /work/venv/bin/python).

What it writes, and where the expected numbers come from:
- mm64/config.json, model.safetensors: a small random-weight Gemma3ForConditionalGeneration
  saved by transformers' save_pretrained (f32). Vision: 64 px, patch 8 (8×8 patches), 16 soft
  tokens per crop (4×4 after a 2×2 pool). Text: 3 layers (sliding, sliding, full), hidden 64,
  vocabulary 160, image token 159, boi 157, eoi 158, and a sliding window of 6 — shorter than an
  image's 16 soft tokens, so the window cuts through image blocks on the local layers.
- images/*.png: test images made with PIL (two 64×64 that need no resize, one 50×37 that is
  resized up, one 300×100 for Pan & Scan).
- expected/<case>.*: for each prompt (token ids with runs of the image token), what
  transformers' Gemma3ForConditionalGeneration computes from the PIL image processor's pixels:
  `.logits.f32` every position's logits with the image mask (token_type_ids given),
  `.causal.f32` the same forward without token_type_ids (a causal-only mask: what a decoder
  that forgets the bidirectional image blocks would compute), `.soft.f32` the soft tokens of
  every crop in prompt order (get_image_features), and in the manifest a greedy continuation
  (each step a full forward over prompt + continuation, generated tokens of type 0).
- manifest.json: model facts and the cases the Swift tests read.
"""
import os
import sys

import numpy as np
import torch
from PIL import Image

import transformers
from transformers import Gemma3Config, Gemma3ForConditionalGeneration
from transformers.models.gemma3.image_processing_pil_gemma3 import Gemma3ImageProcessorPil

from make_vision_fixtures import write_manifest  # tools/ is the script's folder

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Tests", "Fixtures",
                                     "multimodal"))
torch.manual_seed(4321)

VOCAB, HIDDEN, WINDOW = 160, 64, 6
IMAGE, BOI, EOI = 159, 157, 158
TOKENS = 16
IMAGE_SIZE = 64
GREEDY_STEPS = 8


def write(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


def build_model():
    config = Gemma3Config(
        text_config=dict(vocab_size=VOCAB, hidden_size=HIDDEN, intermediate_size=96, num_hidden_layers=3,
                         num_attention_heads=2, num_key_value_heads=1, head_dim=16, query_pre_attn_scalar=16,
                         max_position_embeddings=512, sliding_window=WINDOW,
                         layer_types=["sliding_attention", "sliding_attention", "full_attention"]),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                           image_size=IMAGE_SIZE, patch_size=8, layer_norm_eps=1e-6, vision_use_head=False),
        mm_tokens_per_image=TOKENS,
        image_token_index=IMAGE, boi_token_index=BOI, eoi_token_index=EOI,
    )
    config._attn_implementation = "eager"
    model = Gemma3ForConditionalGeneration(config).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name and name.endswith("weight"):
                # Vision LayerNorm scales near 1; Gemma RMSNorms store w of (1 + w).
                base = 1.0 if "vision_tower" in name else 0.0
                p.copy_(torch.randn_like(p) * 0.1 + base)
            elif ("q_proj" in name or "k_proj" in name) and "language_model" in name:
                # Sharper attention in the text model, so the mask matters in the logits.
                p.copy_(torch.randn_like(p) * 0.3)
            else:
                p.copy_(torch.randn_like(p) * 0.08)
    return model


def smooth_rgb(w, h, seed):
    r = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    chans = []
    for _ in range(3):
        fx, fy, ph = r.uniform(0.02, 0.2), r.uniform(0.02, 0.2), r.uniform(0, 6.28)
        chans.append(127.5 + 110 * np.sin(x * fx + ph) * np.cos(y * fy - ph))
    img = np.stack(chans, -1) + r.integers(-4, 5, size=(h, w, 3))
    return np.clip(np.round(img), 0, 255).astype(np.uint8)


def make_images():
    paths = {}
    for name, (w, h, seed) in {"a_64": (64, 64, 1), "b_64": (64, 64, 2), "c_50x37": (50, 37, 3),
                               "wide_300x100": (300, 100, 4)}.items():
        path = os.path.join(ROOT, "images", name + ".png")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        Image.fromarray(smooth_rgb(w, h, seed)).save(path, optimize=True)
        paths[name] = path
    return paths


def image_block():
    return [BOI] + [IMAGE] * TOKENS + [EOI]


# Pan & Scan options of the crop case: 300×100 → ratio 3 → 3 crops of 100×100.
PAS = dict(min_crop_size=64, max_num_crops=3, min_ratio=1.5)

CASES = [
    # One image, no resize; the image block (16) is longer than the window (6).
    dict(name="one_image", images=["a_64"], resize=False,
         ids=[2, 10, 11] + image_block() + [12, 13, 14, 15]),
    # Two images, no resize: the second must not be seen by the first, nor the first image's
    # tokens see the second's.
    dict(name="two_images", images=["a_64", "b_64"], resize=False,
         ids=[2, 20] + image_block() + [21, 22] + image_block() + [23, 24, 25]),
    # Two images, the second resized up from 50×37.
    dict(name="two_images_resize", images=["b_64", "c_50x37"], resize=True,
         ids=[2, 30, 31] + image_block() + [32] + image_block() + [33, 34]),
    # Pan & Scan: the whole image, then 3 crops, each its own block (resized down).
    dict(name="pan_and_scan", images=["wide_300x100"], resize=True, pan_and_scan=PAS,
         ids=[2, 40] + image_block() + [41] + image_block() + image_block() + [42] + image_block() + [43, 44]),
]


def pixel_values(processor, paths, case):
    """The image processor's pixel values of the case's images, crops after their image."""
    kwargs = {}
    if case.get("pan_and_scan"):
        pas = case["pan_and_scan"]
        kwargs = dict(do_pan_and_scan=True, pan_and_scan_min_crop_size=pas["min_crop_size"],
                      pan_and_scan_max_num_crops=pas["max_num_crops"],
                      pan_and_scan_min_ratio_to_activate=pas["min_ratio"])
    ims = [Image.open(paths[n]) for n in case["images"]]
    out = processor(images=ims, return_tensors="pt", **kwargs)
    crops = [int(c) for c in out["num_crops"]] if "num_crops" in out else [0] * len(ims)
    return out["pixel_values"].float(), crops


def forward(model, ids, pv, with_mask):
    input_ids = torch.tensor([ids])
    kwargs = {}
    if with_mask:
        kwargs["token_type_ids"] = (input_ids == IMAGE).long()
    with torch.no_grad():
        return model(input_ids=input_ids, pixel_values=pv, **kwargs).logits[0].float()


def run_case(model, processor, paths, case):
    pv, crops = pixel_values(processor, paths, case)
    ids = case["ids"]
    runs = sum(1 + c for c in crops)
    assert ids.count(IMAGE) == runs * TOKENS, (case["name"], runs)
    logits = forward(model, ids, pv, True)
    causal = forward(model, ids, pv, False)
    with torch.no_grad():
        soft = model.get_image_features(pv).pooler_output.float()
    assert soft.shape == (runs, TOKENS, HIDDEN)
    # Greedy continuation, each step a full forward with the image mask.
    seq, greedy, margins = list(ids), [], []
    for _ in range(GREEDY_STEPS):
        last = forward(model, seq, pv, True)[-1]
        top2 = torch.topk(last, 2).values
        margins.append(float(top2[0] - top2[1]))
        token = int(torch.argmax(last))
        greedy.append(token)
        seq.append(token)
    base = os.path.join(ROOT, "expected", case["name"])
    write(base + ".logits.f32", logits.numpy().astype("<f4").tobytes())
    write(base + ".causal.f32", causal.numpy().astype("<f4").tobytes())
    write(base + ".soft.f32", soft.numpy().astype("<f4").tobytes())
    max_abs = float(logits.abs().max())
    first_image = ids.index(IMAGE)
    causal_diff = float((logits[first_image:] - causal[first_image:]).abs().max()) / max_abs
    record = dict(name=case["name"], ids=ids, images=[f"images/{n}.png" for n in case["images"]],
                  resize=case["resize"], crops=crops, pan_and_scan=case.get("pan_and_scan"),
                  positions=len(ids), logits=f"expected/{case['name']}.logits.f32",
                  causal=f"expected/{case['name']}.causal.f32", soft=f"expected/{case['name']}.soft.f32",
                  greedy=greedy, greedy_min_margin=min(margins), max_abs_logit=max_abs,
                  causal_relative_difference=causal_diff)
    print(f"{case['name']}: {len(ids)} positions, crops {crops}, greedy {greedy} (min margin {min(margins):.4f}), "
          f"causal-only differs by {causal_diff:.4f} of max |logit| {max_abs:.3f}", file=sys.stderr)
    assert causal_diff > 1e-2, "the causal-only logits must differ clearly from the image-masked ones"
    return record


def main():
    print("transformers", transformers.__version__, "torch", torch.__version__, file=sys.stderr)
    model = build_model()
    out = os.path.join(ROOT, "mm64")
    os.makedirs(out, exist_ok=True)
    model.save_pretrained(out)
    gen = os.path.join(out, "generation_config.json")
    if os.path.exists(gen):
        os.remove(gen)
    # Reload what was saved, so the references use exactly the stored weights.
    model = Gemma3ForConditionalGeneration.from_pretrained(out, attn_implementation="eager").eval()
    processor = Gemma3ImageProcessorPil(size={"height": IMAGE_SIZE, "width": IMAGE_SIZE})
    paths = make_images()
    manifest = dict(transformers=transformers.__version__, model="mm64", vocabulary=VOCAB, hidden=HIDDEN,
                    sliding_window=WINDOW, image_token=IMAGE, boi=BOI, eoi=EOI, tokens_per_image=TOKENS,
                    cases=[run_case(model, processor, paths, c) for c in CASES])
    write_manifest(ROOT, manifest)


if __name__ == "__main__":
    main()
