"""``relevo eval ope``: on the Open Bandit Dataset sample and on an engine's own stores
(written here directly, without an Engine), its JSON line and its exit codes."""

from __future__ import annotations

import json
import time
from pathlib import Path

import orjson
import pytest

from relevo.cli.main import main
from relevo.records import Decision, ScoredItem
from relevo.settings import Settings
from relevo.stream.rewards import marker_key
from relevo.storage.registry import open_store



@pytest.fixture
def data_dir(obd_dir) -> str:
    """The folder holding obd/, as a user passes it to --data-dir."""
    return str(obd_dir.parent)


def last_json(capsys) -> dict:
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_eval_ope_obd_prints_one_json_line(data_dir, capsys):
    code = main(["eval", "ope", "--source", "obd", "--data-dir", data_dir, "--campaign", "men", "--policy", "random",
                 "--models", "logistic_ts", "--samples", "100", "--n-boot", "100", "--json"])
    assert code == 0
    report = last_json(capsys)
    assert report["source"] == "obd" and report["log"] == "random" and report["n_test"] == 5000
    assert 0 < report["logging_policy"]["value"] < 0.05
    assert set(report["policies"]) == {"bts", "logistic_ts"}
    for policy in report["policies"].values():
        for name in ("ips", "snips", "dr"):
            assert 0 < policy["estimates"][name]["value"] < 0.05
            low, high = policy["relative"][name]["ci"]
            assert low <= policy["relative"][name]["value"] <= high


def test_eval_ope_obd_report_is_readable(data_dir, capsys):
    assert main(["eval", "ope", "--source", "obd", "--data-dir", data_dir, "--policy", "bts",
                 "--models", "linear_ts", "--samples", "50", "--n-boot", "50"]) == 0
    out = capsys.readouterr().out
    assert "bts log" in out and "linear_ts" in out and "vs bts" in out


@pytest.mark.parametrize("argv,message", [
    (["--source", "obd"], "needs --data-dir"),
    (["--source", "obd", "--data-dir", "/nonexistent/obd"], "not found"),
    (["--source", "obd", "--data-dir", "DATA", "--home", "x"], "--home: only with --source decisions"),
    (["--source", "obd", "--data-dir", "DATA", "--models", "ucb"], "--models"),
    (["--source", "obd", "--data-dir", "DATA", "--samples", "0"], "--samples"),
    (["--campaign", "men"], "--campaign: only with --source obd"),
    (["--home", "HOME"], "no decision_log"),
    (["--home", "HOME", "--limit", "0"], "--limit"),
])
def test_eval_ope_bad_arguments_exit_2(argv, message, data_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("RELEVO_DATA_DIR", raising=False)
    argv = [data_dir if a == "DATA" else str(tmp_path / "home") if a == "HOME" else a for a in argv]
    assert main(["eval", "ope", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and err.startswith("relevo eval ope:")
    assert not (tmp_path / "home").exists()  # a missing home is reported, not created


@pytest.mark.parametrize("argv", [["eval"], ["eval", "ope", "--campaign", "kids"], ["eval", "ope", "--source", "x"]])
def test_eval_usage_errors_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2


def test_eval_help_explains(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["eval", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "ope" in out and "Open Bandit Dataset" in out and "DecisionLog" in out and "Exit codes" in out


# ---------------------------------------------------------------- the engine's own stores


def _decision(did: str, at: float, items: list[tuple[str, float]], **kw) -> Decision:
    return Decision(decision_id=did, user_id="u", policy=kw.pop("policy", "linear_ts"), policy_version=1,
                    created_at=at, items=[ScoredItem(i, 0.5, p, False) for i, p in items],
                    features=[[0.1, 0.2]] * len(items), **kw)


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    """Stores as an engine leaves them: settled decisions carrying their final rewards (their
    markers gone), an open decision with a marker, a fallback and an unactivated decision."""
    monkeypatch.delenv("RELEVO_HOME", raising=False)
    home = tmp_path / "home"
    settings = Settings(home=home)
    decisions = open_store("decision_log", settings.store_url("decision_log"))
    features = open_store("feature_store", settings.store_url("feature_store"))
    now = time.time()
    closed = now - 3 * 3600
    rows = [
        _decision("old", closed - 60, [("a", 0.5), ("b", 0.5)], rewards=[1.0, 0.0]),  # settled long ago
        _decision("s1", now - 2 * 3600, [("a", 0.8), ("b", 0.4)], rewards=[1.0, 0.0]),  # settled
        _decision("s2", now - 1.5 * 3600, [("c", 0.5), ("a", 0.25)], rewards=[0.0, 1.0]),  # settled
        _decision("o1", now - 60, [("b", 0.5), ("c", 0.5)]),  # still inside the 3600 s window
        _decision("pop", now - 2 * 3600, [("a", 1.0)], policy="popularity"),
        _decision("idle", now - 2 * 3600, [("b", 0.5)], activated=False),
    ]
    for d in rows:
        decisions.append(d)
    features.put_many([("rewards", marker_key("o1", "c"), b"1.0"),
                       ("models", "linear_ts", orjson.dumps({"state": {}, "closed_through": closed, "version": 3}))])
    decisions.close()
    features.close()
    return home


def test_eval_ope_on_own_decisions(home, capsys):
    assert main(["eval", "ope", "--home", str(home), "--n-boot", "200", "--json"]) == 0
    report = last_json(capsys)
    assert report["source"] == "decisions" and report["policy"] == "linear_ts"
    assert report["decisions"] == {"read": 6, "other_policy": 1, "inactive": 1, "settled": 3, "open": 1, "used": 4}
    assert report["records"] == 8 and report["rewarded"] == 7
    for name in ("ips", "snips"):
        assert report["estimates"][name]["value"] == pytest.approx(4 / 8)
    assert report["value_by_position"] == [pytest.approx(2 / 4), pytest.approx(2 / 4)]
    assert "still inside" in " ".join(report["caveats"])


def test_eval_ope_settled_only(home, capsys):
    assert main(["eval", "ope", "--home", str(home), "--settled-only", "--n-boot", "200", "--json"]) == 0
    report = last_json(capsys)
    assert report["decisions"]["used"] == 3 and report["records"] == 6
    assert report["estimates"]["ips"]["value"] == pytest.approx(3 / 6)
    assert "still inside" not in " ".join(report["caveats"])


def test_eval_ope_own_decisions_report_and_empty_range(home, capsys):
    assert main(["eval", "ope", "--home", str(home), "--n-boot", "100"]) == 0
    assert "linear_ts on its own decisions" in capsys.readouterr().out
    assert main(["eval", "ope", "--home", str(home), "--since", str(time.time() + 10)]) == 2
    assert "no linear_ts decision" in capsys.readouterr().err


@pytest.mark.slow
def test_eval_offline_on_movielens(movielens_dir, capsys):
    code = main(["eval", "offline", "--data-dir", str(movielens_dir), "--users", "40", "--ranker-steps", "100",
                 "--json"])
    assert code == 0
    report = last_json(capsys)
    assert report["users"] == 40 and report["k"] == 10 and report["ranker_steps"] == 100
    assert set(report["tiers"]) == {"streaming", "origin"}
    for tier, metrics in report["tiers"].items():
        assert metrics["answered_by"] == {tier: 40}
        assert 0 <= metrics["ndcg"] <= 1 and 0 <= metrics["recall"] <= 1 and 0 < metrics["coverage"] <= 1
    assert report["popularity"]["ndcg"] > 0


def test_eval_offline_refuses_bad_arguments(movielens_dir, capsys):
    assert main(["eval", "offline", "--data-dir", str(movielens_dir), "--tiers", "moon"]) == 2
    assert "--tiers" in capsys.readouterr().err
    assert main(["eval", "offline", "--data-dir", "/nonexistent"]) == 2
    assert "MovieLens latest-small not found" in capsys.readouterr().err
