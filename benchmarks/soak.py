"""Soak: N processes doing random get/modify/expire/regenerate on a shared pool
of sessions, workers killed with SIGKILL at random, checked against a model.

    python benchmarks/soak.py --workers 4 --sessions 16 --seconds 300
    python benchmarks/soak.py --seconds 20                  # CI's run

The parent process is the model. A worker asks it which session a slot holds,
takes that session's lock (get_session), reports what it loaded, announces
the commit it is about to make, closes the store, and confirms. Every report
happens under the session's lock, so the model sees the operations of one
session in their real order. A worker killed between announcing and
confirming leaves a pending operation; the next worker to lock that session
must find either the state before it or the state it announced. Anything
else is a divergence. Exits 1 if there was any.
"""

import argparse
import os
import random
import select
import shutil
import signal
import sys
import tempfile
import time

import orjson

from fastsession import SessionStore
from fastsession.bench.contenders import CookieJar


def Jar(session_id):
    """A browser holding ``session_id`` as its cookie (none when None)."""
    jar = CookieJar()
    if session_id is not None:
        jar.cookies["SID"] = session_id
    return jar


# -- worker ---------------------------------------------------------------------------


def worker(directory, slots, requests, replies, seed):
    rng = random.Random(seed)
    inbox = os.fdopen(replies, "rb")

    def ask(*message):
        os.write(requests, orjson.dumps(message) + b"\n")
        return orjson.loads(inbox.readline())

    while True:
        slot = rng.randrange(slots)
        session_id = ask("slot", slot)
        if session_id == "stop":
            return
        jar = Jar(session_id)
        store = SessionStore(jar, directory, delay=0.01, timeout=60)
        session = store.get_session(session_id is None)
        if session_id is not None:
            ask("loaded", session_id, None if session is None else session["n"], slot)
            if session is None:  # expired or moved by someone else meanwhile: ask again
                store.close()
                continue
        else:
            if ask("claim", slot, session.session_id) != "yes":
                store.rollback()  # another worker filled the slot first
                continue
            session["n"] = 0
            ask("announce", session.session_id, "set", 0)
            store.close()
            ask("confirm", session.session_id)
            continue
        roll = rng.random()
        if roll < 0.75:
            session["n"] += 1
            ask("announce", session_id, "set", session["n"])
        elif roll < 0.85:
            store.close()  # read only
            continue
        elif roll < 0.92:
            store.expire_session()
            ask("announce", session_id, "expire", slot)
        else:
            new_id = store.regenerate_id()
            ask("announce", session_id, "move", [slot, new_id])
        store.close()
        ask("confirm", session_id)


# -- the model ---------------------------------------------------------------------


class Model:
    def __init__(self, slots):
        self.slots = [None] * slots  # slot -> session id
        self.state = {}  # session id -> n
        self.pending = {}  # session id -> (worker pid, kind, argument)
        self.divergences = []
        # Operations applied. "resolved": found committed by the next holder of the lock before
        # their own worker confirmed (it was killed, or had released the lock but not yet said so).
        self.done = {"set": 0, "expire": 0, "move": 0, "read": 0, "resolved": 0}

    def apply(self, session_id, kind, argument):
        if kind == "set":
            self.state[session_id] = argument
        elif kind == "expire":
            self.state.pop(session_id, None)
            if self.slots[argument] == session_id:
                self.slots[argument] = None
        elif kind == "move":
            slot, new_id = argument
            self.state[new_id] = self.state.pop(session_id)
            if self.slots[slot] == session_id:
                self.slots[slot] = new_id
        self.done[kind] += 1

    def after(self, session_id, kind, argument):
        """What loading ``session_id`` would give once the operation is applied."""
        if kind == "set":
            return argument
        return None  # expired, or moved to a new id

    def check_loaded(self, session_id, seen):
        expected = self.state.get(session_id)
        if session_id in self.pending:  # its announcer was killed before confirming
            _pid, kind, argument = self.pending.pop(session_id)
            if seen == self.after(session_id, kind, argument) and seen != expected:
                self.apply(session_id, kind, argument)  # it committed before dying
                self.done["resolved"] += 1
                return
        if seen != expected:
            self.divergences.append(f"{session_id[:8]}: loaded {seen}, model says {expected}")


def serve(model, pid, message, deadline):
    kind = message[0]
    if kind == "slot":
        return "stop" if time.monotonic() > deadline else model.slots[message[1]]
    if kind == "loaded":
        session_id, seen, slot = message[1], message[2], message[3]
        model.check_loaded(session_id, seen)
        model.done["read"] += 1
        if seen is None and session_id not in model.state and model.slots[slot] == session_id:
            model.slots[slot] = None  # its creator died before storing it
        return "ok"
    if kind == "claim":
        slot, session_id = message[1], message[2]
        if model.slots[slot] is None:
            model.slots[slot] = session_id
            return "yes"
        return "no"
    if kind == "announce":
        model.pending[message[1]] = (pid, message[2], message[3])
        return "ok"
    if kind == "confirm":
        entry = model.pending.get(message[1])
        # After close() the lock is free: another worker may have resolved this one already
        # (and announced its own), so only the announcer's own entry is confirmed.
        if entry is not None and entry[0] == pid:
            del model.pending[message[1]]
            model.apply(message[1], entry[1], entry[2])
        return "ok"
    raise ValueError(message)


def spawn(directory, slots, seed):
    requests_r, requests_w = os.pipe()
    replies_r, replies_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(requests_r)
        os.close(replies_w)
        code = 0
        try:
            worker(directory, slots, requests_w, replies_r, seed)
        except BaseException:
            import traceback

            traceback.print_exc()
            code = 1
        os._exit(code)
    os.close(requests_w)
    os.close(replies_r)
    return pid, os.fdopen(requests_r, "rb"), replies_w


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--sessions", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=300)
    parser.add_argument("--kill-every", type=float, default=0.25, help="mean seconds between SIGKILLs")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    directory = tempfile.mkdtemp(prefix="fastsession-soak-", dir="/dev/shm")
    model = Model(args.sessions)
    workers = {}
    for _ in range(args.workers):
        pid, requests, replies = spawn(directory, args.sessions, rng.random())
        workers[pid] = (requests, replies)
    started = time.monotonic()
    deadline = started + args.seconds
    next_kill = started + rng.expovariate(1 / args.kill_every)
    kills = crashes = 0
    while workers:
        ready, _, _ = select.select([w[0] for w in workers.values()], [], [], 0.05)
        for pid, (requests, replies) in list(workers.items()):
            if requests not in ready:
                continue
            line = requests.readline()
            if not line:  # it exited
                _, status = os.waitpid(pid, 0)
                crashes += os.waitstatus_to_exitcode(status) not in (0, -signal.SIGKILL)
                del workers[pid]
                continue
            os.write(replies, orjson.dumps(serve(model, pid, orjson.loads(line), deadline)) + b"\n")
        now = time.monotonic()
        if now >= next_kill and now < deadline and workers:
            victim = rng.choice(list(workers))
            os.kill(victim, signal.SIGKILL)
            os.waitpid(victim, 0)
            requests, replies = workers.pop(victim)
            requests.close()
            os.close(replies)
            kills += 1
            pid, requests, replies = spawn(directory, args.sessions, rng.random())
            workers[pid] = (requests, replies)
            next_kill = now + rng.expovariate(1 / args.kill_every)
    # Last word: every slot's session, read once more, resolving what killed workers left.
    for _slot, session_id in enumerate(model.slots):
        if session_id is None:
            continue
        with SessionStore(Jar(session_id), directory, timeout=60) as store:
            session = store.get_session(False)
            model.check_loaded(session_id, None if session is None else session["n"])
            model.done["read"] += 1
    operations = sum(model.done.values())
    print(f"soak: {args.workers} workers, {args.sessions} session slots, {args.seconds:.0f} s, in {directory}")
    print(f"operations: {operations} ({', '.join(f'{k} {v}' for k, v in model.done.items())})")
    print(f"faults injected: {kills} SIGKILLs; worker crashes: {crashes}")
    print(f"divergences from the model: {len(model.divergences)}")
    for line in model.divergences[:20]:
        print("  " + line)
    shutil.rmtree(directory, ignore_errors=True)
    sys.exit(1 if model.divergences or crashes else 0)


if __name__ == "__main__":
    main()
