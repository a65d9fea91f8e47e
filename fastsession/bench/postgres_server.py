"""A real PostgreSQL server in a temp folder, on a free loopback port (tests and benchmarks).

``initdb`` + ``pg_ctl`` from Debian's ``postgresql`` package, as an
unprivileged cluster: when run as root (CI), the cluster belongs to the
``postgres`` user (initdb refuses root). Durability is off (``fsync``,
``synchronous_commit``, ``full_page_writes``): the tests measure the store, not the disk.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import time

from .redis_server import free_port

SERVER_USER = "postgres"  # Debian's package creates it


def binaries() -> str:
    """The folder of initdb and pg_ctl: on PATH, or Debian's /usr/lib/postgresql/<version>/bin."""
    found = shutil.which("initdb")
    if found:
        return os.path.dirname(found)
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    if not versions:
        raise RuntimeError("PostgreSQL is not installed: apt-get install -y postgresql")
    return os.path.dirname(versions[-1])


class PostgresServer:
    def __init__(self, port: int = 0, settings: dict[str, str] | None = None) -> None:
        self.port = port or free_port()
        self.folder = ""
        self.settings = settings or {}
        self.dsn = f"postgresql://{SERVER_USER}@127.0.0.1:{self.port}/postgres"

    def _as_server_user(self, *command: str) -> list[str]:
        return ["runuser", "-u", SERVER_USER, "--", *command] if os.geteuid() == 0 else list(command)

    def _run(self, *command: str) -> None:
        done = subprocess.run(self._as_server_user(*command), capture_output=True, text=True)
        if done.returncode:
            raise RuntimeError(f"{' '.join(command[:2])} failed: {done.stderr.strip() or done.stdout.strip()}")

    @property
    def data(self) -> str:
        return os.path.join(self.folder, "data")

    def start(self) -> PostgresServer:
        bin_dir = binaries()
        self.folder = tempfile.mkdtemp(prefix="fastsession-pg-")
        if os.geteuid() == 0:
            import pwd

            entry = pwd.getpwnam(SERVER_USER)
            os.chown(self.folder, entry.pw_uid, entry.pw_gid)
        self._run(f"{bin_dir}/initdb", "-D", self.data, "-U", SERVER_USER, "-A", "trust", "--no-sync", "-E", "UTF8")
        options = {
            "listen_addresses": "127.0.0.1",
            "port": str(self.port),
            "unix_socket_directories": self.folder,
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "max_connections": "200",
            **self.settings,
        }
        with open(os.path.join(self.data, "postgresql.auto.conf"), "a") as conf:
            conf.writelines(f"{name} = '{value}'\n" for name, value in options.items())
        self.pg_ctl("start", "-w", "-t", "60", "-l", os.path.join(self.folder, "log"))
        return self

    def pg_ctl(self, *args: str) -> None:
        self._run(f"{binaries()}/pg_ctl", "-D", self.data, *args)

    def restart(self) -> None:
        self.pg_ctl("restart", "-w", "-m", "fast", "-t", "60", "-l", os.path.join(self.folder, "log"))

    def stop(self) -> None:
        if self.folder:
            try:
                self.pg_ctl("stop", "-m", "immediate", "-w")
            except RuntimeError:
                pass  # (already stopped)
            time.sleep(0.05)
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder = ""


def main(argv: list[str]) -> int:
    """``start``: start a server, print "DSN FOLDER"; ``stop FOLDER``: stop it and remove its folder."""
    if argv[:1] == ["start"]:
        server = PostgresServer().start()
        print(server.dsn, server.folder)
        return 0
    if len(argv) == 2 and argv[0] == "stop":
        server = PostgresServer()
        server.folder = argv[1]
        server.stop()
        return 0
    print("usage: python -m fastsession.bench.postgres_server start | stop FOLDER")
    return 2


if __name__ == "__main__":
    import sys

    sys.exit(main(sys.argv[1:]))
