"""Start and stop relevo processes (`relevo worker`, `relevo serve`) for scale-out tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable


def relevo_cmd(*args: str) -> list[str]:
    return [sys.executable, "-c", "import sys; from relevo.cli.main import main; sys.exit(main())", *args]


def start(home: Path, env: dict[str, str], *args: str) -> subprocess.Popen:
    home.mkdir(parents=True, exist_ok=True)
    log = open(home / "process.log", "wb")
    full = {**os.environ, "RELEVO_HOME": str(home), **env}
    return subprocess.Popen(relevo_cmd(*args), env=full, stdout=log, stderr=subprocess.STDOUT)


def start_worker(home: Path, env: dict[str, str]) -> subprocess.Popen:
    return start(home, env, "worker", "--status-every", "2")


def stop(proc: subprocess.Popen, timeout: float = 20.0) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def wait_for(check: Callable[[], bool], timeout: float, what: str, every: float = 0.02) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


QUIET = {"ranker": {"enabled": False}, "emotion": {"enabled": False}}


def engine_with_ratings(url: str, home: Path, encoder, items, vectors, ratings_dir: Path, n: int):
    """An engine over ``url`` (API keys on, as in tests/api) with 300 MovieLens films and
    the first ``n`` ratings of them (not ingested)."""
    from relevo.datasets.movielens import iter_ratings
    from relevo.engine import Engine
    from relevo.settings import Settings
    from tests.api.conftest import API

    engine = Engine(Settings(home=home, storage={"url": url}, api=API, **QUIET), encoder=encoder).open()
    engine.add_items(items[:300], vectors[:300])
    ids = {it.id for it in items[:300]}
    return engine, [e for e in iter_ratings(ratings_dir) if e.item_id in ids][:n]


def events_body(events) -> dict:
    return {"events": [e.model_dump(mode="json", exclude_none=True) for e in events]}
