"""Shared fixtures: real Redis, the real MiniLM encoder, MovieLens from ../shared/datasets.

A test that needs a service starts it or fails; under CI=true nothing is skipped.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
REDIS_URL = os.environ.get("RELEVO_TEST_REDIS", "redis://127.0.0.1:6379/0")


def _redis_ping(url: str) -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(url, socket_timeout=1).ping())
    except redis.RedisError:
        return False


@pytest.fixture(scope="session")
def redis_server() -> str:
    """The Redis on 127.0.0.1:6379; started with redis-server if it is not running."""
    if _redis_ping(REDIS_URL):
        return REDIS_URL
    exe = shutil.which("redis-server")
    if exe is None:
        pytest.fail("Redis is not reachable on 127.0.0.1:6379 and redis-server is not installed")
    subprocess.run([exe, "--daemonize", "yes", "--bind", "127.0.0.1", "--port", "6379", "--save", "",
                    "--appendonly", "no"], check=True)
    for _ in range(50):
        if _redis_ping(REDIS_URL):
            return REDIS_URL
        time.sleep(0.1)
    pytest.fail("started redis-server but it does not answer on 127.0.0.1:6379")


@pytest.fixture
def redis_prefix(redis_server):
    """A per-test key prefix; every key under it is deleted afterwards."""
    import redis

    prefix = f"relevo-test:{uuid.uuid4().hex[:12]}:"
    yield prefix
    client = redis.Redis.from_url(redis_server)
    for pattern in (prefix + "*", "{" + prefix + "*"):  # plain keys and hash-tagged ones
        keys = list(client.scan_iter(match=pattern, count=1000))
        if keys:
            client.delete(*keys)


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory):
    """A 3-master Redis Cluster on free loopback ports, started for this test session with
    redis-server (``cluster-enabled yes``) and redis-cli; stopped at the end."""
    from tests.redis_procs import RedisClusterProcs

    cluster = RedisClusterProcs(tmp_path_factory.mktemp("redis-cluster"), masters=3, replicas=0).start()
    yield cluster
    cluster.stop()


@pytest.fixture(scope="session")
def encoder():
    from relevo.embeddings.minilm import MiniLMEncoder

    return MiniLMEncoder()


def _dataset_dir(name: str, marker: str) -> Path:
    """``<data dir>/<name>`` (or the data dir itself when it is that dataset's folder), where
    the data dir is RELEVO_DATA_DIR or ../shared/datasets; a missing dataset fails the test."""
    for c in (os.environ.get("RELEVO_DATA_DIR"), ROOT.parent / "shared" / "datasets"):
        if c and (Path(c) / name / marker).exists():
            return Path(c) / name
        if c and (Path(c) / marker).exists():
            return Path(c)
    pytest.fail(f"dataset {name} not found (../shared/datasets/{name} or RELEVO_DATA_DIR)")


@pytest.fixture(scope="session")
def movielens_dir() -> Path:
    return _dataset_dir("ml-latest-small", "movies.csv")


@pytest.fixture(scope="session")
def obd_dir() -> Path:
    """The Open Bandit Dataset sample's folder (holds random/ and bts/)."""
    return _dataset_dir("obd", "random/men/men.csv")


@pytest.fixture(scope="session")
def movielens_items(movielens_dir):
    from relevo.datasets.movielens import load_items

    return load_items(movielens_dir)


@pytest.fixture(scope="session")
def movielens_vectors(movielens_items, encoder, tmp_path_factory) -> np.ndarray:
    """MiniLM vectors of every MovieLens movie, encoded once per session, shape (9742, 384)."""
    return encoder.encode([it.content_text() for it in movielens_items])


@pytest.fixture
def make_engine(tmp_path, encoder):
    """Engines on SQLite under tmp_path (or the URLs given), closed after the test."""
    from relevo.engine import Engine
    from relevo.settings import Settings

    opened = []

    def factory(**overrides):
        settings = Settings(home=overrides.pop("home", tmp_path / "home"), **overrides)
        engine = Engine(settings, encoder=encoder).open()
        opened.append(engine)
        return engine

    yield factory
    for engine in opened:
        engine.close()
