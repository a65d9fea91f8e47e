"""Command line: ``fastsession demo|bench|gc|locks|users`` (the installed console script), or ``python -m fastsession``."""

from __future__ import annotations

import argparse
import sys
from typing import Any


def port(text: str) -> int:
    """An argparse type: a TCP port, 0 to 65535 (0 picks a free one)."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be a port number from 0 to 65535, not {text}")
    return value


def printable(text: object) -> str:
    """``text`` with every control character (a terminal's escape sequences) shown escaped, never sent as is."""
    value = str(text)
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in value)


def positive(text: str) -> float:
    """An argparse type: a number of seconds above zero."""
    value = float(text)
    if not value > 0:  # also refuses nan
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, not {text}")
    return value


def main(argv: list[str] | None = None) -> int:
    from . import __version__
    from ._kernels import EXTENSIONS

    parser = argparse.ArgumentParser(prog="fastsession", description="fastsession: demo, benchmark, gc, locks, users")
    parser.add_argument(
        "--version",
        action="version",
        version=f"fastsession {__version__} ({'compiled' if EXTENSIONS else 'pure-Python'} kernels)",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="serve a WSGI app that keeps a visit counter")
    demo.add_argument("--host", default="127.0.0.1")
    demo.add_argument("--port", type=port, default=8000, help="0 picks a free port")
    demo.add_argument("--directory", default="", help="session directory (default: a temp folder)")
    bench = commands.add_parser("bench", help="time fastsession side by side with its twins and peers")
    bench.add_argument("--quick", action="store_true", help="fewer rounds: a rough table in seconds")
    bench.add_argument("--json", action="store_true", help="print the results as JSON")
    bench.add_argument("--plot", metavar="FILE.png", help="also draw a bar chart (needs matplotlib)")
    gc = commands.add_parser("gc", help="remove expired sessions and stale lockfiles")
    gc.add_argument("directory", nargs="?", help="a session directory")
    gc.add_argument("--postgres", metavar="DSN", help="remove the expired sessions of this PostgreSQL database instead")
    gc.add_argument("--table", default="fastsession_session", help="the stores' PostgreSQL table")
    gc.add_argument("--batch", type=int, default=1000, help="rows per PostgreSQL DELETE (default 1000)")
    gc.add_argument("--max-age", type=positive, metavar="SECONDS", help="remove sessions idle longer than this")
    gc.add_argument("--stale-locks", action="store_true", help="remove only the stale lockfiles")
    gc.add_argument(
        "--stale-after",
        type=positive,
        default=30.0,
        metavar="SECONDS",
        help="age at which another host's lock counts as stale (default 30)",
    )
    gc.add_argument("--dry-run", action="store_true", help="count what would go, remove nothing")
    gc.add_argument("--quiet", action="store_true", help="no progress bar")
    locks = commands.add_parser("locks", help="list the held locks: session, holder host, pid, age, alive")
    locks.add_argument("directory", nargs="?", help="a session directory")
    locks.add_argument("--redis", metavar="URL", help="list the locks on this Redis instead (redis://...)")
    locks.add_argument("--cluster", action="store_true", help="the URL is a node of a Redis Cluster")
    locks.add_argument("--prefix", default="fastsession:", help="the stores' Redis key prefix (default fastsession:)")
    locks.add_argument(
        "--lock-ttl",
        type=positive,
        default=30.0,
        metavar="SECONDS",
        help="the stores' lock_ttl, to tell a Redis lock's age (default 30)",
    )
    locks.add_argument(
        "--stale-after",
        type=positive,
        default=30.0,
        metavar="SECONDS",
        help="age at which another host's lockfile counts as stale (default 30)",
    )
    locks.add_argument("--json", action="store_true", help="print a JSON list of objects")
    postgres = commands.add_parser("postgres", help="PostgreSQL: create the session tables")
    postgres_commands = postgres.add_subparsers(dest="postgres_command", required=True)
    init = postgres_commands.add_parser("init", help="create the session table and the user index (idempotent)")
    init.add_argument("dsn", help="postgresql://user@host/database")
    init.add_argument("--table", default="fastsession_session", help="the table's name (default fastsession_session)")
    users = commands.add_parser("users", help="list a user's sessions (or revoke them all: log out everywhere)")
    users.add_argument("where", nargs="?", help="a session directory")
    users.add_argument("user", help="the user id the app passed to bind_user")
    users.add_argument("--redis", metavar="URL", help="the sessions are on this Redis (redis://...)")
    users.add_argument("--cluster", action="store_true", help="the URL is a node of a Redis Cluster")
    users.add_argument("--prefix", default="fastsession:", help="the stores' Redis key prefix (default fastsession:)")
    users.add_argument("--revoke", action="store_true", help="delete every session of the user")
    users.add_argument("--json", action="store_true", help="print JSON")
    args = parser.parse_args(argv)
    if args.command == "users":
        return run_users(parser, args)
    if args.command == "locks":
        return run_locks(parser, args)
    if args.command == "gc":
        return run_postgres_gc(args) if args.postgres else run_gc(parser, args)
    if args.command == "postgres":
        return run_postgres_init(args)
    if args.command == "demo":
        import os

        from .demo import serve

        parent = os.path.dirname(os.path.abspath(args.directory)) if args.directory else ""
        if args.directory and not os.path.isdir(args.directory) and not os.path.isdir(parent):
            sys.stderr.write(f"fastsession demo: {parent}: no such folder (create it, or choose another)\n")
            return 2
        return serve(args.host, args.port, args.directory)
    from . import bench as benchmark

    return benchmark.main(quick=args.quick, as_json=args.json, plot_path=args.plot)


def run_gc(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    import time

    from .errors import SessionError
    from .gc import ProgressBar, collect, summary

    if args.directory is None:
        parser.error("gc needs a session directory or --postgres DSN")
    if args.max_age is None and not args.stale_locks:
        parser.error("gc needs --max-age SECONDS (or --stale-locks alone)")
    import os

    if not os.path.isdir(args.directory):  # (gc never makes the folder it is to clean)
        what = "not a folder" if os.path.exists(args.directory) else "no such folder"
        sys.stderr.write(f"fastsession gc: {args.directory}: {what}; give the session directory\n")
        return 2
    show = sys.stderr.isatty() and not args.quiet
    started = time.monotonic()
    try:
        counts = collect(
            args.directory,
            args.max_age,
            stale_after=args.stale_after,
            dry_run=args.dry_run,
            stale_locks_only=args.stale_locks and args.max_age is None,
            progress=ProgressBar() if show else None,
        )
    except (FileNotFoundError, SessionError) as exc:  # no such folder, or one that is refused
        sys.stderr.write(f"fastsession gc: {exc}\n")
        return 2
    print(summary(counts, time.monotonic() - started, args.dry_run))
    return 1 if counts.errors else 0


def run_postgres_init(args: argparse.Namespace) -> int:
    import psycopg

    from .postgres_admin import init

    try:
        init(args.dsn, args.table)
    except (psycopg.Error, ValueError) as exc:
        sys.stderr.write(f"fastsession postgres init: {exc}\n")
        return 2
    print(f"{args.table} and {args.table}_user are ready")
    return 0


def run_postgres_gc(args: argparse.Namespace) -> int:
    """gc on PostgreSQL: sessions past their expiry (max_age is the stores': each row carries its own)."""
    import time

    import psycopg

    from .postgres_admin import collect

    started = time.monotonic()
    try:
        removed = collect(args.postgres, args.table, args.batch, dry_run=args.dry_run)
    except (psycopg.Error, ValueError) as exc:
        sys.stderr.write(f"fastsession gc: {exc}\n")
        return 2
    verb = "would remove" if args.dry_run else "removed"
    print(f"{verb} {removed} expired session(s) from {args.table} in {time.monotonic() - started:.2f} s")
    return 0


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


def run_users(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    import json

    if (args.where is None) == (args.redis is None):
        parser.error("users needs a session directory or --redis URL (one of them)")
    try:
        if args.redis is not None:
            from .redis import RedisSessionStore

            store: object = RedisSessionStore(None, _redis_client(args.redis, args.cluster), prefix=args.prefix)
        else:
            import os

            from .store import SessionStore

            if not os.path.isdir(args.where):
                raise FileNotFoundError(2, "no such session directory", args.where)
            store = SessionStore(None, args.where)
        if args.revoke:
            count = store.revoke_all(args.user)  # type: ignore[attr-defined]
            print(json.dumps({"revoked": count}) if args.json else f"revoked {count} session{'s' * (count != 1)}")
            return 0
        found = store.sessions_of(args.user)  # type: ignore[attr-defined]
    except Exception as exc:  # no such folder, Redis unreachable: said in one line
        sys.stderr.write(f"fastsession users: {exc}\n")
        return 2
    if args.json:
        print(json.dumps([entry.as_dict() for entry in found]))
    else:
        print(users_table(found))
    return 0


def users_table(found: list[Any]) -> str:
    import time

    def when(seconds: float | None) -> str:
        return "?" if seconds is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(seconds))

    rows = [["session", "created", "last seen", "metadata"]]
    rows += [
        [
            entry.session[:8] + "…",
            when(entry.created),
            when(entry.last_seen),
            " ".join(f"{printable(k)}={printable(v)}" for k, v in sorted(entry.metadata.items(), key=str)),
        ]
        for entry in found
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows]
    return "\n".join([*lines, f"{len(found)} session{'s' * (len(found) != 1)}"])


def _redis_client(url: str, cluster: bool) -> object:
    if cluster:
        from redis.cluster import RedisCluster

        return RedisCluster.from_url(url)
    import redis

    return redis.Redis.from_url(url)


if __name__ == "__main__":
    sys.exit(main())
