"""The files backend: where a session lives on disk, and its lock.

Layout: a session is kept under its stored name ``<name>``, a hash of its id
(fastsession.names): ``<directory>/<first two characters of name>/<name>``
holds it, ``<name>.lock`` beside it is its lock (and its next version,
until renamed over it), ``<name>.<hex>.tmp`` is an unlocked commit in
flight. Every method takes a key that ``check_key`` accepted: nothing else
reaches a path, and no id ever becomes one.

Sessions 0.1 kept under the id itself (``<id[:2]>/<id>``, "legacy") are
still read, but only a file whose holder line is 0.1's (no PID namespace:
``_holder.written_by_0_1``). A stored name has an id's shape, and its 0.1
path is the record of the session it names; that record was written by
this version, so a stored name presented as a cookie finds no 0.1 file and
opens nothing. The first request that locks a 0.1 session writes it under
its stored name (with this version's holder line, so it never again looks
like 0.1's) and removes the 0.1 file; a delete removes a 0.1 file too.
"""

from __future__ import annotations

import logging
import os
import secrets
import stat
import tempfile
import time
from collections.abc import Iterator
from typing import Any, Callable, Optional

from . import _kernels, events
from ._holder import holder_record, written_by_0_1
from ._io_py import MAX_SESSION_BYTES, READ_FLAGS
from ._lock_py import lock_lost, lock_waits, owns
from .checks import check_seconds
from .errors import CorruptSession, SessionError, SessionRevoked
from .names import stored_name
from .record import bound_to

logger = logging.getLogger(__name__)

# (session file, its lockfile, the lock's descriptor, its key); (path, b"", -1, key) when not
# locking. The key is None for a handle made from a stored name (gc, clearsessions).
Handle = tuple[bytes, bytes, int, Optional[str]]


def check_folder(path: bytes, what: str = "session directory", private: bool = False) -> None:
    """SessionError naming ``path`` unless it is a real folder that no other user can write.

    Refused: a symlink, a folder writable by group or others, one owned by
    neither this user nor root. ``private`` (a default location in a shared
    temp folder) also refuses root's and any group or other access at all:
    a folder someone else made there is never reused.
    """
    status = os.lstat(path)
    name = os.fsdecode(path)
    uid = os.geteuid()
    if stat.S_ISLNK(status.st_mode):
        raise SessionError(f"{what} {name!r} is a symbolic link: refused (point at the real folder)")
    if not stat.S_ISDIR(status.st_mode):
        raise SessionError(f"{what} {name!r} is not a folder")
    owners = (uid,) if private else (uid, 0)
    if status.st_uid not in owners:
        raise SessionError(
            f"{what} {name!r} belongs to uid {status.st_uid}, not to this user (uid {uid})"
            + ("" if private else " or root")
            + ": refused, another user could read or plant sessions there"
        )
    open_to = stat.S_IMODE(status.st_mode) & (0o077 if private else 0o022)
    if open_to:
        raise SessionError(
            f"{what} {name!r} has mode {stat.S_IMODE(status.st_mode):o}, open to other users: "
            f"refused (chmod {stat.S_IMODE(status.st_mode) & ~open_to:o} it, or choose another folder)"
        )


_private_made: set[str] = set()


def private_folder(name: str, what: str) -> str:
    """``<temp dir>/<name>-<uid>``: this user's own folder (0700), made if absent, never one someone else made.

    ``what`` names it in the error that refuses a folder found there (check_folder).
    """
    path = os.path.join(tempfile.gettempdir(), f"{name}-{os.geteuid()}")
    if path not in _private_made:
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            pass
        check_folder(os.fsencode(path), what, private=True)
        _private_made.add(path)
    return path


# Folders checked by this process: a relative directory makes a backend per
# request (store.shared_backend), which must not rescan its shards each time.
_checked: set[Any] = set()


def prepare_directory(directory: str) -> bytes:
    """Create ``directory`` (0700) if absent and check it and its shards (check_tree).

    Its absolute path as bytes, ending in a slash. The check runs once per
    process and folder.
    """
    os.makedirs(directory, mode=0o700, exist_ok=True)
    path = os.fsencode(os.path.abspath(directory))
    if path not in _checked:
        check_tree(path)
    return os.path.join(path, b"")


def check_tree(path: bytes) -> None:
    """check_folder of a session directory and of every shard folder in it; remembered as checked."""
    check_folder(path)
    if stat.S_IMODE(os.stat(path).st_mode) & 0o005:
        logger.warning(
            "other users may list the session directory %s (who has a session, and "
            "when it was last used): chmod 700 it",
            os.fsdecode(path),
        )
    with os.scandir(path) as entries:
        for entry in entries:
            if entry.is_symlink() or entry.is_dir(follow_symlinks=False):
                check_folder(os.fsencode(entry.path), "session shard folder")
    if len(_checked) >= 1024:
        _checked.clear()
    _checked.add(path)


class FileBackend:
    """Sessions as files, one per id, locked with O_EXCL lockfiles.

    Made once per configuration and shared by the stores of every request
    (store.shared_backend), so its set-up (makedirs) is not paid per request.
    """

    kernels = _kernels.ACTIVE  # a subclass may choose a twin explicitly
    # The largest session a commit may write: what a read accepts (MAX_SESSION_BYTES), less room for the
    # holder line.
    max_record = MAX_SESSION_BYTES - 512
    legacy = True  # read (and move) 0.1's files; False once every 0.1 session has been moved or expired

    def __init__(
        self,
        directory: str,
        concurrent: bool = True,
        delay: float = 1.0,
        timeout: float | None = None,
        stale_after: float = 30.0,
        max_age: float | None = None,
        fsync: bool = False,
        check_key: Callable[[object], bool] | None = None,
    ) -> None:
        check_seconds("delay", delay)
        check_seconds("timeout", timeout, optional=True, zero=True, forever=True)
        check_seconds("stale_after", stale_after)
        check_seconds("max_age", max_age, optional=True)
        self.directory = prepare_directory(directory)
        self.concurrent = bool(concurrent)
        self.delay = float(delay)
        self.timeout = timeout
        self.stale_after = float(stale_after)
        self.max_age = max_age
        self.fsync = bool(fsync)
        self.check_key = check_key or self.kernels.is_valid_id
        self._id_keys = check_key is None  # keys are session ids: session_path checks and hashes in one call
        self._fused = self._id_keys and self.concurrent  # open_load may use the kernel's open_session
        # The common request may take its own path (the kernels' open_request, close_request), which makes
        # this backend's calls through the kernels: locked by id, and none of those calls overridden.
        self.request_path = (
            "files"
            if self._fused
            and all(
                getattr(type(self), name) is getattr(FileBackend, name) for name in ("open_load", "save", "release")
            )
            else None
        )
        self.async_face: Any = None  # its aio.AsyncFiles, made on first use (one per backend: its offload state)

    def path(self, key: str) -> bytes:
        """The session file of ``key`` (under its stored name); ValueError for a key that is not an id."""
        if self._id_keys:
            path = self.kernels.session_path(self.directory, key)
        else:
            path = self.stored_path(stored_name(key).encode("ascii")) if self.check_key(key) else None
        if path is None:
            raise ValueError("invalid session id")
        return path

    def stored_path(self, name: bytes) -> bytes:
        """The session file of a stored name (as ``names()`` lists them)."""
        return self.directory + name[:2] + b"/" + name

    def legacy_path(self, key: str) -> bytes:
        """Where 0.1 kept the session of ``key``: under the id itself."""
        name = key.encode("ascii")
        return self.directory + name[:2] + b"/" + name

    def _make_shard(self, path: bytes) -> None:
        # The session directory itself may have been removed since it was prepared.
        os.makedirs(self.directory, mode=0o700, exist_ok=True)
        shard = os.path.dirname(path)
        try:
            os.mkdir(shard, 0o700)
        except FileExistsError:  # made meanwhile: by another request, or planted
            check_folder(shard, "session shard folder")

    def open(self, key: str, timeout: Any = ...) -> Handle:
        """Lock the session of ``key`` (when concurrent), waiting for its holder.

        ``timeout`` overrides the backend's for this call (0: do not wait).
        """
        if timeout is ...:
            timeout = self.timeout
        handle = self._lock_path(self.path(key), key, self.kernels.acquire, self.delay, timeout, self.stale_after)
        return handle  # type: ignore[return-value]  # acquire waits: never None

    def open_load(
        self, key: str, wait: bool = True
    ) -> tuple[Handle, tuple[dict[str, Any], bytes, float] | None] | None:
        """``open`` then ``load``: (handle, what load gives); the lock is released if the read fails.

        ``wait=False``: None when another holds the lock (then ``waits(key)``).
        """
        if self._fused:  # every request makes this call: the kernel locks and reads in one
            opened = self.kernels.open_session(self.directory, key, holder_record(), self.max_age is not None)
            if opened is not None:
                loaded = opened[1]
                if loaded is not None and (self.max_age is None or time.time() - loaded[2] <= self.max_age):
                    return opened
                return opened[0], self.load_or_release(opened[0])  # absent, corrupt, expired: load's rules
        handle = self.open(key) if wait else self.try_open(key)
        if handle is None:
            return None
        return handle, self.load_or_release(handle)

    def load_or_release(self, handle: Handle) -> tuple[dict[str, Any], bytes, float] | None:
        """``load``, releasing the lock when it raises."""
        try:
            return self.load(handle)
        except BaseException:
            self.release(handle)
            raise

    def try_open(self, key: str) -> Handle | None:
        """``open`` without waiting: None when another holds the lock (then ``waits(key)``)."""
        return self._lock_path(self.path(key), key, self.kernels.try_lock)

    def waits(self, key: str) -> Iterator[float]:
        """The pauses between tries of a taken lock (lock_waits): breaks a stale one, raises LockTimeout."""
        return lock_waits(self.path(key) + b".lock", self.delay, self.timeout, self.stale_after)

    def open_stored(self, name: bytes | str, timeout: Any = ...) -> Handle:
        """``open`` by stored name (what ``names()`` and the user index list): no key, no legacy file."""
        text = name if isinstance(name, str) else os.fsdecode(name)
        if not self.kernels.is_valid_id(text):  # a stored name has the shape of an id
            raise ValueError("invalid stored name")
        handle = self._lock_path(
            self.stored_path(text.encode("ascii")),
            None,
            self.kernels.acquire,
            self.delay,
            self.timeout if timeout is ... else timeout,
            self.stale_after,
        )
        assert handle is not None
        return handle

    def _lock_path(self, path: bytes, key: str | None, take: Callable[..., int], *waiting: Any) -> Handle | None:
        if not self.concurrent:
            return path, b"", -1, key
        lock_path = path + b".lock"
        try:
            fd = take(lock_path, holder_record(), *waiting)
        except FileNotFoundError:  # first session in this shard
            self._make_shard(path)
            fd = take(lock_path, holder_record(), *waiting)
        return (path, lock_path, fd, key) if fd >= 0 else None

    def peek(self, key: str) -> tuple[Handle, tuple[dict[str, Any], bytes, float] | None]:
        """Read without a lock: (a handle holding nothing, what ``load`` gives)."""
        handle = self.unlocked(key)
        return handle, self.load(handle)

    def load(self, handle: Handle, want_mtime: bool = False) -> tuple[dict[str, Any], bytes, float] | None:
        """(data, stored bytes, mtime) of the session; None when absent, corrupt or expired.

        mtime is 0.0 unless ``want_mtime`` or max_age needs it. An expired
        session is removed, but only by a holder of its lock: without one, a
        commit made meanwhile could be what gets removed.
        """
        max_age = self.max_age
        want = want_mtime or max_age is not None
        try:
            loaded = self.kernels.read_session(handle[0], want)
            if loaded is None and handle[3] is not None:  # perhaps where 0.1 kept it
                loaded = self._load_legacy(handle, want)
        except CorruptSession as exc:
            if not self._is_tombstone(handle[0]):
                logger.warning("ignoring corrupt session file: %s", exc)
                return None
            # Left in place (gc removes it once old): a commit still to come for this name, a login
            # revoked before its commit-mode write landed say, must meet it and fail.
            logger.info("%s is a folder, the mark of a revoked session: read as absent", os.fsdecode(handle[0]))
            return None
        if max_age is not None and loaded is not None and time.time() - loaded[2] > max_age:
            if handle[2] >= 0 or not self.concurrent:
                self._unlink(handle[0])  # expired: nobody may have it again
                if events.handlers:
                    events.emit("expired", os.fsdecode(handle[0][-43:]), bound_to(loaded[0]), None, "idle")
            return None
        return loaded

    def _load_legacy(self, handle: Handle, want_mtime: bool) -> tuple[dict[str, Any], bytes, float] | None:
        """The 0.1 session of the handle's key: moved to its stored name by a holder of its lock, else only read."""
        legacy = self.legacy_file(handle[3])  # type: ignore[arg-type]
        if legacy is None:
            return None
        loaded = self.kernels.read_session(legacy, True)
        if loaded is not None and (handle[2] >= 0 or not self.concurrent):
            self._adopt(handle, legacy, loaded)
        return loaded if loaded is None or want_mtime else (loaded[0], loaded[1], 0.0)

    def legacy_file(self, key: str) -> bytes | None:
        """The 0.1 file of ``key`` when there is one that 0.1 wrote (its holder line says so); else None."""
        if not self.legacy:
            return None
        path = self.legacy_path(key)
        try:
            fd = os.open(path, READ_FLAGS)
        except OSError:  # none, or a symlink (never followed)
            return None
        try:
            head = os.read(fd, 512) if stat.S_ISREG(os.fstat(fd).st_mode) else b""
        except OSError:
            head = b""
        finally:
            os.close(fd)
        return path if written_by_0_1(head) else None

    def _adopt(self, handle: Handle, legacy: bytes, loaded: tuple[dict[str, Any], bytes, float]) -> None:
        """Write a 0.1 session under its stored name (same bytes, same mtime, this version's holder line), then
        remove the 0.1 file."""
        self.write(handle, loaded[1])
        os.utime(handle[0], (loaded[2], loaded[2]))
        self._unlink(legacy)

    def unlocked(self, key: str) -> Handle:
        """A handle on the session of ``key`` that holds no lock (for reads: commits are atomic)."""
        return self.path(key), b"", -1, key

    def unlocked_stored(self, name: bytes) -> Handle:
        """``unlocked`` by stored name (what ``names()`` lists)."""
        return self.stored_path(name), b"", -1, None

    def exists(self, handle: Handle) -> bool:
        """Whether the session of ``handle`` is stored (a holder of its lock moves a 0.1 file on the way)."""
        try:
            if stat.S_ISREG(os.lstat(handle[0]).st_mode):
                return True
        except FileNotFoundError:
            pass
        if handle[3] is None:
            return False
        if handle[2] >= 0 or not self.concurrent:
            return self._load_legacy(handle, False) is not None
        return self.legacy_file(handle[3]) is not None

    def save(self, handle: Handle, body: bytes) -> None:
        """Commit ``body`` as the session's new version and release the lock.

        SessionRevoked when the session was revoked meanwhile (``revoke_held``): nothing written, lock released.
        """
        path, lock_path, fd, _ = handle
        if fd >= 0:
            try:
                self.kernels.commit_locked(fd, lock_path, path, body, self.fsync)
            except IsADirectoryError:  # (the kernel removed the lockfile: released)
                raise self._revoked(path) from None
        else:
            self.write(handle, body)

    def write(self, handle: Handle, body: bytes) -> None:
        """Replace the session's data through a temp file and rename, keeping any lock held."""
        self._check_held(handle)
        path = handle[0]
        temp = b"%s.%s.tmp" % (path, secrets.token_hex(8).encode())
        try:
            try:
                self.kernels.write_unlocked(temp, path, holder_record(), body, self.fsync)
            except FileNotFoundError:
                self._make_shard(path)
                self.kernels.write_unlocked(temp, path, holder_record(), body, self.fsync)
        except IsADirectoryError:
            raise self._revoked(path) from None

    # -- revoking a session someone holds -------------------------------------------------------
    # The mark is an empty folder in place of the session file: rename() of the
    # holder's next version over a folder fails (EISDIR), so no commit made after
    # the mark can bring the session back, and the hot path pays nothing for it.

    def revoke_held(self, name: str, user: str, pending: bool = False) -> bool:
        """Revoke the session of stored ``name``, whose lock another holds, if it is bound to ``user``.

        Its record goes and the mark takes its place at once; the holder's
        commit then fails with SessionRevoked, and so does any later commit
        for that name (gc removes the mark once it is old). False when the session is not bound to ``user`` (or not there,
        unless ``pending``: the user's index lists a commit about to land).
        """
        if not self.kernels.is_valid_id(name):
            raise ValueError("invalid stored name")
        path = self.stored_path(name.encode("ascii"))
        for _ in range(8):  # the holder may commit between the read and the mark: judge again
            if self._is_tombstone(path):
                return True
            try:
                loaded = self.kernels.read_session(path, False)
            except CorruptSession:
                loaded = None
            if loaded is None and not pending:
                return False
            if loaded is not None and bound_to(loaded[0]) != user:
                return False
            self._unlink(path)
            try:
                try:
                    os.mkdir(path, 0o700)
                except FileNotFoundError:  # a login never stored yet: its shard may not exist
                    self._make_shard(path)
                    os.mkdir(path, 0o700)
                return True
            except FileExistsError:  # the holder committed in between: judge the new version
                continue
        raise SessionError(f"{os.fsdecode(path)}: could not be revoked: it kept changing")

    @staticmethod
    def _is_tombstone(path: bytes) -> bool:
        try:
            return stat.S_ISDIR(os.lstat(path).st_mode)
        except OSError:
            return False

    def _revoked(self, path: bytes) -> SessionRevoked:
        logger.info("session %s… was revoked while this request held it: not written", os.fsdecode(path[-43:-35]))
        return SessionRevoked(f"{os.fsdecode(path)}: revoked while this request held it; nothing was written")

    def release(self, handle: Handle, mtime: float = 0.0) -> None:
        """Release the lock without writing; refresh the mtime when a quarter of max_age passed."""
        path, lock_path, fd, _ = handle
        if mtime and self.max_age is not None and time.time() - mtime > self.max_age / 4:
            try:
                os.utime(path)
            except FileNotFoundError:
                pass
        if fd >= 0:
            self.kernels.unlock(fd, lock_path)

    def remove(self, handle: Handle) -> None:
        """Remove the session's data, keeping any lock held."""
        self._check_held(handle)
        self._unlink_all(handle)

    def delete(self, handle: Handle) -> None:
        """Remove the session and release its lock."""
        _path, lock_path, fd, _ = handle
        try:
            self._check_held(handle)
        except BaseException:
            self.kernels.unlock(fd, lock_path)  # leaves the new holder's lock alone
            raise
        self._unlink_all(handle)
        if fd >= 0:
            self.kernels.unlock(fd, lock_path)

    @staticmethod
    def _check_held(handle: Handle) -> None:
        """SessionError when the handle's lock was broken (this holder outlived stale_after)."""
        _, lock_path, fd, _ = handle
        if fd >= 0 and not owns(fd, lock_path):
            raise lock_lost(lock_path)

    def shards(self) -> list[bytes]:
        """The shard folders (at most 4096, two characters each: not the user index), sorted."""
        with os.scandir(self.directory) as entries:
            return sorted(os.fsencode(e.path) for e in entries if len(e.name) == 2 and e.is_dir(follow_symlinks=False))

    # -- the per-user index (fastsession.users): <directory>/.users/<user hash>/<stored name> ----------

    def _user_folder(self, user: str) -> bytes:
        if not self.kernels.is_valid_id(user):  # a user hash has the shape of an id
            raise ValueError("invalid user hash")
        return self.directory + b".users/" + user.encode("ascii")

    def index_add(self, user: str, name: str, info: bytes) -> None:
        """Write the index entry of session ``name`` (a stored name) for ``user`` (a user hash), atomically."""
        folder = self._user_folder(user)
        for made in (self.directory + b".users", folder):  # each 0700: makedirs would make the first 0777-umask
            try:
                os.mkdir(made, 0o700)
            except FileExistsError:
                pass
        entry = folder + b"/" + name.encode("ascii")
        temp = b"%s.%s.tmp" % (entry, secrets.token_hex(8).encode())
        self.kernels.write_unlocked(temp, entry, holder_record(), info, self.fsync)

    def index_remove(self, user: str, name: str) -> None:
        self._unlink(self._user_folder(user) + b"/" + name.encode("ascii"))

    def index_list(self, user: str) -> list[tuple[str, dict[str, Any], float | None, bool]]:
        """(stored name, entry, last seen, whether the session is there) of the user's index entries.

        An entry whose session is gone is removed once older than GRACE;
        a younger one is listed as not there (its commit may be about to land).
        """
        from .users import GRACE

        folder = self._user_folder(user)
        found: list[tuple[str, dict[str, Any], float | None, bool]] = []
        try:
            entries = list(os.scandir(folder))
        except FileNotFoundError:
            return []
        for entry in entries:
            name = os.fsdecode(entry.name)
            if not self.kernels.is_valid_id(name):
                continue  # a temp file in flight
            try:
                loaded = self.kernels.read_session(os.fsencode(entry.path), True)
            except (CorruptSession, FileNotFoundError):
                continue
            if loaded is None:
                continue
            try:
                found_at = os.lstat(self.stored_path(name.encode("ascii")))
                if not stat.S_ISREG(found_at.st_mode):  # the mark of a revoked session: no session
                    raise FileNotFoundError
                last_seen: float | None = found_at.st_mtime
            except FileNotFoundError:
                if time.time() - loaded[2] > GRACE:  # not a commit about to land: the session is gone
                    self._unlink(os.fsencode(entry.path))
                else:
                    found.append((name, loaded[0], None, False))
                continue
            if self.max_age is not None and time.time() - last_seen > self.max_age:  # type: ignore[operator]
                continue  # idle past max_age: no longer a session, whatever gc has not removed yet
            found.append((name, loaded[0], last_seen, True))
        return found

    def names(self) -> Iterator[bytes]:
        """Every stored session's stored name, streamed shard by shard (constant memory)."""
        try:
            shards = self.shards()
        except FileNotFoundError:
            return
        for shard in shards:
            with os.scandir(shard) as entries:
                for entry in entries:
                    name = os.fsdecode(entry.name)
                    if self.check_key(name):  # not a .lock or .tmp
                        yield name.encode("ascii")

    def _unlink_all(self, handle: Handle) -> None:
        """Remove the session's file, and its 0.1 file if one is left."""
        self._unlink(handle[0])
        legacy = self.legacy_file(handle[3]) if handle[3] is not None else None
        if legacy is not None:
            self._unlink(legacy)

    @staticmethod
    def _unlink(path: bytes) -> None:
        """Remove the file at ``path`` (or the revocation mark there, an empty folder), if any."""
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        except IsADirectoryError:
            try:
                os.rmdir(path)
            except (FileNotFoundError, OSError):
                pass
