"""encrypt=True: the stored bytes hold none of the session's values, and a record that does not open is absent.

On the four stores (files and Redis, sync and async), through the adapters and Django.
"""

import asyncio
import base64
import datetime
import logging
import os
import time

import httpx
import orjson
import pytest
import redis
from conftest import session_files
from faces import pg_body, pg_put
from flask import Flask, session
from helpers import session_path
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from werkzeug.test import Client as WSGIClient

import fastsession
from fastsession import sealed
from fastsession.asgi import SessionMiddleware as ASGIMiddleware
from fastsession.contrib.flask import FastSessionInterface
from fastsession.names import stored_name
from fastsession.record import META, AcceptPlainUntil
from fastsession.redis import data_key
from fastsession.wsgi import SessionMiddleware

SECRET = {"email": "ann@example.com", "cart": ["very-secret-item"], "token": "tok-3141592653"}


def stored_bytes(face, sid):
    if face.kind.startswith("files"):
        with open(session_path(face.directory, sid), "rb") as f:
            return f.read()
    if face.kind.startswith("postgres"):
        return pg_body(face, sid)
    client = redis.Redis.from_url(face.redis_url)
    try:
        return client.get(data_key(face.prefix, sid))
    finally:
        client.close()


def put_bytes(face, sid, body):
    if face.kind.startswith("files"):
        with open(session_path(face.directory, sid), "wb") as f:
            f.write(body)
    elif face.kind.startswith("postgres"):
        pg_put(face, sid, body)
    else:
        client = redis.Redis.from_url(face.redis_url)
        client.set(data_key(face.prefix, sid), body)
        client.close()


def open_with(face, sid, **options):
    options.setdefault("encrypt", True)
    store = face.store(sid, **options)
    session = store.get_session(False)
    data = None if session is None else dict(session)
    store.close()
    return data


def test_the_stored_bytes_hold_none_of_the_values_and_the_cookie_opens_them(face):
    sid = face.stored(SECRET, encrypt=True)
    body = stored_bytes(face, sid)
    for needle in (b"ann@example.com", b"very-secret-item", b"tok-3141592653", b"email", b"cart", sid.encode()):
        assert needle not in body
    assert open_with(face, sid) == SECRET


def test_a_flipped_byte_reads_as_absent(face):
    sid = face.stored(SECRET, encrypt=True)
    body = bytearray(stored_bytes(face, sid))
    at = body.index(b'"x":"') + 30  # inside the sealed token
    body[at] = ord("A") if body[at] != ord("A") else ord("B")
    put_bytes(face, sid, bytes(body))
    assert open_with(face, sid) is None
    store = face.store(sid, encrypt=True)
    assert store.get_session(True).session_id != sid  # a new session, never the tampered one adopted
    store.rollback()


def test_another_sessions_record_does_not_open_under_this_id(face):
    mine = face.stored({"user": "ann"}, encrypt=True)
    theirs = face.stored({"user": "mallory"}, encrypt=True)
    put_bytes(face, mine, stored_bytes(face, theirs))  # moved under my name
    assert open_with(face, mine) is None


def test_an_unchanged_request_rewrites_nothing_and_a_change_reseals(face):
    sid = face.stored({"n": 1}, encrypt=True)
    before = stored_bytes(face, sid)
    assert open_with(face, sid) == {"n": 1}
    assert stored_bytes(face, sid) == before  # the same sealed bytes: no write for a read
    store = face.store(sid, encrypt=True)
    store.get_session(False)["n"] = 2
    store.close()
    assert stored_bytes(face, sid) != before and open_with(face, sid) == {"n": 2}


def test_a_plain_record_is_sealed_by_its_first_request_while_a_migration_window_is_open(face):
    sid = face.stored(SECRET)
    assert b"ann@example.com" in stored_bytes(face, sid)
    window = AcceptPlainUntil(time.time() + 3600)
    assert open_with(face, sid, encrypt=window) == SECRET
    assert b"ann@example.com" not in stored_bytes(face, sid)
    assert open_with(face, sid) == SECRET  # sealed now: encrypt=True opens it


def test_with_encrypt_a_plain_record_reads_as_absent_and_is_logged(face, caplog):
    """A storage writer who replaces a sealed record with a plain one logs nobody in as anybody."""
    sid = face.stored({"_auth_user_id": "7"}, encrypt=True)
    put_bytes(face, sid, b'{"_auth_user_id":"1"}')  # planted: "I am user 1"
    with caplog.at_level(logging.WARNING, logger="fastsession"):
        assert open_with(face, sid) is None
    assert "not sealed" in caplog.text
    store = face.store(sid, encrypt=True)
    assert store.get_session(True).session_id != sid  # never adopted either
    store.rollback()


def test_a_migration_window_that_has_ended_opens_plain_records_no_more(face):
    sid = face.stored({"n": 1})
    assert open_with(face, sid, encrypt=AcceptPlainUntil(time.time() - 1)) is None
    assert b'"n":1' in stored_bytes(face, sid)  # read as absent, and left as it was (never overwritten unread)


def test_accept_plain_until_takes_a_time_or_an_aware_datetime_and_nothing_else():
    moment = datetime.datetime(2030, 1, 1, tzinfo=datetime.timezone.utc)
    assert AcceptPlainUntil(moment).until == moment.timestamp()
    assert AcceptPlainUntil(12.5).until == 12.5
    for bad in ("tomorrow", float("nan"), True, None):
        with pytest.raises(ValueError, match="UNIX time or a datetime"):
            AcceptPlainUntil(bad)


def test_the_creation_time_and_user_binding_are_sealed_with_the_data(face):
    """A storage writer who moves META's creation time 30 years ahead does not make a session immortal."""
    sid = face.stored({"n": 1}, encrypt=True, max_lifetime=60)
    body = stored_bytes(face, sid)
    document = orjson.loads(body.partition(b"\n")[2] if face.kind.startswith("files") else body)
    assert set(document) == {META} and set(document[META]) == {"x"}  # nothing readable beside the seal
    document[META]["c"] = time.time() + 30 * 365 * 86400
    put_bytes(face, sid, orjson.dumps(document))
    store = face.store(sid, encrypt=True, max_lifetime=60)
    store.get_session(False)
    store.rollback()
    assert store.raw._meta["c"] <= time.time()  # the sealed creation time, not the planted one


def test_a_record_sealed_by_0_2_0_with_metadata_outside_opens_only_in_a_migration_window(face):
    sid = face.stored({"n": 1}, encrypt=True)
    token = sealed.seal(sid, stored_name(sid), orjson.dumps({"n": 1}))  # 0.2.0: the data alone was sealed
    put_bytes(face, sid, orjson.dumps({META: {"c": time.time(), "x": token}}))
    assert open_with(face, sid) is None
    assert open_with(face, sid, encrypt=AcceptPlainUntil(time.time() + 60)) == {"n": 1}


def test_regenerate_id_reseals_under_the_new_id_and_commit_mode_merges(face):
    sid = face.stored({"a": 1}, encrypt=True)
    store = face.store(sid, encrypt=True)
    store.get_session(False)
    new_id = store.regenerate_id()
    store.close()
    assert open_with(face, sid) is None and open_with(face, new_id) == {"a": 1}
    first, second = (
        face.store(new_id, encrypt=True, locking="commit"),
        face.store(new_id, encrypt=True, locking="commit"),
    )
    first.get_session(False)["b"] = 2
    second.get_session(False)["c"] = 3
    first.close()
    second.close()  # merged with what first stored: both opened, merged, sealed again
    assert open_with(face, new_id) == {"a": 1, "b": 2, "c": 3}


def test_without_cryptography_encrypt_says_what_to_install(tmp_path, monkeypatch):
    import sys

    monkeypatch.setattr(sealed, "_crypto", None)
    monkeypatch.setitem(sys.modules, "cryptography.hazmat.primitives.ciphers.aead", None)  # as if not installed
    with pytest.raises(ImportError, match=r"fastsession-store\[crypto\]"):
        fastsession.SessionStore(None, str(tmp_path), encrypt=True)


# -- adapters --------------------------------------------------------------------------------


def no_values_at_rest(directory):
    for name in session_files(directory):
        with open(os.path.join(directory, name), "rb") as f:
            assert b"ann@example.com" not in f.read()


def test_wsgi_flask_asgi(tmp_path):
    def wsgi(environ, start_response):
        environ["fastsession.store"].get_session(True)["email"] = "ann@example.com"
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    response = WSGIClient(SessionMiddleware(wsgi, str(tmp_path / "w"), encrypt=True)).get("/")
    response.close()
    no_values_at_rest(str(tmp_path / "w"))

    app = Flask(__name__)
    app.session_interface = FastSessionInterface(str(tmp_path / "f"), encrypt=True)

    @app.route("/")
    def view():
        session["email"] = session.get("email", "ann@example.com")
        return session["email"]

    client = app.test_client()
    assert client.get("/").text == client.get("/").text == "ann@example.com"
    no_values_at_rest(str(tmp_path / "f"))

    async def asgi_view(request):
        request.session["email"] = "ann@example.com"
        return PlainTextResponse("ok")

    asgi = ASGIMiddleware(
        Starlette(routes=[Route("/", asgi_view)]), session_directory=str(tmp_path / "a"), encrypt=True
    )

    async def go():
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=asgi), base_url="http://t") as c:
            return (await c.get("/")).status_code

    assert asyncio.run(go()) == 200
    assert session_files(str(tmp_path / "a"))
    no_values_at_rest(str(tmp_path / "a"))


# -- known answers: a change to any of these silently logs every user out -----------------------------------


def hkdf_sha256(secret, salt, info, length=32):
    """RFC 5869, written out here with hmac alone: what fastsession.sealed must agree with."""
    import hashlib
    import hmac

    prk = hmac.new(salt, secret, hashlib.sha256).digest()
    out, block, counter = b"", b"", 1
    while len(out) < length:
        block = hmac.new(prk, block + info + bytes([counter]), hashlib.sha256).digest()
        out, counter = out + block, counter + 1
    return out[:length]


def test_the_key_derivation_is_hkdf_sha256_with_fastsessions_salt_and_info():
    session_id = "A" * 43
    key = hkdf_sha256(session_id.encode(), b"fastsession sealed sessions", b"fastsession session data v1")
    assert key.hex() == "7f267139845157d4d6395c29be9a79e612e1c5d599686683548dc5827a63f597"
    assert sealed._key(session_id) == key


def test_a_record_sealed_with_the_known_key_opens_and_nothing_else_does():
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    session_id, name = "A" * 43, stored_name("A" * 43)
    key = bytes.fromhex("7f267139845157d4d6395c29be9a79e612e1c5d599686683548dc5827a63f597")
    nonce = bytes(range(12))
    token = base64.urlsafe_b64encode(nonce + AESGCM(key).encrypt(nonce, b'{"n":1}', name.encode())).decode()
    assert sealed.unseal(session_id, name, token) == b'{"n":1}'
    assert sealed.unseal(session_id, "B" * 43, token) is None  # bound to its stored name
    assert sealed.unseal("B" * 43, name, token) is None


def test_the_user_index_names_a_user_by_a_domain_separated_sha256():
    import hashlib

    from fastsession.users import user_hash

    digest = hashlib.sha256(b"fastsession user\x00ann@example.com").digest()
    assert user_hash("ann@example.com") == base64.urlsafe_b64encode(digest)[:43].decode()
    assert user_hash("ann@example.com") == "N2-Bt7N6v9nXIGCVRCPROxXUzEHwss6IZJKkKcAgwCk"
    assert stored_name("A" * 43) == "DwBzhbb51LfusnSGBa_hqYSgo7-j8BTQnip4TOnlzRo"


@pytest.mark.parametrize("mode", ["commit", "read_only"])
def test_with_encrypt_an_unchanged_unlocked_request_takes_no_lock_and_rewrites_nothing(face, mode):
    sid = face.stored({"n": 1}, encrypt=True)
    before = stored_bytes(face, sid)
    holder = face.store(sid, encrypt=True)
    holder.get_session(False)  # holds the lock: a request that wanted it would wait, then time out
    options = {"locking": "commit"} if mode == "commit" else {}
    reader = face.store(sid, encrypt=True, timeout=0, **options)
    if mode == "read_only":
        reader.read_only()
    assert dict(reader.get_session(False)) == {"n": 1}
    reader.close()  # no LockTimeout: nothing locked, nothing written
    holder.rollback()
    assert stored_bytes(face, sid) == before


def test_commit_mode_never_merges_a_plain_record_planted_between_the_read_and_the_commit(face):
    """The merge reads what is stored now: with encrypt=True a plain record there is no session to merge
    with (it would come out sealed, the attacker's keys in it)."""
    sid = face.stored({"a": 1}, encrypt=True)
    request = face.store(sid, encrypt=True, locking="commit")
    request.get_session(False)["b"] = 2
    put_bytes(face, sid, orjson.dumps({"_auth_user_id": "1"}))  # a storage writer, meanwhile
    request.close()
    assert request.response_cookie() is None  # nothing stored, no new id
    assert open_with(face, sid) is None  # the planted record opens as nothing, and was not sealed
    assert b"_auth_user_id" in stored_bytes(face, sid)  # left as it was, plain


def test_a_commit_mode_write_of_a_bound_sealed_session_keeps_its_binding(face):
    sid = face.stored({"a": 1}, encrypt=True)
    login = face.store(sid, encrypt=True)
    login.get_session(False)
    login.bind_user("ann")
    login.close()
    later = face.store(sid, encrypt=True, locking="commit")
    later.get_session(False)["b"] = 2
    later.close()
    admin = face.store(encrypt=True)
    assert admin.revoke_all("ann") == 1  # still bound after the commit-mode write: logged out everywhere
    admin.close()
    assert open_with(face, sid) is None
