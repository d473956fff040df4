from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from relevo.api.app import create_app
from relevo.api.auth import hash_key
from relevo.records import Item
from relevo.settings import ApiSettings

# API tests run with access control on: one key with every scope, sent by default.
KEY = "rlv_tests-every-scope-0f3c9a61d2b84e7f"
API = ApiSettings(keys=[ApiSettings.Key(id="tests", hash=hash_key(KEY), scopes=ApiSettings.SCOPES)])
AUTH = {"Authorization": f"Bearer {KEY}"}

CATALOG = [
    Item(id="alien", title="Alien (1979)", tags=["Horror", "Sci-Fi"], attributes={"year": 1979}),
    Item(id="scream", title="Scream (1996)", tags=["Horror"], attributes={"year": 1996}),
    Item(id="toy", title="Toy Story (1995)", tags=["Animation", "Children"], attributes={"year": 1995}),
    Item(id="shrek", title="Shrek (2001)", tags=["Animation", "Comedy"], attributes={"year": 2001}),
    Item(id="heat", title="Heat (1995)", tags=["Action", "Crime"], attributes={"year": 1995}),
]


@pytest.fixture
def engine(make_engine):
    engine = make_engine(api=API)
    engine.add_items(CATALOG)
    return engine


@pytest.fixture
def client(engine):
    with TestClient(create_app(engine), headers=AUTH) as c:
        yield c
