"""Command line: ``python -m fastsession demo|bench``."""

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
    bench = commands.add_parser("bench", help="time fastsession side by side with its twins and peers")
    bench.add_argument("--quick", action="store_true", help="fewer rounds: a rough table in seconds")
    bench.add_argument("--json", action="store_true", help="print the results as JSON")
    bench.add_argument("--plot", metavar="FILE.png", help="also draw a bar chart (needs matplotlib)")
    args = parser.parse_args(argv)
    if args.command == "demo":
        from .demo import serve

        serve(args.host, args.port, args.directory)
        return 0
    from . import bench as benchmark

    return benchmark.main(quick=args.quick, as_json=args.json, plot_path=args.plot)


if __name__ == "__main__":
    sys.exit(main())
