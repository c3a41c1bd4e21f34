"""One llama.cpp measurement through llama-cpp-python's low-level API (used by bench-vs-llama.sh).

Does what `gemma bench text` does: prefill a prompt of P pseudo-random ids (bos first) in one
batch, then decode G tokens greedily one at a time, continuing the same context. Prints one
JSON line: wall and process CPU times, tok/s, peak RSS (ru_maxrss, which includes the Python
interpreter: `python_baseline_rss_bytes` is the RSS before the model was loaded).
"""
import ctypes
import json
import resource
import sys
import time

import numpy as np
import llama_cpp as L


def rss_now():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def main():
    path, threads, prompt_tokens, gen_tokens = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    baseline = rss_now()
    # Silence llama.cpp's load log (stderr); the callback must outlive the calls.
    global _quiet
    _quiet = L.llama_log_callback(lambda level, text, user: None)
    L.llama_log_set(_quiet, ctypes.c_void_p())
    L.llama_backend_init()
    mp = L.llama_model_default_params()
    load = getattr(L, "llama_model_load_from_file", None) or L.llama_load_model_from_file
    model = load(path.encode(), mp)
    if not model:
        sys.exit("llama.cpp could not load " + path)
    cp = L.llama_context_default_params()
    cp.n_ctx = prompt_tokens + gen_tokens + 16
    cp.n_batch = prompt_tokens
    cp.n_ubatch = prompt_tokens
    cp.n_threads = threads
    cp.n_threads_batch = threads
    init = getattr(L, "llama_init_from_model", None) or L.llama_new_context_with_model
    ctx = init(model, cp)
    if hasattr(L, "llama_model_get_vocab") and hasattr(L, "llama_vocab_n_tokens"):
        n_vocab = L.llama_vocab_n_tokens(L.llama_model_get_vocab(model))
    else:
        n_vocab = L.llama_n_vocab(model)

    # The same prompt ids as TextBenchmark: bos, then an LCG over [1000, min(vocab, 200000)).
    state = 0x2545F4914F6CDD1D
    prompt = [2]
    for _ in range(1, prompt_tokens):
        state = (state * 6364136223846793005 + 1442695040888963407) & (2**64 - 1)
        prompt.append(1000 + (state >> 33) % max(1, min(n_vocab, 200000) - 1000))

    batch = L.llama_batch_init(prompt_tokens, 0, 1)

    def decode(tokens, first_pos):
        batch.n_tokens = len(tokens)
        for i, t in enumerate(tokens):
            batch.token[i] = t
            batch.pos[i] = first_pos + i
            batch.n_seq_id[i] = 1
            batch.seq_id[i][0] = 0
            batch.logits[i] = 1 if i == len(tokens) - 1 else 0
        if L.llama_decode(ctx, batch) != 0:
            sys.exit("llama_decode failed")
        ptr = L.llama_get_logits_ith(ctx, len(tokens) - 1)
        return np.ctypeslib.as_array(ptr, shape=(n_vocab,))

    wall0, cpu0 = time.perf_counter(), time.process_time()
    logits = decode(prompt, 0)
    wall1, cpu1 = time.perf_counter(), time.process_time()
    pos = prompt_tokens
    for _ in range(gen_tokens):
        token = int(np.argmax(logits))
        logits = decode([token], pos)
        pos += 1
    wall2, cpu2 = time.perf_counter(), time.process_time()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({
        "engine": "llama.cpp",
        "llama_cpp_python": getattr(L, "__version__", "?"),
        "prefill_tokens_per_second": prompt_tokens / (wall1 - wall0),
        "decode_tokens_per_second": gen_tokens / (wall2 - wall1),
        "prefill_cpu_seconds": cpu1 - cpu0,
        "decode_cpu_ms_per_token": 1000 * (cpu2 - cpu1) / gen_tokens,
        "prefill_tokens_per_cpu_second_per_thread": prompt_tokens * threads / (cpu1 - cpu0),
        "decode_tokens_per_cpu_second_per_thread": gen_tokens * threads / (cpu2 - cpu1),
        "peak_rss_bytes": peak,
        "python_baseline_rss_bytes": baseline,
    }))
    L.llama_batch_free(batch)


main()
