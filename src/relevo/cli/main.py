"""``relevo serve | demo | ingest | bench``: see ``relevo --help``."""

from __future__ import annotations

import argparse
import os
import runpy
import sys
from pathlib import Path

import orjson


def _settings(args):
    from relevo.settings import Settings

    overrides = {}
    if getattr(args, "home", None):
        overrides["home"] = Path(args.home)
    return Settings(**overrides)


def cmd_serve(args) -> int:
    import uvicorn

    from relevo.api.app import create_app

    uvicorn.run(create_app(settings=_settings(args)), host=args.host, port=args.port, log_level="info")
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
    serve.set_defaults(func=cmd_serve)

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
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
