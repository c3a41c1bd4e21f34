"""Writes a random-weight Gemma 3 GGUF at a real model's shape, for speed comparisons only.

    python bench-synthetic-gguf.py SHAPE TYPE OUT.gguf [TOKENIZER_SOURCE.gguf]

SHAPE is 1b or 4b (gemma3-facts.md's table), TYPE q8_0 or q4_0 (every matrix, the tied
embedding too). Blocks are random bytes with small positive f16 scales; norm weights are 1.
The tokenizer keys are copied from TOKENIZER_SOURCE (the 270M GGUF) so llama.cpp loads the file.
Uses the `gguf` package (PyPI).
"""
import sys

import numpy as np
import gguf

SHAPES = {
    # layers, hidden, ffn, heads, kv heads, window
    "1b": (26, 1152, 6912, 4, 1, 512),
    "4b": (34, 2560, 10240, 8, 4, 1024),
}
BLOCK = {"q8_0": (gguf.GGMLQuantizationType.Q8_0, 34), "q4_0": (gguf.GGMLQuantizationType.Q4_0, 18)}


def main():
    shape, qtype, out = sys.argv[1], sys.argv[2], sys.argv[3]
    source = sys.argv[4] if len(sys.argv) > 4 else None
    layers, hidden, ffn, heads, kv_heads, window = SHAPES[shape]
    head_dim, vocab = 256, 262144
    ggml_type, block_bytes = BLOCK[qtype]
    rng = np.random.default_rng(0)

    w = gguf.GGUFWriter(out, "gemma3")
    w.add_name(f"synthetic gemma-3 {shape} {qtype}")
    w.add_context_length(32768)
    w.add_embedding_length(hidden)
    w.add_block_count(layers)
    w.add_feed_forward_length(ffn)
    w.add_head_count(heads)
    w.add_head_count_kv(kv_heads)
    w.add_key_length(head_dim)
    w.add_value_length(head_dim)
    w.add_layer_norm_rms_eps(1e-6)
    w.add_rope_freq_base(1e6)
    w.add_sliding_window(window)
    if source:
        reader = gguf.GGUFReader(source)
        for name, field in reader.fields.items():
            if not name.startswith("tokenizer."):
                continue
            vtype = field.types[0]
            sub = field.types[1] if vtype == gguf.GGUFValueType.ARRAY else None
            w.add_key_value(name, field.contents(), vtype, sub)

    def matrix(name, rows, cols):
        blocks = rows * cols // 32
        data = rng.integers(0, 256, size=(blocks, block_bytes), dtype=np.uint8)
        scales = (rng.random(blocks, dtype=np.float32) * 0.004 + 0.001).astype(np.float16)
        data[:, 0:2] = scales.view(np.uint8).reshape(blocks, 2)
        w.add_tensor(name, data.reshape(rows, cols // 32 * block_bytes), raw_dtype=ggml_type)

    def norm(name, n):
        w.add_tensor(name, np.ones(n, dtype=np.float32))

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
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


main()
