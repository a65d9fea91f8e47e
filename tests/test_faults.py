"""Every system call of a request can fail: what the caller sees, and what survives.

Injected faults go through the pure twins' one seam (fastsession._syscalls);
real ones (a full filesystem, a read-only one, no descriptors left) hit
whichever twin the package chose.
"""

import errno
import os
import resource
import subprocess

import pytest
from conftest import Transaction, session_files, store_session
from helpers import fork_child, wait_for_byte, wait_ok

from fastsession import SessionStore, _syscalls
from fastsession.bench.contenders import twin_store
from fastsession.names import stored_name

PureStore = twin_store("py")  # the injected faults go through the pure twins' seam
CALLS = ["open", "read", "write", "fsync", "close", "rename", "unlink", "fstat", "stat"]
ERRNOS = [errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EIO, errno.EMFILE]


class Recorder:
    """Wraps the seam's calls: records their order, and can fail the n-th one."""

    def __init__(self, monkeypatch, fail_at=None, err=errno.EIO):
        self.trace, self.fail_at, self.err = [], fail_at, err
        for name in CALLS:
            monkeypatch.setattr(_syscalls, name, self.wrap(name, getattr(_syscalls, name)))

    def wrap(self, name, real):
        def call(*args, **kwargs):
            self.trace.append(name)
            if len(self.trace) - 1 == self.fail_at:
                if name == "close":
                    real(*args)  # Linux closes the descriptor even when close reports an error
                target = args[0] if name in ("open", "rename", "unlink") else None
                raise OSError(self.err, os.strerror(self.err), target)
            return real(*args, **kwargs)

        return call


def modify(session_dir, session_id, fsync=False):
    store = PureStore(Transaction({"SID": session_id}), session_dir, timeout=2, fsync=fsync)
    try:
        store.get_session(0)["n"] = 2
    except BaseException:
        store.rollback()
        raise
    store.close()


def stored_n(session_dir, session_id):
    with PureStore(Transaction({"SID": session_id}), session_dir, timeout=2) as store:
        return store.get_session(0)["n"]


def request_trace(session_dir, monkeypatch, fsync):
    session_id, _ = store_session(session_dir, {"n": 1})
    recorder = Recorder(monkeypatch)
    modify(session_dir, session_id, fsync)
    monkeypatch.undo()
    return recorder.trace


@pytest.mark.parametrize("fsync", [False, True])
@pytest.mark.parametrize("err", ERRNOS, ids=errno.errorcode.get)
def test_any_failing_call_of_a_request_loses_nothing_and_leaves_nothing(session_dir, monkeypatch, err, fsync):
    trace = request_trace(session_dir, monkeypatch, fsync)
    assert trace.count("rename") == 1  # the one commit
    for position, call in enumerate(trace):
        session_id, _ = store_session(session_dir, {"n": 1})
        Recorder(monkeypatch, fail_at=position, err=err)
        with pytest.raises(OSError) as info:
            modify(session_dir, session_id, fsync)
        monkeypatch.undo()
        where = f"{call} (call {position} of {trace})"
        assert info.value.errno == err, where
        assert info.value.filename, f"no path named when {where} failed"
        committed = position > trace.index("rename")  # only the directory fsync comes after
        assert stored_n(session_dir, session_id) == (2 if committed else 1), where
        leftovers = [f for f in session_files(session_dir) if f.endswith((".lock", ".tmp"))]
        assert leftovers == [], where


def test_fsync_true_syncs_the_file_before_the_rename_and_the_directory_after(session_dir, monkeypatch):
    trace = request_trace(session_dir, monkeypatch, fsync=True)
    rename = trace.index("rename")
    assert "fsync" in trace[:rename] and "fsync" in trace[rename:]
    assert "fsync" not in request_trace(session_dir, monkeypatch, fsync=False)


# -- real faults ------------------------------------------------------------------


def mount_small_tmpfs(where):
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(where)], capture_output=True, text=True
    )
    return done.returncode == 0


@pytest.fixture
def small_fs(tmp_path):
    """A 256 KiB tmpfs of our own when this process may mount (root); else None."""
    where = tmp_path / "small"
    where.mkdir()
    if not mount_small_tmpfs(where):
        yield None
        return
    yield str(where)
    subprocess.run(["umount", "-l", str(where)], check=True)


def fill(directory):
    """Fill the filesystem to the last byte."""
    with open(os.path.join(directory, "filler"), "wb", buffering=0) as f:  # nothing left to flush
        try:
            while True:
                f.write(b"\0" * 4096)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC


def in_child_with_file_size_limit(limit, action):
    """``action()`` in a child whose files may not grow past ``limit`` bytes: the errno it got."""
    import signal

    def body(report):
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of death
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
        try:
            action()
        except OSError as exc:
            os.write(report, bytes([exc.errno]) if exc.filename else b"\0")
        else:
            os.write(report, b"\0")

    pid, report = fork_child(body)
    got = wait_for_byte(report)[0]
    wait_ok(pid)
    return got


def test_full_disk_on_commit_keeps_the_session_and_releases_the_lock(small_fs, session_dir):
    def commit_too_big(where):
        store = SessionStore(Transaction({"SID": session_id}), where)
        store.get_session(0)["big"] = "x" * 100_000  # the lock fits, the commit does not
        store.close()

    if small_fs is not None:  # a real full filesystem
        session_dir = os.path.join(small_fs, "sessions")
        session_id, _ = store_session(session_dir, {"n": 1})
        fill(small_fs)
        filler = os.path.join(small_fs, "filler")
        os.truncate(filler, os.path.getsize(filler) - 8192)  # two free pages
        with pytest.raises(OSError) as info:
            commit_too_big(session_dir)
        assert info.value.errno == errno.ENOSPC and info.value.filename
    else:  # no mount allowed here: a file size limit makes the write fail (EFBIG) instead
        session_id, _ = store_session(session_dir, {"n": 1})
        assert in_child_with_file_size_limit(8192, lambda: commit_too_big(session_dir)) == errno.EFBIG
    assert not [f for f in session_files(session_dir) if f.endswith((".lock", ".tmp"))]
    with SessionStore(Transaction({"SID": session_id}), session_dir, timeout=1) as store:
        assert store.get_session(0) == {"n": 1}


def test_full_disk_when_locking_raises_at_once(small_fs, session_dir):
    def lock():
        SessionStore(Transaction({"SID": session_id}), session_dir, timeout=None).get_session(0)

    if small_fs is not None:
        session_dir = os.path.join(small_fs, "sessions")
        session_id, _ = store_session(session_dir, {"n": 1})
        fill(small_fs)
        with pytest.raises(OSError) as info:
            lock()
        assert info.value.errno == errno.ENOSPC and info.value.filename
    else:  # even the holder line may not be written
        session_id, _ = store_session(session_dir, {"n": 1})
        assert in_child_with_file_size_limit(0, lock) == errno.EFBIG
    assert not [f for f in session_files(session_dir) if f.endswith(".lock")]


def test_read_only_filesystem_raises_at_once_and_keeps_the_session(small_fs):
    if small_fs is None:
        pytest.skip("EROFS needs a filesystem of our own to remount read-only, and this process may not mount")
    session_dir = os.path.join(small_fs, "sessions")
    session_id, _ = store_session(session_dir, {"n": 1})
    subprocess.run(["mount", "-o", "remount,ro", small_fs], check=True)
    with pytest.raises(OSError) as info:
        SessionStore(Transaction({"SID": session_id}), session_dir, timeout=None).get_session(0)
    named = os.fsdecode(info.value.filename)
    assert info.value.errno == errno.EROFS and stored_name(session_id) in named  # the stored name, never the id
    assert session_id not in named and session_id not in str(info.value)
    subprocess.run(["mount", "-o", "remount,rw", small_fs], check=True)
    with SessionStore(Transaction({"SID": session_id}), session_dir, timeout=1) as store:
        assert store.get_session(0) == {"n": 1}


def test_no_descriptors_left_raises_emfile_not_a_wait(session_dir):
    session_id, _ = store_session(session_dir, {"n": 1})

    def body(report):
        resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))
        held = []
        try:
            while True:
                held.append(os.open("/dev/null", os.O_RDONLY))
        except OSError:
            pass
        try:
            SessionStore(Transaction({"SID": session_id}), session_dir, timeout=None).get_session(0)
        except OSError as exc:
            os.write(report, b"Y" if exc.errno == errno.EMFILE and exc.filename else b"N")
        else:
            os.write(report, b"N")

    pid, report = fork_child(body)
    assert wait_for_byte(report) == b"Y"
    wait_ok(pid)
    assert not [f for f in session_files(session_dir) if f.endswith(".lock")]
    with SessionStore(Transaction({"SID": session_id}), session_dir, timeout=1) as store:
        assert store.get_session(0) == {"n": 1}


def test_fsync_order_of_the_live_twin_seen_by_strace(session_dir, tmp_path):
    """The compiled twin's system calls, as the kernel sees them: fsync(file), rename, fsync(dir)."""
    import shutil
    import sys

    if shutil.which("strace") is None:
        pytest.fail("strace is needed for this test: apt-get install -y strace")
    session_id, _ = store_session(session_dir, {"n": 1})
    script = tmp_path / "commit.py"
    script.write_text(
        "import sys\n"
        "from fastsession import SessionStore\n"
        "class T:\n"
        "    value = sys.argv[2]\n"
        "    def get_cookie(self, name): return self\n"
        "    def set_cookie_value(self, name, value): pass\n"
        "    def delete_cookie(self, name): pass\n"
        "with SessionStore(T(), sys.argv[1], fsync=True) as store:\n"
        "    store.get_session(0)['n'] = 2\n"
    )
    log = tmp_path / "trace"
    subprocess.run(
        [
            "strace",
            "-f",
            "-o",
            str(log),
            "-e",
            "trace=fsync,fdatasync,rename,renameat,renameat2",
            sys.executable,
            str(script),
            session_dir,
            session_id,
        ],
        check=True,
        cwd="/",
    )
    calls = [line.split("(")[0].split()[-1] for line in log.read_text().splitlines() if "(" in line]
    calls = [c for c in calls if c in ("fsync", "fdatasync", "rename", "renameat", "renameat2")]
    renames = [i for i, c in enumerate(calls) if c.startswith("rename")]
    assert len(renames) == 1, calls
    assert "fsync" in calls[: renames[0]] and "fsync" in calls[renames[0] + 1 :], calls
