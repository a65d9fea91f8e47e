"""The bench's ASGI contenders: one request through a Starlette app, in-process (no sockets).

Each contender is the same app (a view that counts visits) behind another
session middleware. A process keeps one event loop and one app (a
``redis.asyncio`` client belongs to the loop it first ran on), so a forked
contention worker builds its own.
"""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import time
from typing import Any, Callable

from .contenders import Missing, Runner, redis_url

COOKIE = re.compile(rb"^session=([^;]*)")


def starlette_ops(middleware: Callable[[], list[Any]]) -> dict[str, Callable[..., Any]]:
    """One in-process ASGI request to Starlette behind ``middleware()``: modify, increment, counter."""
    try:
        from starlette.applications import Starlette
        from starlette.responses import PlainTextResponse
        from starlette.routing import Route
    except ImportError:
        raise Missing("Starlette is not installed") from None

    async def visit(request: Any) -> Any:
        if "session" in request.scope:
            request.session["visits"] = request.session.get("visits", 0) + 1
        return PlainTextResponse("ok")

    async def peek(request: Any) -> Any:
        return PlainTextResponse(str(request.session.get("visits", 0)))

    routes = [Route("/", visit), Route("/peek", peek)]
    made: dict[int, Any] = {}  # pid -> (loop, app)
    jar: dict[str, bytes] = {}

    def here() -> Any:
        pid = os.getpid()
        if pid not in made:
            loop = asyncio.new_event_loop()
            made.clear()
            made[pid] = loop, Starlette(routes=routes, middleware=middleware())
        return made[pid]

    async def get(app: Any, path: str) -> bytes:
        headers = [(b"host", b"bench")]
        if "cookie" in jar:
            headers.append((b"cookie", b"session=" + jar["cookie"]))
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "GET",
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": b"",
            "root_path": "",
            "headers": headers,
            "client": ("127.0.0.1", 1),
            "server": ("bench", 80),
        }
        body: list[bytes] = []

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                for key, value in message["headers"]:
                    found = COOKIE.match(value) if key == b"set-cookie" else None
                    if found:
                        jar["cookie"] = found.group(1)  # as a browser keeps it
            else:
                body.append(message.get("body", b""))

        await app(scope, receive, send)
        return b"".join(body)

    def request(path: str) -> bytes:
        loop, app = here()
        answer: bytes = loop.run_until_complete(get(app, path))
        return answer

    def modify(k: int) -> float:
        loop, app = here()

        async def many() -> float:
            start = time.perf_counter()
            for _ in range(k):
                await get(app, "/")
            return time.perf_counter() - start

        seconds: float = loop.run_until_complete(many())
        return seconds

    request("/")  # the session exists from here on
    return {"modify": modify, "increment": lambda: request("/"), "counter": lambda: int(request("/peek") or 0)}


def with_fastsession_files(directory: str) -> Callable[[], list[Any]]:
    from starlette.middleware import Middleware

    from ..asgi import SessionMiddleware

    return lambda: [Middleware(SessionMiddleware, session_directory=directory)]


def with_fastsession_redis(directory: str) -> Callable[[], list[Any]]:
    import redis.asyncio
    from starlette.middleware import Middleware

    from ..asgi import SessionMiddleware

    url, prefix = redis_url(), f"bench-asgi-{secrets.token_hex(4)}:"
    return lambda: [Middleware(SessionMiddleware, redis=redis.asyncio.Redis.from_url(url), prefix=prefix)]


def with_signed_cookie(directory: str) -> Callable[[], list[Any]]:
    try:
        import itsdangerous  # noqa: F401  (Starlette's SessionMiddleware needs it)
    except ImportError:
        raise Missing("itsdangerous is not installed (Starlette's signed-cookie sessions need it)") from None
    from starlette.middleware import Middleware
    from starlette.middleware.sessions import SessionMiddleware

    return lambda: [Middleware(SessionMiddleware, secret_key="fastsession-benchmark-" + "k" * 32)]


def with_starsessions_redis(directory: str) -> Callable[[], list[Any]]:
    try:
        from starsessions import SessionAutoloadMiddleware, SessionMiddleware
        from starsessions.stores.redis import RedisStore
    except ImportError:
        raise Missing("starsessions is not installed") from None
    from starlette.middleware import Middleware

    url, prefix = redis_url(), f"bench-starsessions-{secrets.token_hex(4)}:"
    return lambda: [
        Middleware(SessionMiddleware, store=RedisStore(url, prefix=prefix), lifetime=3600, cookie_https_only=False),
        Middleware(SessionAutoloadMiddleware),
    ]


def without_sessions(directory: str) -> Callable[[], list[Any]]:
    return list


def with_memory_sessions(directory: str) -> Callable[[], list[Any]]:
    """An ASGI session middleware over a dict in this process (the floor a store is judged against)."""
    from starlette.middleware import Middleware

    from .memory import ASGIMiddleware

    return lambda: [Middleware(ASGIMiddleware)]


def with_plain_redis_sessions(directory: str) -> Callable[[], list[Any]]:
    """The in-memory middleware's sessions on plain Redis GET and SET, no lock (the Redis floor)."""
    import redis.asyncio
    from starlette.middleware import Middleware

    from .memory import ASGIRedisMiddleware

    url, prefix = redis_url(), f"bench-asgi-floor-{secrets.token_hex(4)}:"
    return lambda: [Middleware(ASGIRedisMiddleware, client=redis.asyncio.Redis.from_url(url), prefix=prefix)]


def asgi(configure: Callable[[str], Callable[[], list[Any]]]) -> Callable[[str], dict[str, Runner]]:
    return lambda directory: starlette_ops(configure(directory))


# name -> factory(directory); the first is what every ratio is taken against.
ASGI = {
    "fastsession (compiled)": asgi(with_fastsession_files),
    "fastsession on Redis": asgi(with_fastsession_redis),
    "Starlette signed cookie (default)": asgi(with_signed_cookie),
    "starsessions on Redis (no lock)": asgi(with_starsessions_redis),
    "Starlette, no session middleware": asgi(without_sessions),
}

# A whole ASGI request with fastsession, against a session middleware over an in-memory dict (the baseline).
ASGI_REQUEST_BASELINE = "Starlette, in-memory session middleware (dict)"
ASGI_REDIS_FLOOR = "Starlette, the same middleware over plain Redis GET + SET, no lock (Redis floor)"
ASGI_REQUESTS = {
    "Starlette + fastsession (files)": asgi(with_fastsession_files),
    ASGI_REQUEST_BASELINE: asgi(with_memory_sessions),
    "Starlette + fastsession on Redis": asgi(with_fastsession_redis),
    ASGI_REDIS_FLOOR: asgi(with_plain_redis_sessions),
    "Starlette signed cookie (default)": asgi(with_signed_cookie),
    "Starlette, no session middleware": asgi(without_sessions),
}
