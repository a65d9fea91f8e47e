"""The .pyi stubs of the compiled kernels say what the pure twins' signatures say, and what the modules offer.

mypy reads the stubs for the compiled modules and the pure twins' own
annotations, so a signature changed in one twin and not in its stub (or in
_kernels.KernelSet, which types the chosen set) would type-check callers
against the wrong thing. Compared as text of the parsed annotations.
"""

import ast
import inspect
import os

import pytest
from conftest import compiled_twin

import fastsession

PACKAGE = os.path.dirname(fastsession.__file__)
KINDS = ["ids", "lock", "io", "drive", "request"]


def signatures(path, names=None, drop_self=False):
    """{function: ([(parameter, annotation), ...], return annotation)} of the top-level defs (or a class's)."""
    with open(path) as f:
        tree = ast.parse(f.read())
    found = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef) and (names is None or node.name in names):
            params = node.args.posonlyargs + node.args.args + node.args.kwonlyargs
            if drop_self:
                params = params[1:]
            shown = [(p.arg, ast.unparse(p.annotation) if p.annotation else None) for p in params]
            found[node.name] = (shown, ast.unparse(node.returns) if node.returns else None)
    return found


def stub(kind):
    return signatures(os.path.join(PACKAGE, f"_{kind}_c.pyi"))


@pytest.mark.parametrize("kind", KINDS)
def test_every_stub_signature_is_the_pure_twins(kind):
    stubbed = stub(kind)
    assert stubbed, f"_{kind}_c.pyi declares nothing"
    pure = signatures(os.path.join(PACKAGE, f"_{kind}_py.py"), set(stubbed))
    for name, signature in stubbed.items():
        assert name in pure, f"_{kind}_py lacks {name}, which _{kind}_c.pyi declares"
        assert pure[name] == signature, f"{name}: _{kind}_c.pyi says {signature}, _{kind}_py says {pure[name]}"


@pytest.mark.parametrize("kind", KINDS)
def test_the_stub_declares_what_the_compiled_module_offers_with_its_parameters(kind):
    module = compiled_twin(kind)
    offered = {
        name
        for name, value in vars(module).items()
        if callable(value) and not name.startswith("_") and getattr(value, "__module__", None) == module.__name__
    }
    stubbed = stub(kind)
    assert offered == set(stubbed), f"{module.__name__} offers {sorted(offered)}, its stub {sorted(stubbed)}"
    for name, (params, _) in stubbed.items():
        assert list(inspect.signature(getattr(module, name)).parameters) == [p for p, _ in params], name


def test_kernel_set_protocol_matches_the_stubs():
    protocol = signatures(os.path.join(PACKAGE, "_kernels.py"), drop_self=True)
    for kind in KINDS:
        for name, signature in stub(kind).items():
            assert protocol.get(name) == signature, f"_kernels.KernelSet.{name} differs from _{kind}_c.pyi"


def test_a_users_module_using_get_session_true_passes_mypy_strict(tmp_path):
    # get_session(True) always gives a session (typed by overloads), so user code needs no None check.
    import subprocess
    import sys

    user = tmp_path / "user_app.py"
    user.write_text(
        "from fastsession import Session, SessionStore\n"
        "from fastsession.aio import AsyncSessionStore\n"
        "from fastsession.wsgi import WSGITransaction\n\n\n"
        "def visit(directory: str) -> int:\n"
        "    with SessionStore(WSGITransaction({}), directory) as store:\n"
        "        session: Session = store.get_session(True)\n"
        "        session['visits'] = int(session.get('visits', 0)) + 1\n"
        "        maybe = store.get_session(False)\n"
        "        return 0 if maybe is None else len(maybe)\n\n\n"
        "async def avisit(directory: str) -> None:\n"
        "    async with AsyncSessionStore(WSGITransaction({}), directory) as store:\n"
        "        (await store.get_session(True))['visits'] = 1\n"
    )
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", str(user)],
        capture_output=True,
        text=True,
        cwd=str(tmp_path),
    )
    assert done.returncode == 0, done.stdout + done.stderr


PUBLIC_MODULES = [
    "fastsession.store", "fastsession.aio", "fastsession.aio_redis", "fastsession.asgi", "fastsession.wsgi",
    "fastsession.redis", "fastsession.session", "fastsession.errors", "fastsession.merge", "fastsession.users",
    "fastsession.record", "fastsession.sealed", "fastsession.migrate", "fastsession.gc",
    "fastsession.contrib.flask", "fastsession.contrib.django",
]  # fmt: skip


@pytest.mark.parametrize("name", PUBLIC_MODULES)
def test_each_public_module_says_what_is_public(name):
    import importlib

    if name == "fastsession.contrib.django":
        import test_django  # noqa: F401  (configures Django's settings, which the engine reads at import)
    module = importlib.import_module(name)
    assert module.__all__, name
    assert [n for n in module.__all__ if not hasattr(module, n)] == []
    namespace: dict = {}
    exec(f"from {name} import *", namespace)
    assert set(module.__all__) <= set(namespace)


def test_each_module_logs_to_its_own_child_of_fastsession_without_a_doubled_prefix(tmp_path, caplog):
    import logging

    from conftest import Transaction

    import fastsession

    store = fastsession.SessionStore(Transaction(), str(tmp_path))
    session = store.get_session(True)
    session["n"] = 1
    store.close()
    import glob

    (path,) = [p for p in glob.glob(str(tmp_path / "*" / "*")) if not p.endswith(".lock")]
    with open(path, "wb") as f:
        f.write(b"garbage")
    with caplog.at_level(logging.WARNING, "fastsession"):
        with fastsession.SessionStore(Transaction({"SID": session.session_id}), str(tmp_path)) as again:
            again.get_session(False)
    (record,) = [r for r in caplog.records if "corrupt" in r.getMessage()]
    assert record.name == "fastsession.files"
    assert not record.getMessage().startswith("fastsession")  # the logger's name says it: "%(name)s: %(message)s"
