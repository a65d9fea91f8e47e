"""What a locked read-modify-write on Redis is made of, in time: fastsession's round trip beside the same two
scripts sent on a bare socket (no client at all), a GET and a SET on a bare socket, and redis-py's GET + SET,
interleaved in one process; and the server's own time per command (INFO commandstats).

    python benchmarks/redis_split.py [ROUNDS]   # FASTSESSION_REDIS_URL's server, or one started

Each figure is the median over ROUNDS (default 31) interleaved batches, as in ``fastsession bench``
(``interleaved_stats``), with the batches' interquartile range.
fastsession less the bare scripts is what its client costs; the bare scripts less the bare GET + SET is what
the two Lua scripts cost the server (and the bytes they carry); the bare GET + SET is the two round trips.
The bare socket sends no AUTH and no SELECT: a server that needs neither, database 0.
"""

import socket
import sys
import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import urlparse

import redis

from fastsession.bench.contenders import CookieJar, redis_url, repeat
from fastsession.bench.measure import interleaved_stats
from fastsession.factory import StoreFactory
from fastsession.redis import SCRIPTS, RedisSessionStore, ScriptCaller, data_key, lock_keys, packed
from fastsession.resp import reply_of

BODY = b'{"user_id":48213,"cart":[1,2,3],"visits":1}'


def bare_socket(url: str) -> socket.socket:
    where = urlparse(url)
    sock = socket.create_connection((where.hostname or "127.0.0.1", where.port or 6379))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def contenders(client: redis.Redis, url: str, prefix: str) -> dict[str, Callable[[], None]]:
    jar = CookieJar()
    with RedisSessionStore(jar, client, prefix=prefix) as store:
        store.get_session(True).update({"user_id": 48213, "cart": [1, 2, 3], "visits": 0})
    make = StoreFactory(RedisSessionStore, client, prefix=prefix).make

    def fastsession() -> None:
        store = make(jar)
        store.get_session(False)["visits"] += 1
        store.close()

    for source in SCRIPTS.values():
        client.script_load(source)
    shas = ScriptCaller.digests()
    key = data_key(prefix, jar.cookies["SID"])
    lock = key + ":lock"
    acquire = packed("EVALSHA", shas["acquire"], 4, lock, key, key + ":waiting", prefix + "legacy", "t", 30000, "0")
    commit = packed("EVALSHA", shas["commit"], 4, *lock_keys(lock), "t", BODY, "0")
    get, set_ = packed("GET", key), packed("SET", key, BODY, "PX", "3600000")
    sock = bare_socket(url)

    def two(first: bytes, second: bytes) -> Callable[[], None]:
        def run() -> None:
            sock.sendall(first)
            sock.recv(65536)
            sock.sendall(second)
            sock.recv(65536)

        return run

    def replies(first: bytes, second: bytes) -> list[Any]:
        """The two replies (once, before the rounds: the bare pairs must do what fastsession's calls do)."""
        sock.sendall(first)
        one = reply_of(sock.recv(65536))[0]
        sock.sendall(second)
        return [one, reply_of(sock.recv(65536))[0]]

    (locked, *_), committed = replies(acquire, commit)
    if locked != 1 or committed != 1 or replies(get, set_) != [BODY, b"OK"]:
        raise RuntimeError("the bare scripts did not lock, read and write the session as fastsession's do")

    def plain() -> None:
        client.get(key)
        client.set(key, BODY, px=3_600_000)

    return {
        "fastsession, locked read-modify-write": fastsession,
        "the same two scripts on a bare socket": two(acquire, commit),
        "GET + SET on a bare socket": two(get, set_),
        "redis-py GET + SET": plain,
    }


def main(rounds: int = 31) -> dict[str, float]:
    """Each contender's median µs per round trip (and the table printed)."""
    url = redis_url()
    client = redis.Redis.from_url(url)
    prefix = f"split-{uuid.uuid4().hex[:8]}:"
    try:
        runners = {name: repeat(run) for name, run in contenders(client, url, prefix).items()}
        client.config_resetstat()
        stats = interleaved_stats(runners, rounds)
        server = client.info("commandstats")
    finally:
        for key in client.scan_iter(prefix + "*"):
            client.unlink(key)
    medians = {name: stats[name]["median"] * 1e6 for name in runners}
    floor = medians["redis-py GET + SET"]
    print(
        f"{'':40} {'µs':>7} {'ratio':>6} {'iqr':>5}   (medians of {rounds} interleaved batches; ratio: over redis-py's)"
    )
    for name, value in medians.items():
        print(f"{name:40} {value:7.1f} {value / floor:6.2f}x {stats[name]['iqr']:5.0%}")
    print("the server's time per call (INFO commandstats):", end="")
    for command in ("evalsha", "get", "set"):
        print(f" {command.upper()} {server.get(f'cmdstat_{command}', {}).get('usec_per_call', 0.0):.2f} µs", end="")
    print()
    return medians


if __name__ == "__main__":
    main(*(int(arg) for arg in sys.argv[1:2]))
