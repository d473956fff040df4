"""MovieLens latest-small (GroupLens): movies become Items, ratings become rating Events.

Reads ``movies.csv`` and ``ratings.csv`` from ``folder``; never copies them.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path
from typing import Iterator

from relevo.errors import ConfigError
from relevo.records import Event, EventType, Item

_YEAR = re.compile(r"\((\d{4})\)\s*$")


def _require(folder: Path, name: str) -> Path:
    path = Path(folder) / name
    if not path.exists():
        raise ConfigError(f"{path} not found: point --data-dir / RELEVO_DATA_DIR at ml-latest-small")
    return path


def load_items(folder: str | Path) -> list[Item]:
    """One Item per movie: title, genres as tags, year as an attribute."""
    items = []
    with _require(Path(folder), "movies.csv").open(newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            genres = [] if row["genres"] == "(no genres listed)" else row["genres"].split("|")
            attributes = {}
            match = _YEAR.search(row["title"])
            if match:
                attributes["year"] = int(match.group(1))
            items.append(Item(id=row["movieId"], title=row["title"].strip(), tags=genres, attributes=attributes))
    return items


def iter_ratings(folder: str | Path) -> Iterator[Event]:
    """Ratings in file order as rating events with deterministic ids (``ml-<user>-<movie>``)."""
    with _require(Path(folder), "ratings.csv").open(newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            yield Event(
                id=f"ml-{row['userId']}-{row['movieId']}",
                user_id=f"ml{row['userId']}",
                item_id=row["movieId"],
                type=EventType.RATING,
                value=float(row["rating"]),
                timestamp=float(row["timestamp"]),
            )


def find_folder(data_dir: str | Path | None) -> Path | None:
    """``data_dir`` itself or its ``ml-latest-small`` child, when it holds movies.csv."""
    if not data_dir:
        return None
    for candidate in (Path(data_dir), Path(data_dir) / "ml-latest-small"):
        if (candidate / "movies.csv").exists():
            return candidate
    return None
