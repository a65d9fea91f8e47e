"""The name a session is kept under: a hash of its id, never the id.

A directory listing, a backup, a Redis ``SCAN``, the lock table or a log
line then hands out nothing a browser could present: the cookie holds the
id, storage holds SHA-256 of it (base64url, 43 characters, the shape of an
id, so every check of a stored name still applies). An id is 256 random
bits, so the hash needs no key and cannot be turned back.
"""

from ._kernels import ACTIVE

# The compiled twin hashes an id in one C call (_ids_c); both twins give the same name for any str.
stored_name = ACTIVE.stored_name
