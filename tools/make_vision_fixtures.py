#!/usr/bin/env python3
"""Builds the GemmaVision test fixtures under Tests/Fixtures/vision/ (run with /work/venv/bin/python).

What it writes, and where the expected numbers come from:
- <model>/config.json, preprocessor_config.json, model.safetensors: small random-weight
  Gemma3ForConditionalGeneration models saved by transformers (tiny64 in f32 with the newer
  `model.vision_tower…` names; tiny112 in bf16 renamed to the older `vision_tower.vision_model…`
  names). <model>/mmproj.gguf: tiny112's vision weights in llama.cpp's clip naming (gguf package).
- images/*.png: test images made with PIL (and a hand-rolled writer for 16-bit RGB, which PIL
  cannot save).
- corrupt/*: byte strings that are not decodable PNGs.
- expected/<case>.*: for each case, what transformers' PIL image processor
  (Gemma3ImageProcessorPil) produced (the resized 8-bit pixels, recovered exactly from
  pixel_values), the vision tower output and the soft tokens (get_image_features), and the Pan &
  Scan crop boxes, read from transformers' own pan_and_scan by cropping a coordinate image.
- manifest.json: the list of models and cases the Swift tests read.
"""
import json
import os
import struct
import sys
import zlib

import numpy as np
import torch
from PIL import Image

import transformers
from transformers import Gemma3Config, Gemma3ForConditionalGeneration
from transformers.models.gemma3.image_processing_pil_gemma3 import Gemma3ImageProcessorPil

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Tests", "Fixtures", "vision")
ROOT = os.path.normpath(ROOT)
torch.manual_seed(1234)
rng = np.random.default_rng(1234)


def write(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


# ---------------------------------------------------------------- models
MODELS = {
    # 64 px, patch 8 → 8×8 patches; 4 tokens → 2×2, pooling kernel 4.
    "tiny64": dict(image_size=64, patch_size=8, width=32, heads=4, mlp=64, layers=2, tokens=4,
                   text_hidden=48, dtype=torch.float32, old_names=True),
    # 112 px, patch 14 → 8×8 patches; 16 tokens → 4×4, pooling kernel 2.
    "tiny112": dict(image_size=112, patch_size=14, width=64, heads=2, mlp=96, layers=2, tokens=16,
                    text_hidden=40, dtype=torch.bfloat16, old_names=False),
}


def build_model(spec):
    config = Gemma3Config(
        text_config=dict(vocab_size=128, hidden_size=spec["text_hidden"], intermediate_size=64,
                         num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1,
                         head_dim=16, max_position_embeddings=256, sliding_window=64),
        vision_config=dict(hidden_size=spec["width"], intermediate_size=spec["mlp"],
                           num_hidden_layers=spec["layers"], num_attention_heads=spec["heads"],
                           image_size=spec["image_size"], patch_size=spec["patch_size"],
                           layer_norm_eps=1e-6, vision_use_head=False),
        mm_tokens_per_image=spec["tokens"],
        image_token_index=127, boi_token_index=125, eoi_token_index=126,
    )
    config._attn_implementation = "eager"
    model = Gemma3ForConditionalGeneration(config).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name and name.endswith("weight"):
                # LayerNorm scales near 1; the Gemma RMSNorm stores w of (1 + w).
                p.copy_(torch.randn_like(p) * 0.1 + (0.0 if "soft_emb_norm" in name else 1.0))
            else:
                p.copy_(torch.randn_like(p) * 0.08)
        # Round through the storage dtype so the f32 reference uses exactly the stored values.
        for p in model.parameters():
            p.copy_(p.to(spec["dtype"]).to(torch.float32))
    return model


def save_model(name, spec, model):
    """old_names: transformers' own save_pretrained (it writes Google's release names,
    `vision_tower.vision_model.…`). Otherwise the names transformers uses in memory with the
    `vision_model.` level kept: `model.vision_tower.vision_model.…`, `model.multi_modal_projector.…`."""
    out = os.path.join(ROOT, name)
    os.makedirs(out, exist_ok=True)
    if spec["old_names"]:
        assert spec["dtype"] == torch.float32
        model.save_pretrained(out)
        os.remove(os.path.join(out, "generation_config.json"))
    else:
        from safetensors.torch import save_file
        state = {}
        for key, value in model.state_dict().items():
            if key == "lm_head.weight":
                continue  # tied to the embedding
            key = key.replace("model.vision_tower.", "model.vision_tower.vision_model.")
            state[key] = value.to(spec["dtype"]).contiguous()
        save_file(state, os.path.join(out, "model.safetensors"), metadata={"format": "pt"})
    config = model.config.to_dict()
    config.pop("_attn_implementation_autoset", None)
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(config, f, indent=1, sort_keys=True, default=str)
    pre = {
        "image_processor_type": "Gemma3ImageProcessor",
        "processor_class": "Gemma3Processor",
        "do_convert_rgb": None, "do_normalize": True, "do_rescale": True, "do_resize": True,
        "do_pan_and_scan": None,
        "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5],
        "image_seq_length": spec["tokens"],
        "pan_and_scan_max_num_crops": None, "pan_and_scan_min_crop_size": None,
        "pan_and_scan_min_ratio_to_activate": None,
        "resample": 2, "rescale_factor": 0.00392156862745098,
        "size": {"height": spec["image_size"], "width": spec["image_size"]},
    }
    with open(os.path.join(out, "preprocessor_config.json"), "w") as f:
        json.dump(pre, f, indent=1, sort_keys=True)


def save_mmproj_gguf(name, spec, model, filename="mmproj.gguf", use_f16=True, transpose_projection=False):
    """The vision tower and projector under llama.cpp's clip names; big matrices in F16 when
    use_f16. transpose_projection stores mm.input_projection as [text_hidden, width] (torch
    order), the orientation other converters use. The pooling kernel key is written only when
    it is not llama.cpp's default 4, as llama.cpp's converter does."""
    import gguf
    path = os.path.join(ROOT, name, filename)
    writer = gguf.GGUFWriter(path, "clip")
    writer.add_bool("clip.has_vision_encoder", True)
    writer.add_string("clip.projector_type", "gemma3")
    writer.add_uint32("clip.vision.image_size", spec["image_size"])
    writer.add_uint32("clip.vision.patch_size", spec["patch_size"])
    writer.add_uint32("clip.vision.embedding_length", spec["width"])
    writer.add_uint32("clip.vision.feed_forward_length", spec["mlp"])
    writer.add_uint32("clip.vision.block_count", spec["layers"])
    writer.add_uint32("clip.vision.projection_dim", spec["text_hidden"])
    writer.add_uint32("clip.vision.attention.head_count", spec["heads"])
    writer.add_float32("clip.vision.attention.layer_norm_epsilon", 1e-6)
    writer.add_array("clip.vision.image_mean", [0.5, 0.5, 0.5])
    writer.add_array("clip.vision.image_std", [0.5, 0.5, 0.5])
    writer.add_bool("clip.use_gelu", True)
    per_side = int(round(spec["tokens"] ** 0.5))
    kernel = (spec["image_size"] // spec["patch_size"]) // per_side
    if kernel != 4:
        writer.add_uint32("clip.vision.projector.scale_factor", kernel)
    sd = {k: v.float().numpy() for k, v in model.state_dict().items()}
    v = "model.vision_tower."
    f16_tensors = []

    def add(gname, array, f16=False):
        f16 = f16 and use_f16
        array = np.ascontiguousarray(array.astype(np.float16 if f16 else np.float32))
        writer.add_tensor(gname, array)
        if f16:
            f16_tensors.append(gname)

    add("v.patch_embd.weight", sd[v + "embeddings.patch_embedding.weight"], f16=True)
    add("v.patch_embd.bias", sd[v + "embeddings.patch_embedding.bias"])
    add("v.position_embd.weight", sd[v + "embeddings.position_embedding.weight"])
    for i in range(spec["layers"]):
        p = f"{v}encoder.layers.{i}."
        for hf, g in [("self_attn.q_proj", "attn_q"), ("self_attn.k_proj", "attn_k"),
                      ("self_attn.v_proj", "attn_v"), ("self_attn.out_proj", "attn_out"),
                      ("mlp.fc1", "ffn_up"), ("mlp.fc2", "ffn_down")]:
            add(f"v.blk.{i}.{g}.weight", sd[p + hf + ".weight"], f16=True)
            add(f"v.blk.{i}.{g}.bias", sd[p + hf + ".bias"])
        for hf, g in [("layer_norm1", "ln1"), ("layer_norm2", "ln2")]:
            add(f"v.blk.{i}.{g}.weight", sd[p + hf + ".weight"])
            add(f"v.blk.{i}.{g}.bias", sd[p + hf + ".bias"])
    add("v.post_ln.weight", sd[v + "post_layernorm.weight"])
    add("v.post_ln.bias", sd[v + "post_layernorm.bias"])
    # llama.cpp's converter adds the 1 of Gemma's (1 + w) RMSNorm to this one norm.
    add("mm.soft_emb_norm.weight", sd["model.multi_modal_projector.mm_soft_emb_norm.weight"] + 1.0)
    projection = sd["model.multi_modal_projector.mm_input_projection_weight"]
    add("mm.input_projection.weight", projection.T if transpose_projection else projection, f16=True)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return f16_tensors


def f16_rounded_copy(model):
    """The model as the GGUF holds it: the F16 matrices rounded, the rest unchanged."""
    import copy
    clone = copy.deepcopy(model)
    with torch.no_grad():
        for name, p in clone.named_parameters():
            rounded = ("vision_tower" in name and p.dim() >= 2) or "mm_input_projection" in name
            if rounded:
                p.copy_(p.to(torch.float16).to(torch.float32))
    return clone


# ---------------------------------------------------------------- images
def smooth_rgb(w, h, seed):
    """Low-entropy colourful content (compresses well) with some per-pixel noise."""
    r = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    chans = []
    for c in range(3):
        fx, fy, ph = r.uniform(0.01, 0.12), r.uniform(0.01, 0.12), r.uniform(0, 6.28)
        v = 127.5 + 100 * np.sin(x * fx + ph) * np.cos(y * fy - ph) + 20 * (x / w) - 10 * (y / h)
        chans.append(v)
    img = np.stack(chans, -1) + r.integers(-3, 4, size=(h, w, 3))
    return np.clip(np.round(img), 0, 255).astype(np.uint8)


def png_chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_bytes_raw(width, height, bit_depth, color_type, rows):
    """A minimal PNG writer (filter 0), for layouts PIL cannot save (16-bit RGB/RGBA)."""
    raw = b"".join(b"\x00" + row for row in rows)
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", zlib.compress(raw, 9))
            + png_chunk(b"IEND", b""))


def make_images():
    images = {}
    d = os.path.join(ROOT, "images")
    os.makedirs(d, exist_ok=True)

    def save_pil(name, im, **kw):
        path = os.path.join(d, name + ".png")
        im.save(path, **kw)
        images[name] = path

    for size in (64, 112):
        save_pil(f"rgb_{size}", Image.fromarray(smooth_rgb(size, size, size)))
        rgba = np.dstack([smooth_rgb(size, size, size + 1), np.zeros((size, size), np.uint8)])
        alpha = (np.arange(size * size).reshape(size, size) * 7) % 256
        alpha[:4, :] = 0
        alpha[4:8, :] = 255
        rgba[..., 3] = alpha
        save_pil(f"rgba_{size}", Image.fromarray(rgba, "RGBA"))
    save_pil("grey_64", Image.fromarray(smooth_rgb(64, 64, 5)[..., 1], "L"))
    save_pil("grey_alpha_64", Image.fromarray(
        np.dstack([smooth_rgb(64, 64, 6)[..., 0], smooth_rgb(64, 64, 7)[..., 2]]), "LA"))
    # Palette with a tRNS chunk: some entries partly or fully transparent.
    pal_img = Image.fromarray(smooth_rgb(64, 64, 8)).quantize(colors=40)
    transparency = bytes([0, 60, 128, 200] + [255] * 36)
    save_pil("palette_trns_64", pal_img, transparency=transparency)
    save_pil("palette_64", Image.fromarray(smooth_rgb(64, 64, 9)).quantize(colors=16))
    # 16-bit RGB and RGBA (hand-written), 16-bit grey (PIL mode I;16).
    big = (smooth_rgb(64, 64, 10).astype(np.uint16) * 257 + rng.integers(0, 257, size=(64, 64, 3))).astype(">u2")
    write(os.path.join(d, "rgb16_64.png"), png_bytes_raw(64, 64, 16, 2, [big[y].tobytes() for y in range(64)]))
    images["rgb16_64"] = os.path.join(d, "rgb16_64.png")
    alpha16 = (np.arange(64 * 64).reshape(64, 64, 1) * 997 % 65536).astype(np.uint16)
    rgba16 = np.concatenate([big.astype(np.uint16), alpha16], -1).astype(">u2")
    write(os.path.join(d, "rgba16_64.png"), png_bytes_raw(64, 64, 16, 6, [rgba16[y].tobytes() for y in range(64)]))
    images["rgba16_64"] = os.path.join(d, "rgba16_64.png")
    grey16 = big[..., 0].astype(np.uint16)
    save_pil("grey16_64", Image.fromarray(grey16))
    # Sizes that need a resize: up, down, non-square.
    save_pil("rgb_50x37", Image.fromarray(smooth_rgb(50, 37, 11)))
    save_pil("rgb_301x179", Image.fromarray(smooth_rgb(301, 179, 12)))
    save_pil("rgba_90x130", Image.fromarray(
        np.dstack([smooth_rgb(90, 130, 13), (np.arange(90 * 130).reshape(130, 90) % 256).astype(np.uint8)]), "RGBA"))
    # Pan & Scan shapes.
    save_pil("wide_700x260", Image.fromarray(smooth_rgb(700, 260, 14)))   # 2 crops
    save_pil("tall_270x900", Image.fromarray(smooth_rgb(270, 900, 15)))   # 3 crops
    save_pil("wide_500x300", Image.fromarray(smooth_rgb(500, 300, 16)))   # crops < 256 → none
    save_pil("square_300x280", Image.fromarray(smooth_rgb(300, 280, 17)))  # ratio < 1.2 → none
    save_pil("wide_400x100", Image.fromarray(smooth_rgb(400, 100, 18)))   # custom options
    return images


def make_corrupt():
    d = os.path.join(ROOT, "corrupt")
    os.makedirs(d, exist_ok=True)
    good = open(os.path.join(ROOT, "images", "rgb_64.png"), "rb").read()
    write(os.path.join(d, "empty.bin"), b"")
    write(os.path.join(d, "garbage.bin"), bytes(rng.integers(0, 256, size=1000, dtype=np.uint8)))
    write(os.path.join(d, "signature_only.png"), good[:8])
    write(os.path.join(d, "truncated_header.png"), good[:20])
    write(os.path.join(d, "truncated_half.png"), good[: len(good) // 2])
    write(os.path.join(d, "truncated_in_idat_crc.png"), good[:-16])
    bad_crc = bytearray(good)
    bad_crc[29] ^= 0xFF  # last byte of IHDR's CRC
    write(os.path.join(d, "bad_ihdr_crc.png"), bytes(bad_crc))
    corrupt_idat = bytearray(good)
    start = good.index(b"IDAT") + 4
    for i in range(start + 10, start + 60):
        corrupt_idat[i] ^= 0x5A
    write(os.path.join(d, "corrupt_idat.png"), bytes(corrupt_idat))
    write(os.path.join(d, "not_png.jpg"), b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + b"\x00" * 100)
    write(os.path.join(d, "text.txt"), b"this is not an image at all\n" * 4)
    # Valid structure, absurd declared size: must be refused from the header.
    rows = [b"\x00" * 3]
    huge = (b"\x89PNG\r\n\x1a\n"
            + png_chunk(b"IHDR", struct.pack(">IIBBBBB", 100000, 100000, 8, 2, 0, 0, 0))
            + png_chunk(b"IDAT", zlib.compress(b"\x00" * 301, 9)) + png_chunk(b"IEND", b""))
    write(os.path.join(d, "huge_declared.png"), huge)
    zero = (b"\x89PNG\r\n\x1a\n"
            + png_chunk(b"IHDR", struct.pack(">IIBBBBB", 0, 10, 8, 2, 0, 0, 0))
            + png_chunk(b"IDAT", zlib.compress(b"", 9)) + png_chunk(b"IEND", b""))
    write(os.path.join(d, "zero_width.png"), zero)
    return sorted(os.listdir(d))


# ---------------------------------------------------------------- expectations
def crop_boxes(processor, width, height, pas):
    """Boxes of transformers' own pan_and_scan: crop an image whose pixels hold coordinates."""
    ys, xs = np.mgrid[0:height, 0:width]
    coords = np.stack([ys, xs]).astype(np.int64)
    crops = processor.pan_and_scan(coords, pas["min_crop_size"], pas["max_num_crops"], pas["min_ratio"])
    return [[int(c[1, 0, 0]), int(c[0, 0, 0]), int(c.shape[2]), int(c.shape[1])] for c in crops]


def run_case(case, models, images, processors):
    name = case["name"]
    model = models[case["model"]]
    processor = processors[case["model"]]
    pas = case.get("pan_and_scan")
    im = Image.open(images[case["image"]])
    kwargs = {}
    if pas:
        kwargs = dict(do_pan_and_scan=True, pan_and_scan_min_crop_size=pas["min_crop_size"],
                      pan_and_scan_max_num_crops=pas["max_num_crops"],
                      pan_and_scan_min_ratio_to_activate=pas["min_ratio"])
    out = processor(images=[im], return_tensors="pt", **kwargs)
    pv = out["pixel_values"].float()
    num_crops = int(out["num_crops"][0]) if "num_crops" in out else 0
    # pixel_values = (u8 / 255 − 0.5) / 0.5 exactly; recover the u8 and check the round trip.
    u8 = np.round((pv.numpy() * 0.5 + 0.5) * 255).astype(np.uint8)
    again = ((u8.astype(np.float64) * (1 / 255)).astype(np.float32) - np.float32(0.5)) / np.float32(0.5)
    assert np.array_equal(again, pv.numpy()), name
    with torch.no_grad():
        feats = model.get_image_features(pv)
    tower = feats.last_hidden_state.float().numpy()
    soft = feats.pooler_output.float().numpy()
    base = os.path.join(ROOT, "expected", name)
    os.makedirs(os.path.dirname(base), exist_ok=True)
    write(base + ".pixels.u8", u8.tobytes())
    write(base + ".tower.f32", tower.astype("<f4").tobytes())
    write(base + ".tokens.f32", soft.astype("<f4").tobytes())
    w, h = im.size
    boxes = [[0, 0, w, h]] + (crop_boxes(processor, w, h, pas) if pas else [])
    assert len(boxes) == 1 + num_crops, (name, boxes, num_crops)
    record = dict(case)
    record.update(width=w, height=h, num_crops=num_crops, boxes=boxes,
                  pixels=f"expected/{name}.pixels.u8", tower=f"expected/{name}.tower.f32",
                  tokens=f"expected/{name}.tokens.f32", tower_shape=list(tower.shape),
                  tokens_shape=list(soft.shape), pil_mode=im.mode)
    if case.get("expected_rgb_from") == "high_byte_16":
        # PIL clips 16-bit grey to 255 (mode I;16 → RGB); the decoder scales instead, so its
        # reference is the high byte of each sample, taken from the file with numpy.
        arr = np.array(im).astype(np.uint16) >> 8
        write(base + ".rgb.u8", np.repeat(arr[..., None], 3, -1).astype(np.uint8).tobytes())
        record["decoded_rgb"] = f"expected/{name}.rgb.u8"
    return record


def make_resize_sweep():
    """Random small sizes resized with PIL BILINEAR (both pass orders occur), raw RGB8 in and out."""
    d = os.path.join(ROOT, "resize")
    os.makedirs(d, exist_ok=True)
    r = np.random.default_rng(77)
    entries = []
    for i in range(24):
        w, h = (int(v) for v in r.integers(3, 48, size=2))
        W, H = (int(v) for v in r.integers(3, 48, size=2))
        pixels = r.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
        out = np.array(Image.fromarray(pixels).resize((W, H), Image.BILINEAR))
        write(os.path.join(d, f"{i}.in.u8"), pixels.tobytes())
        write(os.path.join(d, f"{i}.out.u8"), out.tobytes())
        entries.append(dict(width=w, height=h, out_width=W, out_height=H,
                            input=f"resize/{i}.in.u8", output=f"resize/{i}.out.u8"))
    return entries


def write_manifest(root, manifest):
    """Writes root/manifest.json and reports the size of everything under root."""
    with open(os.path.join(root, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)
    total = 0
    for dirpath, _, files in os.walk(root):
        total += sum(os.path.getsize(os.path.join(dirpath, n)) for n in files)
    print(f"fixtures: {total / 1e6:.2f} MB under {root}", file=sys.stderr)


def main():
    print("transformers", transformers.__version__, "torch", torch.__version__, file=sys.stderr)
    models, processors, manifest = {}, {}, {"transformers": transformers.__version__,
                                            "models": {}, "cases": []}
    for name, spec in MODELS.items():
        model = build_model(spec)
        save_model(name, spec, model)
        models[name] = model
        processors[name] = Gemma3ImageProcessorPil(size={"height": spec["image_size"], "width": spec["image_size"]})
        manifest["models"][name] = dict(dir=name, image_size=spec["image_size"], patch_size=spec["patch_size"],
                                        width=spec["width"], tokens=spec["tokens"], text_hidden=spec["text_hidden"],
                                        dtype=str(spec["dtype"]).replace("torch.", ""),
                                        names="old" if spec["old_names"] else "new")
    save_mmproj_gguf("tiny112", MODELS["tiny112"], models["tiny112"])
    models["tiny112_gguf"] = f16_rounded_copy(models["tiny112"])
    processors["tiny112_gguf"] = processors["tiny112"]
    manifest["models"]["tiny112_gguf"] = dict(manifest["models"]["tiny112"], dir="tiny112/mmproj.gguf",
                                              dtype="float16 matrices")
    save_mmproj_gguf("tiny64", MODELS["tiny64"], models["tiny64"], filename="mmproj-f32-transposed.gguf",
                     use_f16=False, transpose_projection=True)
    models["tiny64_gguf"] = models["tiny64"]
    processors["tiny64_gguf"] = processors["tiny64"]
    manifest["models"]["tiny64_gguf"] = dict(manifest["models"]["tiny64"], dir="tiny64/mmproj-f32-transposed.gguf",
                                             dtype="float32, projection transposed")
    images = make_images()
    manifest["corrupt"] = make_corrupt()
    manifest["resize"] = make_resize_sweep()
    default = dict(min_crop_size=256, max_num_crops=4, min_ratio=1.2)
    cases = [
        # No resize: the image is already the model size; soft tokens must match.
        dict(name="tiny64_rgb", model="tiny64", image="rgb_64", resize=False),
        dict(name="tiny64_rgba", model="tiny64", image="rgba_64", resize=False),
        dict(name="tiny64_grey", model="tiny64", image="grey_64", resize=False),
        dict(name="tiny64_grey_alpha", model="tiny64", image="grey_alpha_64", resize=False),
        dict(name="tiny64_palette_trns", model="tiny64", image="palette_trns_64", resize=False),
        dict(name="tiny64_palette", model="tiny64", image="palette_64", resize=False),
        dict(name="tiny64_rgb16", model="tiny64", image="rgb16_64", resize=False, levels=1),
        # libpng rounds 16 → 8 bits where PIL truncates, for colour and alpha: up to 2 levels.
        dict(name="tiny64_rgba16", model="tiny64", image="rgba16_64", resize=False, levels=2),
        dict(name="tiny64_grey16", model="tiny64", image="grey16_64", resize=False, levels=1,
             expected_rgb_from="high_byte_16"),
        dict(name="tiny112_rgb", model="tiny112", image="rgb_112", resize=False),
        dict(name="tiny112_rgba", model="tiny112", image="rgba_112", resize=False),
        dict(name="tiny112_gguf_rgb", model="tiny112_gguf", image="rgb_112", resize=False),
        dict(name="tiny64_gguf_rgba", model="tiny64_gguf", image="rgba_64", resize=False),
        # Resized (within one level of PIL).
        dict(name="tiny64_up_50x37", model="tiny64", image="rgb_50x37", resize=True),
        dict(name="tiny64_down_301x179", model="tiny64", image="rgb_301x179", resize=True),
        dict(name="tiny112_rgba_90x130", model="tiny112", image="rgba_90x130", resize=True),
        dict(name="tiny112_down_301x179", model="tiny112", image="rgb_301x179", resize=True),
        # Pan & Scan.
        dict(name="pas_wide_700x260", model="tiny64", image="wide_700x260", resize=True, pan_and_scan=default),
        dict(name="pas_tall_270x900", model="tiny64", image="tall_270x900", resize=True, pan_and_scan=default),
        dict(name="pas_wide_500x300", model="tiny64", image="wide_500x300", resize=True, pan_and_scan=default),
        dict(name="pas_square_300x280", model="tiny64", image="square_300x280", resize=True, pan_and_scan=default),
        dict(name="pas_custom_400x100", model="tiny112", image="wide_400x100", resize=True,
             pan_and_scan=dict(min_crop_size=64, max_num_crops=3, min_ratio=1.5)),
        dict(name="pas_custom_tall_270x900", model="tiny64", image="tall_270x900", resize=True,
             pan_and_scan=dict(min_crop_size=100, max_num_crops=2, min_ratio=2.0)),
    ]
    for case in cases:
        record = run_case(case, models, images, processors)
        record["png"] = os.path.relpath(images[case["image"]], ROOT)
        manifest["cases"].append(record)
        print(f"{case['name']}: crops {record['num_crops']} boxes {record['boxes']}", file=sys.stderr)
    write_manifest(ROOT, manifest)


if __name__ == "__main__":
    main()
