"""fastsession.asgi.SessionMiddleware under Starlette and FastAPI (in-process ASGI, real files and Redis)."""

import asyncio
import contextlib
import re
import uuid

import httpx
import pytest
import redis
import redis.asyncio
from conftest import session_files
from helpers import session_path
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.responses import PlainTextResponse, StreamingResponse
from starlette.routing import Route, WebSocketRoute
from starlette.testclient import TestClient

from fastsession.asgi import SessionMiddleware
from fastsession.redis import data_key

ID = r"[A-Za-z0-9_-]{43}"


async def count(request):
    request.session["n"] = request.session.get("n", 0) + 1
    await asyncio.sleep(0.002)  # a query, with the session held
    return PlainTextResponse(str(request.session["n"]))


async def plain(request):
    return PlainTextResponse("no session here", headers={"Vary": "Accept-Encoding"})


async def peek(request):
    return PlainTextResponse(str(request.session.get("n", 0)))


async def logout(request):
    request.session.clear()
    return PlainTextResponse("bye")


async def login(request):
    await request.scope["fastsession.store"].regenerate_id()
    request.session["user"] = "ann"
    return PlainTextResponse("hi")


async def fail(request):
    request.session["n"] = 1000
    raise RuntimeError("the view failed")


async def stream(request):
    request.session["n"] = 1000

    async def chunks():
        for _ in range(300):
            yield b"."
            await asyncio.sleep(0.01)

    return StreamingResponse(chunks())


async def socket(websocket):
    await websocket.accept()
    await websocket.send_text(str(websocket.session.get("n")))
    await websocket.close()


ROUTES = [
    Route("/", count),
    Route("/plain", plain),
    Route("/peek", peek),
    Route("/logout", logout),
    Route("/login", login),
    Route("/fail", fail),
    Route("/stream", stream),
    WebSocketRoute("/ws", socket),
]


def starlette_app(**options):
    return Starlette(routes=ROUTES, middleware=[Middleware(SessionMiddleware, **options)])


@pytest.fixture
def app(session_dir):
    return starlette_app(session_directory=session_dir)


def locks(directory):
    return [f for f in session_files(directory) if f.endswith(".lock")]


def session_cookie(response):
    found = re.search(r"session=([^;]*)", response.headers.get("set-cookie", ""))
    return found and found.group(1)


def test_counts_and_sets_starlettes_cookie(app, session_dir):
    with TestClient(app) as client:
        first = client.get("/")
        assert first.text == "1"
        assert re.fullmatch(
            f"session={ID}; path=/; Max-Age=1209600; httponly; samesite=lax", first.headers["set-cookie"]
        )
        assert first.headers["vary"] == "Cookie"
        assert [client.get("/").text for _ in range(3)] == ["2", "3", "4"]
    assert session_files(session_dir) == [session_path("", session_cookie(first))]


def test_cookie_options_follow_starlettes_names(session_dir):
    app = starlette_app(
        session_directory=session_dir,
        session_cookie="sid",
        max_age=60,
        path="/app",
        same_site="strict",
        https_only=True,
        domain="example.com",
    )
    with TestClient(app, base_url="https://example.com") as client:
        cookie = client.get("/").headers["set-cookie"]
    assert re.fullmatch(
        f"sid={ID}; path=/app; Max-Age=60; httponly; samesite=strict; secure; domain=example.com", cookie
    )


def test_a_response_that_never_touched_the_session_gets_no_cookie_and_no_vary(app, session_dir):
    with TestClient(app) as client:
        response = client.get("/plain")
        assert "set-cookie" not in response.headers
        assert response.headers["vary"] == "Accept-Encoding"
        client.get("/")
        after = client.get("/plain")  # a session exists, but this page does not read it
        assert "set-cookie" not in after.headers and after.headers["vary"] == "Accept-Encoding"
        read = client.get("/peek")  # this one reads it: it varies; unchanged, it sends no cookie (Starlette 1.x)
        assert read.headers["vary"] == "Cookie" and "set-cookie" not in read.headers


def test_a_new_session_left_empty_is_not_stored_and_gets_no_cookie(app, session_dir):
    with TestClient(app) as client:
        response = client.get("/peek")
    assert response.text == "0" and "set-cookie" not in response.headers
    assert session_files(session_dir) == []


def test_an_unknown_id_is_never_adopted(app, session_dir):
    planted = "A" * 43
    with TestClient(app, cookies={"session": planted}) as client:
        response = client.get("/")
    assert response.text == "1"
    assert session_cookie(response) != planted
    assert session_files(session_dir) == [session_path("", session_cookie(response))]


def test_a_cleared_session_deletes_the_record_and_the_cookie(app, session_dir):
    with TestClient(app) as client:
        client.get("/")
        response = client.get("/logout")
        assert response.headers["set-cookie"].startswith("session=; path=/; Max-Age=0")
        assert client.get("/peek").text == "0"
    assert session_files(session_dir) == []


def test_regenerate_id_through_the_scopes_store(app, session_dir):
    with TestClient(app) as client:
        old = session_cookie(client.get("/"))
        new = session_cookie(client.get("/login"))
        assert new != old and re.fullmatch(ID, new)
        assert client.get("/peek").text == "1"  # the data moved with it
    assert session_files(session_dir) == [session_path("", new)]


def test_an_app_that_raises_writes_nothing_and_leaves_no_lock(app, session_dir):
    with TestClient(app, raise_server_exceptions=False) as client:
        client.get("/")
        assert client.get("/fail").status_code == 500
        assert client.get("/peek").text == "1"
    assert locks(session_dir) == []


async def call_asgi(app, path, cookie, disconnect_after):
    """One GET through the ASGI app whose client disconnects ``disconnect_after`` seconds in."""
    sent = []
    requested = False

    async def receive():
        nonlocal requested
        if not requested:
            requested = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await asyncio.sleep(disconnect_after)
        return {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)

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
        "headers": [(b"host", b"testserver"), (b"cookie", f"session={cookie}".encode())],
        "client": ("127.0.0.1", 1),
        "server": ("testserver", 80),
    }
    await asyncio.wait_for(app(scope, receive, send), 10)
    return sent


@pytest.mark.parametrize(
    "lines, expected",
    [
        ([], None),
        ([b"session=abc; lang=en"], "abc"),
        ([b'lang=en; session="abc"'], "abc"),
        ([b"theme=dark", b"session=abc"], "abc"),  # HTTP/2 may send the cookies in several lines
        ([b"session=first", b"session=second"], "first"),  # the most specific path comes first
        ([b"theme=dark", b"lang=en"], None),
    ],
)
def test_the_session_cookie_is_read_from_every_cookie_line_of_the_request(lines, expected):
    from fastsession.asgi import ASGITransaction

    trans = ASGITransaction({"headers": [(b"host", b"h")] + [(b"cookie", line) for line in lines]}, ("", ""))
    cookie = trans.get_cookie("session")
    assert (cookie.value if cookie is not None else None) == expected
    assert (trans.get_cookie("session") is None) == (expected is None)  # asked again: the same answer


def test_a_client_that_disconnects_mid_response_rolls_back_and_leaves_no_lock(app, session_dir):
    with TestClient(app) as client:
        cookie = session_cookie(client.get("/"))
    sent = asyncio.run(call_asgi(app, "/stream", cookie, 0.1))
    assert sent[-1].get("more_body") is True  # the response never completed...
    assert locks(session_dir) == []  # ...the lock went with the client
    with TestClient(app, cookies={"session": cookie}) as client:
        assert client.get("/peek").text == "1"  # and the view's change was not written


def test_overlapping_requests_of_one_user_lose_no_update(app, session_dir):
    async def go():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            cookie = session_cookie(await client.get("/"))
            await asyncio.gather(*(client.get("/", cookies={"session": cookie}) for _ in range(40)))
            return (await client.get("/peek", cookies={"session": cookie})).text

    assert asyncio.run(go()) == "41"
    assert locks(session_dir) == []


def test_lifespan_passes_through(session_dir):
    events = []

    @contextlib.asynccontextmanager
    async def lifespan(app):
        events.append("started")
        yield
        events.append("stopped")

    app = Starlette(
        routes=ROUTES, lifespan=lifespan, middleware=[Middleware(SessionMiddleware, session_directory=session_dir)]
    )
    with TestClient(app) as client:
        assert client.get("/").text == "1"
    assert events == ["started", "stopped"]


def test_a_websocket_reads_the_session_and_holds_no_lock(app, session_dir):
    with TestClient(app) as client:
        client.get("/")
        client.get("/")
        with client.websocket_connect("/ws") as ws:
            assert ws.receive_text() == "2"
            assert locks(session_dir) == []
    with TestClient(app) as anonymous, anonymous.websocket_connect("/ws") as ws:
        assert ws.receive_text() == "None"


def test_fastapi_two_line_swap(session_dir):
    from fastapi import FastAPI, Request

    api = FastAPI()
    api.add_middleware(SessionMiddleware, session_directory=session_dir)

    @api.get("/")
    async def visit(request: Request):
        request.session["n"] = request.session.get("n", 0) + 1
        return {"n": request.session["n"]}

    with TestClient(api) as client:
        assert [client.get("/").json()["n"] for _ in range(3)] == [1, 2, 3]


def test_the_middleware_keeps_sessions_in_one_place(session_dir, tmp_path, monkeypatch):
    import os
    import stat
    import tempfile

    from fastsession import files

    with pytest.raises(TypeError, match="one of session_directory=, redis= and postgres="):
        SessionMiddleware(starlette_app, session_dir, redis=object())
    with pytest.raises(TypeError, match="one of"):
        SessionMiddleware(starlette_app, redis=object(), postgres="postgresql://")
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setattr(files, "_private_made", set())
    app = Starlette(routes=ROUTES, middleware=[Middleware(SessionMiddleware, secret_key="leftover")])
    with TestClient(app) as client:  # Starlette's own set-up, unchanged: a private folder of this user's
        assert [client.get("/").text for _ in range(2)] == ["1", "2"]
    folder = tmp_path / f"fastsession-asgi-{os.geteuid()}"
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700 and len(session_files(str(folder))) == 1


@pytest.mark.parametrize(
    "options, error",
    [
        ({"timeot": 10}, TypeError),
        ({"max_age": 1.5}, TypeError),
        ({"same_site": "sometimes"}, ValueError),
        ({"locking": "never"}, ValueError),
        ({"stale_after": -1}, ValueError),
    ],
)
def test_options_are_checked_when_the_middleware_is_made(session_dir, options, error):
    with pytest.raises(error):
        SessionMiddleware(starlette_app, session_dir, **options)


@pytest.mark.parametrize("partitioned", [False, True])
def test_partitioned_cookies(session_dir, partitioned):
    app = starlette_app(session_directory=session_dir, partitioned=partitioned, https_only=True, same_site="none")
    with TestClient(app, base_url="https://testserver") as client:
        cookie = client.get("/").headers["set-cookie"]
    assert ("partitioned" in cookie.split("; ")) is partitioned


def test_refresh_each_request_renews_the_cookie_on_a_read(session_dir):
    with TestClient(starlette_app(session_directory=session_dir, refresh_each_request=True)) as client:
        client.get("/")
        read = client.get("/peek")
    assert read.text == "1" and session_cookie(read) and "Max-Age=1209600" in read.headers["set-cookie"]


def test_a_change_to_an_existing_session_sends_the_cookie_again(app):
    with TestClient(app) as client:
        first = session_cookie(client.get("/"))
        again = client.get("/")  # changed: Starlette 1.x sends the cookie (its Max-Age starts again)
    assert again.text == "2" and session_cookie(again) == first


@pytest.mark.parametrize("max_age", [0, -1])
def test_a_max_age_of_zero_or_less_stores_nothing(session_dir, max_age):
    with TestClient(starlette_app(session_directory=session_dir, max_age=max_age)) as client:
        response = client.get("/")
    assert response.text == "1" and f"; Max-Age={max_age}; " in response.headers["set-cookie"]
    assert session_files(session_dir) == []


def test_trio_is_refused_at_the_first_call_with_a_clear_error(app):
    with pytest.raises(RuntimeError, match="runs on asyncio.*trio"):
        with TestClient(app, backend="trio") as client:
            client.get("/")


def test_on_redis(redis_url):
    prefix = f"test-asgi-{uuid.uuid4().hex[:8]}:"

    async def go():
        client = redis.asyncio.Redis.from_url(redis_url)
        app = starlette_app(redis=client, prefix=prefix)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as web:
            cookie = session_cookie(await web.get("/"))
            await asyncio.gather(*(web.get("/", cookies={"session": cookie}) for _ in range(20)))
            seen = (await web.get("/peek", cookies={"session": cookie})).text
        await client.aclose()
        return cookie, seen

    cookie, seen = asyncio.run(go())
    assert seen == "21"
    sync = redis.Redis.from_url(redis_url)
    keys = sorted(k.decode() for k in sync.scan_iter(match=prefix + "*"))
    assert [k for k in keys if not k.endswith((":waiting", ":wake"))] == [
        data_key(prefix, cookie)
    ]  # wake marks: TTL 1 s
    assert 1_209_000_000 < sync.pttl(data_key(prefix, cookie)) <= 1_209_600_000  # max_age: the server's expiry too


def test_a_message_of_another_kind_after_the_start_sends_the_held_start_first(session_dir):
    """The start is held for a one-chunk body's commit; a pathsend (or any other message) still follows it."""
    import asyncio

    from fastsession.asgi import SessionMiddleware as Middleware

    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.pathsend", "path": "/dev/null"})

    sent = []

    async def send(message):
        sent.append(message["type"])

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    scope = {"type": "http", "method": "GET", "path": "/", "headers": [], "extensions": {"http.response.pathsend": {}}}
    asyncio.run(Middleware(app, session_directory=session_dir)(scope, receive, send))
    assert sent == ["http.response.start", "http.response.pathsend"]


def test_on_redis_each_request_in_a_new_event_loop(redis_url):
    import gc
    import warnings

    prefix = f"test-asgi-{uuid.uuid4().hex[:8]}:"
    client = redis.asyncio.Redis.from_url(redis_url)
    app = starlette_app(redis=client, prefix=prefix)
    web = TestClient(app)  # no `with`: every request runs in an event loop of its own, closed after it
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gc.collect()  # what earlier tests left unreachable goes first: only this test's connections are judged
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        assert [web.get("/").text for _ in range(4)] == ["1", "2", "3", "4"]
        del web, app
        gc.collect()
    unclosed = [w for w in seen if issubclass(w.category, ResourceWarning)]
    assert not unclosed, [str(w.message) for w in unclosed]  # each loop's connections were closed with it


@pytest.mark.parametrize(
    "options",
    [{}, {"locking": "commit"}, {"read_only": lambda scope: scope["path"] == "/plain"}],
    ids=["request-mode", "commit-mode", "read_only"],
)
def test_untouched_requests_do_not_queue_behind_a_held_lock_in_any_mode(session_dir, options, caplog):
    import logging

    from conftest import Transaction

    import fastsession

    app = starlette_app(session_directory=session_dir, timeout=0.05, **options)
    with TestClient(app) as client:
        client.get("/")
        sid = client.cookies["session"]
        holder = fastsession.SessionStore(Transaction({"session": sid}), session_dir, "session")
        assert holder.get_session(False) is not None  # another request of this user holds the lock
        try:
            with caplog.at_level(logging.WARNING, "fastsession"):
                response = client.get("/plain")
        finally:
            holder.rollback()
    assert response.status_code == 200 and not caplog.records


async def sign_in(request):
    from fastsession import TooManySessions

    request.session["visits"] = 1
    try:
        await request.scope["fastsession.store"].bind_user("ann")
    except TooManySessions as exc:
        return PlainTextResponse(f"refused: {exc.max_sessions}")
    request.session["user"] = "ann"
    return PlainTextResponse("in")


async def whose(request):
    return PlainTextResponse(str(request.session.get("user")))


@pytest.mark.parametrize("when_full", ["evict", "refuse"])
def test_max_sessions_keyword_caps_a_users_sessions(session_dir, when_full):
    routes = [Route("/sign-in", sign_in), Route("/whose", whose)]
    app = Starlette(
        routes=routes,
        middleware=[Middleware(SessionMiddleware, session_directory=session_dir, max_sessions=1, when_full=when_full)],
    )
    first, second = TestClient(app), TestClient(app)
    assert first.get("/sign-in").text == "in"
    assert second.get("/sign-in").text == ("in" if when_full == "evict" else "refused: 1")
    expected = ["None", "ann"] if when_full == "evict" else ["ann", "None"]
    assert [first.get("/whose").text, second.get("/whose").text] == expected
    assert locks(session_dir) == []


def test_a_cap_no_binding_could_keep_is_refused_when_the_middleware_is_made(session_dir):
    with pytest.raises(ValueError):
        SessionMiddleware(starlette_app, session_dir, max_sessions=0)


def test_lifecycle_events_through_the_middleware(app):
    from fastsession import events
    from fastsession.names import stored_name

    seen = []
    handler = events.subscribe(lambda event: seen.append((event.kind, event.session)))
    try:
        client = TestClient(app)
        sid = session_cookie(client.get("/"))
        client.get("/logout")
    finally:
        events.unsubscribe(handler)
    assert seen == [("created", stored_name(sid)), ("deleted", stored_name(sid))]


def test_an_id_header_carries_the_id_both_ways_beside_the_cookie(session_dir):
    app = starlette_app(session_directory=session_dir, id_header="X-Session-Id")
    client = TestClient(app)
    response = client.get("/", headers={"X-Session-Id": ""})  # a new API client asks for its id this way
    sid = response.headers["x-session-id"]
    assert re.fullmatch(ID, sid) and response.text == "1" and "set-cookie" not in response.headers
    assert "X-Session-Id" in response.headers["vary"]
    api = TestClient(app)  # keeps no cookies: the header alone
    assert api.get("/", headers={"X-Session-Id": sid}).text == "2"
    browser = TestClient(app)
    assert browser.get("/").text == "1" and "x-session-id" not in browser.get("/").headers
    logout = api.get("/logout", headers={"X-Session-Id": sid})
    assert logout.headers["x-session-id"] == "" and "set-cookie" not in logout.headers
    assert api.get("/", headers={"X-Session-Id": sid}).text == "1"  # gone: a new session


def test_id_cookie_false_sends_every_new_id_in_the_header(session_dir):
    client = TestClient(starlette_app(session_directory=session_dir, id_header="X-Session-Id", id_cookie=False))
    response = client.get("/")
    assert re.fullmatch(ID, response.headers["x-session-id"]) and "set-cookie" not in response.headers
    with pytest.raises(ValueError):
        SessionMiddleware(starlette_app, session_dir, id_cookie=False)


def test_each_request_gets_a_store_copied_from_the_middlewares_own(session_dir, monkeypatch):
    """The options are checked and the backend found once, when the middleware is made (a StoreFactory):
    no request, nor a websocket's read, runs the store's constructor."""
    from fastsession import store as store_module

    with TestClient(starlette_app(session_directory=session_dir)) as client:
        client.get("/plain")  # (Starlette builds the middleware stack at its first request)
        constructed = []
        found = store_module.shared_backend
        monkeypatch.setattr(store_module, "shared_backend", lambda *args: constructed.append(args) or found(*args))
        assert [client.get("/").text for _ in range(3)] == ["1", "2", "3"]
        with client.websocket_connect("/ws") as websocket:
            assert websocket.receive_text() == "3"
    assert constructed == []
