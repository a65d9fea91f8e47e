"""Reading the sessions of the store being replaced, so that switching to fastsession logs nobody out.

A reader has ``load(cookie_value)`` -> ``(old id, data)`` or None, and
``delete(old id)``. The adapters call ``load`` when a cookie names no
fastsession session, store the data under the same id when it is a valid
fastsession id (else under a new one, with a new cookie), and ``delete``
the old record once the new one is stored. Nothing here unpickles:

- ``FlaskSessionRedis``: Flask-Session's Redis backend (0.7+: msgpack, or
  JSON with ``serialization_format="json"``), decoded with msgspec.
- ``FlaskSessionFiles``: Flask-Session's filesystem backend (cachelib's
  FileSystemCache: a 4-byte expiry, then a pickle of the session dict),
  read by ``plain_pickle``, which knows only the opcodes of plain data
  (dict, list, tuple, str, bytes, int, float, bool, None) and refuses
  everything else, so a planted file cannot run code.

(Django's backends are read through their own SessionStore classes and
Django's SESSION_SERIALIZER: ``FASTSESSION_MIGRATE_FROM``, see
fastsession.contrib.django.)

Whatever a reader finds goes through ``storable`` before it is stored: an
old record was written by another program (or planted), so what it may
produce is bounded (MAX_VALUES values counted with repetition, so shared
references cannot multiply into a terabyte; MAX_DEPTH levels), and a key
whose value JSON cannot hold (bytes, a msgpack extension, a set) is left
out and logged rather than failing that user's every request. Old files
are opened as sessions are: never following a symlink, never blocking on a
FIFO, never reading past MAX_RECORD_BYTES.
"""

from __future__ import annotations

import hashlib
import logging
import os
import stat
import struct
import time
from typing import Any, Callable, Optional

from ._io_py import MAX_SESSION_BYTES, READ_FLAGS

__all__ = [
    "FlaskSessionFiles",
    "FlaskSessionReader",
    "FlaskSessionRedis",
    "TooLarge",
    "Unstorable",
    "plain_pickle",
    "read_record",
    "storable",
]

logger = logging.getLogger(__name__)

Found = Optional[tuple[str, dict[str, Any]]]

MAX_DEPTH = 32  # levels of nesting a migrated value may have (a session is shallow)
MAX_VALUES = 100_000  # values a migrated record may hold, each occurrence of a shared one counted
MAX_RECORD_BYTES = MAX_SESSION_BYTES  # the most an old record may be, as stored


class Unstorable(ValueError):
    """A value of an old record that fastsession cannot store as JSON."""


class TooLarge(ValueError):
    """An old record that would become larger than a session may be."""


def storable(data: dict[Any, Any]) -> dict[str, Any] | None:
    """What of an old session's ``data`` fastsession can store: every key whose value is JSON data, int keys
    as str (as JSON writes them); a key that cannot be stored is left out and logged. None (logged) when the
    record holds more than MAX_VALUES values: nothing of it is migrated."""
    budget = [MAX_VALUES]
    kept: dict[str, Any] = {}
    try:
        for key, value in data.items():
            name = _key(key)
            try:
                if name is None:
                    raise Unstorable(f"a key of type {type(key).__name__}")
                kept[name] = _plain(value, 1, budget)
            except Unstorable as why:
                logger.warning("not migrating key %r of an old session: %s", key, why)
    except TooLarge as why:
        logger.warning("not migrating an old session: %s", why)
        return None
    return kept


def _key(key: Any) -> str | None:
    if isinstance(key, str):
        return key
    if isinstance(key, int) and not isinstance(key, bool):
        return str(key)
    return None


def _plain(value: Any, depth: int, budget: list[int]) -> Any:
    """``value`` as JSON data (tuples as lists); Unstorable or TooLarge when it cannot be, or too much."""
    budget[0] -= 1
    if budget[0] < 0:
        raise TooLarge(f"more than {MAX_VALUES} values")
    if value is None or isinstance(value, (bool, str, float)):
        return value
    if isinstance(value, int):
        if not -(2**63) <= value < 2**64:
            raise Unstorable("an integer wider than 64 bits")
        return value
    if depth > MAX_DEPTH:
        raise Unstorable(f"nested deeper than {MAX_DEPTH} levels")
    if isinstance(value, (list, tuple)):
        return [_plain(item, depth + 1, budget) for item in value]
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            name = _key(key)
            if name is None:
                raise Unstorable(f"a key of type {type(key).__name__}")
            out[name] = _plain(item, depth + 1, budget)
        return out
    raise Unstorable(f"a value of type {type(value).__name__}")


def read_record(path: str) -> bytes | None:
    """The bytes of an old store's file, opened as sessions are; None when there is none, or none to read
    (a symlink, a FIFO, a device, a folder, over MAX_RECORD_BYTES: logged)."""
    try:
        fd = os.open(path, READ_FLAGS)
    except FileNotFoundError:
        return None
    except OSError as exc:
        logger.warning("not migrating %s: %s", path, exc)
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            logger.warning("not migrating %s: not a regular file", path)
            return None
        body = os.read(fd, MAX_RECORD_BYTES + 1)
        while len(body) <= MAX_RECORD_BYTES:
            more = os.read(fd, MAX_RECORD_BYTES + 1 - len(body))
            if not more:
                break
            body += more
    finally:
        os.close(fd)
    if len(body) > MAX_RECORD_BYTES:
        logger.warning("not migrating %s: larger than %d bytes", path, MAX_RECORD_BYTES)
        return None
    return body


class FlaskSessionReader:
    """What Flask-Session's backends share: the key prefix and the (optionally signed) cookie."""

    def __init__(self, key_prefix: str = "session:", use_signer: bool = False, secret_key: str | None = None) -> None:
        if use_signer and not secret_key:
            raise ValueError("use_signer=True needs the app's secret_key")
        self.key_prefix = key_prefix
        self.use_signer = use_signer
        self.secret_key = secret_key

    def session_id(self, cookie_value: str) -> str | None:
        """The id the cookie names: itself, or its unsigned value (None when the signature is bad)."""
        if not self.use_signer:
            return cookie_value
        from itsdangerous import BadSignature, Signer

        try:  # Flask-Session's signer (until its 1.0)
            signer = Signer(self.secret_key, salt="flask-session", key_derivation="hmac")  # type: ignore[arg-type]
            return signer.unsign(cookie_value).decode("utf-8")
        except (BadSignature, UnicodeDecodeError):
            return None

    def load(self, cookie_value: str) -> Found:
        session_id = self.session_id(cookie_value)
        if not session_id:
            return None
        data = self.read(self.key_prefix + session_id)
        if data is None:
            return None
        if type(data) is not dict:
            logger.warning("not migrating a Flask-Session record that is not a dict")
            return None
        kept = storable(data)
        return None if kept is None else (session_id, kept)

    def read(self, key: str) -> Any:  # the backend's
        raise NotImplementedError


def decode_msgspec(body: bytes) -> Any:
    """Flask-Session 0.7+'s record: msgpack (its default), else JSON; None when neither (e.g. an old pickle)."""
    import msgspec

    for decoder in (msgspec.msgpack.Decoder(), msgspec.json.Decoder()):
        try:
            return decoder.decode(body)
        except (msgspec.DecodeError, RecursionError):  # (nested past what a decoder may recurse)
            continue
    logger.warning("not migrating a Flask-Session record that is neither msgpack nor JSON")
    return None


class FlaskSessionRedis(FlaskSessionReader):
    """Flask-Session's RedisSessionInterface: ``<key_prefix><sid>`` holding msgpack (or JSON)."""

    def __init__(
        self, client: Any, key_prefix: str = "session:", use_signer: bool = False, secret_key: str | None = None
    ) -> None:
        FlaskSessionReader.__init__(self, key_prefix, use_signer, secret_key)
        self.client = client

    def read(self, key: str) -> Any:
        body = self.client.get(key)
        if body is not None and len(body) > MAX_RECORD_BYTES:
            logger.warning("not migrating a Flask-Session record larger than %d bytes", MAX_RECORD_BYTES)
            return None
        return None if body is None else decode_msgspec(body)

    def delete(self, session_id: str) -> None:
        self.client.delete(self.key_prefix + session_id)


class FlaskSessionFiles(FlaskSessionReader):
    """Flask-Session's FileSystemSessionInterface (cachelib's FileSystemCache in ``cache_dir``)."""

    def __init__(
        self,
        cache_dir: str,
        key_prefix: str = "session:",
        use_signer: bool = False,
        secret_key: str | None = None,
        hash_method: Callable[[bytes], Any] = hashlib.sha256,
    ) -> None:
        FlaskSessionReader.__init__(self, key_prefix, use_signer, secret_key)
        self.cache_dir = cache_dir
        self.hash_method = hash_method

    def path(self, key: str) -> str:
        return os.path.join(self.cache_dir, self.hash_method(key.encode("utf-8")).hexdigest())

    def read(self, key: str) -> Any:
        record = read_record(self.path(key))
        if record is None or len(record) < 4:
            return None
        head, body = record[:4], record[4:]
        expires = struct.unpack("I", head)[0]
        if expires and expires < time.time():
            return None  # expired: as Flask-Session would say
        try:
            return plain_pickle(body)
        except ValueError as exc:
            logger.warning("not migrating Flask-Session file %s: %s", self.path(key), exc)
            return None

    def delete(self, session_id: str) -> None:
        try:
            os.unlink(self.path(self.key_prefix + session_id))
        except FileNotFoundError:
            pass


def plain_pickle(body: bytes) -> Any:
    """The value of a pickle (protocol 3 to 5; cachelib writes 5) of plain data; ValueError for anything else.

    Never imports, calls or builds anything but dict, list, tuple, str,
    bytes, int, float, bool and None: a reader of data, not an unpickler.
    """
    try:
        return _read_plain(body)
    except (IndexError, KeyError, TypeError, AttributeError, struct.error, UnicodeDecodeError) as exc:
        raise ValueError(f"malformed pickle: {type(exc).__name__}: {exc}") from None


def _read_plain(body: bytes) -> Any:
    stack: list[Any] = []
    marks: list[int] = []
    memo: dict[int, Any] = {}
    at = 0

    def take(count: int) -> bytes:
        nonlocal at
        if at + count > len(body):
            raise ValueError("truncated pickle")
        chunk = body[at : at + count]
        at += count
        return chunk

    def since_mark() -> list[Any]:
        if not marks:
            raise ValueError("no mark")
        start = marks.pop()
        items = stack[start:]
        del stack[start:]
        return items

    def number(size: int, form: str) -> Any:
        return struct.unpack(form, take(size))[0]

    while True:
        op = take(1)
        if op == b"\x80":
            take(1)  # PROTO
        elif op == b"\x95":
            take(8)  # FRAME
        elif op == b".":
            if len(stack) != 1:
                raise ValueError("bad pickle stack")
            return stack[0]
        elif op == b"}":
            stack.append({})
        elif op == b"]":
            stack.append([])
        elif op == b")":
            stack.append(())
        elif op == b"(":
            marks.append(len(stack))
        elif op == b"N":
            stack.append(None)
        elif op == b"\x88":
            stack.append(True)
        elif op == b"\x89":
            stack.append(False)
        elif op == b"K":
            stack.append(number(1, "<B"))
        elif op == b"M":
            stack.append(number(2, "<H"))
        elif op == b"J":
            stack.append(number(4, "<i"))
        elif op == b"\x8a":
            stack.append(int.from_bytes(take(number(1, "<B")), "little", signed=True))
        elif op == b"G":
            stack.append(number(8, ">d"))
        elif op in (b"\x8c", b"X", b"\x8d"):
            size = {b"\x8c": (1, "<B"), b"X": (4, "<I"), b"\x8d": (8, "<Q")}[op]
            stack.append(take(number(*size)).decode("utf-8"))
        elif op in (b"C", b"B", b"\x8e"):
            size = {b"C": (1, "<B"), b"B": (4, "<I"), b"\x8e": (8, "<Q")}[op]
            stack.append(take(number(*size)))
        elif op == b"\x94":
            memo[len(memo)] = stack[-1]
        elif op in (b"q", b"r"):
            memo[number(1, "<B") if op == b"q" else number(4, "<I")] = stack[-1]
        elif op in (b"h", b"j"):
            stack.append(memo[number(1, "<B") if op == b"h" else number(4, "<I")])
        elif op == b"a":
            value = stack.pop()
            stack[-1].append(value)
        elif op == b"e":
            items = since_mark()
            stack[-1].extend(items)
        elif op == b"s":
            value, key = stack.pop(), stack.pop()
            stack[-1][key] = value
        elif op == b"u":
            items = since_mark()
            target = stack[-1]
            for index in range(0, len(items) - 1, 2):
                target[items[index]] = items[index + 1]
        elif op == b"t":
            stack.append(tuple(since_mark()))
        elif op in (b"\x85", b"\x86", b"\x87"):
            count = op[0] - 0x84
            items = stack[-count:]
            del stack[-count:]
            stack.append(tuple(items))
        else:
            raise ValueError(f"pickle opcode {op!r} is not plain data")
