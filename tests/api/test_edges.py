"""Edges a review found: ids that cannot be addressed, header injection through ids,
chunked bodies past the size limit."""

from __future__ import annotations


def test_ids_with_a_slash_are_refused_so_every_user_stays_addressable(client):
    r = client.post("/v1/events", json={"events": [{"user_id": "u/1", "item_id": "alien", "type": "click"}]})
    assert r.status_code == 422 and r.json()["error"]["field"] == "events[0].user_id"


def test_export_of_any_user_id_is_a_safe_download(client):
    client.post("/v1/events", json={"events": [{"user_id": "用户", "item_id": "alien", "type": "click"}]})
    for user in ("用户", 'x"; filename="evil.html'):
        r = client.get(f"/v1/users/{user}/export")
        assert r.status_code == 200
        disposition = r.headers["content-disposition"]
        assert disposition.startswith('attachment; filename="relevo-export.json"; filename*=UTF-8\'\'')
        assert '"evil.html' not in disposition


def test_chunked_body_over_the_limit_is_413(client, engine):
    limit = engine.settings.api.max_body_bytes

    def chunks():
        block = b" " * 65536
        for _ in range(limit // len(block) + 2):
            yield block

    r = client.post("/v1/events", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413 and r.json()["error"]["code"] == "payload_too_large"
