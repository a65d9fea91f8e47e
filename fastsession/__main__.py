"""Command line: ``python -m fastsession demo``."""

from __future__ import annotations

import argparse
import sys
from typing import List, Optional


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fastsession")
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="serve a WSGI app that keeps a visit counter")
    demo.add_argument("--host", default="127.0.0.1")
    demo.add_argument("--port", type=int, default=8000, help="0 picks a free port")
    demo.add_argument("--directory", default="", help="session directory (default: a temp folder)")
    args = parser.parse_args(argv)
    if args.command == "demo":
        from .demo import serve

        serve(args.host, args.port, args.directory)
    return 0


if __name__ == "__main__":
    sys.exit(main())
