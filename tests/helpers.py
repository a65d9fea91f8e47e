"""Real processes for the tests: forked children that hold locks, die, or hammer a session; and a server that
answers on a local socket."""

import contextlib
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time


def fork_child(body):
    """Run ``body(write_fd)`` in a forked child; returns (pid, read_fd). The child never returns."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_end)
        code = 0
        try:
            body(write_end)
        except BaseException:
            import traceback

            traceback.print_exc()
            code = 1
        finally:
            os._exit(code)
    os.close(write_end)
    return pid, read_end


def wait_for_byte(fd, timeout=10.0):
    """Block until the child writes one byte (its signal that it is ready)."""
    import select

    ready, _, _ = select.select([fd], [], [], timeout)
    assert ready, "child did not signal in time"
    return os.read(fd, 1)


def kill_and_reap(pid):
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)


def kill_leave_zombie(pid):
    """SIGKILL without reaping: the holder stays a zombie in /proc until waited for."""
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        with open(f"/proc/{pid}/stat", "rb") as f:
            if f.read().rsplit(b")", 1)[1].split()[0] == b"Z":
                return
        time.sleep(0.001)
    raise AssertionError("child did not become a zombie")


def wait_ok(pid):
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, f"child {pid} failed"


def run_as_nobody():
    """In a child running as root: drop to uid/gid 65534, so permissions apply."""
    if os.getuid() == 0:
        os.setgroups([])
        os.setgid(65534)
        os.setuid(65534)


def hold_until_killed(hold):
    """A child that runs ``hold()`` (take a lock...), then waits to be killed; its pid once it holds.

    What ``hold()`` returns is kept until then: a store it returns keeps its lock (a store dropped
    unclosed lets its lock go).
    """

    def body(ready):
        kept = hold()  # noqa: F841  (kept alive until the child is killed)
        os.write(ready, b"L")
        time.sleep(600)

    pid, ready = fork_child(body)
    wait_for_byte(ready)
    return pid


def run_in_processes(work, count=4):
    """Run ``work()`` in ``count`` forked processes at once; each must succeed."""
    children = [fork_child(lambda _: work()) for _ in range(count)]
    for pid, _ in children:
        wait_ok(pid)


def raises_at_once_as_nobody(action, exception, check=lambda exc: True):
    """True when ``action()``, run in a child as uid 65534, raises ``exception`` within a second."""

    def body(report):
        run_as_nobody()
        started = time.monotonic()
        try:
            action()
        except exception as exc:
            ok = check(exc) and time.monotonic() - started < 1
            os.write(report, b"Y" if ok else b"N")
        else:
            os.write(report, b"N")

    pid, report = fork_child(body)
    answer = wait_for_byte(report)
    wait_ok(pid)
    return answer == b"Y"


HOLD_IN_NEW_PID_NAMESPACE = """
import os, sys, time
import fastsession._lock_{twin} as lock
from fastsession._holder import holder_record
fd = lock.acquire({path!r}, holder_record(), 1.0, None, 30.0)
sys.stdout.write("L"); sys.stdout.flush()
time.sleep(600)
"""


def hold_in_new_pid_namespace(twin, lock_path):
    """A live holder in a PID namespace of its own, as in a second container of one pod."""
    child = subprocess.Popen(
        [
            "unshare",
            "--pid",
            "--fork",
            "--kill-child",
            "--mount-proc",
            sys.executable,
            "-c",
            HOLD_IN_NEW_PID_NAMESPACE.format(twin=twin, path=lock_path),
        ],
        stdout=subprocess.PIPE,
        cwd="/",  # the installed package, not the source folder
    )
    assert child.stdout.read(1) == b"L", "unshare --pid failed (the tests run as root)"
    return child


def session_path(session_dir, session_id):
    """Where the files backend keeps a session: its shard, then its stored name (a hash of the id)."""
    return os.path.join(session_dir, stored_relpath(session_id))


def stored_relpath(session_id):
    """A session's file below the session directory: ``<name[:2]>/<name>``, name the id's stored name."""
    from fastsession.names import stored_name

    name = stored_name(session_id)
    return os.path.join(name[:2], name)


def age(path, seconds):
    """Set the mtime of ``path`` (not of a symlink's target) ``seconds`` into the past."""
    then = time.time() - seconds
    os.utime(path, (then, then), follow_symlinks=False)


def plant_lock(session_dir, session_id, content, seconds=0.0):
    """A lockfile holding ``content`` beside a session, ``seconds`` old; its path."""
    lock = session_path(session_dir, session_id) + ".lock"
    with open(lock, "wb") as f:
        f.write(content)
    if seconds:
        age(lock, seconds)
    return lock


# The holder line 0.1 wrote: FSv1, then a host field without the PID namespace that 0.2 added.
HOLDER_LINE_0_1 = b"FSv1 web-1 0f0e5b7c-1b2a-4c3d-9e8f-0a1b2c3d4e5f 4242 987654\n"


def session_0_1(session_dir, data, session_id=None):
    """A session as 0.1 left it on disk: its holder line and JSON at ``<id[:2]>/<id>``; (id, path)."""
    import orjson

    from fastsession import new_session_id

    session_id = session_id or new_session_id()
    path = os.path.join(session_dir, session_id[:2], session_id)
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    os.chmod(session_dir, 0o700)
    with open(path, "wb") as f:
        f.write(HOLDER_LINE_0_1 + orjson.dumps(data))
    return session_id, path


def redis_session(client, data, label="test"):
    """A session holding ``data`` stored on Redis under a fresh prefix: (prefix, id)."""
    import uuid

    from conftest import Transaction

    from fastsession.redis import RedisSessionStore

    prefix = f"{label}-{uuid.uuid4().hex[:8]}:"
    trans = Transaction()
    with RedisSessionStore(trans, client, prefix=prefix) as store:
        store.get_session(True).update(data)
    return prefix, trans.cookies["SID"]


@contextlib.contextmanager
def answering(*chunks, reset=False):
    """A server on a local socket that reads one command and answers ``chunks``, a pause between each, then
    closes the connection (``reset``: with an RST, not a FIN)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)

    def answer():
        peer, _ = listener.accept()
        peer.recv(100)
        for chunk in chunks:
            peer.sendall(chunk)
            time.sleep(0.1)
        if reset:
            peer.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        peer.close()

    server = threading.Thread(target=answer)
    server.start()
    try:
        yield listener.getsockname()
    finally:
        server.join()
        listener.close()
