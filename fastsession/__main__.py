"""Command line: ``fastsession demo|bench|gc`` (the installed console script), or ``python -m fastsession``."""

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

    parser = argparse.ArgumentParser(prog="fastsession", description="fastsession: demo, benchmark, gc")
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
    args = parser.parse_args(argv)
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


if __name__ == "__main__":
    sys.exit(main())
