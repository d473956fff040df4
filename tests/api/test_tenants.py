"""Tenants: a key names a tenant; its requests are served by that tenant's own engine and
stores. One tenant never reads another's items, users or decisions."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest
from fastapi.testclient import TestClient

from relevo.api.app import create_app
from relevo.api.auth import hash_key
from relevo.settings import ApiSettings, Settings, StorageSettings
from relevo.tenants import tenant_settings

KEYS = {"a": "rlv_tenant-a-key-5b7e1c9d0a2f4e68", "b": "rlv_tenant-b-key-8c2d4f6a1b3e5d70",
        None: "rlv_default-key-1a2b3c4d5e6f7a8b"}
API = ApiSettings(keys=[
    ApiSettings.Key(id=f"k-{t or 'default'}", hash=hash_key(k), scopes=ApiSettings.SCOPES, tenant=t)
    for t, k in KEYS.items()
])


def h(tenant):
    return {"X-API-Key": KEYS[tenant]}


@pytest.fixture
def client(make_engine):
    engine = make_engine(api=API)
    with TestClient(create_app(engine)) as c:
        yield c


def test_tenants_never_see_each_others_data(client):
    item = {"items": [{"id": "film", "title": "A film only tenant a sells", "tags": ["x"]},
                      {"id": "other", "title": "Another film of tenant a", "tags": ["x"]}]}
    assert client.post("/v1/items", json=item, headers=h("a")).status_code == 200
    assert client.get("/v1/items/film", headers=h("a")).status_code == 200
    assert client.get("/v1/items/film", headers=h("b")).status_code == 404
    assert client.get("/v1/items/film", headers=h(None)).status_code == 404
    # the same user id in two tenants is two different people
    ev = {"events": [{"user_id": "u1", "item_id": "film", "type": "purchase"}]}
    assert client.post("/v1/events", json=ev, headers=h("a")).status_code == 202
    bad = client.post("/v1/events", json=ev, headers=h("b"))
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "unknown_item"  # b has no such item
    client.put("/v1/users/u1/preferences", json={"liked_tags": ["x"]}, headers=h("a"))
    assert client.get("/v1/users/u1/preferences", headers=h("b")).json() == {}
    rec = client.post("/v1/recommendations", json={"user_id": "u1", "n": 2}, headers=h("a")).json()
    assert client.get(f"/v1/decisions/{rec['decision_id']}/audit", headers=h("b")).status_code == 404
    assert client.get(f"/v1/decisions/{rec['decision_id']}/audit", headers=h("a")).status_code == 200
    export_b = client.get("/v1/users/u1/export", headers=h("b")).json()
    assert export_b["counts"] == {"events": 0, "decisions": 0}
    assert client.get("/v1/users/u1/export", headers=h("a")).json()["counts"]["events"] == 1
    # erasure in one tenant leaves the other's user alone
    assert client.delete("/v1/users/u1", headers=h("b")).json()["removed"]["events"] == 0
    assert client.get("/v1/users/u1/export", headers=h("a")).json()["counts"]["events"] == 1
    # experiments and Personalizer state are per tenant too
    design = {"id": "exp1", "variants": [{"name": "a"}, {"name": "b"}]}
    assert client.post("/v1/experiments", json=design, headers=h("a")).status_code == 201
    assert client.get("/v1/experiments/exp1", headers=h("b")).status_code == 404


def test_tenant_stores_are_separate_namespaces(tmp_path):
    base = Settings(home=tmp_path, storage=StorageSettings(
        event_log="redis://127.0.0.1:6379/0?prefix=app:", feature_store="sqlite:///data/f.db",
        decision_log="memory://"))
    t = tenant_settings(base, "acme")
    assert parse_qs(urlsplit(t.storage.event_log).query)["prefix"] == ["app:t:acme:"]
    assert t.storage.feature_store == "sqlite:///data/tenants/acme/f.db"
    assert t.storage.decision_log == "memory://"
    assert t.home == tmp_path / "tenants" / "acme" and t.store_url("model_store").endswith("tenants/acme/model_store.db")
    with pytest.raises(ValueError, match="tenant"):
        tenant_settings(base, "../etc")
    with pytest.raises(ValueError):
        ApiSettings.Key(id="x", hash=hash_key("rlv_0123456789abcdef0123"), scopes=("admin",), tenant="Bad Tenant")
