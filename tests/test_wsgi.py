import os
import re

import pytest
from conftest import session_files
from helpers import session_path

from fastsession import SessionStore
from fastsession.wsgi import SessionMiddleware, WSGITransaction, add_vary_cookie, parse_cookie_header

ID = re.compile(r"[A-Za-z0-9_-]{43}")


def call(app, cookie=None, path="/"):
    """One WSGI request the way a server makes it; returns (status, headers, body)."""
    from wsgiref.util import setup_testing_defaults

    environ = {"PATH_INFO": path}
    if cookie is not None:
        environ["HTTP_COOKIE"] = cookie
    setup_testing_defaults(environ)
    seen = {}

    def start_response(status, headers, exc_info=None):
        seen["status"], seen["headers"] = status, headers

    result = app(environ, start_response)
    try:
        body = b"".join(result)
    finally:
        if hasattr(result, "close"):
            result.close()
    return seen["status"], seen["headers"], body


def header_values(headers, name):
    return [v for k, v in headers if k.lower() == name.lower()]


def sid_from(headers):
    (cookie,) = header_values(headers, "Set-Cookie")
    return cookie.split(";")[0].split("=", 1)[1]


def counter_app(environ, start_response):
    store = environ["fastsession.store"]
    session = store.get_session(True)
    session["n"] = session.get("n", 0) + 1
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [str(session["n"]).encode()]


@pytest.fixture
def counter(session_dir):
    return SessionMiddleware(counter_app, session_dir)


def test_new_session_gets_a_cookie_with_the_documented_attributes(counter):
    _status, headers, body = call(counter)
    assert body == b"1"
    (cookie,) = header_values(headers, "Set-Cookie")
    assert re.fullmatch(r"SID=[A-Za-z0-9_-]{43}; Path=/; HttpOnly; SameSite=Lax", cookie)


def test_secure_true_marks_the_cookie_secure(session_dir):
    app = SessionMiddleware(counter_app, session_dir, secure=True)
    (cookie,) = header_values(call(app)[1], "Set-Cookie")
    assert cookie.endswith("; Secure")


def test_cookie_brings_the_session_back_without_a_new_set_cookie(counter):
    sid = sid_from(call(counter)[1])
    _status, headers, body = call(counter, f"SID={sid}")
    assert body == b"2"
    assert header_values(headers, "Set-Cookie") == []
    assert header_values(headers, "Vary") == ["Cookie"]


def test_store_options_reach_the_store(session_dir):
    app = SessionMiddleware(counter_app, session_dir, session_cookie_name="app_sid", concurrent=0)
    (cookie,) = header_values(call(app)[1], "Set-Cookie")
    assert cookie.startswith("app_sid=")
    assert not any(f.endswith(".lock") for f in session_files(session_dir))


@pytest.mark.parametrize(
    "header",
    [
        "garbage",
        ";;;=;",
        "SID",
        "SID=",
        'SID="unterminated',
        "SID=../../etc/passwd",
        "SID=%00%2F..",
        "SID=\udcff\udcfe",
        "=x; SID==; other=1",
        "SID=" + "A" * 10000,
    ],
)
def test_garbage_cookie_headers_get_a_fresh_session(counter, header, session_dir):
    status, headers, body = call(counter, header)
    assert status == "200 OK" and body == b"1"
    assert ID.fullmatch(sid_from(headers))
    assert all(re.fullmatch(r"[A-Za-z0-9_-]{2}/[A-Za-z0-9_-]{43}", f) for f in session_files(session_dir))


def test_parse_cookie_header_takes_the_first_of_duplicates_and_strips_quotes():
    assert parse_cookie_header('a=1; SID="x"; SID=y; junk; =z') == {"a": "1", "SID": "x"}


def untouched_app(environ, start_response):
    start_response("404 Not Found", [("Content-Type", "text/plain")])
    return [b"nope"]


def test_response_that_never_touched_the_session_has_no_cookie_and_no_vary(session_dir):
    _status, headers, _ = call(SessionMiddleware(untouched_app, session_dir))
    assert header_values(headers, "Set-Cookie") == [] and header_values(headers, "Vary") == []


def peek_app(environ, start_response):
    environ["fastsession.store"].get_session(True)  # created, never written
    start_response("200 OK", [("Vary", "Accept-Encoding")])
    return [b"ok"]


def test_new_empty_session_sends_no_cookie_and_stores_nothing(session_dir):
    _status, headers, _ = call(SessionMiddleware(peek_app, session_dir))
    assert header_values(headers, "Set-Cookie") == []
    assert header_values(headers, "Vary") == ["Accept-Encoding, Cookie"]
    assert session_files(session_dir) == []


def test_add_vary_cookie_keeps_existing_values():
    assert add_vary_cookie([("Vary", "Cookie")]) == [("Vary", "Cookie")]
    assert add_vary_cookie([("vary", "*")]) == [("vary", "*")]
    assert add_vary_cookie([]) == [("Vary", "Cookie")]


def logout_app(environ, start_response):
    environ["fastsession.store"].expire_session()
    start_response("303 See Other", [("Location", "/")])
    return [b""]


def test_expiry_deletes_the_session_and_the_cookie(session_dir, counter):
    sid = sid_from(call(counter)[1])
    _status, headers, _ = call(SessionMiddleware(logout_app, session_dir), f"SID={sid}")
    (cookie,) = header_values(headers, "Set-Cookie")
    assert cookie.startswith("SID=; Path=/; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT")
    assert session_files(session_dir) == []
    assert call(counter, f"SID={sid}")[2] == b"1"


def failing_app(environ, start_response):
    environ["fastsession.store"].get_session(True)["n"] = 999
    raise RuntimeError("app bug")


def test_raising_app_is_rolled_back_and_releases_the_lock(session_dir, counter):
    sid = sid_from(call(counter)[1])
    with pytest.raises(RuntimeError):
        call(SessionMiddleware(failing_app, session_dir), f"SID={sid}")
    assert not any(f.endswith(".lock") for f in session_files(session_dir))
    assert call(counter, f"SID={sid}")[2] == b"2"  # the 999 was never written


def streaming_failure_app(environ, start_response):
    session = environ["fastsession.store"].get_session(True)
    start_response("200 OK", [])

    def body():
        session["n"] = 999
        yield b"partial"
        raise RuntimeError("broken stream")

    return body()


def test_app_raising_while_streaming_is_rolled_back(session_dir, counter):
    sid = sid_from(call(counter)[1])
    with pytest.raises(RuntimeError):
        call(SessionMiddleware(streaming_failure_app, session_dir), f"SID={sid}")
    assert call(counter, f"SID={sid}")[2] == b"2"


def streamed_counter_app(environ, start_response):
    """counter_app with a body the server must iterate: committed only once the response is closed."""
    return iter(counter_app(environ, start_response))


@pytest.fixture
def streamed_counter(session_dir):
    return SessionMiddleware(streamed_counter_app, session_dir)


def test_a_whole_body_is_committed_before_the_server_sends_anything(session_dir, counter):
    """A list body is final when the app returns: committed then, so a refusal can still be the status."""
    from wsgiref.util import setup_testing_defaults

    sid = sid_from(call(counter)[1])
    environ = {"HTTP_COOKIE": f"SID={sid}"}
    setup_testing_defaults(environ)
    result = counter(environ, lambda status, headers, exc_info=None: None)
    assert not os.path.exists(session_path(session_dir, sid) + ".lock")  # committed, not a byte sent yet
    assert b"".join(result) == b"2"
    result.close()
    assert call(counter, f"SID={sid}")[2] == b"3"


def second_visit_sent_not_closed(session_dir, counter):
    """(id, the response, its lockfile) of a user's second request, its body sent, not yet closed."""
    from wsgiref.util import setup_testing_defaults

    sid = sid_from(call(counter)[1])
    environ = {"HTTP_COOKIE": f"SID={sid}"}
    setup_testing_defaults(environ)
    result = counter(environ, lambda status, headers, exc_info=None: None)
    assert b"".join(result) == b"2"
    return sid, result, session_path(session_dir, sid) + ".lock"


def test_a_streamed_session_is_committed_only_when_the_response_is_closed(session_dir, streamed_counter):
    counter = streamed_counter
    sid, result, lock = second_visit_sent_not_closed(session_dir, counter)
    assert os.path.exists(lock)  # still held while the server sends the body
    result.close()
    assert not os.path.exists(lock)
    assert call(counter, f"SID={sid}")[2] == b"3"


def test_transaction_speaks_webstacks_protocol():
    trans = WSGITransaction({"HTTP_COOKIE": "SID=abc; x=1"})
    assert trans.get_cookie("SID").value == "abc"
    assert trans.get_cookie("missing") is None
    trans.set_cookie_value("SID", "v")
    trans.delete_cookie("other")
    assert [v.split(";")[0] for _, v in trans.cookie_headers()] == ["SID=v", "other="]


def test_webstack_style_code_with_the_wsgi_transaction(session_dir):
    trans = WSGITransaction({})
    with SessionStore(trans, session_dir) as store:
        store.get_session(1)["user"] = "ann"
    (cookie,) = [v for _, v in trans.cookie_headers()]
    sid = cookie.split(";")[0].split("=")[1]
    with SessionStore(WSGITransaction({"HTTP_COOKIE": f"SID={sid}"}), session_dir) as store:
        assert store.get_session(0) == {"user": "ann"}


def test_response_dropped_without_close_releases_the_lock_and_warns(session_dir, streamed_counter, caplog):
    import gc
    import logging

    counter = streamed_counter
    sid, result, lock = second_visit_sent_not_closed(session_dir, counter)
    assert os.path.exists(lock)
    with caplog.at_level(logging.WARNING, logger="fastsession"):
        del result  # a server that forgets close() (a client gone mid-response)
        gc.collect()
    assert not os.path.exists(lock)  # the user is not locked out for the life of the worker
    assert "without close()" in caplog.text
    assert call(counter, f"SID={sid}")[2] == b"2"  # the dropped request's change was not written


# -- issue 25: the cookie's attributes, options checked up front, no lock for a request that never reads --


def test_the_cookie_attributes_can_be_set(session_dir):
    app = SessionMiddleware(
        counter_app,
        session_dir,
        secure=True,
        cookie_path="/app",
        cookie_domain="example.com",
        cookie_max_age=3600,
        cookie_samesite="strict",
        cookie_partitioned=True,
    )
    (cookie,) = header_values(call(app)[1], "Set-Cookie")
    assert re.fullmatch(
        r"SID=[A-Za-z0-9_-]{43}; Path=/app; Domain=example.com; Max-Age=3600; HttpOnly; SameSite=Strict; "
        r"Secure; Partitioned",
        cookie,
    )


def test_a_deleted_cookie_keeps_its_path_and_domain(session_dir):
    def logout(environ, start_response):
        environ["fastsession.store"].expire_session()
        start_response("200 OK", [])
        return [b""]

    sid = sid_from(call(SessionMiddleware(counter_app, session_dir))[1])
    app = SessionMiddleware(logout, session_dir, cookie_path="/app", cookie_domain="example.com", cookie_max_age=60)
    (cookie,) = header_values(call(app, f"SID={sid}")[1], "Set-Cookie")
    assert cookie.startswith("SID=; Path=/app; Domain=example.com; Max-Age=0; Expires=")
    assert "Max-Age=60" not in cookie


@pytest.mark.parametrize(
    "options, error",
    [
        ({"cookie_samesite": "sometimes"}, ValueError),
        ({"cookie_samesite": "None"}, ValueError),  # without secure: browsers would drop it
        ({"cookie_max_age": -5}, ValueError),
        ({"cookie_path": "/a; Domain=evil.example"}, ValueError),
        ({"timeot": 10}, TypeError),
        ({"max_age": float("nan")}, ValueError),
    ],
)
def test_options_are_checked_when_the_middleware_is_made(session_dir, options, error):
    with pytest.raises(error):
        SessionMiddleware(counter_app, session_dir, **options)


def test_a_request_that_never_reads_the_session_takes_no_lock(session_dir, caplog):
    import logging

    from conftest import Transaction

    def untouched(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    sid = sid_from(call(SessionMiddleware(counter_app, session_dir))[1])
    holder = SessionStore(Transaction({"SID": sid}), session_dir)
    holder.get_session(False)  # another request of this user, in the middle of its work
    try:
        with caplog.at_level(logging.WARNING, "fastsession"):
            status, headers, body = call(SessionMiddleware(untouched, session_dir, timeout=0.05), f"SID={sid}")
            assert call(SessionMiddleware(counter_app, session_dir, timeout=0.05), f"SID={sid}")[0].startswith("503")
    finally:
        holder.rollback()
    assert status.startswith("200") and body == b"ok" and header_values(headers, "Set-Cookie") == []
    assert len([r for r in caplog.records if "answered 503" in r.getMessage()]) == 1  # only the one that read


def sign_in_app(environ, start_response):
    from fastsession import TooManySessions

    store = environ["fastsession.store"]
    session = store.get_session(True)
    try:
        store.bind_user("ann")
        session["user"] = "ann"
        body = b"in"
    except TooManySessions:
        body = b"refused"
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [body]


def test_max_sessions_reaches_the_store_through_the_middleware(session_dir):
    app = SessionMiddleware(sign_in_app, session_dir, max_sessions=1, when_full="refuse")
    _, first, body = call(app)
    assert body == b"in"
    assert call(app)[2] == b"refused"
    assert call(app, "SID=" + sid_from(first))[2] == b"in"  # the same device again: its own session
    with pytest.raises(ValueError):
        SessionMiddleware(sign_in_app, session_dir, max_sessions=0)


def call_with(app, headers):
    """One request with extra request ``headers`` (name -> value)."""
    from wsgiref.util import setup_testing_defaults

    environ = {"PATH_INFO": "/"}
    for name, value in headers.items():
        environ["HTTP_" + name.upper().replace("-", "_")] = value
    setup_testing_defaults(environ)
    seen = {}

    def start_response(status, response_headers, exc_info=None):
        seen["status"], seen["headers"] = status, response_headers

    result = app(environ, start_response)
    body = b"".join(result)
    result.close()
    return seen["headers"], body


def test_an_id_header_carries_the_id_both_ways_and_the_cookie_still_works_beside_it(session_dir):
    app = SessionMiddleware(counter_app, session_dir, id_header="X-Session-Id")
    headers, body = call_with(app, {"X-Session-Id": ""})  # a new API client asks for its id this way
    (sid,) = header_values(headers, "X-Session-Id")
    assert ID.fullmatch(sid) and body == b"1" and header_values(headers, "Set-Cookie") == []
    assert "X-Session-Id" in header_values(headers, "Vary")[0]
    headers, body = call_with(app, {"X-Session-Id": sid})
    assert body == b"2" and header_values(headers, "X-Session-Id") == []  # unchanged id: nothing to send
    browser = call(app)  # no header: the cookie, as before
    assert browser[2] == b"1" and header_values(browser[1], "X-Session-Id") == []
    cookie = sid_from(browser[1])
    headers, body = call_with(app, {"X-Session-Id": sid, "Cookie": f"SID={cookie}"})
    assert body == b"3"  # the header wins over a cookie sent beside it


def test_a_header_that_names_no_session_gets_a_new_id_in_the_header_and_a_logout_empties_it(session_dir):
    app = SessionMiddleware(counter_app, session_dir, id_header="X-Session-Id", id_cookie=False)
    headers, body = call_with(app, {"X-Session-Id": "A" * 43})  # forged: never adopted
    (sid,) = header_values(headers, "X-Session-Id")
    assert sid != "A" * 43 and body == b"1"
    headers, _ = call_with(app, {})  # id_cookie=False: a request without the header gets its id there too
    assert ID.fullmatch(header_values(headers, "X-Session-Id")[0])
    logout = SessionMiddleware(logout_app, session_dir, id_header="X-Session-Id", id_cookie=False)
    headers, _ = call_with(logout, {"X-Session-Id": sid})
    assert header_values(headers, "X-Session-Id") == [""] and header_values(headers, "Set-Cookie") == []
    assert call_with(app, {"X-Session-Id": sid})[1] == b"1"  # gone: a new session


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"id_header": "X Session"}, ValueError),
        ({"id_header": "Cookie"}, ValueError),
        ({"id_header": 7}, ValueError),
        ({"id_cookie": False}, ValueError),
        ({"id_header": "X-Session-Id", "id_cookie": "no"}, TypeError),
    ],
)
def test_id_header_options_are_checked_when_the_middleware_is_made(session_dir, options, error):
    with pytest.raises(error):
        SessionMiddleware(counter_app, session_dir, **options)


def test_lifecycle_events_through_the_middleware(session_dir, counter):
    from fastsession import events
    from fastsession.names import stored_name

    seen = []
    handler = events.subscribe(lambda event: seen.append((event.kind, event.session)))
    try:
        sid = sid_from(call(counter)[1])
        call(SessionMiddleware(logout_app, session_dir), f"SID={sid}")
    finally:
        events.unsubscribe(handler)
    assert seen == [("created", stored_name(sid)), ("deleted", stored_name(sid))]


def test_each_request_gets_a_store_copied_from_the_middlewares_own(session_dir, monkeypatch):
    """The options are checked and the backend found once, when the middleware is made (a StoreFactory):
    no request runs the store's constructor."""
    from fastsession import store as store_module

    app = SessionMiddleware(counter_app, session_dir, max_size=4096)
    constructed = []
    found = store_module.shared_backend
    monkeypatch.setattr(store_module, "shared_backend", lambda *args: constructed.append(args) or found(*args))
    _, headers, body = call(app)
    cookie = f"SID={sid_from(headers)}"
    assert [call(app, cookie)[2] for _ in range(2)] == [b"2", b"3"] and body == b"1"
    assert constructed == []
