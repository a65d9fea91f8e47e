"""Session data only the cookie can open (``encrypt=True``; ``pip install "fastsession-store[crypto]"``).

The session's data is sealed with AES-256-GCM under a key derived from the
session id (HKDF-SHA256): the server never stores the id (storage holds a
hash of it, fastsession.names), so storage holds nothing that opens the
data, nor anything that would let someone write a record the server would
accept. There is no key to manage or rotate: the key lives in the cookie.
The stored name is the associated data, so a sealed record moved to another
session's name does not open. Metadata that expiry and the user index need
(creation time, user hash) stays outside the seal.

A record is ``{META: {..., "x": base64url(nonce + ciphertext)}}``; one
that does not open (a flipped byte, another session's record) reads as
absent.
"""

from __future__ import annotations

import base64
import functools
import os
from typing import Any

__all__ = ["require", "seal", "unseal"]

SALT = b"fastsession sealed sessions"
INFO = b"fastsession session data v1"
NONCE = 12
_crypto: Any = None  # (AESGCM, HKDF, SHA256, InvalidTag), imported on first use: only encrypt=True needs them


def _classes() -> Any:
    global _crypto
    if _crypto is None:
        try:
            from cryptography.exceptions import InvalidTag
            from cryptography.hazmat.primitives.ciphers.aead import AESGCM
            from cryptography.hazmat.primitives.hashes import SHA256
            from cryptography.hazmat.primitives.kdf.hkdf import HKDF
        except ImportError:
            raise ImportError(
                'encrypt=True needs the cryptography package: pip install "fastsession-store[crypto]"'
            ) from None
        _crypto = (AESGCM, HKDF, SHA256, InvalidTag)
    return _crypto


def require() -> None:
    """ImportError naming the extra to install, when cryptography is missing."""
    _classes()


def _key(session_id: str) -> bytes:
    _, hkdf, sha256, _ = _classes()
    key: bytes = hkdf(algorithm=sha256(), length=32, salt=SALT, info=INFO).derive(session_id.encode("ascii"))
    return key


# A request opens its record and seals it again: derive once. (In memory only, like the ids themselves.)
@functools.lru_cache(maxsize=1024)
def _cipher(session_id: str) -> Any:
    return _classes()[0](_key(session_id))


def seal(session_id: str, name: str, plaintext: bytes) -> str:
    """``plaintext`` sealed under the id's key, bound to the stored ``name``: base64url text."""
    nonce = os.urandom(NONCE)
    sealed = _cipher(session_id).encrypt(nonce, plaintext, name.encode("ascii"))
    return base64.urlsafe_b64encode(nonce + sealed).decode("ascii")


def unseal(session_id: str, name: str, token: object) -> bytes | None:
    """The plaintext of ``token``; None when it does not open (tampered, truncated, another session's)."""
    if not isinstance(token, str):
        return None
    try:
        raw = base64.urlsafe_b64decode(token.encode("ascii"))
        plain: bytes = _cipher(session_id).decrypt(raw[:NONCE], raw[NONCE:], name.encode("ascii"))
        return plain
    except (_classes()[3], ValueError, UnicodeEncodeError):
        return None
