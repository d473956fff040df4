"""``relevo demo``: the engine embedded, a catalog, events replayed as a live stream.

Shows in the first minute what relevo does: items embedded on arrival, events applied
within milliseconds (freshness), recommendations answered in milliseconds, and one user's
recommendations changing as their events arrive. The API and the live dashboard
(``/dashboard``, opened in a browser with ``--open``) are served meanwhile.
"""

from __future__ import annotations

import shutil
import time
from collections import Counter
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from relevo.datasets import movielens, synthetic
from relevo.engine import Engine
from relevo.records import Event, EventType, Item
from relevo.settings import Settings
from relevo.tiers.streaming import RecommendRequest


def _titles(engine: Engine, user_id: str, n: int = 5) -> tuple[list[str], str]:
    rec = engine.recommend(RecommendRequest(user_id=user_id, n=n))
    return [engine.catalog.items[s.item_id].title or s.item_id for s in rec.items], rec.tier


def _tag_share(engine: Engine, user_id: str, tag: str, n: int = 20) -> float:
    rec = engine.recommend(RecommendRequest(user_id=user_id, n=n))
    return sum(tag in engine.catalog.items[s.item_id].tags for s in rec.items) / max(len(rec.items), 1)


def run_demo(args) -> int:
    console = Console()
    base = Settings()
    home = Path(args.home) if args.home else base.home / "demo"
    shutil.rmtree(home, ignore_errors=True)
    # a local demo: API keys off (`relevo serve` requires them)
    settings = base.model_copy(update={"home": home, "api": base.api.model_copy(update={"require_keys": False})})
    folder = movielens.find_folder(args.data_dir)
    console.rule("[bold]relevo demo")
    console.print(f"state: {home}   data: {folder or 'synthetic catalog (no --data-dir / RELEVO_DATA_DIR)'}")

    engine = Engine(settings)
    with console.status("loading the text encoder (all-MiniLM-L6-v2 via onnxruntime)..."):
        engine.open()
    server = None
    if not args.no_serve:
        from relevo.cli.server import BackgroundServer, free_port, port_free

        port = args.port if port_free(args.host, args.port) else free_port(args.host)
        server = BackgroundServer(engine, args.host, port)
        server.start()
        console.print(f"API: http://{args.host}:{port}  (docs at /docs, metrics at /metrics)")
        host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(args.host, args.host)  # a wildcard is not browsable
        dashboard_url = f"http://{f'[{host}]' if ':' in host else host}:{port}/dashboard"
        console.print(f"dashboard: {dashboard_url}")
        if getattr(args, "open", False):  # the page stays live: --open keeps serving after the replay
            import webbrowser

            webbrowser.open(dashboard_url)
        console.print("API keys: off for this local demo (`relevo serve` requires them: `relevo keys new`)")
        if args.host not in ("127.0.0.1", "localhost", "::1"):
            console.print(f"[bold red]warning:[/] {args.host} is not loopback: anyone who reaches it can use the API")
    try:
        if folder:
            items = movielens.load_items(folder)
            events = sorted(movielens.iter_ratings(folder), key=lambda e: e.timestamp)[: args.events]
        else:
            items = synthetic.make_catalog()
            events = list(synthetic.simulate_events(items, n_events=args.events))
        _load_catalog(console, engine, items)
        sample_user = Counter(e.user_id for e in events).most_common(1)[0][0] if events else None
        _replay(console, engine, events, args.rate, sample_user)
        engine.wait_idle(30)
        if sample_user:
            _show_shift(console, engine, sample_user)
        _summary(console, engine)
        if server is not None and (args.keep_serving or getattr(args, "open", False)):
            console.print("serving; Ctrl-C to stop")
            while True:
                time.sleep(1)
    except KeyboardInterrupt:
        pass
    finally:
        if server is not None:
            server.stop()
        engine.close()
    return 0


def _progress(console: Console) -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                    TimeRemainingColumn(), console=console)


def _load_catalog(console: Console, engine: Engine, items: list[Item]) -> None:
    started = time.perf_counter()
    with _progress(console) as progress:
        task = progress.add_task("embedding items", total=len(items))
        for start in range(0, len(items), 256):
            chunk = items[start : start + 256]
            engine.add_items(chunk)
            progress.update(task, advance=len(chunk))
    elapsed = time.perf_counter() - started
    console.print(f"{len(items)} items embedded and indexed in {elapsed:.1f} s ({len(items) / elapsed:.0f} items/s)")


def _replay(console: Console, engine: Engine, events: list[Event], rate: float, sample_user: str | None) -> None:
    batch = 100
    interval = batch / rate
    last_print = time.monotonic()
    last_titles: list[str] = []
    sent_at_print = 0
    with _progress(console) as progress:
        task = progress.add_task("replaying events", total=len(events))
        next_at = time.monotonic()
        for start in range(0, len(events), batch):
            chunk = events[start : start + batch]
            engine.ingest(chunk)
            progress.update(task, advance=len(chunk))
            now = time.monotonic()
            if now - last_print >= 1.0:
                stats = engine.stats()
                rate_now = (start + len(chunk) - sent_at_print) / (now - last_print)
                progress.console.print(
                    f"events/s {rate_now:7.0f}   freshness p95 {stats['freshness_ms']['p95'] or 0:7.1f} ms   "
                    f"recommend p95 {stats['recommend_ms']['p95'] or 0:6.2f} ms   lag {stats['consumer_lag']}"
                )
                if sample_user:
                    titles, tier = _titles(engine, sample_user)
                    if titles != last_titles:
                        progress.console.print(f"  {sample_user} now sees ({tier}): " + " | ".join(titles[:4]))
                        last_titles = titles
                last_print, sent_at_print = now, start + len(chunk)
            next_at += interval
            delay = next_at - time.monotonic()
            if delay > 0:
                time.sleep(delay)


def _show_shift(console: Console, engine: Engine, user_id: str) -> None:
    """The user suddenly engages with one tag; recommendations follow within a second."""
    items = list(engine.catalog.items.values())
    tags = Counter(t for it in items for t in it.tags)
    before_titles, _ = _titles(engine, user_id)
    current = Counter(t for s in engine.recommend(RecommendRequest(user_id, 20)).items
                      for t in engine.catalog.items[s.item_id].tags)
    tag = next(t for t, _ in tags.most_common() if current[t] <= 2)
    before = _tag_share(engine, user_id, tag)
    pool = [it.id for it in items if tag in it.tags][:200]
    rng = np.random.default_rng(0)
    chosen = rng.choice(pool, size=min(8, len(pool)), replace=False)
    t0 = time.perf_counter()
    engine.ingest([Event(user_id=user_id, item_id=str(i), type=EventType.PURCHASE) for i in chosen])
    engine.wait_idle(5)
    after = _tag_share(engine, user_id, tag)
    took = (time.perf_counter() - t0) * 1000
    after_titles, _ = _titles(engine, user_id)
    console.rule(f"{user_id} just engaged with 8 '{tag}' items")
    console.print(f"before: {' | '.join(before_titles)}")
    console.print(f"after : {' | '.join(after_titles)}")
    console.print(f"share of '{tag}' in the top 20: {before:.0%} -> {after:.0%}, {took:.0f} ms from events to new answer")


def _summary(console: Console, engine: Engine) -> None:
    stats = engine.stats()
    table = Table(title="relevo demo figures")
    table.add_column("figure")
    table.add_column("value", justify="right")
    table.add_row("items", str(stats["items"]))
    table.add_row("events in the durable log", str(stats["events_in_log"]))
    for key in ("p50", "p95", "p99"):
        table.add_row(f"freshness {key} (event received -> servable)", f"{stats['freshness_ms'][key]} ms")
    for key in ("p50", "p95", "p99"):
        table.add_row(f"recommend {key} (engine)", f"{stats['recommend_ms'][key]} ms")
    table.add_row("bandit posterior version", str(stats["policy_version"]))
    console.print(table)
