"""Writes a random-weight Gemma 3 GGUF at a real model's shape, for speed comparisons only.

    python3 bench-synthetic-gguf.py SHAPE TYPE OUT.gguf [TOKENIZER_SOURCE.gguf]

SHAPE is 1b or 4b (gemma3-facts.md's table), TYPE q8_0 or q4_0 (every matrix, the tied
embedding too). Blocks are random bytes with small positive f16 scales; norm weights are 1.
The tokenizer keys are copied byte for byte from TOKENIZER_SOURCE (the 270M GGUF) so that
llama.cpp loads the file.

The GGUF v3 writer is our own (standard library + numpy, no `gguf` package): header, key/value
pairs, tensor infos, then every tensor's data at a 32-byte aligned offset. Tensors are
generated and written one at a time, so memory stays at one matrix (the 4B Q8_0 file is ~4.4 GB).
"""
import struct
import sys

import numpy as np

SHAPES = {
    # layers, hidden, ffn, heads, kv heads, window
    "1b": (26, 1152, 6912, 4, 1, 512),
    "4b": (34, 2560, 10240, 8, 4, 1024),
}
# ggml type id, bytes per block of 32
BLOCK = {"q8_0": (8, 34), "q4_0": (2, 18)}
F32 = 0
ALIGNMENT = 32

# GGUF value types
UINT32, INT32, FLOAT32, BOOL, STRING, ARRAY, UINT64 = 4, 5, 6, 7, 8, 9, 10
SCALAR_SIZES = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}


def gguf_string(text):
    data = text.encode()
    return struct.pack("<Q", len(data)) + data


def kv_uint32(key, value):
    return gguf_string(key) + struct.pack("<II", UINT32, value)


def kv_float32(key, value):
    return gguf_string(key) + struct.pack("<If", FLOAT32, value)


def kv_string(key, value):
    return gguf_string(key) + struct.pack("<I", STRING) + gguf_string(value)


def read_tokenizer_pairs(path):
    """The raw bytes of every `tokenizer.*` key/value pair of a GGUF file, in file order."""
    with open(path, "rb") as f:
        data = f.read(64 << 20)  # the key/value section of the 270M file is ~6 MB
    magic, version, _, kv_count = struct.unpack_from("<IIQQ", data, 0)
    if magic != 0x46554747 or version not in (2, 3):
        sys.exit(f"{path}: not a GGUF v2/v3 file")
    offset = 24

    def skip_value(offset, vtype):
        if vtype == STRING:
            (length,) = struct.unpack_from("<Q", data, offset)
            return offset + 8 + length
        if vtype == ARRAY:
            element_type, count = struct.unpack_from("<IQ", data, offset)
            offset += 12
            if element_type in SCALAR_SIZES:
                return offset + count * SCALAR_SIZES[element_type]
            for _ in range(count):
                offset = skip_value(offset, element_type)
            return offset
        return offset + SCALAR_SIZES[vtype]

    pairs = []
    for _ in range(kv_count):
        start = offset
        (length,) = struct.unpack_from("<Q", data, offset)
        key = data[offset + 8:offset + 8 + length].decode()
        offset += 8 + length
        (vtype,) = struct.unpack_from("<I", data, offset)
        offset = skip_value(offset + 4, vtype)
        if key.startswith("tokenizer."):
            pairs.append(data[start:offset])
    return pairs


def main():
    shape, qtype, out = sys.argv[1], sys.argv[2], sys.argv[3]
    source = sys.argv[4] if len(sys.argv) > 4 else None
    layers, hidden, ffn, heads, kv_heads, window = SHAPES[shape]
    head_dim, vocab = 256, 262144
    quant_type, block_bytes = BLOCK[qtype]
    rng = np.random.default_rng(0)

    pairs = [
        kv_string("general.architecture", "gemma3"),
        kv_string("general.name", f"synthetic gemma-3 {shape} {qtype}"),
        kv_uint32("general.alignment", ALIGNMENT),
        kv_uint32("gemma3.context_length", 32768),
        kv_uint32("gemma3.embedding_length", hidden),
        kv_uint32("gemma3.block_count", layers),
        kv_uint32("gemma3.feed_forward_length", ffn),
        kv_uint32("gemma3.attention.head_count", heads),
        kv_uint32("gemma3.attention.head_count_kv", kv_heads),
        kv_uint32("gemma3.attention.key_length", head_dim),
        kv_uint32("gemma3.attention.value_length", head_dim),
        kv_float32("gemma3.attention.layer_norm_rms_epsilon", 1e-6),
        kv_float32("gemma3.rope.freq_base", 1e6),
        kv_uint32("gemma3.attention.sliding_window", window),
    ]
    if source:
        pairs += read_tokenizer_pairs(source)

    # (name, shape as [rows, cols] or [n], ggml type, generator)
    tensors = []

    def matrix(name, rows, cols):
        def generate():
            blocks = rows * cols // 32
            data = rng.integers(0, 256, size=(blocks, block_bytes), dtype=np.uint8)
            scales = (rng.random(blocks, dtype=np.float32) * 0.004 + 0.001).astype(np.float16)
            data[:, 0:2] = scales.view(np.uint8).reshape(blocks, 2)
            return data.tobytes()
        tensors.append((name, (rows, cols), quant_type, rows * cols // 32 * block_bytes, generate))

    def norm(name, n):
        tensors.append((name, (n,), F32, 4 * n, lambda: np.ones(n, dtype="<f4").tobytes()))

    matrix("token_embd.weight", vocab, hidden)
    norm("output_norm.weight", hidden)
    for i in range(layers):
        p = f"blk.{i}."
        norm(p + "attn_norm.weight", hidden)
        matrix(p + "attn_q.weight", heads * head_dim, hidden)
        matrix(p + "attn_k.weight", kv_heads * head_dim, hidden)
        matrix(p + "attn_v.weight", kv_heads * head_dim, hidden)
        norm(p + "attn_q_norm.weight", head_dim)
        norm(p + "attn_k_norm.weight", head_dim)
        matrix(p + "attn_output.weight", hidden, heads * head_dim)
        norm(p + "post_attention_norm.weight", hidden)
        norm(p + "ffn_norm.weight", hidden)
        matrix(p + "ffn_gate.weight", ffn, hidden)
        matrix(p + "ffn_up.weight", ffn, hidden)
        matrix(p + "ffn_down.weight", hidden, ffn)
        norm(p + "post_ffw_norm.weight", hidden)

    def padding(length):
        return (-length) % ALIGNMENT

    infos, offset = [], 0
    for name, dims, ggml_type, size, _ in tensors:
        # GGUF lists dimensions innermost first: [cols, rows].
        infos.append(gguf_string(name) + struct.pack("<I", len(dims))
                     + b"".join(struct.pack("<Q", d) for d in reversed(dims))
                     + struct.pack("<IQ", ggml_type, offset))
        offset += size + padding(size)

    with open(out, "wb") as f:
        f.write(struct.pack("<IIQQ", 0x46554747, 3, len(tensors), len(pairs)))
        for pair in pairs:
            f.write(pair)
        for info in infos:
            f.write(info)
        f.write(b"\0" * padding(f.tell()))
        for _, _, _, size, generate in tensors:
            data = generate()
            assert len(data) == size
            f.write(data)
            f.write(b"\0" * padding(size))


main()
