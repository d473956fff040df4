"""The dashboard: its JSON moves with the engine, needs the admin scope, remembers recent
users only in memory; and a real headless Chromium renders the page against a running
server, whose user explorer follows a user's recommendations as their events arrive."""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient

from relevo.api import dashboard
from relevo.api.app import create_app
from relevo.api.auth import hash_key
from relevo.cli.server import BackgroundServer, free_port
from relevo.observability.metrics import FRESHNESS_BUCKETS
from relevo.settings import ApiSettings
from tests.api.conftest import API, AUTH, CATALOG
from tests.conftest import ROOT

SCREENSHOT = ROOT / "docs" / "dashboard.png"
CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
DESIGN = {"id": "explore-vs-greedy", "allocation": "fixed",
          "variants": [{"name": "control"}, {"name": "greedy", "config": {"exploration_scale": 0.0}}]}


@pytest.fixture
def engine(make_engine):
    engine = make_engine(api=API)
    engine.add_items(CATALOG)
    return engine


@pytest.fixture
def client(engine):
    with TestClient(create_app(engine), headers=AUTH) as c:
        yield c


def summary(client) -> dict:
    """A fresh reading: readings are taken at most every 0.9 s."""
    time.sleep(dashboard.MIN_INTERVAL_S + 0.05)
    r = client.get("/v1/dashboard/summary")
    assert r.status_code == 200, r.text
    return r.json()


# ------------------------------------------------------------------ the JSON


def test_summary_moves_after_events_recommendations_rewards_and_experiments(client, engine):
    first = client.get("/v1/dashboard/summary").json()
    assert first["series"]["t"] == [] and first["now"]["events_ingested"] == 0
    assert first["cache"]["available"] and first["cache"]["hits"] == 0 and first["cache"]["degraded"] == {}
    assert first["llm"] == {"backend": None, "answers": {}, "fallback_reasons": {}, "tokens": {}}
    assert "needs a running experiment" in first["regret"]["definition"] and first["experiment"] is None

    assert client.post("/v1/experiments", json=DESIGN).status_code == 201
    users = [f"u{i}" for i in range(30)]
    events = [{"user_id": u, "item_id": "alien", "type": "click"} for u in users]
    assert client.post("/v1/events", json={"events": events}).status_code == 202
    assert engine.wait_idle(10)
    for k, u in enumerate(users):
        rec = client.post("/v1/recommendations", json={"user_id": u, "n": 2, "tier": "streaming"}).json()
        reward = 1.0 if engine.decisions.get(rec["decision_id"]).variant == "control" or k % 3 == 0 else 0.0
        for item in rec["items"]:
            assert client.post("/v1/feedback", json={"decision_id": rec["decision_id"], "item_id": item["item_id"],
                                                     "reward": reward}).status_code == 200
    client.post("/v1/recommendations", json={"user_id": "stranger", "tier": "streaming"})  # popularity fallback

    d = summary(client)
    s = d["series"]
    assert d["cache"]["entries"] >= 1  # the streaming answers, cached for the edge
    assert len(s["t"]) == 1
    assert s["events_ingested_per_s"][-1] > 0 and s["events_processed_per_s"][-1] > 0
    assert d["now"]["events_ingested"] == 30 and d["now"]["events_processed"] == 30 and d["now"]["consumer_lag"] == 0
    assert s["freshness_p50_ms"][-1] is not None and s["freshness_p50_ms"][-1] <= s["freshness_p95_ms"][-1]
    hist = d["freshness_histogram"]
    assert hist["le_ms"] == [b * 1000 for b in FRESHNESS_BUCKETS] + [None] and sum(hist["total"]) == 30
    assert d["tier_mix"] == {"streaming": 30, "popularity": 1} and d["fallbacks"] == 1 and d["recommendations"] == 31
    assert s["recommendations_per_s"]["streaming"][-1] > 0 and s["fallbacks_per_s"][-1] > 0
    assert d["rewards_by_outcome"]["joined"] == 60
    (policy, ctr), = d["reward_by_policy"].items()
    assert ctr["count"] == 60 and 0 < ctr["mean"] < 1
    assert s["mean_reward"][policy][-1] == pytest.approx(ctr["mean"], abs=1e-5)
    exp = d["experiment"]
    assert exp["experiment_id"] == "explore-vs-greedy"
    by_name = {v["name"]: v for v in exp["variants"]}
    assert sum(v["trials"] for v in by_name.values()) == 60
    for v in by_name.values():
        assert v["ci_low"] <= v["mean"] <= v["ci_high"] + 1e-9
    assert by_name["control"]["mean"] == 1.0  # control always rewarded: the best arm, no regret
    regret = d["regret"]["by_variant"]
    assert regret["control"] == 0.0
    assert regret["greedy"] == pytest.approx(by_name["greedy"]["trials"] * (1.0 - by_name["greedy"]["mean"]))
    assert s["regret"]["greedy"][-1] == pytest.approx(regret["greedy"], abs=1e-3)

    again = summary(client)  # quiet second: the rates fall back to zero, the totals stay
    assert len(again["series"]["t"]) == 2 and again["series"]["events_ingested_per_s"][-1] == 0
    assert again["now"]["events_ingested"] == 30
    client.post("/v1/recommendations", json={"user_id": "u1", "n": 2, "explain": True})
    assert summary(client)["llm"]["answers"] == {"reasoner": 1.0}  # no backend: the reasoner explains


def test_window_bounds_the_series(client):
    for _ in range(3):
        summary(client)
    d = client.get("/v1/dashboard/summary", params={"window": 1}).json()
    assert d["window_s"] == 5 and 1 <= len(d["series"]["t"]) <= 2  # clamped to 5 s: 5 s of readings
    assert len(client.get("/v1/dashboard/summary").json()["series"]["t"]) >= 2


def test_user_view(client, engine):
    assert client.get("/v1/dashboard/users/nobody").json() == {
        "user_id": "nobody", "known": False,
        "consent": {"personalization": True, "profiling": True, "emotion": False, "llm": False}}
    client.put("/v1/users/ana/consent", json={"emotion": True})
    client.post("/v1/events", json={"events": [{"user_id": "ana", "item_id": "alien", "type": "purchase"},
                                               {"user_id": "ana", "item_id": "toy", "type": "skip"},
                                               {"user_id": "bob", "item_id": "toy", "type": "click"}]})
    assert engine.wait_idle(10)
    ana = client.get("/v1/dashboard/users/ana").json()
    assert ana["known"] and ana["consent"]["emotion"] is True
    assert ana["session"]["events"] == 2 and 0 <= ana["session"]["last_received_age_s"] < 10
    assert [i["item_id"] for i in ana["session"]["recent_items"]][:1] == ["toy"]
    assert ana["vectors"]["long_term"] and ana["vectors"]["session"] and 0 <= ana["vectors"]["updated_age_s"] < 10
    assert ana["top_tags"][0]["tag"] in ("Horror", "Sci-Fi") and "affect" in ana
    assert not any(isinstance(v, list) for v in ana["vectors"].values())  # presence and age, never values
    bob = client.get("/v1/dashboard/users/bob").json()
    assert "affect" not in bob  # stored only with emotion consent


def test_recent_users_only_while_watched_not_the_dashboards_own_calls_and_forgotten_on_erasure(client, engine):
    def post(user_id: str) -> None:
        client.post("/v1/events", json={"events": [{"user_id": user_id, "item_id": "alien", "type": "view"}]})

    post("before-anyone-watched")
    assert client.get("/v1/dashboard/users").json() == {"users": []}
    post("ana")
    client.post("/v1/recommendations", json={"user_id": "bob"})
    client.post("/v1/recommendations", json={"user_id": "self", "context": {"source": "dashboard"}})
    engine.wait_idle(10)
    users = client.get("/v1/dashboard/users").json()["users"]
    assert [(u["user_id"], u["source"]) for u in users] == [("bob", "recommendations"), ("ana", "events")]
    assert client.delete("/v1/users/ana").status_code == 200
    assert [u["user_id"] for u in client.get("/v1/dashboard/users").json()["users"]] == ["bob"]
    metrics = client.get("/metrics").text
    assert "ana" not in metrics and "bob" not in metrics  # ids never become label values


def test_recent_users_from_decisions_made_in_process(client, engine):
    from relevo.tiers.streaming import RecommendRequest

    client.get("/v1/dashboard/summary")
    engine.recommend(RecommendRequest(user_id="in-process", n=2))
    assert [u["user_id"] for u in client.get("/v1/dashboard/users").json()["users"]] == ["in-process"]


@pytest.mark.parametrize(("path", "headers", "status"), [
    ("/v1/dashboard/summary", {}, 401),
    ("/v1/dashboard/summary", {"Authorization": "Bearer rlv_" + "x" * 43}, 401),
    ("/v1/dashboard/summary", {"Authorization": "Bearer rlv_dash-recommend-only-5c1d"}, 403),
    ("/v1/dashboard/users", {"Authorization": "Bearer rlv_dash-recommend-only-5c1d"}, 403),
    ("/v1/dashboard/users/ana", {}, 401),
    ("/v1/dashboard/summary", {"Authorization": "Bearer rlv_dash-admin-only-77e0"}, 200),
    ("/dashboard", {}, 200),
])
def test_json_needs_admin_the_page_is_public(make_engine, path, headers, status):
    keys = [ApiSettings.Key(id="rec", hash=hash_key("rlv_dash-recommend-only-5c1d"), scopes=("recommend",)),
            ApiSettings.Key(id="adm", hash=hash_key("rlv_dash-admin-only-77e0"), scopes=("admin",))]
    engine = make_engine(api=ApiSettings(keys=keys))
    with TestClient(create_app(engine)) as c:
        r = c.get(path, headers=headers)
        assert r.status_code == status, r.text
        if status == 403:
            assert "admin" in r.json()["error"]["message"]


def test_page_is_self_contained(client):
    r = client.get("/dashboard", headers={})
    assert r.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in r.headers["content-security-policy"]
    assert "connect-src 'self'" in r.headers["content-security-policy"]
    urls = set(re.findall(r"(?:https?:)?//[\w.-]+\.[a-z]{2,}[^\s\"'<>)]*", r.text))
    assert urls <= {"http://www.w3.org/2000/svg"}, urls  # nothing fetched from elsewhere
    assert "<script src" not in r.text and "<link rel=\"stylesheet\"" not in r.text


@pytest.mark.parametrize(("q", "cumulative", "expected"), [
    (0.5, [0, 0, 0, 0], None),  # empty
    (0.5, [10, 10, 10, 10], 0.5),  # all in the first bucket [0, 1]
    (0.5, [0, 10, 10, 10], 1.5),  # all in (1, 2]
    (0.25, [0, 10, 20, 20], 1.5),
    (0.75, [0, 10, 20, 20], 3.0),  # half way through (2, 4]
    (0.95, [0, 0, 0, 10], 4.0),  # in +Inf: the top bound
])
def test_bucket_quantile(q, cumulative, expected):
    assert dashboard.bucket_quantile(q, (1.0, 2.0, 4.0), cumulative) == expected


def test_bucket_quantile_is_close_to_the_exact_quantile():
    values = np.random.default_rng(7).lognormal(np.log(0.02), 0.6, 5000)
    cumulative = [float((values <= b).sum()) for b in FRESHNESS_BUCKETS] + [float(values.size)]
    for q in (0.5, 0.95):
        exact = float(np.quantile(values, q))
        estimate = dashboard.bucket_quantile(q, FRESHNESS_BUCKETS, cumulative)
        assert abs(estimate - exact) / exact < 0.25  # within a bucket's resolution


@pytest.mark.parametrize(("variants", "expected"), [
    ([], {}),
    ([{"name": "a", "trials": 10, "mean": 0.5}], {}),  # one arm: nothing to compare
    ([{"name": "a", "trials": 10, "mean": 0.5}, {"name": "b", "trials": 0, "mean": None}], {}),
    ([{"name": "a", "trials": 10, "mean": 0.5}, {"name": "b", "trials": 20, "mean": 0.25}], {"a": 0.0, "b": 5.0}),
])
def test_in_sample_regret(variants, expected):
    assert dashboard.in_sample_regret({"variants": variants} if variants else None) == expected


# ------------------------------------------------------------------ the page in a real browser


def _require(ok: bool, reason: str) -> None:
    """The browser test is required everywhere (``make test`` installs the browser first)."""
    if not ok:
        pytest.fail(f"{reason}: run `make browser` (as root) to install Debian's chromium and chromium-driver")


@pytest.fixture
def chrome(tmp_path):
    _require(CHROMIUM.exists() and CHROMEDRIVER.exists(), f"{CHROMIUM} or {CHROMEDRIVER} is missing")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        _require(False, "selenium is not installed (pip install -e '.[dev]')")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1440,1000",
                f"--user-data-dir={tmp_path / 'chrome'}", "--no-first-run", "--disable-extensions"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def _wait(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def _traffic(base: str, headers: dict, items: list[str], stop: threading.Event, rewards: threading.Event) -> None:
    """Background users browsing, clicking and getting recommendations, so the charts live;
    random rewards once ``rewards`` is set (before, the posterior stays at its prior)."""
    rng = np.random.default_rng(3)
    with httpx.Client(base_url=base, headers=headers, timeout=5) as http:
        while not stop.is_set():
            users = [f"viewer{k}" for k in rng.integers(0, 40, size=5)]
            events = [{"user_id": u, "item_id": str(rng.choice(items)), "type": str(rng.choice(["view", "click"]))}
                      for u in users]
            http.post("/v1/events", json={"events": events})
            rec = http.post("/v1/recommendations", json={"user_id": users[0], "n": 5}).json()
            if rewards.is_set() and rec.get("items") and rng.random() < 0.5:
                k = int(rng.integers(0, len(rec["items"])))  # users mostly like the best match: the top one
                http.post("/v1/feedback", json={"decision_id": rec["decision_id"], "item_id": rec["items"][k]["item_id"],
                                                "reward": float(rng.random() < (0.6 if k == 0 else 0.15))})
            stop.wait(0.15)


@pytest.mark.slow
def test_dashboard_in_chromium_follows_a_users_recommendations(chrome, make_engine, movielens_items):
    from selenium.webdriver.common.by import By

    horror = [it for it in movielens_items if "Horror" in it.tags and "Children" not in it.tags][:60]
    kids = [it for it in movielens_items if "Children" in it.tags and "Horror" not in it.tags][:60]
    chosen = {it.id for it in horror + kids}
    others = [it for it in movielens_items if it.id not in chosen][:80]
    dash_key, tool_key = "rlv_dashboard-admin-recommend-41c9", "rlv_test-driver-every-scope-9a07"
    keys = [ApiSettings.Key(id="dashboard", hash=hash_key(dash_key), scopes=("admin", "recommend")),
            ApiSettings.Key(id="driver", hash=hash_key(tool_key), scopes=ApiSettings.SCOPES)]
    engine = make_engine(api=ApiSettings(keys=keys))
    engine.add_items(horror + kids + others)  # 200 MovieLens movies, embedded by the session's encoder
    server = BackgroundServer(engine, "127.0.0.1", free_port())
    server.start()
    base = f"http://127.0.0.1:{server.port}"
    auth = {"Authorization": f"Bearer {tool_key}"}
    http = httpx.Client(base_url=base, headers=auth, timeout=10)
    stop, rewards = threading.Event(), threading.Event()
    traffic = threading.Thread(target=_traffic, args=(base, auth, [it.id for it in others + kids], stop, rewards),
                               daemon=True)
    try:
        r = http.post("/v1/events", json={"events": [{"user_id": "ana", "item_id": it.id, "type": "purchase"}
                                                     for it in kids[:6]]})
        assert r.status_code == 202
        assert http.post("/v1/experiments", json=DESIGN).status_code == 201
        assert engine.wait_idle(10)
        traffic.start()

        chrome.get(f"{base}/dashboard")
        key_input = _wait(lambda: chrome.find_element(By.ID, "key-input").is_displayed()
                          and chrome.find_element(By.ID, "key-input"), 15, "the page to ask for an API key")
        key_input.send_keys(dash_key)
        chrome.find_element(By.CSS_SELECTOR, "#key-form button").click()

        def points(chart_id: str) -> int:
            return int(chrome.execute_script("return document.getElementById(arguments[0]).dataset.points || 0",
                                             chart_id))

        _wait(lambda: points("chart-events") > 0 and chrome.find_elements(By.CSS_SELECTOR, "#chart-events svg path"),
              20, "the event rate chart to draw live data")
        assert "live" in chrome.find_element(By.ID, "status").get_attribute("class")

        user_input = chrome.find_element(By.ID, "user-input")
        user_input.send_keys("ana")
        chrome.find_element(By.CSS_SELECTOR, "#user-form button").click()

        def shown() -> list[tuple[str, str]]:  # read in one script: the list is redrawn every second
            return [tuple(row) for row in chrome.execute_script(
                "return [...document.querySelectorAll('#recs li')].map(li => [li.dataset.itemId, li.dataset.tags])")]

        before = _wait(lambda: (rows := shown()) and len(rows) == 10 and rows, 20, "ana's recommendations")
        assert "streaming" in chrome.execute_script("return document.getElementById('recs-head').textContent")
        def field(name: str) -> str | None:
            return chrome.execute_script(
                "const dt = [...document.querySelectorAll('#user-state dt')].find(d => d.textContent === arguments[0]);"
                "return dt ? dt.nextElementSibling.textContent : null;", name)

        _wait(lambda: field("session events") == "6", 5, "ana's session in the explorer")
        assert field("long-term vector") == "present"
        horror_before = sum("Horror" in tags for _, tags in before)
        assert horror_before <= 1, before

        t0 = time.monotonic()
        r = http.post("/v1/events", json={"events": [{"user_id": "ana", "item_id": it.id, "type": "purchase"}
                                                     for it in horror[:8]]})
        assert r.status_code == 202
        after = _wait(lambda: (rows := shown()) and sum("Horror" in tags for _, tags in rows) >= 4 and rows,
                      15, "ana's displayed recommendations to follow her horror purchases")
        followed_s = time.monotonic() - t0
        assert {i for i, _ in after} != {i for i, _ in before}
        _wait(lambda: field("session events") == "14", 5, "ana's session to count her new events")
        assert chrome.execute_script("return document.querySelectorAll('#recs .reasons').length "
                                     "&& document.querySelectorAll('#recs .meter').length")

        rewards.set()  # now the CTR, reward and experiment charts get data
        _wait(lambda: points("chart-experiment") == 2 and points("chart-ctr") > 0 and points("chart-tier-mix") > 0
              and points("chart-freshness-hist") > 0, 20, "the experiment, CTR, tier-mix and freshness charts")
        time.sleep(3)  # a few more seconds of live series for the picture
        assert "Edge cache hit ratio" in chrome.find_element(By.ID, "cache").text
        errors = [e for e in chrome.get_log("browser")  # the 401 that made the page ask for a key aside
                  if e["level"] == "SEVERE" and "401 (Unauthorized)" not in e["message"]]
        assert not errors, errors
        chrome.execute_script("window.scrollTo(0, 0)")
        height = chrome.execute_script("return document.documentElement.scrollHeight + window.outerHeight"
                                       " - window.innerHeight")
        chrome.set_window_size(1440, height)
        time.sleep(1.2)  # one more poll at the new size
        SCREENSHOT.parent.mkdir(exist_ok=True)
        assert chrome.save_screenshot(str(SCREENSHOT))
        horror_after = sum("Horror" in tags for _, tags in after)
        print(f"horror in ana's top 10: {horror_before} -> {horror_after}, shown {followed_s:.1f} s after the events;"
              f" screenshot {SCREENSHOT}")
    finally:
        stop.set()
        if traffic.is_alive():
            traffic.join(5)
        http.close()
        server.stop()

