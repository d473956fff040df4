"""Real LLM servers on loopback: llama-cpp-python's OpenAI-compatible server on the
packaged GGUF, and a recording (optionally slow) HTTP proxy in front of it."""

from __future__ import annotations

import http.client
import http.server
import os
import subprocess
import sys
import threading
import time

import httpx
import pytest

from relevo.cli.server import free_port


@pytest.fixture(scope="session")
def gguf():
    from relevo.llm.backends import packaged_gguf

    return packaged_gguf()


@pytest.fixture(scope="session")
def llama_server(gguf):
    """``python -m llama_cpp.server`` on the packaged GGUF; its base URL."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--host", "127.0.0.1",
                             "--port", str(port), "--n_ctx", "2048", "--n_threads", "2"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ})
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"llama_cpp.server exited with {proc.returncode}")
        try:
            if httpx.get(f"{base}/v1/models", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.2)
    else:
        proc.kill()
        pytest.fail("llama_cpp.server did not start in 120 s")
    yield base
    proc.terminate()
    proc.wait(30)


class Proxy:
    """Forwards POSTs to ``upstream`` after ``delay_s``, recording every body it received."""

    def __init__(self, upstream: str, delay_s: float = 0.0):
        self.upstream = upstream.replace("http://", "")
        self.delay_s = delay_s
        self.received: list[bytes] = []
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                proxy.received.append(body)
                time.sleep(proxy.delay_s)
                host, port = proxy.upstream.split(":")
                conn = http.client.HTTPConnection(host, int(port), timeout=120)
                conn.request("POST", self.path, body=body, headers={"content-type": "application/json"})
                resp = conn.getresponse()
                data = resp.read()
                try:
                    self.send_response(resp.status)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout test)
                    pass

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()


@pytest.fixture
def proxy(llama_server):
    made = []

    def make(delay_s: float = 0.0) -> Proxy:
        made.append(Proxy(llama_server, delay_s))
        return made[-1]

    yield make
    for p in made:
        p.close()
