"""Session ids in a request header, for API and mobile clients that keep no cookies (the adapters' ``id_header``).

With ``id_header="X-Session-Id"`` a request that carries that header is
answered the same way: its id is read from the header (whatever cookie it
also sends) and a new or changed id goes back in the response's header of
the same name (empty when the session was deleted), with no Set-Cookie. A
new client sends the header empty to say it wants its id that way. Requests
without the header use the cookie, unless ``id_cookie=False`` makes the
header the only way (every response then carries it when the id changes).

Browsers never attach such a header on their own, so a header-borne session
cannot be ridden by a cross-site request (no CSRF); but the client keeps the
id where its code can read it (no HttpOnly), so an injected script can take
it. See docs/security.md.
"""

from __future__ import annotations

import re

__all__ = ["check_id_header"]

# RFC 9110 token characters: what a header name may hold.
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
# Headers that mean something else to every server and browser.
_TAKEN = {"cookie", "set-cookie", "authorization", "host", "content-length", "content-type", "vary"}


def check_id_header(id_header: object, id_cookie: object) -> str | None:
    """The header name (None: no header); ValueError/TypeError for options no request could use."""
    if not isinstance(id_cookie, bool):
        raise TypeError(f"id_cookie must be True or False, not {id_cookie!r}")
    if id_header is None:
        if not id_cookie:
            raise ValueError("id_cookie=False needs id_header= (the id must come some way)")
        return None
    if not isinstance(id_header, str) or not _TOKEN.fullmatch(id_header):
        raise ValueError(f"id_header must be a header name (letters, digits, '-'), not {id_header!r}")
    if id_header.lower() in _TAKEN:
        raise ValueError(f"id_header cannot be {id_header!r}: that header means something else")
    return id_header


def environ_key(name: str) -> str:
    """The WSGI environ key of request header ``name``."""
    return "HTTP_" + name.upper().replace("-", "_")
