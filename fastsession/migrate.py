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
"""

from __future__ import annotations

import hashlib
import logging
import os
import struct
import time
from typing import Any, Callable, Optional

logger = logging.getLogger("fastsession")

Found = Optional[tuple[str, dict[str, Any]]]


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
            logger.warning("fastsession: not migrating a Flask-Session record that is not a dict")
            return None
        return session_id, data

    def read(self, key: str) -> Any:  # the backend's
        raise NotImplementedError


def decode_msgspec(body: bytes) -> Any:
    """Flask-Session 0.7+'s record: msgpack (its default), else JSON; None when neither (e.g. an old pickle)."""
    import msgspec

    for decoder in (msgspec.msgpack.Decoder(), msgspec.json.Decoder()):
        try:
            return decoder.decode(body)
        except msgspec.DecodeError:
            continue
    logger.warning("fastsession: not migrating a Flask-Session record that is neither msgpack nor JSON")
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
        try:
            with open(self.path(key), "rb") as f:
                head, body = f.read(4), f.read()
        except FileNotFoundError:
            return None
        if len(head) < 4:
            return None
        expires = struct.unpack("I", head)[0]
        if expires and expires < time.time():
            return None  # expired: as Flask-Session would say
        try:
            return plain_pickle(body)
        except ValueError as exc:
            logger.warning("fastsession: not migrating Flask-Session file %s: %s", self.path(key), exc)
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
