"""A real uvicorn server on 127.0.0.1 serving tiny models, for the API and web chat tests."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time

import torch

from lmstack.io.checkpoint import save_checkpoint
from lmstack.model import Transformer
from tests.conftest import tiny_config


def tiny_run(path, tokenizer, seed: int = 0, max_seq_len: int = 64):
    torch.manual_seed(seed)
    model = Transformer(tiny_config(tokenizer.vocab_size, max_seq_len=max_seq_len))
    save_checkpoint(path / "ckpt.pt", {"model": model.state_dict(), "model_config": model.config.to_dict()})
    tokenizer.save(path / "tokenizer.json")
    (path / "run.json").write_text(json.dumps({"kind": "test"}))
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running_server(app):
    """uvicorn in a background thread; yields the base URL and stops the server afterwards."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    t = threading.Thread(target=server.run, daemon=True)
    t.start()
    deadline = time.time() + 30
    while not server.started and time.time() < deadline and t.is_alive():
        time.sleep(0.05)
    if not server.started:
        raise RuntimeError("the test server did not start")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        t.join(timeout=10)


def raw_request(url: str, request: bytes, timeout: float = 10) -> str:
    """Send raw bytes and read one whole reply: headers and body can arrive in separate packets."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=timeout) as s:
        s.sendall(request)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = s.recv(4096)
            if not chunk:
                return data.decode(errors="replace")
            data += chunk
        head, body = data.split(b"\r\n\r\n", 1)
        length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                       if line.lower().startswith(b"content-length:")), 0)
        while len(body) < length:
            chunk = s.recv(4096)
            if not chunk:
                break
            body += chunk
        return (head + b"\r\n\r\n" + body).decode(errors="replace")
