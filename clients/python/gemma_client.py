#!/usr/bin/env python3
"""A client of the gemma.v1 services written from docs/protocol.md alone, with the standard
`protobuf` package and code that protoc generates from Protos/.

    python3 gemma_client.py ADDRESS health SERVICE
    python3 gemma_client.py ADDRESS tokenize TEXT
    python3 gemma_client.py ADDRESS generate PROMPT [MAX_TOKENS]
    python3 gemma_client.py ADDRESS raw-method METHOD        (prints the status of an empty request)

ADDRESS is unix:/path or HOST:PORT. The generated modules are made on the fly with protoc into
a temporary folder (or taken from $GEMMA_PY_PROTO if set).
"""
import os
import socket
import struct
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
PROTOS = os.path.join(HERE, "..", "..", "Protos")


def load_modules():
    out = os.environ.get("GEMMA_PY_PROTO")
    if not out:
        out = tempfile.mkdtemp(prefix="gemma-py-")
        files = [os.path.join("gemma", "v1", f) for f in os.listdir(os.path.join(PROTOS, "gemma", "v1"))]
        subprocess.run(["protoc", f"--proto_path={PROTOS}", f"--python_out={out}", *files], check=True)
    sys.path.insert(0, out)
    from gemma.v1 import common_pb2, decoder_pb2, rpc_pb2, tokenizer_pb2, vision_pb2  # noqa: E402
    return common_pb2, decoder_pb2, rpc_pb2, tokenizer_pb2, vision_pb2


common_pb2, decoder_pb2, rpc_pb2, tokenizer_pb2, vision_pb2 = load_modules()


class CallError(Exception):
    def __init__(self, code, message):
        super().__init__(f"{rpc_pb2.StatusCode.Name(code)}: {message}")
        self.code = code
        self.message = message


class Connection:
    """One connection; calls are numbered from 1."""

    def __init__(self, address):
        if address.startswith("unix:"):
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.connect(address[len("unix:"):])
        else:
            host, port = address.rsplit(":", 1)
            self.sock = socket.create_connection((host.strip("[]"), int(port)))
        self.next_id = 1

    def send_frame(self, frame):
        body = frame.SerializeToString()
        # Flag byte 0 (uncompressed), then the length, big-endian.
        self.sock.sendall(struct.pack(">BI", 0, len(body)) + body)

    def read_exact(self, n):
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                raise ConnectionError("connection closed")
            data += chunk
        return data

    def read_frame(self):
        flag, length = struct.unpack(">BI", self.read_exact(5))
        assert flag == 0, f"unexpected flag {flag}"
        frame = rpc_pb2.Frame()
        frame.ParseFromString(self.read_exact(length))
        return frame

    def call(self, method, request, response_type, timeout_ms=0):
        """Yields the responses of one call; raises CallError unless it ends with OK."""
        call_id = self.next_id
        self.next_id += 1
        start = rpc_pb2.CallStart(method=method, timeout_ms=timeout_ms, request=request.SerializeToString())
        self.send_frame(rpc_pb2.Frame(call_id=call_id, start=start))
        while True:
            frame = self.read_frame()
            if frame.call_id != call_id:
                continue
            kind = frame.WhichOneof("kind")
            if kind == "message":
                response = response_type()
                response.ParseFromString(frame.message)
                yield response
            elif kind == "status":
                if frame.status.code != rpc_pb2.OK:
                    raise CallError(frame.status.code, frame.status.message)
                return

    def unary(self, method, request, response_type, timeout_ms=0):
        responses = list(self.call(method, request, response_type, timeout_ms))
        assert len(responses) == 1, f"{method}: {len(responses)} responses"
        return responses[0]


SERVICES = {"tokenizer": "gemma.v1.Tokenizer", "vision": "gemma.v1.VisionEncoder", "decoder": "gemma.v1.Decoder"}


def main(argv):
    address, command, *args = argv
    conn = Connection(address)
    if command == "health":
        service = SERVICES[args[0]]
        r = conn.unary(f"/{service}/Health", common_pb2.HealthRequest(), common_pb2.HealthResponse, 5000)
        print(common_pb2.HealthResponse.ServingStatus.Name(r.status))
    elif command == "tokenize":
        req = tokenizer_pb2.EncodeRequest(texts=[args[0]], add_bos=True)
        r = conn.unary("/gemma.v1.Tokenizer/Encode", req, tokenizer_pb2.EncodeResponse, 5000)
        print(" ".join(str(i) for i in r.encodings[0].ids))
    elif command == "generate":
        max_tokens = int(args[1]) if len(args) > 1 else 16
        req = decoder_pb2.GenerateRequest(text=args[0], max_tokens=max_tokens)
        text = []
        for chunk in conn.call("/gemma.v1.Decoder/Generate", req, decoder_pb2.GenerateResponse, 600000):
            text.append(chunk.text)
        print("".join(text))
    elif command == "raw-method":
        try:
            conn.unary(args[0], common_pb2.HealthRequest(), common_pb2.HealthResponse, 5000)
            print("OK")
        except CallError as e:
            print(rpc_pb2.StatusCode.Name(e.code))
    else:
        raise SystemExit(f"unknown command {command}")


if __name__ == "__main__":
    main(sys.argv[1:])
