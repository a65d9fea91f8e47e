"""The fused kernel open_session: lock and read in one call, or hand the case back to the full path."""

import errno
import os
import stat

import orjson
import pytest

from fastsession._holder import holder_record
from fastsession.files import FileBackend

SID = "A" * 43


@pytest.fixture
def directory(tmp_path):
    return os.fsencode(tmp_path) + b"/"


def open_fds():
    return len(os.listdir("/proc/self/fd"))


def store_at(kernels, directory, body, sid=SID):
    """Commit ``body`` as the session of ``sid`` (its shard made); the session file's path."""
    path = kernels.ids.session_path(directory, sid)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd = kernels.lock.try_lock(path + b".lock", holder_record())
    kernels.io.commit_locked(fd, path + b".lock", path, body, False)
    return path


def test_a_stored_session_is_locked_and_read_as_read_session_reads_it(kernels, directory):
    path = store_at(kernels, directory, b'{"cart":[1,2],"n":"\xc3\xa9"}')
    handle, loaded = kernels.io.open_session(directory, SID, holder_record(), True)
    assert handle == (path, path + b".lock", handle[2], SID) and handle[2] >= 0
    with open(path + b".lock", "rb") as f:
        assert f.read() == holder_record()  # the holder line: waiters can judge this holder
    data, body, mtime = kernels.io.read_session(path, True)
    assert loaded == (data, body, mtime) == ({"cart": [1, 2], "n": "é"}, body, os.stat(path).st_mtime)
    assert kernels.io.open_session(directory, SID, holder_record(), False) is None  # held: nobody else gets it
    kernels.io.commit_locked(handle[2], handle[1], path, b'{"cart":[]}', False)
    assert kernels.io.read_session(path, False)[0] == {"cart": []}
    assert not os.path.exists(path + b".lock")


def test_mtime_is_zero_unless_asked(kernels, directory):
    store_at(kernels, directory, b"{}")
    handle, loaded = kernels.io.open_session(directory, SID, holder_record(), False)
    assert loaded == ({}, b"{}", 0.0)
    kernels.lock.unlock(handle[2], handle[1])


@pytest.mark.parametrize("size", [16384, 220_000])
def test_a_session_of_one_read_buffer_or_more_is_read_whole(kernels, directory, size):
    filler = size - len(holder_record()) - len(b'{"k":""}')
    body = orjson.dumps({"k": "y" * filler})
    path = store_at(kernels, directory, body)
    assert os.path.getsize(path) == size
    handle, loaded = kernels.io.open_session(directory, SID, holder_record(), False)
    assert loaded[1] == body
    kernels.lock.unlock(handle[2], handle[1])


def plant(path, what):
    if what == "absent":
        return
    if what == "corrupt":
        with open(path, "wb") as f:
            f.write(holder_record() + b'{"half":')
    elif what == "no holder line":
        with open(path, "wb") as f:
            f.write(b"garbage\n{}")
    elif what == "a JSON list":
        with open(path, "wb") as f:
            f.write(holder_record() + b"[1,2]")
    elif what == "symlink":
        os.symlink(b"/etc/passwd", path)
    elif what == "fifo":
        os.mkfifo(path, 0o600)
    elif what == "directory":
        os.mkdir(path)


@pytest.mark.parametrize("what", ["absent", "corrupt", "no holder line", "a JSON list", "symlink", "fifo", "directory"])
def test_what_is_not_a_readable_session_is_locked_and_left_to_the_callers_load(kernels, directory, what):
    path = kernels.ids.session_path(directory, SID)
    os.makedirs(os.path.dirname(path))
    plant(path, what)
    before = os.lstat(path) if what != "absent" else None
    fds = open_fds()
    handle, loaded = kernels.io.open_session(directory, SID, holder_record(), True)  # a FIFO: no hang
    assert loaded is None and handle == (path, path + b".lock", handle[2], SID)
    assert os.path.exists(path + b".lock")  # locked: the load that follows runs under the lock
    assert open_fds() == fds + 1  # the lock's descriptor, and nothing else left open
    if before is not None:  # kept as it was: the caller's load decides (logs it, reads it as absent)
        assert os.lstat(path).st_ino == before.st_ino and os.lstat(path).st_mode == before.st_mode
    kernels.lock.unlock(handle[2], handle[1])


def test_a_lock_someone_holds_is_left_alone(kernels, directory):
    path = store_at(kernels, directory, b'{"a":1}')
    other = b"FSv1 elsewhere/1 boot 99 1\n"
    theirs = kernels.lock.try_lock(path + b".lock", other)
    fds = open_fds()
    assert kernels.io.open_session(directory, SID, holder_record(), False) is None
    assert open_fds() == fds
    with open(path + b".lock", "rb") as f:
        assert f.read() == other  # their holder line, untouched
    kernels.lock.unlock(theirs, path + b".lock")


def test_no_shard_folder_yet_locks_nothing_and_makes_nothing(kernels, directory):
    assert kernels.io.open_session(directory, SID, holder_record(), False) is None
    assert os.listdir(directory) == []  # the full path makes (and checks) the shard folder


@pytest.mark.parametrize("key", [None, 42, b"A" * 43, "A" * 42, "A" * 44, "A" * 42 + "/", "../" + "A" * 40])
def test_what_is_not_an_id_locks_nothing_and_reaches_no_path(kernels, directory, key):
    assert kernels.io.open_session(directory, key, holder_record(), False) is None
    assert os.listdir(directory) == []


def test_an_interrupt_during_the_read_releases_the_lock_just_taken(kernels, directory, monkeypatch):
    # A large session is read by the pure twin's loop in both twins: an interrupt there must not leave the lock held.
    from fastsession import _io_py

    path = store_at(kernels, directory, orjson.dumps({"k": "z" * 30000}))

    def interrupted(path, want_mtime):
        raise KeyboardInterrupt

    monkeypatch.setattr(_io_py, "read_session", interrupted)
    fds = open_fds()
    with pytest.raises(KeyboardInterrupt):
        kernels.io.open_session(directory, SID, holder_record(), False)
    assert not os.path.exists(path + b".lock")
    assert open_fds() == fds
    assert os.path.getsize(path) > 30000  # the session itself untouched


def test_the_twins_give_the_same_outcome_for_every_case(tmp_path):
    from conftest import compiled_twin

    from fastsession import _io_py

    c = compiled_twin("io")
    outcomes = {}
    for twin in (c, _io_py):
        directory = os.fsencode(tmp_path / twin.__name__) + b"/"
        os.mkdir(directory)
        seen = []
        for what in ["absent", "corrupt", "no holder line", "a JSON list", "symlink", "fifo", "directory", "ok"]:
            sid = (what.replace(" ", "_") + "X" * 43)[:43]
            path = _io_py.session_path(directory, sid)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            if what == "ok":
                with open(path, "wb") as f:
                    f.write(holder_record() + b'{"ok":true}')
            else:
                plant(path, what)
            handle, loaded = twin.open_session(directory, sid, holder_record(), False)
            seen.append((what, handle[1:3] != (b"", -1), loaded))
            os.close(handle[2])
            os.unlink(handle[1])
        outcomes[twin] = seen
    assert outcomes[c] == outcomes[_io_py]


# -- the backend's open_load over the fused kernel: load's rules still apply ------------------


def test_open_load_of_an_expired_session_removes_it_under_the_lock(tmp_path):
    backend = FileBackend(str(tmp_path / "s"), max_age=60)
    handle = backend.open(SID)
    backend.save(handle, b'{"old":1}')
    path = backend.path(SID)
    os.utime(path, (0, 0))  # idle since 1970
    handle, loaded = backend.open_load(SID)
    assert loaded is None and not os.path.exists(path)
    assert os.path.exists(handle[1])  # still held: this request may store a new session there
    backend.release(handle)


def test_open_load_of_a_corrupt_session_logs_it_and_keeps_the_file(tmp_path, caplog):
    backend = FileBackend(str(tmp_path / "s"))
    handle = backend.open(SID)
    backend.release(handle)
    path = backend.path(SID)
    with open(path, "wb") as f:
        f.write(b"\x00\x01 not a session")
    handle, loaded = backend.open_load(SID)
    assert loaded is None
    assert "corrupt session file" in caplog.text
    with open(path, "rb") as f:
        assert f.read() == b"\x00\x01 not a session"  # kept for whoever investigates; never overwritten unread
    backend.release(handle)


def test_open_load_without_waiting_says_none_while_another_holds_it(tmp_path):
    backend = FileBackend(str(tmp_path / "s"))
    held = backend.open(SID)
    assert backend.open_load(SID, wait=False) is None
    backend.save(held, b'{"a":1}')
    handle, loaded = backend.open_load(SID, wait=False)
    assert loaded[0] == {"a": 1}
    backend.release(handle)


def test_open_load_makes_the_first_shard_folder_private(tmp_path):
    backend = FileBackend(str(tmp_path / "s"))
    handle, loaded = backend.open_load(SID)
    assert loaded is None
    shard = os.path.dirname(handle[0])
    assert stat.S_IMODE(os.stat(shard).st_mode) == 0o700
    backend.release(handle)


def test_a_lock_that_cannot_be_made_raises_naming_the_lockfile(kernels, directory):
    path = kernels.ids.session_path(directory, SID)
    with open(os.path.dirname(path), "wb"):  # a file where the shard folder should be
        pass
    with pytest.raises(NotADirectoryError) as info:
        kernels.io.open_session(directory, SID, holder_record(), False)
    assert info.value.filename == path + b".lock"


def test_a_read_that_fails_raises_naming_the_session_and_releases_the_lock(kernels, directory):
    # The lockfile takes the last descriptor, so the session file cannot be opened (EMFILE): a real error after
    # the lock, in either twin. Kept: the session as it was, no lockfile, no descriptor.
    import resource

    path = store_at(kernels, directory, b'{"a":1}')
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    fillers = []
    resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))
    try:
        try:
            while True:
                fillers.append(os.open("/dev/null", os.O_RDONLY))
        except OSError:
            pass
        os.close(fillers.pop())  # one descriptor left: the lock's
        with pytest.raises(OSError) as info:
            kernels.io.open_session(directory, SID, holder_record(), False)
        assert info.value.errno == errno.EMFILE and info.value.filename == path
        assert not os.path.exists(path + b".lock")
        os.close(fillers.pop())  # this one must be free again: nothing kept open
        fillers.append(os.open("/dev/null", os.O_RDONLY))
        fillers.append(os.open("/dev/null", os.O_RDONLY))
    finally:
        for fd in fillers:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert kernels.io.read_session(path, False)[0] == {"a": 1}
