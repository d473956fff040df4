"""``relevo serve | demo | ingest | bench | eval | keys``: see ``relevo --help``."""

from __future__ import annotations

import argparse
import contextlib
import os
import runpy
import sys
import time
from pathlib import Path

import orjson


def _settings(args):
    from relevo.settings import Settings

    overrides = {}
    if getattr(args, "home", None):
        overrides["home"] = Path(args.home)
    return Settings(**overrides)


def _is_redis(url: str) -> bool:
    return url.split("://", 1)[0] in ("redis", "rediss", "redis+cluster")


def cmd_serve(args) -> int:
    import uvicorn

    from relevo.api.app import create_app
    from relevo.api.auth import AuthConfigError
    from relevo.engine import Engine
    from relevo.errors import RelevoError

    try:
        settings = _settings(args)
        create_app(settings=settings)  # refuses missing keys or bad settings before anything opens
        if args.workers > 1:
            return _serve_workers(args, settings)
    except AuthConfigError as exc:
        print(f"relevo serve: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:  # pydantic's ValidationError: a refused key hash, an unknown scope, ...
        print(f"relevo serve: invalid settings: {exc}", file=sys.stderr)
        return 2
    from rich.progress import Progress

    # a progress bar on stderr when a person watches (a 1M-item index rebuild takes minutes)
    progress = Progress(console=_stderr_console(), transient=True) if sys.stderr.isatty() else None
    with progress or contextlib.nullcontext():
        tasks: dict[str, int] = {}

        def step(stage: str, done: int, total: int) -> None:
            if progress is None:
                return
            if stage not in tasks:
                tasks[stage] = progress.add_task(stage, total=total)
            progress.update(tasks[stage], completed=done)

        try:
            engine = Engine(settings).open(progress=step)
        except (RelevoError, OSError) as exc:  # e.g. an LLM backend without its URL, a missing GGUF
            print(f"relevo serve: cannot start: {exc}", file=sys.stderr)
            return 2
    app = create_app(engine)
    if not settings.api.require_keys:
        print(f"relevo serve: API keys are off (RELEVO_API__REQUIRE_KEYS=false): anyone who reaches "
              f"{args.host}:{args.port} can read, change and erase data", file=sys.stderr)
    try:
        uvicorn.run(app, host=args.host, port=args.port, log_level="info",
                    # uvicorn's access log would write request paths, and paths carry user ids
                    # (/v1/users/{id}/...): off, so no identifier lands in the server's logs
                    access_log=False)
    finally:
        engine.close()
    return 0


def _serve_workers(args, settings) -> int:
    """``--workers N``: N stateless API processes (uvicorn's process manager), each with its
    own engine over the shared Redis stores; they do not consume the event stream
    (``relevo worker`` does)."""
    import uvicorn

    if not _is_redis(settings.store_url("event_log")) or not _is_redis(settings.store_url("feature_store")):
        print("relevo serve: --workers > 1 needs the Redis stores (RELEVO_STORAGE__URL=redis://... or "
              "redis+cluster://...): processes cannot share the embedded SQLite state", file=sys.stderr)
        return 2
    if args.home:
        os.environ["RELEVO_HOME"] = str(Path(args.home).resolve())
    os.environ["RELEVO_STREAM__CONSUME"] = "false"
    print(f"relevo serve: {args.workers} API workers on {args.host}:{args.port}; run `relevo worker` "
          "(one or more) to apply the event stream", file=sys.stderr)
    uvicorn.run("relevo.api.app:create_app", factory=True, workers=args.workers, host=args.host, port=args.port,
                log_level="info", access_log=False, http="relevo.cli.server:NoDelayH11Protocol")
    return 0


def cmd_worker(args) -> int:
    """A stream worker: applies events from its share of the log's partitions (leases shared
    with the other workers) until SIGTERM / Ctrl-C, printing a status line now and then."""
    import signal
    import threading

    from relevo.engine import Engine
    from relevo.errors import RelevoError
    from relevo.stream.processor import GROUP

    settings = _settings(args)
    settings = settings.model_copy(update={"stream": settings.stream.model_copy(update={"consume": True})})
    try:
        engine = Engine(settings).open()
    except (RelevoError, OSError) as exc:
        print(f"relevo worker: cannot start: {exc}", file=sys.stderr)
        return 2
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    print(f"relevo worker {engine.node}: consuming {settings.store_url('event_log').split('?', 1)[0]}",
          file=sys.stderr, flush=True)
    try:
        while not stop.wait(args.status_every):
            owned = engine.events.owned(GROUP) if hasattr(engine.events, "owned") else [0]
            print(f"relevo worker {engine.node}: partitions {owned}, processed "
                  f"{int(engine.metrics.events_processed._value.get())}, lag {engine.events.lag(GROUP)}"
                  + (f", last error {engine.processor.last_error}" if engine.processor.last_error else ""),
                  file=sys.stderr, flush=True)
    finally:
        engine.close()  # hands its partitions over at once
    return 0


def cmd_edge(args) -> int:
    import uvicorn

    from relevo.api.auth import AuthConfigError
    from relevo.api.edge import create_edge_app

    try:
        settings = _settings(args)
        if args.invalidation_url:
            settings.tiers.invalidation_url = args.invalidation_url
        app = create_edge_app(args.origin, settings, timeout_s=args.timeout_ms / 1000.0,
                              origin_key=os.environ.get("RELEVO_EDGE_ORIGIN_KEY", ""))
    except AuthConfigError as exc:
        print(f"relevo edge: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"relevo edge: invalid settings: {exc}", file=sys.stderr)
        return 2
    if not settings.tiers.invalidation_url:
        print("relevo edge: no invalidation URL (--invalidation-url or RELEVO_TIERS__INVALIDATION_URL): cached "
              "answers expire by TTL only, a user's events do not clear them", file=sys.stderr)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False)
    return 0


def cmd_demo(args) -> int:
    from relevo.cli.demo import run_demo

    return run_demo(args)


def cmd_ingest(args) -> int:
    """Append events (or items with --items) from a JSON-lines file, in batches."""
    from rich.progress import Progress

    from relevo.engine import Engine
    from relevo.errors import RelevoError
    from relevo.records import Event, Item

    path = Path(args.file)
    if not path.exists():
        print(f"relevo ingest: {path} does not exist", file=sys.stderr)
        return 2
    model = Item if args.items else Event
    lines = path.read_bytes().splitlines()
    total = accepted = duplicates = 0
    with Engine(_settings(args)) as engine, Progress() as progress:
        task = progress.add_task(f"ingesting {path.name}", total=len(lines))
        for start in range(0, len(lines), args.batch):
            chunk = [line for line in lines[start : start + args.batch] if line.strip()]
            try:
                records = [model.model_validate(orjson.loads(line)) for line in chunk]
                if args.items:
                    accepted += engine.add_items(records)
                else:
                    result = engine.ingest(records)
                    accepted += result.accepted
                    duplicates += result.duplicates
            except (ValueError, RelevoError) as exc:
                print(f"relevo ingest: batch starting at line {start + 1} rejected: {exc}", file=sys.stderr)
                return 1
            total += len(chunk)
            progress.update(task, advance=len(chunk))
        engine.wait_idle(60)
    print(orjson.dumps({"read": total, "accepted": accepted, "duplicates": duplicates}).decode())
    return 0


def cmd_keys_new(args) -> int:
    """Print a fresh API key once, and the settings entry (its hash) that admits it."""
    from pydantic import ValidationError

    from relevo.api.auth import new_key

    scopes = [s.strip() for s in args.scopes.split(",") if s.strip()]
    try:
        secret, entry = new_key(args.id, scopes, rate_per_s=args.rate_per_s, burst=args.burst, tenant=args.tenant)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        print(f"relevo keys new: {where + ': ' if where else ''}{first['msg']}", file=sys.stderr)
        return 2
    doc = orjson.dumps(entry.model_dump(mode="json", exclude_none=True)).decode()
    if args.json:
        print(orjson.dumps({"secret": secret, "entry": orjson.loads(doc)}).decode())
        return 0
    print(f"secret: {secret}")
    print("  shown once: relevo keeps only its hash. Clients send it as 'Authorization: Bearer <secret>' "
          "or 'X-API-Key: <secret>'.", file=sys.stderr)
    print("settings entry: add it to the JSON list RELEVO_API__KEYS='[<entry>, ...]' (or [[api.keys]] in "
          "relevo.toml):", file=sys.stderr)
    print(doc)
    return 0


def cmd_bench(args) -> int:
    """Run ``benchmarks/<name>.py`` (from the repository root)."""
    root = Path(__file__).resolve().parents[3]
    if not (root / "benchmarks" / f"{args.name}.py").exists():
        names = sorted(p.stem for p in (root / "benchmarks").glob("*.py") if not p.stem.startswith("_"))
        print(f"relevo bench: no benchmark {args.name!r}; available: {', '.join(names)}", file=sys.stderr)
        return 2
    sys.path.insert(0, str(root))
    sys.argv = [f"benchmarks.{args.name}", *args.rest]
    runpy.run_module(f"benchmarks.{args.name}", run_name="__main__")
    return 0


# ---------------------------------------------------------------- eval


def _stderr_console():
    from rich.console import Console

    return Console(stderr=True)


class _Usage(Exception):
    """A bad argument or missing data: message to stderr, exit code 2."""


EVAL_HELP = """Offline evaluation: off-policy estimates from logged feedback, and replay of MovieLens.

relevo eval ope --source obd --data-dir DIR [--campaign men|women] [--policy random|bts]
    Open Bandit Dataset: relevo's contextual TS (linear_ts, logistic_ts) is trained on the
    first half of the chosen log (time order) and its CTR estimated on the second half
    (IPS, SNIPS, DR with 95% bootstrap intervals), relative to the logging policy's CTR
    on the same rows. On the random log the BTS policy is estimated as well.

relevo eval ope [--home PATH]
    The engine's own DecisionLog (the stores Settings names, opened without starting the
    Engine): the logging policy's value (IPS, SNIPS: with pi_e = pi_b both equal the mean
    reward per shown item) with its interval. Settled decisions (attribution window
    closed) carry each shown item's final reward in the log; open ones are read from the
    reward markers, their unrewarded items at the default reward (--settled-only skips
    them).

relevo eval offline [--data-dir DIR] [--tiers streaming,origin] [--users 200] [--k 10]
    MovieLens latest-small, each user's last 20% of ratings held out (time order), the
    rest replayed through the stream; Recall@k, NDCG@k, coverage and novelty of each tier's
    posterior-mean top k for the held-out items, beside a popularity baseline.

Exit codes: 0 done, 2 bad arguments or missing data."""

def cmd_eval_offline(args) -> int:
    """Temporal split of MovieLens, replay of the first part, Recall/NDCG/coverage/novelty
    of each tier's top k for the held-out part, beside the popularity baseline."""
    import tempfile

    from rich.progress import Progress

    from relevo.datasets.movielens import find_folder, iter_ratings, load_items
    from relevo.engine import Engine
    from relevo.evaluation.offline import replay, temporal_split
    from relevo.settings import Settings

    folder = find_folder(args.data_dir or os.environ.get("RELEVO_DATA_DIR"))
    if folder is None:
        print("relevo eval offline: MovieLens latest-small not found: --data-dir or RELEVO_DATA_DIR", file=sys.stderr)
        return 2
    tiers = [t.strip() for t in args.tiers.split(",") if t.strip()]
    # the edge tier serves cached answers of the other two; previews are never cached
    if not tiers or set(tiers) - {"streaming", "origin"} or args.users < 1 or args.k < 1:
        print("relevo eval offline: --tiers takes streaming,origin; --users and --k must be >= 1", file=sys.stderr)
        return 2
    split = temporal_split(iter_ratings(folder), args.test_fraction, per_user=not args.global_cutoff)
    with tempfile.TemporaryDirectory() as home, Progress(disable=args.json) as progress:
        engine = Engine(Settings(home=home)).open()
        try:
            task = progress.add_task("embedding the catalog", total=None)
            engine.add_items(load_items(folder))
            progress.update(task, total=1, completed=1)
            tasks: dict[str, int] = {}

            def stage(name: str, done: int, total: int) -> None:
                label = {"ingest": "replaying train events", "train": "training the deep ranker"}[name]
                if name not in tasks:
                    tasks[name] = progress.add_task(label, total=total)
                progress.update(tasks[name], completed=done)

            users = progress.add_task("ranking for test users", total=min(args.users, len(split.test)))
            report = replay(engine, split, tiers, k=args.k, max_users=args.users, ranker_steps=args.ranker_steps,
                            stage=stage, progress=lambda done, total: progress.update(users, completed=done))
        finally:
            engine.close()
    report.update(split="global cutoff" if args.global_cutoff else "per-user temporal (each user's last part held out)",
                  test_fraction=args.test_fraction)
    if args.json:
        print(orjson.dumps(report).decode())
        return 0
    print(f"\n{report['users']} users, k={report['k']}, {report['split']}, ranker steps {report['ranker_steps']}")
    print(f"  {'ranking':<12} {'recall':>8} {'ndcg':>8} {'coverage':>9} {'novelty':>8}  answered by")
    rows = [(t, m) for t, m in report["tiers"].items()] + [("popularity", report["popularity"])]
    for name, m in rows:
        print(f"  {name:<12} {m['recall']:>8.4f} {m['ndcg']:>8.4f} {m['coverage']:>9.4f} {m['novelty']:>8.2f}  "
              f"{m.get('answered_by', '')}")
    return 0


_OBD_ONLY = ("data_dir", "campaign", "log_policy", "models", "greedy")
_DECISIONS_ONLY = ("home", "since", "limit", "settled_only")


def cmd_eval_ope(args) -> int:
    try:
        source = args.source
        stray = [name for name in (_DECISIONS_ONLY if source == "obd" else _OBD_ONLY)
                 if getattr(args, name) not in (None, False)]
        if stray:
            flags = ", ".join("--" + ("policy" if n == "log_policy" else n.replace("_", "-")) for n in stray)
            raise _Usage(f"{flags}: only with --source {'decisions' if source == 'obd' else 'obd'}")
        if args.samples < 1 or args.n_boot < 2 or (args.limit is not None and args.limit < 1):
            raise _Usage("--samples and --limit must be >= 1, --n-boot >= 2")
        from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        what = "training and estimating on the Open Bandit Dataset" if source == "obd" else \
            "reading the decision log and bootstrapping"
        # on stderr, for a person at a terminal only: stdout stays the report (or one JSON line)
        spinner = Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), transient=True,
                           console=_stderr_console()) if sys.stderr.isatty() and not args.json else None
        with spinner or contextlib.nullcontext():
            if spinner is not None:
                spinner.add_task(what, total=None)
            report = _eval_obd(args) if source == "obd" else _eval_decisions(args)
    except _Usage as exc:
        print(f"relevo eval ope: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(orjson.dumps(report).decode())
    else:
        _print_report(report)
    return 0


def _eval_obd(args) -> dict:
    from relevo.bandits.evaluation import TS_MODELS, evaluate_ts_on_log
    from relevo.bandits.ope import behavior_action_dist_from_log
    from relevo.datasets.obd import build_vocab, load_obd

    data_dir = args.data_dir or os.environ.get("RELEVO_DATA_DIR")
    if not data_dir:
        raise _Usage("--source obd needs --data-dir (or RELEVO_DATA_DIR): the folder holding obd/ or random/ and bts/")
    campaign, logged = args.campaign or "men", args.log_policy or "random"
    models = [m.strip() for m in (args.models or ",".join(TS_MODELS)).split(",") if m.strip()]
    unknown = [m for m in models if m not in TS_MODELS]
    if unknown or not models:
        raise _Usage(f"--models takes a comma-separated subset of {','.join(TS_MODELS)}, got {args.models!r}")
    try:
        vocab = build_vocab(data_dir, campaign)
        log = load_obd(data_dir, logged, campaign, vocab=vocab)
        fixed = {}
        if logged == "random":
            fixed["bts"] = behavior_action_dist_from_log(load_obd(data_dir, "bts", campaign, vocab=vocab))
    except (FileNotFoundError, ValueError) as exc:
        raise _Usage(str(exc)) from None
    results = evaluate_ts_on_log(log, [len(c) for c in vocab.user_features], models=models, greedy=args.greedy,
                                 fixed=fixed, samples=args.samples, n_boot=args.n_boot, seed=args.seed)
    base = results[0].baseline
    return {
        "source": "obd", "campaign": campaign, "log": logged, "n_rounds": log.n_rounds,
        "n_train": log.n_rounds - base.n_rounds, "n_test": base.n_rounds,
        "logging_policy": {"name": logged, "value": round(base.value, 6),
                           "ci": [round(base.ci_low, 6), round(base.ci_high, 6)]},
        "policies": {r.policy: {k: v for k, v in r.as_dict().items() if k not in ("policy", "baseline", "n_test")}
                     for r in results},
        "notes": ["relative = estimated CTR / the logging policy's CTR on the held-out half (paired bootstrap)",
                  "trained on the first half only: a few dozen clicks, so expect wide intervals"],
    }


def _open_existing(settings, kind: str):
    from relevo.storage.registry import open_store, sqlite_path

    url = settings.store_url(kind)
    if url.startswith("memory://"):
        raise _Usage(f"the {kind} is memory://: it does not outlive the engine process, there is nothing to read")
    if url.startswith("sqlite:///") and not Path(sqlite_path(url)).exists():
        raise _Usage(f"no {kind} at {sqlite_path(url)}: has an engine served from this --home / RELEVO_HOME?")
    return open_store(kind, url, sqlite_synchronous=settings.storage.sqlite_synchronous)


def _eval_decisions(args) -> dict:
    from relevo.bandits.evaluation import decisions_to_log, on_policy_value
    from relevo.bandits.persisted import MODELS_NS
    from relevo.errors import RelevoError
    from relevo.stream.rewards import REWARDS_NS, marker_key

    try:
        settings = _settings(args)
    except ValueError as exc:
        raise _Usage(f"invalid settings: {exc}") from None
    b = settings.bandit
    opened = []
    try:
        try:
            decisions_store = _open_existing(settings, "decision_log")
            opened.append(decisions_store)
            features = _open_existing(settings, "feature_store")
            opened.append(features)
        except RelevoError as exc:
            raise _Usage(str(exc)) from None
        doc = features.get(MODELS_NS, b.policy)
        closed_through = float(orjson.loads(doc).get("closed_through", 0.0)) if doc is not None else 0.0
        now = time.time()
        start = args.since or 0.0
        limit = args.limit or 100_000
        batch = decisions_store.between(start, now + 1.0, limit)
        counts = {"read": len(batch), "other_policy": 0, "inactive": 0, "settled": 0, "open": 0}
        chosen = []
        for d in batch:
            if d.policy != b.policy or not d.features:
                counts["other_policy"] += 1
            elif not d.activated:
                counts["inactive"] += 1
            else:
                settled = d.rewards is not None
                counts["settled" if settled else "open"] += 1
                if settled or not args.settled_only:
                    chosen.append(d)
        if not chosen:
            raise _Usage(f"no {b.policy} decision to evaluate since {start:.3f} "
                         f"(read {len(batch)}, {counts['other_policy']} by other policies, "
                         f"{counts['inactive']} never activated, {counts['open']} still open)")
        # settled decisions carry their final rewards; open ones still have reward markers
        rewards = {(d.decision_id, item.item_id): r for d in chosen if d.rewards is not None
                   for item, r in zip(d.items, d.rewards) if r is not None}
        keys = [(d.decision_id, item.item_id) for d in chosen if d.rewards is None for item in d.items]
        raw = features.get_many(REWARDS_NS, [marker_key(d, i) for d, i in keys]) if keys else []
        rewards.update({k: float(v.decode()) for k, v in zip(keys, raw) if v is not None})
        try:
            log, _ = decisions_to_log(chosen, rewards, default_reward=b.default_reward)
        except ValueError as exc:
            raise _Usage(str(exc)) from None
        estimates = on_policy_value(log, n_boot=args.n_boot, seed=args.seed)
    finally:
        for store in opened:
            store.close()
    caveats = ["pi_e = pi_b: IPS = SNIPS = mean reward per shown item; the estimate anchors comparisons, "
               "it does not evaluate another policy (decisions log shown items, not candidate sets)"]
    if counts["open"] and not args.settled_only:
        caveats.append(f"{counts['open']} decisions are still inside their {b.attribution_window_s:g} s window: "
                       "their unrewarded items count at the default reward so far, which understates the value "
                       "if rewards are still to come (--settled-only leaves them out)")
    if b.default_reward is None:
        caveats.append("default_reward is None: unrewarded items are left out, as the joiner does")
    if len(batch) == limit:
        caveats.append(f"read stopped at --limit {limit} decisions")
    caveats.append("the bootstrap resamples shown items, not decisions: items of one slate are correlated, "
                   "so the interval is somewhat narrow")
    by_position = [round(float(log.reward[log.position == p].mean()), 6) if (log.position == p).any() else None
                   for p in range(log.n_positions)]
    return {
        "source": "decisions", "home": str(settings.home), "policy": b.policy,
        "window_s": b.attribution_window_s, "default_reward": b.default_reward,
        "closed_through": closed_through, "now": round(now, 3), "decisions": {**counts, "used": len(chosen)},
        "records": log.n_rounds, "rewarded": len(rewards),
        "estimates": {e.estimator: {"value": round(e.value, 6), "ci": [round(e.ci_low, 6), round(e.ci_high, 6)]}
                      for e in estimates},
        "value_by_position": by_position, "caveats": caveats,
    }


def _print_report(report: dict) -> None:
    def interval(d: dict) -> str:
        return f"{d['value']:.5f}  [{d['ci'][0]:.5f}, {d['ci'][1]:.5f}]"

    if report["source"] == "obd":
        lp = report["logging_policy"]
        print(f"OBD {report['campaign']}, {report['log']} log: train on {report['n_train']} rows, "
              f"evaluate on {report['n_test']}")
        print(f"  logging policy ({lp['name']}) CTR on the held-out half: {interval(lp)}")
        for name, r in report["policies"].items():
            print(f"  {name}:")
            for est, e in r["estimates"].items():
                rel = r["relative"][est]
                print(f"    {est:<6} CTR {interval(e)}   vs {lp['name']}: {rel['value']:.2f} "
                      f"[{rel['ci'][0]:.2f}, {rel['ci'][1]:.2f}]")
        notes = report["notes"]
    else:
        d = report["decisions"]
        print(f"{report['policy']} on its own decisions ({report['home']}): {d['used']} decisions "
              f"({d['settled']} settled, {d['open']} open), {report['records']} shown items, "
              f"{report['rewarded']} with a reward marker")
        for est, e in report["estimates"].items():
            print(f"  {est:<6} {interval(e)}")
        notes = report["caveats"]
    for note in notes:
        print(f"  note: {note}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="relevo",
        description="relevo: real-time personalization. Embedded state lives under RELEVO_HOME (default ./.relevo).",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="serve the HTTP API on the configured stores")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--home", help="state folder (default RELEVO_HOME or ./.relevo)")
    serve.add_argument("--workers", type=int, default=1,
                       help="API processes (> 1 needs the Redis stores; run `relevo worker` for the stream)")
    serve.set_defaults(func=cmd_serve)

    worker = sub.add_parser("worker", help="apply the event stream (scale out by starting more, over Redis)")
    worker.add_argument("--home", help="state folder (default RELEVO_HOME or ./.relevo)")
    worker.add_argument("--status-every", type=float, default=30.0, help="seconds between status lines")
    worker.set_defaults(func=cmd_worker)

    edge = sub.add_parser("edge", help="serve an edge process: response cache in front of an origin (relevo serve)",
                          description="Caches each user's answers, cleared by the origin's invalidation messages "
                          "(Redis pub/sub); forwards misses to the origin; keeps answering (stale or popular, "
                          "labelled) when the origin is down. RELEVO_EDGE_ORIGIN_KEY: a recommend-scope key for "
                          "the edge's own calls.")
    edge.add_argument("--origin", required=True, help="origin base URL, e.g. http://127.0.0.1:8000")
    edge.add_argument("--host", default="127.0.0.1")
    edge.add_argument("--port", type=int, default=8100)
    edge.add_argument("--invalidation-url", default="", help="Redis URL of the origin's invalidation pub/sub")
    edge.add_argument("--timeout-ms", type=float, default=500.0, help="origin call timeout (and the request budget)")
    edge.set_defaults(func=cmd_edge)

    demo = sub.add_parser(
        "demo",
        help="load a catalog, replay events as a live stream and show recommendations adapting, while serving the API",
    )
    demo.add_argument("--data-dir", default=os.environ.get("RELEVO_DATA_DIR"),
                      help="folder with ml-latest-small (or its parent); default RELEVO_DATA_DIR; "
                      "without it a synthetic catalog is generated")
    demo.add_argument("--events", type=int, default=20_000, help="events to replay (default 20000)")
    demo.add_argument("--rate", type=float, default=2_000.0, help="events per second (default 2000)")
    demo.add_argument("--host", default="127.0.0.1")
    demo.add_argument("--port", type=int, default=8000, help="API port; a busy port is replaced by a free one")
    demo.add_argument("--no-serve", action="store_true", help="do not start the HTTP API")
    demo.add_argument("--keep-serving", action="store_true", help="keep serving after the replay until Ctrl-C")
    demo.add_argument("--open", action="store_true", help="open the dashboard in a browser and keep serving")
    demo.add_argument("--home", help="state folder (default RELEVO_HOME/demo; reset at each run)")
    demo.set_defaults(func=cmd_demo)

    ingest = sub.add_parser("ingest", help="append events (JSON lines) or items (--items) from a file")
    ingest.add_argument("file")
    ingest.add_argument("--items", action="store_true", help="the file holds items, not events")
    ingest.add_argument("--batch", type=int, default=1000)
    ingest.add_argument("--home")
    ingest.set_defaults(func=cmd_ingest)

    bench = sub.add_parser("bench", help="run a benchmark: relevo bench NAME [--quick]")
    bench.add_argument("name")
    bench.add_argument("rest", nargs=argparse.REMAINDER)
    bench.set_defaults(func=cmd_bench)

    keys = sub.add_parser("keys", help="API keys: relevo keys new --id NAME --scopes recommend,ingest")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    new = keys_sub.add_parser(
        "new", help="print a fresh random key once and the settings entry (its SHA-256) to add to RELEVO_API__KEYS",
        description="Scopes: ingest (events, preferences, consent), recommend (recommendations, feedback, "
        "Personalizer rank/reward/activate), admin (items, experiments, stats, metrics, reading user data, "
        "Personalizer configuration and evaluations), erase (DELETE /v1/users/{id}; admin does not include it).")
    new.add_argument("--id", required=True, help="a name for the key (letters, digits, _ . : -)")
    new.add_argument("--scopes", required=True, help="comma-separated: ingest,recommend,admin,erase")
    new.add_argument("--rate-per-s", type=float, help="rate limit for this key (default RELEVO_API__RATE_PER_S)")
    new.add_argument("--burst", type=int, help="requests allowed at once (default RELEVO_API__BURST)")
    new.add_argument("--tenant", help="serve this key's requests from the tenant's own stores (a-z, 0-9, _ -)")
    new.add_argument("--json", action="store_true", help='print one JSON line {"secret", "entry"}')
    new.set_defaults(func=cmd_keys_new)

    ev = sub.add_parser("eval", help="offline evaluation: relevo eval ope ... | relevo eval offline ...",
                        description=EVAL_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    ev_sub = ev.add_subparsers(dest="eval_command", required=True)
    ope = ev_sub.add_parser("ope", help="off-policy estimates (IPS, SNIPS, DR) with bootstrap intervals",
                            description=EVAL_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    ope.add_argument("--source", choices=("decisions", "obd"), default="decisions",
                     help="decisions: the engine's own DecisionLog (default); obd: the Open Bandit Dataset")
    ope.add_argument("--json", action="store_true", help="print one JSON line instead of a report")
    ope.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples (default 1000)")
    ope.add_argument("--seed", type=int, default=0)
    ope.add_argument("--samples", type=int, default=1000,
                     help="obd: posterior draws per round for a TS policy's slate distribution (default 1000)")
    obd = ope.add_argument_group("--source obd")
    obd.add_argument("--data-dir", help="folder with obd/ (or random/ and bts/); default RELEVO_DATA_DIR")
    obd.add_argument("--campaign", choices=("men", "women"), help="default men")
    obd.add_argument("--policy", dest="log_policy", choices=("random", "bts"),
                     help="the log to train and evaluate on, i.e. the logging policy (default random)")
    obd.add_argument("--models", help="comma-separated: linear_ts,logistic_ts (default both)")
    obd.add_argument("--greedy", action="store_true", help="also evaluate each model's posterior-mean ranking")
    own = ope.add_argument_group("--source decisions")
    own.add_argument("--home", help="state folder (default RELEVO_HOME or ./.relevo; store URLs from Settings)")
    own.add_argument("--since", type=float, help="only decisions created at or after this epoch time")
    own.add_argument("--limit", type=int, help="most decisions read (default 100000)")
    own.add_argument("--settled-only", action="store_true",
                     help="only decisions whose attribution window has ended (rewards final)")
    ope.set_defaults(func=cmd_eval_ope)
    off = ev_sub.add_parser("offline", help="MovieLens replay: Recall/NDCG@k, coverage, novelty per tier vs popularity",
                            description=cmd_eval_offline.__doc__)
    off.add_argument("--data-dir", help="MovieLens latest-small (or RELEVO_DATA_DIR)")
    off.add_argument("--tiers", default="streaming,origin", help="comma-separated: streaming, origin")
    off.add_argument("--users", type=int, default=200, help="test users ranked (default 200)")
    off.add_argument("--k", type=int, default=10)
    off.add_argument("--test-fraction", type=float, default=0.2)
    off.add_argument("--global-cutoff", action="store_true", help="one time cutoff for everyone (few users qualify)")
    off.add_argument("--ranker-steps", type=int, default=300, help="deep ranker steps after the replay (default 300)")
    off.add_argument("--json", action="store_true")
    off.set_defaults(func=cmd_eval_offline)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
