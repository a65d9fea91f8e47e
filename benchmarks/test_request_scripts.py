"""The whole-request scripts run as their docstrings say (the callgrind workloads without valgrind here: what they
count must work)."""

import importlib.util
import os
import subprocess
import sys
import uuid

import orjson
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))


@pytest.mark.parametrize("adapter", ["flask", "django", "starlette"])
@pytest.mark.parametrize("contender", ["fastsession", "memory"])
def test_each_whole_request_workload_makes_its_requests(tmp_path, adapter, contender):
    # A process each, as under valgrind (Django's settings are the process's).
    script = os.path.join(HERE, "callgrind_request.py")
    done = subprocess.run(
        [sys.executable, script, "--one", adapter, contender, "3", str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=str(tmp_path),
    )
    assert done.returncode == 0, done.stderr
    if contender == "fastsession":  # 23 requests of one visitor: one session stored, on files
        stored = [name for _, _, names in os.walk(tmp_path) for name in names if len(name) == 43]
        assert len(stored) == 1


@pytest.mark.parametrize("adapter", ["flask", "django", "starlette"])
def test_the_side_by_side_ratio_of_each_adapter_is_printed(adapter):
    script = os.path.join(HERE, "whole_request_ratio.py")
    done = subprocess.run([sys.executable, script, adapter, "2"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 2 and "fastsession" in lines[0]
    assert lines[1].split()[2] == "1.000x"  # the floor, against itself


@pytest.mark.parametrize("adapter", ["flask", "django", "starlette"])
def test_the_cpu_time_split_of_each_adapter_is_printed(adapter):
    script = os.path.join(HERE, "whole_request_cpu.py")
    done = subprocess.run([sys.executable, script, adapter, "4", "2"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    header, *rows = done.stdout.splitlines()
    assert header.split()[-6:] == ["(4", "requests", "a", "run,", "2", "runs)"]
    assert len(rows) == 4 and "fastsession" in rows[0] and "fastsession" not in rows[3]
    assert all(float(number) >= 0 for row in rows for number in row.split()[:3])


def roundtrip_workload():
    """benchmarks/callgrind_roundtrip.py, loaded as a module (its main() run here, without valgrind)."""
    spec = importlib.util.spec_from_file_location("callgrind_roundtrip", os.path.join(HERE, "callgrind_roundtrip.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def redis_keys(monkeypatch):
    """(a client of the bench's Redis, a fresh key prefix); the workload's keys are kept to be read back, then
    removed."""
    import redis

    from fastsession.bench.contenders import redis_url

    client, prefix = redis.Redis.from_url(redis_url()), f"cg-{uuid.uuid4().hex[:8]}"
    monkeypatch.setattr(redis.Redis, "delete", lambda self, *keys: 0)
    yield client, prefix
    for key in client.keys(prefix + ":*"):
        client.unlink(key)


@pytest.mark.parametrize("change", [True, False])
@pytest.mark.parametrize("factory", [False, True])
def test_the_round_trip_workload_makes_its_round_trips(tmp_path, monkeypatch, change, factory):
    module = roundtrip_workload()
    monkeypatch.setattr(module.shutil, "rmtree", lambda *args, **kwargs: None)  # (kept to be read back)
    directory = tmp_path / "cg"
    module.main(7, str(directory), change=change, factory=factory)
    [stored] = [path for path in directory.rglob("*") if path.is_file() and len(path.name) == 43]
    body = stored.read_bytes().split(b"\n", 1)[1]  # after the holder line
    assert orjson.loads(body)["visits"] == (7 if change else 0)


@pytest.mark.parametrize("factory", [False, True])
def test_the_round_trip_workload_makes_its_round_trips_on_redis(redis_keys, factory):
    client, prefix = redis_keys
    roundtrip_workload().main(5, f"/nowhere/{prefix}", factory=factory, redis=True)
    [key] = [key for key in client.keys(prefix + ":*") if not key.endswith(b":lock")]
    assert orjson.loads(client.get(key))["visits"] == 5
    assert not os.path.exists("/nowhere")  # (on Redis the folder names only the keys' prefix)


def test_the_plain_redis_workload_makes_its_round_trips(redis_keys):
    client, prefix = redis_keys
    roundtrip_workload().main(6, f"/nowhere/{prefix}", redis=True, plain=True)
    assert orjson.loads(client.get(f"{prefix}:plain"))["visits"] == 6
    assert client.keys(prefix + ":*") == [f"{prefix}:plain".encode()]  # no store made, no lock taken


def test_the_redis_split_runs_fastsession_and_the_bare_calls_and_leaves_no_key(capsys):
    import redis

    from fastsession.bench.contenders import redis_url

    spec = importlib.util.spec_from_file_location("redis_split", os.path.join(HERE, "redis_split.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # (it checks that the bare scripts lock, read and write as fastsession's do)
    client = redis.Redis.from_url(redis_url())
    before = client.keys("split-*")
    medians = module.main(2)
    assert list(medians) == [
        "fastsession, locked read-modify-write",
        "the same two scripts on a bare socket",
        "GET + SET on a bare socket",
        "redis-py GET + SET",
    ]
    assert all(value > 0 for value in medians.values())
    lines = capsys.readouterr().out.splitlines()
    assert lines[4].split()[-2] == "1.00x"  # redis-py's row, against itself (then its iqr)
    evalsha = float(lines[5].split("EVALSHA ")[1].split()[0])
    assert evalsha > 0  # the scripts ran on the server, and were counted there
    assert client.keys("split-*") == before
