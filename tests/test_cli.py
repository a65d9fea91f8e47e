"""The command line a newcomer copies: the installed ``fastsession`` console script."""

import json
import os
import re
import shutil
import socket
import subprocess
import sys

import pytest

import fastsession

CHECKOUT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def console_script():
    found = shutil.which("fastsession")
    assert found, "pip install . must install the fastsession command"
    return found


def test_console_script_run_from_the_checkout_uses_the_installed_package():
    # The README's first command is typed in the checkout: the source folder
    # there must not shadow the installed (compiled) package.
    done = subprocess.run([console_script(), "--version"], cwd=CHECKOUT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    kernels = "compiled" if fastsession.EXTENSIONS else "pure-Python"
    assert done.stdout.strip() == f"fastsession {fastsession.__version__} ({kernels} kernels)"
    assert "RuntimeWarning" not in done.stderr


def test_console_script_serves_the_demo_on_the_kernels_in_use(tmp_path):
    demo = subprocess.Popen(
        [console_script(), "demo", "--port", "0", "--directory", str(tmp_path / "s")],
        cwd=CHECKOUT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = demo.stdout.readline()
        assert re.search(r"http://127\.0\.0\.1:\d+/", line), line
        assert ("compiled kernels" if fastsession.EXTENSIONS else "pure Python kernels") in line
    finally:
        demo.terminate()
        demo.wait(10)


def test_python_dash_m_still_works(tmp_path):
    done = subprocess.run([sys.executable, "-m", "fastsession", "--version"], cwd="/", capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.startswith("fastsession ")


def test_source_folder_warning_tells_what_to_run_instead():
    env = dict(os.environ)
    env.pop("FASTSESSION_NO_EXTENSIONS", None)
    done = subprocess.run(
        [sys.executable, "-m", "fastsession", "--version"], cwd=CHECKOUT, capture_output=True, text=True, env=env
    )
    assert "source folder" in done.stderr and "fastsession demo" in done.stderr  # not "install a compiler"
    assert "pure-Python kernels" in done.stdout


def test_demo_on_a_busy_port_says_which_port_and_how_to_choose_another(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [console_script(), "demo", "--port", str(port), "--directory", str(tmp_path / "s")],
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert done.returncode == 2
    assert f"127.0.0.1:{port}" in done.stderr and "--port" in done.stderr
    assert "Traceback" not in done.stderr


BLOCK_PEERS = """
import sys
for name in ("redis", "flask", "flask_session", "django", "beaker", "cachelib", "filelock", "matplotlib"):
    sys.modules[name] = None  # as after a plain `pip install .`: no peer is importable
from fastsession.__main__ import main
sys.exit(main(["bench", "--quick", "--json"]))
"""


def test_bench_quick_without_any_peer_installed_lists_them_as_not_measured():
    done = subprocess.run([sys.executable, "-c", BLOCK_PEERS], cwd="/", capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    results = json.loads(done.stdout)
    for peer in ("fastsession on Redis", "Django file backend", "Beaker file sessions", "cachelib FileSystemCache"):
        assert peer in results["missing"]
    modify = next(s for s in results["scenarios"] if s["key"] == "modify")
    assert "fastsession (compiled)" in modify["places"]["disk"] or not fastsession.EXTENSIONS


# -- the commands give clear errors and never a terminal escape (issue 24, item 19) ---------------------------


def run_cli(*args, timeout=60):
    return subprocess.run([console_script(), *args], capture_output=True, text=True, cwd="/", timeout=timeout)


def test_users_prints_a_stored_user_agent_with_its_control_characters_escaped(tmp_path):
    from conftest import Transaction

    directory = str(tmp_path / "sessions")
    with fastsession.SessionStore(Transaction(), directory) as store:
        store.get_session(True)["user"] = "ann"
        store.bind_user("ann", user_agent="evil\x1b]0;owned\x07\x1b[2J agent")
    done = run_cli("users", directory, "ann")
    assert done.returncode == 0, done.stderr
    assert "\x1b" not in done.stdout and "\x07" not in done.stdout
    assert "\\x1b]0;owned\\x07\\x1b[2J agent" in done.stdout


def test_users_revoke_returns_at_once_while_one_of_the_sessions_is_busy(tmp_path):
    from conftest import Transaction

    directory = str(tmp_path / "sessions")
    trans = Transaction()
    with fastsession.SessionStore(trans, directory) as store:
        store.get_session(True)["user"] = "ann"
        store.bind_user("ann")
    busy = fastsession.SessionStore(Transaction(trans.cookies), directory)
    busy.get_session(False)  # a request holds it, as long as it likes
    try:
        done = run_cli("users", directory, "ann", "--revoke", "--json", timeout=30)
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout) == {"revoked": 1}
    finally:
        busy.close()
    with fastsession.SessionStore(Transaction(trans.cookies), directory) as store:
        assert store.get_session(False) is None


def test_locks_passes_over_a_folder_named_like_a_lockfile(tmp_path):
    directory = tmp_path / "sessions"
    (directory / "ab").mkdir(parents=True, mode=0o700)
    directory.chmod(0o700)
    (directory / "ab" / ("A" * 43 + ".lock")).mkdir()
    done = run_cli("locks", str(directory))
    assert done.returncode == 0, done.stderr
    assert "0 locks" in done.stdout or done.stdout.count("\n") <= 2


@pytest.mark.parametrize("port", ["-1", "65536", "http"])
def test_demo_refuses_a_port_out_of_range_with_a_usage_error(port):
    done = run_cli("demo", "--port", port)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "port number from 0 to 65535" in done.stderr


def test_demo_refuses_a_directory_whose_parent_does_not_exist(tmp_path):
    missing = tmp_path / "nowhere" / "deeper" / "sessions"
    done = run_cli("demo", "--port", "0", "--directory", str(missing))
    assert done.returncode == 2 and "no such folder" in done.stderr
    assert not (tmp_path / "nowhere").exists()


@pytest.mark.parametrize("what", ["file", "missing"])
def test_gc_of_something_that_is_no_folder_says_so(tmp_path, what):
    target = tmp_path / "sessions.json"
    if what == "file":
        target.write_text("{}")
    done = run_cli("gc", str(target), "--max-age", "60")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert ("not a folder" if what == "file" else "no such folder") in done.stderr
    assert (target.read_text() == "{}") if what == "file" else not target.exists()
