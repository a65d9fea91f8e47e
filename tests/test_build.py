"""Which twin set is live, and that both are complete."""

import os
import re
import subprocess
import sys

import fastsession
from fastsession import _drive_py, _ids_py, _io_py, _lock_py, _request_py, _resp_py

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
        (compiled_twin("request"), _request_py),
        (compiled_twin("resp"), _resp_py),
    ]:
        for name in [n for n in dir(compiled) if not n.startswith("_") and callable(getattr(compiled, n))]:
            if getattr(compiled, name).__module__ == compiled.__name__:
                assert callable(getattr(pure, name, None)), f"{pure.__name__} lacks {name}"


def test_every_compiled_module_has_a_stub_and_the_package_is_typed():
    for name in ("_ids_c", "_lock_c", "_io_c", "_drive_c", "_request_c", "_resp_c"):
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


# -- the distribution is fastsession-store; "fastsession" on the index is an unrelated project --------


def _copy_of_the_package(tmp_path):
    import shutil

    folder = tmp_path / "fastsession"
    shutil.copytree(os.path.dirname(fastsession.__file__), folder, ignore=shutil.ignore_patterns("__pycache__"))
    return folder


def _import(tmp_path, statement):
    env = dict(os.environ, PYTHONPATH=str(tmp_path), FASTSESSION_NO_EXTENSIONS="1")
    return subprocess.run([sys.executable, "-c", statement], cwd=str(tmp_path), env=env, capture_output=True, text=True)


def test_the_other_projects_init_installed_over_this_one_is_a_clear_error(tmp_path):
    folder = _copy_of_the_package(tmp_path)
    (folder / "__init__.py").write_text("from .memory_store import MemoryStore\n")  # its __init__, over ours
    (folder / "memory_store.py").write_text("class MemoryStore:\n    pass\n")
    done = _import(tmp_path, "import fastsession.store")
    assert done.returncode != 0
    assert "unrelated project 'fastsession'" in done.stderr
    assert "pip uninstall -y fastsession fastsession-store" in done.stderr


def test_an_init_that_is_not_this_projects_is_a_clear_error(tmp_path):
    folder = _copy_of_the_package(tmp_path)
    (folder / "__init__.py").write_text("")  # whoever wrote it, it did not import this package's _origin
    done = _import(tmp_path, "import fastsession.store")
    assert done.returncode != 0 and "is not fastsession-store's" in done.stderr


def test_the_other_projects_files_beside_this_one_are_a_clear_error(tmp_path):
    folder = _copy_of_the_package(tmp_path)
    (folder / "fast_session_middleware.py").write_text("class FastSessionMiddleware:\n    pass\n")
    done = _import(tmp_path, "import fastsession")
    assert done.returncode != 0 and "unrelated project 'fastsession'" in done.stderr


def test_the_package_copied_alone_imports(tmp_path):
    _copy_of_the_package(tmp_path)
    done = _import(tmp_path, "import fastsession; print(fastsession.DISTRIBUTION)")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "fastsession-store"


def test_the_distribution_name_is_the_one_every_install_line_uses():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with open(os.path.join(root, "pyproject.toml")) as f:
        assert re.search(r'^name = "fastsession-store"', f.read(), re.M)
    import glob

    for name in ["README.md", "CHANGELOG.md", *glob.glob("docs/*.md", root_dir=root)]:
        with open(os.path.join(root, name)) as f:
            text = f.read()
        # Every install line names fastsession-store; "pip install fastsession" appears only where it is
        # said to install the other project.
        wrong = re.findall(r"pip install \"?fastsession(?![-_]store)(?!` installs an unrelated)[^\n]{0,30}", text)
        assert wrong == [], (name, wrong)
