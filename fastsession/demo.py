"""``python -m fastsession demo``: a WSGI app whose page counts the visitor's visits."""

from __future__ import annotations

import errno
import html
import os
import sys
import tempfile
from collections.abc import Iterable
from socketserver import ThreadingMixIn
from typing import Any, Callable
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from . import EXTENSIONS
from .wsgi import SessionMiddleware

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>fastsession demo</title></head>
<body>
<h1>fastsession demo</h1>
<p>Visits: <strong id="visits">{visits}</strong></p>
<p>Session id starts with <code>{prefix}</code> (kernels: {kernels}).</p>
<p><a href="/">Visit again</a> · <a href="/logout">Log out</a> (expires the session)</p>
</body></html>
"""


def visits_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """``/`` counts visits in the session, ``/logout`` expires it, the rest is 404."""
    store = environ["fastsession.store"]
    path = environ.get("PATH_INFO") or "/"
    if path == "/":
        session = store.get_session(True)
        session["visits"] = session.get("visits", 0) + 1
        body = PAGE.format(
            visits=session["visits"],
            prefix=html.escape(session.session_id[:6]),
            kernels="compiled" if EXTENSIONS else "pure Python",
        ).encode()
        headers = [("Content-Type", "text/html; charset=utf-8"), ("Cache-Control", "no-store")]
        start_response("200 OK", [*headers, ("Content-Length", str(len(body)))])
        return [body]
    if path == "/logout":
        store.expire_session()
        start_response("303 See Other", [("Location", "/"), ("Content-Length", "0")])
        return [b""]
    start_response("404 Not Found", [("Content-Type", "text/plain"), ("Content-Length", "9")])
    return [b"not found"]


class ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        sys.stderr.write(f"{self.address_string()} {format % args}\n")


def serve(host: str = "127.0.0.1", port: int = 8000, directory: str = "") -> int:
    """Serve the demo until interrupted; port 0 picks a free one (the URL is printed).

    The exit status: 0 after Ctrl-C, 2 when the port cannot be had.
    """
    directory = directory or os.path.join(tempfile.gettempdir(), f"fastsession-demo-{os.geteuid()}")
    made = not os.path.isdir(directory)
    app = SessionMiddleware(visits_app, directory)
    try:
        server = make_server(host, port, app, ThreadingWSGIServer, QuietHandler)
    except OSError as exc:
        busy = exc.errno == errno.EADDRINUSE
        sys.stderr.write(
            f"fastsession demo: cannot listen on {host}:{port}: "
            + ("another program is using that port" if busy else exc.strerror or str(exc))
            + ". Choose another with --port N (--port 0 picks a free one).\n"
        )
        return 2
    with server:
        url = f"http://{host}:{server.server_port}/"
        kernels = "compiled" if EXTENSIONS else "pure Python"
        where = f"{directory}, made now" if made else directory
        print(f"fastsession demo on {url} (sessions in {where}, {kernels} kernels)", flush=True)
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
    return 0
