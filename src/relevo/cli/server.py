"""Run the HTTP API with uvicorn, in the foreground or on a background thread."""

from __future__ import annotations

import socket
import threading
import time

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from relevo.api.app import create_app
from relevo.engine import Engine


def port_free(host: str, port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind((host, port))
            return True
        except OSError:
            return False


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def wait_healthy(base_url: str, proc=None, timeout: float = 120.0) -> None:
    """Poll ``GET /healthz`` until it answers 200; raise if ``proc`` exits or time runs out."""
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base_url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server process exited with {proc.returncode}")
        time.sleep(0.1)
    if proc is not None:
        proc.kill()
    raise RuntimeError(f"{base_url} did not become healthy in {timeout:.0f} s")


class BackgroundServer:
    """uvicorn serving ``engine`` on a daemon thread (used by ``relevo demo``)."""

    def __init__(self, engine: Engine, host: str, port: int):
        self.host, self.port = host, port
        config = uvicorn.Config(create_app(engine), host=host, port=port, log_level="warning", access_log=False)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="relevo-api", daemon=True)

    def start(self, timeout: float = 10.0) -> None:
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started and time.monotonic() < deadline:
            time.sleep(0.02)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(5)


class NoDelayH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with TCP_NODELAY set on every connection.

    With ``workers > 1`` uvicorn binds the listening socket itself as
    ``socket.socket(AF_INET)`` (protocol number 0), and asyncio only sets TCP_NODELAY on
    sockets whose protocol is IPPROTO_TCP: every small response then waits out Nagle's
    algorithm against the client's delayed ACK (~40 ms each). Measured: 165 vs 845 req/s.
    """

    def connection_made(self, transport) -> None:  # type: ignore[override]
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass
        super().connection_made(transport)
