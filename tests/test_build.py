"""Which twin set is live, and that both are complete."""

import os
import re
import subprocess
import sys

import fastsession
from fastsession import _drive_py, _ids_py, _io_py, _lock_py

PACKAGE = os.path.dirname(fastsession.__file__)


def live_extensions(env_value):
    env = {k: v for k, v in os.environ.items() if k != "FASTSESSION_NO_EXTENSIONS"}
    if env_value is not None:
        env["FASTSESSION_NO_EXTENSIONS"] = env_value
    code = "import fastsession; print(fastsession.EXTENSIONS, fastsession._kernels.ACTIVE.read_session.__module__)"
    # From "/", so the installed package is imported, not a source tree in the cwd.
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True, cwd="/")
    return out.stdout.split()


def test_compiled_twins_are_live_on_a_normal_install():
    # The CI run without FASTSESSION_NO_EXTENSIONS must be testing compiled code.
    if not os.environ.get("FASTSESSION_NO_EXTENSIONS"):
        assert fastsession.EXTENSIONS is True
    assert live_extensions(None) == ["True", "fastsession._io_c"]


def test_environment_variable_forces_the_pure_twins():
    assert live_extensions("1") == ["False", "fastsession._io_py"]


def test_twins_export_the_same_names():
    from conftest import compiled_twin

    for compiled, pure in [
        (compiled_twin("ids"), _ids_py),
        (compiled_twin("lock"), _lock_py),
        (compiled_twin("io"), _io_py),
        (compiled_twin("drive"), _drive_py),
    ]:
        for name in [n for n in dir(compiled) if not n.startswith("_") and callable(getattr(compiled, n))]:
            if getattr(compiled, name).__module__ == compiled.__name__:
                assert callable(getattr(pure, name, None)), f"{pure.__name__} lacks {name}"


def test_every_compiled_module_has_a_stub_and_the_package_is_typed():
    for name in ("_ids_c", "_lock_c", "_io_c", "_drive_c"):
        assert os.path.exists(os.path.join(PACKAGE, name + ".pyi"))
    assert os.path.exists(os.path.join(PACKAGE, "py.typed"))


def test_public_names():
    for name in (
        "SessionStore",
        "Session",
        "SessionError",
        "LockTimeout",
        "SerializationError",
        "EXTENSIONS",
        "new_session_id",
        "__version__",
    ):
        assert hasattr(fastsession, name)
    assert issubclass(fastsession.LockTimeout, fastsession.SessionError)
    assert issubclass(fastsession.SerializationError, fastsession.SessionError)
    assert issubclass(fastsession.SerializationError, TypeError)


def test_compiled_kernels_need_no_glibc_newer_than_manylinux2014():
    # glibc 2.17 is manylinux2014's: getrandom (2.25) and fstat/lstat (2.33)
    # go through syscall() (fastsession/_compat.h), so the wheel is not
    # limited to manylinux_2_34.
    from conftest import compiled_twin

    for kind in ("ids", "lock", "io", "drive"):
        path = compiled_twin(kind).__file__
        symbols = subprocess.run(["objdump", "-T", path], capture_output=True, text=True, check=True).stdout
        versions = {tuple(int(n) for n in v.split(".")) for v in re.findall(r"GLIBC_(\d+\.\d+(?:\.\d+)?)", symbols)}
        assert versions, f"{path}: no glibc symbols found (not linked against glibc?)"
        newest = max(versions)
        assert newest <= (2, 17), f"{os.path.basename(path)} needs GLIBC_{'.'.join(map(str, newest))}"
