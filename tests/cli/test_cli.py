"""The relevo CLI: help, ingest from JSON lines, the demo on the synthetic catalog."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import orjson
import pytest

from relevo.cli.main import main


def run(*args, env=None, timeout=300):
    return subprocess.run([sys.executable, "-m", "relevo.cli.main", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=timeout)


def test_help_lists_commands():
    out = run("--help")
    assert out.returncode == 0
    for command in ("serve", "demo", "ingest", "bench"):
        assert command in out.stdout


def test_ingest_items_then_events(tmp_path, capsys):
    items = tmp_path / "items.jsonl"
    items.write_bytes(b"\n".join(orjson.dumps({"id": f"i{i}", "title": f"Item number {i}"}) for i in range(20)))
    events = tmp_path / "events.jsonl"
    events.write_bytes(b"\n".join(
        orjson.dumps({"id": f"e{i}", "user_id": "u", "item_id": f"i{i % 20}", "type": "click"}) for i in range(50)))
    home = str(tmp_path / "home")
    assert main(["ingest", str(items), "--items", "--home", home]) == 0
    assert main(["ingest", str(events), "--home", home]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1]) == {"read": 50, "accepted": 50, "duplicates": 0}
    assert main(["ingest", str(events), "--home", home]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["duplicates"] == 50


def test_ingest_rejects_bad_lines(tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"user_id": "u", "item_id": "i", "type": "like"}\n')
    assert main(["ingest", str(bad), "--home", str(tmp_path / "h")]) == 1
    assert "rejected" in capsys.readouterr().err
    assert main(["ingest", str(tmp_path / "missing.jsonl")]) == 2


def test_bench_unknown_name(capsys):
    assert main(["bench", "nope"]) == 2
    assert "available" in capsys.readouterr().err


@pytest.mark.slow
def test_demo_runs_on_the_synthetic_catalog(tmp_path):
    out = run("demo", "--events", "1500", "--rate", "3000", "--no-serve", "--home", str(tmp_path / "demo"),
              env={"RELEVO_DATA_DIR": ""})
    assert out.returncode == 0, out.stderr[-2000:]
    assert "synthetic catalog" in out.stdout
    assert "freshness p95" in out.stdout and "share of" in out.stdout
