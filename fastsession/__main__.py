"""Command line: ``fastsession demo|bench|gc|locks`` (the installed console script), or ``python -m fastsession``."""

from __future__ import annotations

import argparse
import sys
from typing import List, Optional


def positive(text: str) -> float:
    """An argparse type: a number of seconds above zero."""
    value = float(text)
    if not value > 0:  # also refuses nan
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, not {text}")
    return value


def main(argv: Optional[List[str]] = None) -> int:
    from . import __version__
    from ._kernels import EXTENSIONS

    parser = argparse.ArgumentParser(prog="fastsession", description="fastsession: demo, benchmark, gc, locks")
    parser.add_argument("--version", action="version",
                        version=f"fastsession {__version__} ({'compiled' if EXTENSIONS else 'pure-Python'} kernels)")
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="serve a WSGI app that keeps a visit counter")
    demo.add_argument("--host", default="127.0.0.1")
    demo.add_argument("--port", type=int, default=8000, help="0 picks a free port")
    demo.add_argument("--directory", default="", help="session directory (default: a temp folder)")
    bench = commands.add_parser("bench", help="time fastsession side by side with its twins and peers")
    bench.add_argument("--quick", action="store_true", help="fewer rounds: a rough table in seconds")
    bench.add_argument("--json", action="store_true", help="print the results as JSON")
    bench.add_argument("--plot", metavar="FILE.png", help="also draw a bar chart (needs matplotlib)")
    gc = commands.add_parser("gc", help="remove expired sessions and stale lockfiles")
    gc.add_argument("directory")
    gc.add_argument("--max-age", type=positive, metavar="SECONDS", help="remove sessions idle longer than this")
    gc.add_argument("--stale-locks", action="store_true", help="remove only the stale lockfiles")
    gc.add_argument("--stale-after", type=positive, default=30.0, metavar="SECONDS",
                    help="age at which another host's lock counts as stale (default 30)")
    gc.add_argument("--dry-run", action="store_true", help="count what would go, remove nothing")
    gc.add_argument("--quiet", action="store_true", help="no progress bar")
    locks = commands.add_parser("locks", help="list the held locks: session, holder host, pid, age, alive")
    locks.add_argument("directory", nargs="?", help="a session directory")
    locks.add_argument("--redis", metavar="URL", help="list the locks on this Redis instead (redis://...)")
    locks.add_argument("--cluster", action="store_true", help="the URL is a node of a Redis Cluster")
    locks.add_argument("--prefix", default="fastsession:", help="the stores' Redis key prefix (default fastsession:)")
    locks.add_argument("--lock-ttl", type=positive, default=30.0, metavar="SECONDS",
                       help="the stores' lock_ttl, to tell a Redis lock's age (default 30)")
    locks.add_argument("--stale-after", type=positive, default=30.0, metavar="SECONDS",
                       help="age at which another host's lockfile counts as stale (default 30)")
    locks.add_argument("--json", action="store_true", help="print a JSON list of objects")
    args = parser.parse_args(argv)
    if args.command == "locks":
        return run_locks(parser, args)
    if args.command == "gc":
        return run_gc(parser, args)
    if args.command == "demo":
        from .demo import serve

        return serve(args.host, args.port, args.directory)
    from . import bench as benchmark

    return benchmark.main(quick=args.quick, as_json=args.json, plot_path=args.plot)


def run_gc(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    import time

    from .errors import SessionError
    from .gc import ProgressBar, collect, summary

    if args.max_age is None and not args.stale_locks:
        parser.error("gc needs --max-age SECONDS (or --stale-locks alone)")
    show = sys.stderr.isatty() and not args.quiet
    started = time.monotonic()
    try:
        counts = collect(args.directory, args.max_age, stale_after=args.stale_after, dry_run=args.dry_run,
                         stale_locks_only=args.stale_locks and args.max_age is None,
                         progress=ProgressBar() if show else None)
    except (FileNotFoundError, SessionError) as exc:  # no such folder, or one that is refused
        sys.stderr.write(f"fastsession gc: {exc}\n")
        return 2
    print(summary(counts, time.monotonic() - started, args.dry_run))
    return 1 if counts.errors else 0


def run_locks(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    import json

    from . import locks

    if (args.directory is None) == (args.redis is None):
        parser.error("locks needs a session directory or --redis URL (one of them)")
    try:
        if args.redis is not None:
            rows = locks.redis_locks(_redis_client(args.redis, args.cluster), args.prefix, args.lock_ttl)
        else:
            rows = locks.file_locks(args.directory, args.stale_after)
    except Exception as exc:  # no such folder, Redis unreachable: said in one line
        sys.stderr.write(f"fastsession locks: {exc}\n")
        return 2
    print(json.dumps(rows) if args.json else locks.table(rows, redis=args.redis is not None))
    return 0


def _redis_client(url: str, cluster: bool) -> object:
    if cluster:
        from redis.cluster import RedisCluster

        return RedisCluster.from_url(url)
    import redis

    return redis.Redis.from_url(url)


if __name__ == "__main__":
    sys.exit(main())
