"""Failpoints: named places where a test can make a process pause, so that a fault (a
kill -9, a Redis restart) lands at a chosen step rather than by luck.

``RELEVO_FAILPOINTS="stream.before_ack=sleep:3000"`` makes every pass through
``failpoint("stream.before_ack")`` sleep 3 s. Unset (production), a failpoint is one
dictionary lookup. Points: ``stream.before_ack`` (a batch is written, not yet acked).
"""

from __future__ import annotations

import os
import time


def _parse(spec: str) -> dict[str, float]:
    points: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        name, _, action = part.partition("=")
        kind, _, arg = action.partition(":")
        if kind != "sleep" or not arg:
            raise ValueError(f"RELEVO_FAILPOINTS: {part!r} is not NAME=sleep:MS")
        points[name.strip()] = float(arg) / 1000.0
    return points


_POINTS = _parse(os.environ.get("RELEVO_FAILPOINTS", ""))


def failpoint(name: str) -> None:
    pause = _POINTS.get(name)
    if pause:
        time.sleep(pause)
