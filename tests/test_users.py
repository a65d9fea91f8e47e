"""The per-user index: bind_user, sessions_of, revoke, revoke_all, on the four stores, with real processes.

"Log out my other devices": every session of a user is listed and can be revoked; an entry whose
session is gone is never listed; revoking while the user is mid-request leaves nothing that
request could bring back.
"""

import multiprocessing
import os
import time

import pytest
import redis
from conftest import session_files
from faces import Face, pg, pg_at_rest, pg_in_index

import fastsession
from fastsession import users
from fastsession.names import stored_name
from fastsession.users import UserSession, user_hash


def log_in(face, user="ann", **metadata):
    """A new session (a device) bound to ``user``: its id."""
    store = face.store()
    store.get_session(True)["user"] = user
    store.bind_user(user, **metadata)
    store.close()
    return store.trans.cookies["SID"]


def listed(face, user="ann"):
    store = face.store()
    try:
        return store.sessions_of(user)
    finally:
        store.close()


def at_rest(face):
    if face.kind.startswith("files"):
        found = session_files(face.directory)
        found += [name for root, dirs, _ in os.walk(face.directory) for name in dirs]
        return found
    if face.kind.startswith("postgres"):
        return pg_at_rest(face)
    client = redis.Redis.from_url(face.redis_url)
    try:
        return [k.decode() for k in client.scan_iter(match=face.prefix + "*")]
    finally:
        client.close()


def test_a_bound_session_is_listed_with_its_times_and_metadata_and_no_id_is_at_rest(face):
    before = time.time()
    sid = log_in(face, "ann@example.com", user_agent="Firefox")
    (entry,) = listed(face, "ann@example.com")
    assert isinstance(entry, UserSession)
    assert entry.session == stored_name(sid) and entry.user == user_hash("ann@example.com")
    assert before <= entry.created <= time.time() and entry.metadata == {"user_agent": "Firefox"}
    if face.kind.startswith("files"):
        assert before - 1 <= entry.last_seen <= time.time() + 1
    assert listed(face, "bob") == []
    for name in at_rest(face):
        assert sid not in name and "ann@example.com" not in name


def test_revoke_all_keeps_the_current_device_and_deletes_the_others(face):
    devices = [log_in(face) for _ in range(3)]
    other_user = log_in(face, "bob")
    assert {e.session for e in listed(face)} == {stored_name(d) for d in devices}
    current = face.store(devices[0])
    current.get_session(False)
    assert current.revoke_all("ann", keep=devices[0]) == 2
    current.close()
    assert [face.read(d) is None for d in devices] == [False, True, True]
    assert [e.session for e in listed(face)] == [stored_name(devices[0])]
    assert face.read(other_user) == {"user": "bob"}


def test_revoke_one_entry_and_unbind(face):
    first, second = log_in(face), log_in(face)
    entry = next(e for e in listed(face) if e.session == stored_name(first))
    store = face.store()
    assert store.revoke(entry) is True
    store.close()
    assert face.read(first) is None and face.read(second) == {"user": "ann"}
    store = face.store(second)
    store.get_session(False)
    store.bind_user(None)  # unbound: no longer listed, still a session
    store.close()
    assert listed(face) == [] and face.read(second) == {"user": "ann"}


def test_regenerate_id_moves_the_entry_to_the_new_id(face):
    sid = log_in(face)
    store = face.store(sid)
    store.get_session(False)
    new_id = store.regenerate_id()
    store.close()
    assert [e.session for e in listed(face)] == [stored_name(new_id)]


def test_an_entry_whose_session_is_gone_is_never_listed_and_is_cleaned_up(face, monkeypatch):
    sid = log_in(face)
    store = face.store(sid)
    store.expire_session()  # a logout that does not unbind: the entry stays behind
    store.close()
    assert listed(face) == []  # gone, so not listed
    monkeypatch.setattr(users, "GRACE", 0.0)
    listed(face)  # old enough now: this read removes the entry
    monkeypatch.undo()
    assert not [name for name in at_rest(face) if stored_name(sid) in name]


def test_an_entry_written_by_a_commit_that_never_landed_is_not_listed_and_revoke_all_clears_it(face):
    sid = fastsession.new_session_id()
    entry = b'{"created": 1, "added": %f, "metadata": {}}' % time.time()
    sync_backend(face).index_add(user_hash("ann"), stored_name(sid), entry)  # left by a request killed then
    assert listed(face) == []
    # A listing leaves a young entry alone: its commit may be about to land (a login mid-save), and
    # "log out everywhere" must still find it then.
    assert in_index(face, stored_name(sid))
    store = face.store()
    assert store.revoke_all("ann") == 0  # nothing live was revoked
    store.close()
    assert not [name for name in at_rest(face) if stored_name(sid) in name]  # but the entry is gone


def in_index(face, name):
    """Whether the user index of "ann" holds an entry for stored ``name``."""
    if face.kind.startswith("files"):
        return os.path.exists(os.path.join(face.directory, ".users", user_hash("ann"), name))
    if face.kind.startswith("postgres"):
        return pg_in_index(face, user_hash("ann"), name)
    client = redis.Redis.from_url(face.redis_url)
    try:
        return client.hexists(face.prefix + "user:{" + user_hash("ann") + "}", name)
    finally:
        client.close()


def sync_backend(face):
    """A sync backend on the face's storage."""
    if face.kind.startswith("files"):
        from fastsession.files import FileBackend

        return FileBackend(face.directory)
    if face.kind.startswith("postgres"):
        from fastsession.postgres import PostgresBackend, pool_for

        return PostgresBackend(pool_for(face.postgres_dsn), True, 1.0, None, 30.0, None, face.table)
    from fastsession.redis import RedisBackend

    return RedisBackend(redis.Redis.from_url(face.redis_url), True, 1.0, None, 30.0, None, face.prefix)


# -- revoke_all while the user's requests run, in other processes -------------------------------


def _requests(spec, sid, locking, stop_at, report):
    """One device of the user: requests until its session is gone (or time is up); how many it made."""
    f = Face.twin(spec)
    made = 0
    while time.time() < stop_at:
        store = f.store(sid, locking=locking, timeout=10)
        session = store.get_session(False)
        if session is None:
            store.close()
            break
        session["n"] = session.get("n", 0) + 1
        time.sleep(0.002)
        store.close()
        made += 1
    f.finish()
    report.put(made)


@pytest.mark.parametrize("locking", ["request", "commit"])
def test_revoke_all_under_concurrent_requests_leaves_no_session_of_the_user(sync_face, locking):
    face = sync_face
    devices = [log_in(face) for _ in range(4)]
    context = multiprocessing.get_context("fork")
    report = context.Queue()
    stop_at = time.time() + 5
    workers = [
        context.Process(
            target=_requests,
            args=(face.spec(), sid, locking, stop_at, report),
        )
        for sid in devices
    ]
    for worker in workers:
        worker.start()
    time.sleep(0.3)  # every device mid-requests
    store = face.store()
    assert store.revoke_all("ann") == 4
    store.close()
    made = [report.get(timeout=30) for _ in workers]
    for worker in workers:
        worker.join(10)
    assert all(m > 0 for m in made)  # each device was served before the revocation
    assert [face.read(d) for d in devices] == [None] * 4  # none brought back by a request in flight
    assert listed(face) == []


# -- Flask-Login binds on login_user, unbinds on logout_user -----------------------------------------


def test_flask_login_binds_sessions_and_revoke_all_logs_out_the_other_devices(tmp_path):
    from flask import Flask, session
    from flask_login import LoginManager, UserMixin, login_user, logout_user

    from fastsession.contrib.flask import FastSessionInterface, current_store

    class User(UserMixin):
        def __init__(self, user_id):
            self.id = user_id

    app = Flask(__name__)
    app.secret_key = "flask-login-" + "s" * 20
    app.session_interface = FastSessionInterface(str(tmp_path))
    manager = LoginManager(app)
    manager.user_loader(User)

    @app.route("/login")
    def login():
        login_user(User("42"))
        return "in"

    @app.route("/whoami")
    def whoami():
        from flask_login import current_user

        return current_user.get_id() or "anonymous"

    @app.route("/others-out")
    def others_out():
        return str(current_store().revoke_all("42", keep=session.session_id))

    @app.route("/logout")
    def logout():
        logout_user()
        return "out"

    devices = [app.test_client() for _ in range(3)]
    for number, device in enumerate(devices):
        assert device.get("/login", headers={"User-Agent": f"device {number}"}).text == "in"
    store = fastsession.SessionStore(None, str(tmp_path))
    assert sorted(e.metadata["user_agent"] for e in store.sessions_of("42")) == ["device 0", "device 1", "device 2"]
    assert devices[0].get("/others-out").text == "2"
    assert [d.get("/whoami").text for d in devices] == ["42", "anonymous", "anonymous"]
    assert len(store.sessions_of("42")) == 1
    devices[0].get("/logout")
    assert store.sessions_of("42") == []


# -- fastsession users DIR|--redis URL USER [--revoke] [--json] ---------------------------------------


@pytest.mark.parametrize("kind", ["files", "redis"])
def test_the_users_command_lists_and_revokes(kind, tmp_path, redis_url):
    import json
    import subprocess

    f = Face(kind, str(tmp_path / "sessions"), redis_url)
    try:
        ids = [log_in(f, "ann", user_agent="cli test") for _ in range(2)]
        where = [f.directory] if kind == "files" else ["--redis", redis_url, "--prefix", f.prefix]

        def users(*extra):
            done = subprocess.run(
                ["fastsession", "users", *where, "ann", *extra], capture_output=True, text=True, cwd="/"
            )
            assert done.returncode == 0, done.stderr
            return done.stdout

        rows = json.loads(users("--json"))
        assert sorted(row["session"] for row in rows) == sorted(stored_name(i) for i in ids)
        assert all(row["metadata"] == {"user_agent": "cli test"} and row["created"] for row in rows)
        table = users()
        assert "2 sessions" in table and not any(i in table for i in ids)
        assert json.loads(users("--revoke", "--json")) == {"revoked": 2}
        assert [f.read(i) for i in ids] == [None, None]
        assert "0 sessions" in users()
    finally:
        f.finish()


def test_gc_removes_index_entries_of_gone_sessions_and_keeps_the_others(tmp_path):
    from fastsession.files import FileBackend
    from fastsession.gc import collect

    directory = str(tmp_path / "sessions")
    f = Face("files", directory, None)
    try:
        live, gone = log_in(f), log_in(f)
        store = f.store(gone)
        store.expire_session()  # a logout that leaves its entry behind
        store.close()
        backend = FileBackend(directory)
        entry = backend.directory + b".users/" + user_hash("ann").encode() + b"/" + stored_name(gone).encode()
        old = time.time() - 3600
        os.utime(entry, (old, old))  # older than the grace a landing commit gets
        counts = collect(directory, 3600)
        assert counts.index_entries_removed == 1 and not os.path.exists(entry)
        assert [e.session for e in listed(f)] == [stored_name(live)]
    finally:
        f.finish()


# -- "log out everywhere" always works (issue 24, items 3-7) ------------------------------------------------


def test_revoke_all_revokes_a_session_busy_in_a_request_at_once_and_its_commit_does_not_bring_it_back(face):
    """A thief who keeps one request open (a stream, a long poll) is logged out all the same."""
    stolen = log_in(face)
    others = [log_in(face) for _ in range(3)]
    thief = face.store(stolen)
    thief.get_session(False)["loot"] = 1  # holds the lock (request locking) for as long as it likes
    admin = face.store()
    assert admin.revoke_all("ann") == 4  # returns at once, the busy one included
    admin.close()
    assert listed(face) == []
    for sid in others:
        assert face.read(sid) is None
    thief.close()  # its commit writes nothing, and the thief's cookie goes
    assert face.read(stolen) is None
    assert thief.trans.events[-1] == ("delete", "SID")
    again = face.store(stolen)
    assert again.get_session(False) is None  # nothing left at the stolen session's name
    again.close()


@pytest.mark.parametrize("locking", ["request", "commit"])
def test_revoke_all_from_inside_one_of_the_users_own_requests_counts_right_and_never_waits(face, locking):
    mine, *others = [log_in(face) for _ in range(3)]
    store = face.store(mine, timeout=None, locking=locking)
    store.get_session(False)
    assert store.revoke_all("ann") == 3
    store.close()
    assert [face.read(sid) for sid in [mine, *others]] == [None, None, None]
    assert store.trans.events[-1] == ("delete", "SID")


def test_revoke_all_in_one_store_while_another_store_of_the_same_request_holds_its_session(face):
    """Flask and WSGI apps may reach a second store object in the request that holds the session: no self-wait."""
    mine = log_in(face)
    holding = face.store(mine)
    holding.get_session(False)
    other = face.store(mine, timeout=None)
    assert other.revoke_all("ann") == 1
    other.close()
    holding.close()
    assert face.read(mine) is None


def test_revoke_checks_the_session_is_bound_to_the_entrys_user(face):
    bob = log_in(face, "bob")
    log_in(face, "mallory")
    forged = UserSession(stored_name(bob), user_hash("mallory"), None, None, {})
    store = face.store()
    assert store.revoke(forged) is False  # mallory cannot log bob out by naming his session
    store.close()
    assert face.read(bob) == {"user": "bob"}
    holder = face.store(bob)
    holder.get_session(False)  # busy: the no-wait path checks the binding too
    store = face.store()
    assert store.revoke(forged) is False
    store.close()
    holder.close()
    assert face.read(bob) == {"user": "bob"}


@pytest.mark.parametrize("locking", ["commit", "request"])
def test_regenerate_id_after_revoke_all_does_not_store_the_revoked_data(face, locking):
    sid = log_in(face)
    store = face.store(sid, locking=locking)
    store.get_session(False)["cart"] = 1  # read before the revoke (request locking: held all along)
    admin = face.store()
    assert admin.revoke_all("ann") == 1
    admin.close()
    new_id = store.regenerate_id()  # after it: the login of a stolen session would do this
    store.close()
    assert face.read(new_id) is None and face.read(sid) is None
    assert listed(face) == []
    assert store.trans.events[-1] == ("delete", "SID") and store.response_cookie() == ""  # ends logged out


def test_a_garbage_field_in_a_redis_user_index_is_skipped_and_revoke_all_still_works(redis_url, tmp_path):
    face = Face("redis", str(tmp_path), redis_url)
    try:
        sid = log_in(face)
        client = redis.Redis.from_url(redis_url)
        key = face.prefix + "user:{" + user_hash("ann") + "}"
        client.hset(key, "not-a-name", b"\xff not json")
        client.hset(key, stored_name(log_in(face, "zed")), b"[1, 2]")
        client.close()
        assert [e.session for e in listed(face)] == [stored_name(sid)]
        store = face.store()
        assert store.revoke_all("ann") == 1
        store.close()
        assert face.read(sid) is None
    finally:
        face.finish()


def test_the_user_index_folders_are_private_whatever_the_umask(tmp_path):
    """Who has sessions (the user hashes) is listed by nobody but the store's own user."""
    import stat as stat_module

    face = Face("files", str(tmp_path / "sessions"), None)
    old = os.umask(0o002)
    try:
        log_in(face)
    finally:
        os.umask(old)
        face.finish()
    index = os.path.join(face.directory, ".users")
    assert stat_module.S_IMODE(os.stat(index).st_mode) == 0o700
    (user,) = os.listdir(index)
    assert stat_module.S_IMODE(os.stat(os.path.join(index, user)).st_mode) == 0o700


def test_revoke_all_during_a_login_whose_commit_has_not_landed_logs_that_login_out_too(face):
    """The index lists the login (its entry is written before its commit); it holds its lock: revoked all the
    same, and its commit then stores nothing."""
    from fastsession.users import entry

    login = face.store()
    login.get_session(True)["user"] = "ann"
    login.bind_user("ann")
    new_id = login.trans.cookies["SID"]
    sync_backend(face).index_add(user_hash("ann"), stored_name(new_id), entry({"c": time.time()}))  # as its commit
    admin = face.store()
    admin.revoke_all("ann")
    admin.close()
    login.close()  # ends logged out: nothing stored, the cookie deleted
    assert login.trans.events[-1] == ("delete", "SID")
    assert listed(face) == [] and not in_index(face, stored_name(new_id))  # no entry left naming it
    assert face.read(new_id) is None


def test_with_encrypt_revoke_all_logs_out_every_device_free_or_busy(face):
    """A sealed record names its user outside the seal too (only that): revoke can check it without the id."""
    ids = []
    for _ in range(2):
        store = face.store(encrypt=True)
        store.get_session(True)["user"] = "ann"
        store.bind_user("ann")
        store.close()
        ids.append(store.trans.cookies["SID"])
    busy = face.store(ids[1], encrypt=True)
    busy.get_session(False)["more"] = 1
    admin = face.store(encrypt=True)
    assert admin.revoke_all("ann") == 2
    admin.close()
    busy.close()
    assert [face.read(i) for i in ids] == [None, None]


# -- mutants a mutation run of store.py left (tools/mutation-survivors.md) --------------------------


def test_sessions_of_lists_the_newest_login_first(face):
    devices = []
    for _ in range(3):
        devices.append(log_in(face))
        time.sleep(0.01)  # creation times a step apart
    assert [entry.session for entry in listed(face)] == [stored_name(sid) for sid in reversed(devices)]


def planted_entry(face, sid, **info):
    """Overwrite the index entry of ``sid`` (a session of "ann") with ``info`` (a writer of the index)."""
    body = {"created": time.time(), "added": time.time(), "metadata": {}}
    body.update(info)
    import orjson

    sync_backend(face).index_add(user_hash("ann"), stored_name(sid), orjson.dumps(body))


@pytest.mark.parametrize("created", ["yesterday", True, None, [1]])
def test_an_entry_with_a_creation_time_that_is_no_number_lists_none(face, created):
    sid = log_in(face)
    planted_entry(face, sid, created=created)
    (entry,) = listed(face)
    assert entry.session == stored_name(sid) and entry.created is None


def test_an_entry_whose_metadata_is_not_a_dict_lists_empty_metadata(face):
    sid = log_in(face, user_agent="phone")
    planted_entry(face, sid, metadata=["not", "a", "dict"])
    (entry,) = listed(face)
    assert entry.metadata == {}


def test_an_entry_past_max_lifetime_is_not_listed_and_the_others_all_are(face):
    live = [log_in(face) for _ in range(5)]
    old = log_in(face)
    planted_entry(face, old, created=time.time() - 1000)  # its login was long ago
    store = face.store(max_lifetime=100)
    try:
        names = sorted(entry.session for entry in store.sessions_of("ann"))
    finally:
        store.close()
    assert names == sorted(stored_name(sid) for sid in live)


def test_binding_again_keeps_the_sessions_creation_time(face):
    sid = log_in(face, user_agent="phone")
    (first,) = listed(face)
    time.sleep(0.05)
    store = face.store(sid)
    store.get_session(False)
    store.bind_user("ann", user_agent="phone, updated")  # the same user: new metadata, the same login
    store.close()
    (again,) = listed(face)
    assert again.created == first.created and again.metadata == {"user_agent": "phone, updated"}


def test_binding_to_another_user_moves_the_entry(face):
    sid = log_in(face, user="ann", user_agent="phone")
    store = face.store(sid)
    store.get_session(False)
    store.bind_user("bob", user_agent="laptop")
    store.close()
    assert listed(face, "ann") == []
    (entry,) = listed(face, "bob")
    assert entry.session == stored_name(sid) and entry.metadata == {"user_agent": "laptop"}


def test_revoke_all_keeps_the_sessions_named_by_entry_or_by_a_list_of_ids(face):
    devices = [log_in(face) for _ in range(4)]
    kept = next(e for e in listed(face) if e.session == stored_name(devices[0]))
    store = face.store()
    assert store.revoke_all("ann", keep=kept) == 3  # a UserSession, as sessions_of lists it
    store.close()
    assert [e.session for e in listed(face)] == [stored_name(devices[0])]
    more = [log_in(face) for _ in range(2)]
    store = face.store()
    assert store.revoke_all("ann", keep=[devices[0], more[1]]) == 1  # ids, in a list
    store.close()
    assert sorted(e.session for e in listed(face)) == sorted(stored_name(s) for s in (devices[0], more[1]))


def test_revoking_this_requests_own_session_checks_whose_it_is(face):
    sid = log_in(face, user="bob")
    store = face.store(sid)
    store.get_session(False)
    forged = UserSession(stored_name(sid), user_hash("ann"), None, None, {})  # bob's session, named as ann's
    assert store.revoke(forged) is False
    store.close()
    assert face.read(sid) == {"user": "bob"}
    unbound = face.store(face.stored({"n": 1}))
    session = unbound.get_session(False)
    assert unbound.revoke(UserSession(stored_name(session.session_id), user_hash("ann"), None, None, {})) is False
    unbound.close()


def test_revoke_never_waits_for_the_request_that_holds_the_session(sync_face):
    # Revoked at once, while the holder still works: a revoke that waited for the lock would return only
    # after the holder's commit (an order of events, not a time bound).
    import threading

    face = sync_face
    sid = log_in(face)
    holder = face.store(sid)
    holder.get_session(False)["n"] = 1
    order = []
    revoked = threading.Event()

    def commit_later():
        revoked.wait(5)  # a revoke that returns at once lets the holder go on; one that waits, only after 5 s
        holder.close()
        order.append("committed")

    thread = threading.Thread(target=commit_later)
    thread.start()
    store = face.store()
    (entry,) = store.sessions_of("ann")
    assert store.revoke(entry) is True
    order.append("revoked")
    revoked.set()
    store.close()
    thread.join()
    assert order == ["revoked", "committed"] and face.read(sid) is None


def test_revoke_of_an_entry_whose_session_is_gone_says_no_even_while_its_name_is_locked(face):
    sid = log_in(face)
    (entry,) = listed(face)
    logout = face.store(sid)
    logout.get_session(False)
    logout.expire_session()
    logout.close()  # deleted; the listing taken before still names it
    squatter = face.store()
    squatter._get_session(sid, True)  # a request holds that name's lock now, with nothing stored
    admin = face.store()
    assert admin.revoke(entry) is False  # nothing of the user's was there to revoke
    admin.close()
    squatter.rollback()


def test_revoke_all_counts_only_the_sessions_still_bound_to_the_user(face):
    ann, moved = log_in(face), log_in(face)
    store = face.store(moved)
    store.get_session(False)
    store.bind_user("bob")  # bound to bob now
    store.close()
    planted_entry(face, moved)  # ...while ann's index still names it (a writer of the index, or a race)
    admin = face.store()
    assert admin.revoke_all("ann") == 1  # ann's own session; the other is bob's
    admin.close()
    assert face.read(ann) is None and face.read(moved) == {"user": "ann"}


def break_index(face, user):
    """Make the user's index unwritable: a file where its folder goes, a string where its Redis hash goes."""
    if face.kind.startswith("files"):
        os.makedirs(os.path.join(face.directory, ".users"), mode=0o700, exist_ok=True)
        with open(os.path.join(face.directory, ".users", user_hash(user)), "wb") as f:
            f.write(b"not a folder")
        return
    if face.kind.startswith("postgres"):  # the index's table refuses every write
        pg(face, "REVOKE ALL ON {t}_user FROM PUBLIC")
        pg(
            face,
            "CREATE OR REPLACE FUNCTION {t}_refuse() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN RAISE EXCEPTION 'index unwritable'; END $$",
        )
        pg(
            face,
            "CREATE TRIGGER refuse BEFORE INSERT OR UPDATE OR DELETE ON {t}_user "
            "FOR EACH ROW EXECUTE FUNCTION {t}_refuse()",
        )
        return
    client = redis.Redis.from_url(face.redis_url)
    try:
        client.set(face.prefix + "user:{" + user_hash(user) + "}", "not a hash")
    finally:
        client.close()


def test_an_index_entry_that_cannot_be_written_fails_the_login_and_leaves_no_lock(face):
    sid = face.stored({"n": 1})
    break_index(face, "ann")
    store = face.store(sid)
    store.get_session(False)["user"] = "ann"
    store.bind_user("ann")
    with pytest.raises(Exception):  # noqa: B017 (files: NotADirectoryError; Redis: WRONGTYPE, a SessionError)
        store.close()
    again = face.store(sid, timeout=0)  # taken at once: the failed commit released the lock
    assert again.get_session(False) == {"n": 1}  # and stored nothing
    again.close()


@pytest.mark.parametrize("kind", ["redis", "redis-async"])
def test_an_old_entry_that_cannot_be_removed_is_logged_and_the_commit_stands(kind, tmp_path, redis_url, caplog):
    import logging

    face = Face(kind, str(tmp_path / "sessions"), redis_url)
    try:
        sid = log_in(face)
        break_index(face, "ann")  # ann's entry cannot be removed when the session moves to bob
        store = face.store(sid)
        store.get_session(False)
        store.bind_user("bob")
        with caplog.at_level(logging.WARNING, logger="fastsession"):
            store.close()
        assert [e.session for e in listed(face, "bob")] == [stored_name(sid)]
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert any(w.startswith("could not remove a user index entry: ") and "WRONGTYPE" in w for w in warnings)
    finally:
        face.finish()


def test_unbinding_a_record_whose_metadata_is_only_its_binding_unlists_it(face):
    import orjson
    from test_sealed import put_bytes

    from fastsession.record import META

    sid = log_in(face)
    put_bytes(face, sid, orjson.dumps({"user": "ann", META: {"u": user_hash("ann")}}))  # no creation time
    store = face.store(sid)
    store.get_session(False)
    store.bind_user(None)  # nothing of META is left: the record is plain again
    store.close()
    assert listed(face) == [] and face.read(sid) == {"user": "ann"}


def test_a_new_session_whose_commit_fails_gets_no_cookie(face):
    break_index(face, "ann")
    store = face.store()
    store.get_session(True)["user"] = "ann"
    store.bind_user("ann")
    with pytest.raises(Exception):  # noqa: B017 (as above: the index cannot be written)
        store.close()
    assert store.response_cookie() is None  # nothing was stored under the new id
