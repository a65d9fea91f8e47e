"""The installed version's sdist of a framework, fetched once and unpacked: its own tests run against our adapters."""

from __future__ import annotations

import glob
import os
import subprocess
import sys
import tarfile
import tempfile

CACHE = os.path.join(tempfile.gettempdir(), "fastsession-framework-sdists")


def fetch_sdist(project: str, version: str, cache: str = CACHE) -> str:
    """The path of ``project==version``'s sdist in ``cache`` (pip download --no-binary :all: when absent)."""
    os.makedirs(cache, exist_ok=True)
    pattern = os.path.join(cache, f"[{project[0].upper()}{project[0].lower()}]{project[1:]}-{version}.tar.gz")
    found = glob.glob(pattern)
    if not found:
        download = ["download", "--quiet", "--no-binary", ":all:", "--no-deps", f"{project}=={version}", "-d", cache]
        subprocess.run(
            [sys.executable, "-m", "pip", *download],
            check=True,
        )
        found = glob.glob(pattern)
    return found[0]


def unpack(sdist: str, folder: str, into: str) -> str:
    """Extract ``<sdist>/<folder>/`` (e.g. "tests/") into ``into``, keeping the paths below the sdist's root."""
    with tarfile.open(sdist) as archive:
        for member in archive.getmembers():
            inside = member.name.split("/", 1)[1] if "/" in member.name else ""
            if member.isfile() and inside.startswith(folder):
                member.name = inside
                archive.extract(member, into)
    return into


# Appended to the suite's conftest.py: a skipped test is not a passed one.
NO_SKIPS = """

def pytest_sessionfinish(session, exitstatus):  # added by fastsession's tests/framework_suites
    if session.config.pluginmanager.get_plugin("terminalreporter").stats.get("skipped"):
        session.exitstatus = 1
"""


def run_tests(root: str, targets: list[str], not_applicable: dict[str, str], env: dict[str, str], *extra: str) -> int:
    """pytest on ``targets`` in ``root``, but ``not_applicable`` (each printed with why); its exit status."""
    for test, why in not_applicable.items():
        print(f"  not applicable: {test}: {why}")
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", root, *targets, *extra]
    command += [arg for test in not_applicable for arg in ("--deselect", test)]
    return subprocess.run(command, cwd=root, env=dict(env, PYTHONPATH=root)).returncode
