from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from relevo.api.app import create_app
from relevo.records import Item

CATALOG = [
    Item(id="alien", title="Alien (1979)", tags=["Horror", "Sci-Fi"], attributes={"year": 1979}),
    Item(id="scream", title="Scream (1996)", tags=["Horror"], attributes={"year": 1996}),
    Item(id="toy", title="Toy Story (1995)", tags=["Animation", "Children"], attributes={"year": 1995}),
    Item(id="shrek", title="Shrek (2001)", tags=["Animation", "Comedy"], attributes={"year": 2001}),
    Item(id="heat", title="Heat (1995)", tags=["Action", "Crime"], attributes={"year": 1995}),
]


@pytest.fixture
def engine(make_engine):
    engine = make_engine()
    engine.add_items(CATALOG)
    return engine


@pytest.fixture
def client(engine):
    with TestClient(create_app(engine)) as c:
        yield c
