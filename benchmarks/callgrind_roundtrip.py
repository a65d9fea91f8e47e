"""A fixed workload for instruction counts: N locked read-modify-write round trips (``read``: read-only ones;
``factory``: each store made by a long-lived StoreFactory, as the WSGI, Flask and Starlette adapters make theirs, not
by WebStack's constructor; ``redis``: on Redis, FASTSESSION_REDIS_URL's or a redis-server started for the run, DIR
then naming nothing but the keys' prefix; ``redis plain``: no store, redis-py's own GET and SET of the same
session, the floor the bench's Redis tables compare against).

Compare two versions repeatably (counts, unlike seconds, do not depend on the
machine's load):

    PYTHONHASHSEED=0 valgrind --tool=callgrind --callgrind-out-file=/dev/null \\
        python benchmarks/callgrind_roundtrip.py 2000 /dev/shm/cg [read] [factory] [redis [plain]] 2>&1 | grep refs

Run it once with N=0 too: the difference is the cost of N round trips (on
Redis, the client's: the server is another process). A fixed
PYTHONHASHSEED makes the counts repeat exactly; without it, dict layouts
differ from run to run by a few hundred instructions per trip.
"""

import os
import shutil
import sys

import fastsession
from fastsession.bench.contenders import CookieJar
from fastsession.factory import StoreFactory


def main(
    count: int, directory: str, change: bool = True, factory: bool = False, redis: bool = False, plain: bool = False
) -> None:
    if redis:
        import redis as redis_py

        from fastsession.bench.contenders import redis_url
        from fastsession.redis import RedisSessionStore

        client = redis_py.Redis.from_url(redis_url())
        store_class, where, options = RedisSessionStore, client, {"prefix": os.path.basename(directory) + ":"}
    else:
        shutil.rmtree(directory, ignore_errors=True)
        store_class, where, options = fastsession.SessionStore, directory, {}
    if redis and plain:
        import orjson

        key = options["prefix"] + "plain"
        client.set(key, orjson.dumps({"user_id": 48213, "cart": [1, 2, 3], "visits": 0}))
        for _ in range(count):
            data = orjson.loads(client.get(key))
            if change:
                data["visits"] += 1
                client.set(key, orjson.dumps(data), px=3_600_000)
        client.delete(key)
        return
    jar = CookieJar()
    store = store_class(jar, where, **options)
    store.get_session(1).update({"user_id": 48213, "cart": [1, 2, 3], "visits": 0})
    store.close()
    make = StoreFactory(store_class, where, **options).make if factory else None
    for _ in range(count):
        store = store_class(jar, where, **options) if make is None else make(jar)
        session = store.get_session(1)
        if change:
            session["visits"] += 1
        else:
            session["visits"]
        store.close()
    if redis:
        client.delete(*client.keys(options["prefix"] + "*"))
    else:
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main(
        int(sys.argv[1]),
        sys.argv[2] if len(sys.argv) > 2 else os.path.join("/dev/shm", "fastsession-cg"),
        change="read" not in sys.argv[3:],
        factory="factory" in sys.argv[3:],
        redis="redis" in sys.argv[3:],
        plain="plain" in sys.argv[3:],
    )
