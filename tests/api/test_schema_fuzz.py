"""Schemathesis against the app's own OpenAPI schema: every operation, valid and invalid
input (examples, coverage and fuzzing phases), must never answer 5xx, must answer only
status codes and content types the schema documents, and bodies that conform to it.

The app is built as in tests/api/conftest.py (an engine on the embedded default with the real
MiniLM encoder, the small catalog, access control on with an every-scope key); requests go
through schemathesis' in-process ASGI transport to the app the ``client`` fixture runs, so
the lifespan (tenants) is the fixture's. Bounded for 2 slow cores: a few dozen examples per
operation, derandomized so a failure reproduces.
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.python import asgi

from tests.api.conftest import AUTH, CATALOG

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
KNOWN_ITEMS = [item.id for item in CATALOG]


@pytest.fixture
def api_schema(client):
    """The schema the running app serves (GET /openapi.json needs the admin scope)."""
    response = client.get("/openapi.json")
    assert response.status_code == 200, response.text
    schema = schemathesis.openapi.from_dict(response.json())
    schema.app = client.app
    return schema


@pytest.fixture
def session(client):
    """An in-process HTTP session on the fixture's app. Not entered: the app's lifespan is
    the one ``client`` already runs, not a second one schemathesis would start and keep."""
    return asgi.get_client(client.app)


schema = schemathesis.pytest.from_fixture("api_schema")


def _known_items(case) -> None:
    """Name a catalog item in about half the generated events (deterministically, from the
    generated id), so the fuzzer gets past the catalog check into the log, the stream and the
    learners; the rest keep their random ids and exercise the unknown-item rejection."""
    if case.method != "POST" or case.path != "/v1/events" or not isinstance(case.body, dict):
        return
    events = case.body.get("events")
    if not isinstance(events, list):
        return
    for event in events:
        if isinstance(event, dict) and isinstance(event.get("item_id"), str) and len(event["item_id"]) % 2 == 0:
            event["item_id"] = KNOWN_ITEMS[len(event["item_id"]) % len(KNOWN_ITEMS)]


@schema.parametrize()
@settings(max_examples=30, deadline=None, derandomize=True, database=None, print_blob=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large,
                                 HealthCheck.function_scoped_fixture])
def test_every_operation_conforms_to_its_schema(case, session):
    _known_items(case)
    case.call_and_validate(session=session, headers=AUTH, checks=CHECKS)
