"""Real Redis processes that tests start, stop and kill on loopback ports.

``RedisServer``: one redis-server (optionally ``appendonly yes``) in its own directory.
``RedisClusterProcs``: masters (and replicas) with ``cluster-enabled yes``, joined with
``redis-cli --cluster create``; a master can be stopped to watch its replica take over.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

import redis
from redis.cluster import RedisCluster


def free_ports(n: int) -> list[int]:
    """n free loopback ports whose +10000 cluster-bus ports are free too."""
    found: list[int] = []
    while len(found) < n:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port + 10000 > 65535 or port in found:
            continue
        with socket.socket() as bus:
            try:
                bus.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        found.append(port)
    return found


def _exe(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise RuntimeError(f"{name} is not installed (Debian package redis-server / redis-tools)")
    return path


def _ping(port: int, timeout: float = 0.5) -> bool:
    try:
        return bool(redis.Redis(port=port, socket_timeout=timeout, socket_connect_timeout=timeout).ping())
    except redis.RedisError:
        return False


class RedisServer:
    def __init__(self, directory: Path, port: int | None = None, *, appendonly: bool = True,
                 extra: tuple[str, ...] = ()):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_ports(1)[0]
        self.appendonly = appendonly
        self.extra = extra
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> "RedisServer":
        args = [_exe("redis-server"), "--bind", "127.0.0.1", "--port", str(self.port), "--dir", str(self.dir),
                "--save", "", "--appendonly", "yes" if self.appendonly else "no", "--appendfsync", "always",
                "--protected-mode", "no", "--logfile", str(self.dir / "redis.log"), *self.extra]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if _ping(self.port):
                try:  # an appendonly restart answers LOADING until the file is read back
                    redis.Redis(port=self.port).dbsize()
                    return self
                except redis.BusyLoadingError:
                    pass
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server on {self.port} exited: {(self.dir / 'redis.log').read_text()[-2000:]}")
            time.sleep(0.05)
        raise RuntimeError(f"redis-server on {self.port} did not answer in {timeout} s")

    def stop(self, kill: bool = False) -> None:
        if self.proc is None:
            return
        if kill:
            self.proc.kill()
        else:
            self.proc.terminate()
        self.proc.wait(10)
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()


class RedisClusterProcs:
    """``masters`` masters with ``replicas`` replicas each, on free loopback ports."""

    def __init__(self, directory: Path, masters: int = 3, replicas: int = 0):
        self.dir = Path(directory)
        self.masters, self.replicas = masters, replicas
        ports = free_ports(masters * (1 + replicas))
        self.nodes = [RedisServer(self.dir / str(p), p, appendonly=True,
                                  extra=("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                                         "--cluster-node-timeout", "1000", "--cluster-replica-validity-factor", "0",
                                         "--repl-diskless-sync-delay", "0"))
                      for p in ports]

    @property
    def url(self) -> str:
        return f"redis+cluster://127.0.0.1:{self.nodes[0].port}"

    def live_port(self) -> int:
        return next(n.port for n in self.nodes if n.proc is not None)

    def start(self, timeout: float = 30.0) -> "RedisClusterProcs":
        for node in self.nodes:
            node.start()
        subprocess.run([_exe("redis-cli"), "--cluster", "create", *[f"127.0.0.1:{n.port}" for n in self.nodes],
                        "--cluster-replicas", str(self.replicas), "--cluster-yes"],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=60)
        self.wait_ok(timeout)
        return self

    def wait_ok(self, timeout: float = 30.0) -> None:
        """Until every live node says cluster_state:ok and a cluster client can write."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            states = []
            for node in self.nodes:
                if node.proc is None:
                    continue
                try:
                    states.append(redis.Redis(port=node.port, socket_timeout=1).cluster("info")["cluster_state"])
                except redis.RedisError:
                    states.append("down")
            if states and all(s == "ok" for s in states) and self._replicas_linked():
                try:
                    client = RedisCluster(host="127.0.0.1", port=self.live_port(), socket_timeout=2)
                    for i in range(32):  # one write into every master's slots
                        client.set(f"probe:{{{i}}}", "1")
                    client.close()
                    return
                except redis.RedisError:
                    pass
            time.sleep(0.2)
        raise RuntimeError("the test cluster did not reach cluster_state:ok")

    def _replicas_linked(self) -> bool:
        """Every live master has its replicas attached (replication is up)."""
        if not self.replicas:
            return True
        try:
            for port in self.master_ports():
                info = redis.Redis(port=port, socket_timeout=1).info("replication")
                online = [v for k, v in info.items() if k.startswith("slave") and isinstance(v, dict)
                          and v.get("state") == "online"]
                if len(online) < self.replicas:
                    return False
        except redis.RedisError:
            return False
        return True

    def master_ports(self) -> list[int]:
        for node in self.nodes:
            if node.proc is None:
                continue
            reply = redis.Redis(port=node.port).cluster("nodes")
            return sorted(int(addr.split("@")[0].rsplit(":", 1)[1]) for addr, info in reply.items()
                          if "master" in info["flags"] and "fail" not in info["flags"] and info["connected"] is not False)
        return []

    def stop_node(self, port: int, kill: bool = True) -> None:
        next(n for n in self.nodes if n.port == port).stop(kill=kill)

    def stop(self) -> None:
        for node in self.nodes:
            node.stop(kill=True)

    def flush(self) -> None:
        for port in self.master_ports():
            redis.Redis(port=port).flushall()
