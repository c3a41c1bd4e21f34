"""How long a decoding stream stalls when a long prompt arrives (chunked prefill, --prefill-chunk).

    python3 scripts/bench-prefill-stall.py unix:/path/decoder.sock [LONG_PROMPT_TOKENS]

Stream A generates 120 tokens; after its 20th, request B arrives with a prompt of
LONG_PROMPT_TOKENS (default 2000) token ids. Prints A's largest and median gap between tokens.
Uses clients/python/gemma_client.py (needs `protobuf` and `protoc`).
"""
import os
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "clients", "python"))
import gemma_client as g  # noqa: E402


def generate(address, ids, max_tokens, on_token=None):
    request = g.decoder_pb2.GenerateRequest(max_tokens=max_tokens, ignore_eos=True)
    request.tokens.ids.extend(ids)
    for chunk in g.Connection(address).call("/gemma.v1.Decoder/Generate", request, g.decoder_pb2.GenerateResponse, 600000):
        if chunk.token_ids and on_token:
            on_token()


def main():
    address = sys.argv[1]
    long_tokens = int(sys.argv[2]) if len(sys.argv) > 2 else 2000
    long_prompt = [2] + [1000 + (i * 37) % 50000 for i in range(long_tokens - 1)]
    arrivals, others = [], []

    def on_token():
        arrivals.append(time.monotonic())
        if len(arrivals) == 20:
            other = threading.Thread(target=generate, args=(address, long_prompt, 1))
            other.start()
            others.append(other)

    generate(address, [2, 818, 5279, 529, 7001, 563], 120, on_token)
    for other in others:
        other.join()
    gaps = sorted(b - a for a, b in zip(arrivals, arrivals[1:]))
    print("stream A: %d tokens, largest gap %.0f ms, median gap %.1f ms (a %d-token prompt arrived after 20)"
          % (len(arrivals), 1000 * gaps[-1], 1000 * gaps[len(gaps) // 2], long_tokens))


main()
