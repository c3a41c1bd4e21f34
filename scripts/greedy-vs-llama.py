"""Greedy continuations of a few raw prompts by llama.cpp and by the gemma services, compared.

A check, not a test: prints, per prompt, how many leading generated tokens agree. llama.cpp
runs through llama-cpp-python (prompt in one batch, then one token at a time, as the decoder
does); ours through `gemma generate --raw --json --ignore-eos` against running services.

    LLAMA_VENV/bin/python scripts/greedy-vs-llama.py MODEL.gguf GEMMA_BIN DECODER TOKENIZER [N]

(scripts/greedy-vs-llama.sh starts the services and supplies the arguments.)
"""
import json
import subprocess
import sys

from llama_cpp import Llama

PROMPTS = [
    "The capital of France is",
    "Once upon a time, in a village by the sea,",
    "The three primary colors are",
    "def fibonacci(n):",
    "Water boils at a temperature of",
    "The quick brown fox",
    "In 1969, the first humans",
    "My favorite recipe for pancakes uses",
]


def llama_greedy(model, count):
    llm = Llama(model_path=model, n_threads=2, n_ctx=512, verbose=False)
    runs = []
    for prompt in PROMPTS:
        llm.reset()
        ids = []
        for token in llm.generate(llm.tokenize(prompt.encode(), add_bos=True), temp=0.0, top_k=1, repeat_penalty=1.0):
            ids.append(token)
            if len(ids) >= count:
                break
        runs.append(ids)
    return runs


def gemma_greedy(gemma, decoder, tokenizer, count):
    runs = []
    for prompt in PROMPTS:
        result = subprocess.run([gemma, "generate", "--raw", "--prompt", prompt, "--max-tokens", str(count), "--ignore-eos",
                                 "--json", "--decoder", decoder, "--tokenizer", tokenizer],
                                capture_output=True, text=True, check=True)
        ids = []
        for line in result.stdout.splitlines():
            ids += json.loads(line).get("token_ids", [])
        runs.append(ids)
    return runs


def main():
    model, gemma, decoder, tokenizer = sys.argv[1:5]
    count = int(sys.argv[5]) if len(sys.argv) > 5 else 24
    theirs, ours = llama_greedy(model, count), gemma_greedy(gemma, decoder, tokenizer, count)
    total = 0
    for prompt, a, b in zip(PROMPTS, theirs, ours):
        same = 0
        while same < min(len(a), len(b)) and a[same] == b[same]:
            same += 1
        total += same
        print(f"{same:3d}/{count}  {prompt!r}")
    print(f"agreeing leading tokens: {total} of {count * len(PROMPTS)}")


if __name__ == "__main__":
    main()
