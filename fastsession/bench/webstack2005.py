"""A rendition of WebStack's 2005 SessionStore design, as a benchmark peer only.

Its design: a session is a file named by the cookie value as it came; a
writer locks it by renaming ``<id>`` to ``<id>.edit`` and polls with
``sleep(delay)`` while that fails; the data is pickled and written in place;
ids are ``random.randint``. (WebStack kept a shelve per session; this
Python's only dbm is dbm.dumb, three files a shelve, so the rendition keeps
the pickled dict in the one file that the rename locks.) Unsafe by design:
never use it for anything but comparison.
"""

from __future__ import annotations

import os
import pickle
import random
import sys
import time
from typing import Any


class WebStack2005Store:
    def __init__(
        self,
        trans: Any,
        session_directory: str,
        session_cookie_name: str = "SID",
        concurrent: int = 1,
        delay: float = 1,
    ) -> None:
        self.trans = trans
        self.session_directory = session_directory
        self.session_cookie_name = session_cookie_name
        self.concurrent = concurrent
        self.delay = delay
        self.editing: str | None = None
        self.data: dict[str, Any] | None = None
        if not os.path.exists(session_directory):
            os.mkdir(session_directory)

    def get_session(self, create: Any) -> dict[str, Any] | None:
        cookie = self.trans.get_cookie(self.session_cookie_name)
        if cookie:
            return self._get_session(cookie.value, create)
        if create:
            session_id = self._get_session_identifier()
            self.trans.set_cookie_value(self.session_cookie_name, session_id)
            return self._get_session(session_id, create)
        return None

    def _get_session(self, session_id: str, create: Any) -> dict[str, Any] | None:
        filename = os.path.join(self.session_directory, session_id)
        if not os.path.exists(filename) and not os.path.exists(filename + ".edit"):
            if not create:
                return None
            with open(filename, "wb") as f:
                pickle.dump({}, f)
        if self.concurrent:
            while True:
                try:
                    os.rename(filename, filename + ".edit")
                    break
                except OSError:
                    time.sleep(self.delay)
            filename += ".edit"
        self.editing = filename
        with open(filename, "rb") as f:
            self.data = pickle.load(f)
        return self.data

    def _get_session_identifier(self) -> str:
        return str(random.randint(0, sys.maxsize - 1))

    def close(self) -> None:
        if self.editing is None:
            return
        with open(self.editing, "wb") as f:  # in place: a reader may see it torn
            pickle.dump(self.data, f)
        if self.concurrent:
            os.rename(self.editing, self.editing[: -len(".edit")])
        self.editing = None
