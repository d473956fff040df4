"""Dataset loaders read the shared copies without changing them."""

from __future__ import annotations

from relevo.datasets import movielens, synthetic


def test_movielens_items_and_ratings(movielens_dir):
    items = movielens.load_items(movielens_dir)
    assert len(items) == 9742
    toy = next(it for it in items if it.id == "1")
    assert toy.title == "Toy Story (1995)" and "Animation" in toy.tags and toy.attributes["year"] == 1995
    ratings = list(movielens.iter_ratings(movielens_dir))
    assert len(ratings) == 100_836 and len({r.user_id for r in ratings}) == 610
    assert ratings[0].id == "ml-1-1" and ratings[0].type.value == "rating" and 0.5 <= ratings[0].value <= 5
    assert movielens.find_folder(movielens_dir.parent) == movielens_dir


def test_synthetic_catalog_and_users_are_seeded():
    items = synthetic.make_catalog(80, seed=3)
    assert len({it.tags[0] for it in items}) == 8
    a = list(synthetic.simulate_events(items, n_users=5, n_events=50, seed=1))
    b = list(synthetic.simulate_events(items, n_users=5, n_events=50, seed=1))
    assert [e.item_id for e in a] == [e.item_id for e in b] and len(a) == 50
