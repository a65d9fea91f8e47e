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
KINDS = ["ids", "lock", "io", "drive"]


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
