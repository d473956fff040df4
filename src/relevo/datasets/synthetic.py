"""A generated catalog and simulated users, for demos without a dataset.

Items belong to topics and have descriptive text; each simulated user prefers two topics
and clicks, purchases or skips items with probabilities that follow that preference.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np

from relevo.records import Event, EventType, Item

TOPICS = {
    "cooking": ("recipe", "kitchen", "pasta", "baking", "spices", "dinner"),
    "hiking": ("trail", "mountain", "backpack", "boots", "summit", "forest"),
    "jazz": ("saxophone", "trio", "improvisation", "vinyl", "swing", "bebop"),
    "football": ("match", "goal", "league", "striker", "stadium", "season"),
    "astronomy": ("telescope", "galaxy", "planet", "nebula", "orbit", "stars"),
    "gardening": ("roses", "soil", "seedlings", "compost", "greenhouse", "tulips"),
    "photography": ("camera", "lens", "portrait", "exposure", "tripod", "landscape"),
    "finance": ("stocks", "budget", "savings", "interest", "portfolio", "pension"),
}
_FORMS = ("guide to", "stories about", "a beginner's look at", "advanced notes on", "the history of", "gear for")


def make_catalog(n_items: int = 800, seed: int = 0) -> list[Item]:
    rng = np.random.default_rng(seed)
    topics = list(TOPICS)
    items = []
    for i in range(n_items):
        topic = topics[i % len(topics)]
        words = rng.choice(TOPICS[topic], size=3, replace=False)
        form = _FORMS[int(rng.integers(len(_FORMS)))]
        title = f"{form.capitalize()} {topic}: {words[0]} and {words[1]}"
        items.append(
            Item(
                id=f"s{i}",
                title=title,
                text=f"An item about {topic}, featuring {', '.join(words)}.",
                tags=[topic],
                attributes={"topic": topic, "price": round(float(rng.uniform(1, 100)), 2)},
            )
        )
    return items


def simulate_events(items: list[Item], n_users: int = 200, n_events: int = 20_000, seed: int = 0) -> Iterator[Event]:
    """Events of ``n_users`` users, each with two favourite topics (80% of their attention)."""
    rng = np.random.default_rng(seed)
    by_topic: dict[str, list[str]] = {}
    for item in items:
        by_topic.setdefault(item.tags[0], []).append(item.id)
    topics = list(by_topic)
    favourites = [rng.choice(len(topics), size=2, replace=False) for _ in range(n_users)]
    for k in range(n_events):
        u = int(rng.integers(n_users))
        liked = rng.random() < 0.8
        topic = topics[int(rng.choice(favourites[u]))] if liked else topics[int(rng.integers(len(topics)))]
        item_id = by_topic[topic][int(rng.integers(len(by_topic[topic])))]
        roll = rng.random()
        if liked:
            kind = EventType.PURCHASE if roll < 0.1 else EventType.CLICK if roll < 0.7 else EventType.VIEW
        else:
            kind = EventType.SKIP if roll < 0.6 else EventType.VIEW
        yield Event(id=f"sim-{seed}-{k}", user_id=f"sim{u}", item_id=item_id, type=kind)
