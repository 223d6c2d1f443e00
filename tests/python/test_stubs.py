"""The type stubs (python/tress/_tress.pyi) stay in step with the extension."""

import ast
import pathlib

import pytest

_tress = pytest.importorskip("tress._tress", reason="tress extension not built")

STUB = pathlib.Path(__file__).resolve().parents[2] / "python" / "tress" / "_tress.pyi"

# Slots every pyclass has that stubs do not list.
IGNORED = {
    "__new__", "__init__", "__repr__", "__doc__", "__module__", "__dict__",
    "__weakref__", "__reduce_ex__", "__reduce__", "__getstate__", "__setstate__",
    "__hash__", "__eq__", "__ne__", "__lt__", "__le__", "__gt__", "__ge__",
    "__str__", "__sizeof__", "__format__", "__dir__", "__class__", "__init_subclass__",
    "__subclasshook__", "__setattr__", "__getattribute__", "__delattr__",
    "__text_signature__", "__qualname__", "__name__", "__annotations__",
}


def stub_classes():
    tree = ast.parse(STUB.read_text())
    classes = {}
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            classes[node.name] = {
                n.name for n in node.body if isinstance(n, (ast.FunctionDef,))
            }
    return classes


def test_every_stub_class_exists_with_its_members():
    for name, members in stub_classes().items():
        cls = getattr(_tress, name)
        for member in members - IGNORED:
            assert hasattr(cls, member), f"stub lists {name}.{member}, the extension lacks it"


def test_every_runtime_member_is_in_the_stub():
    stubs = stub_classes()
    runtime_classes = [
        name for name, obj in vars(_tress).items() if isinstance(obj, type)
    ]
    assert sorted(runtime_classes) == sorted(stubs), "stub classes differ from the extension's"
    for name in runtime_classes:
        cls = getattr(_tress, name)
        own = set(vars(cls)) - IGNORED
        missing = own - stubs[name]
        assert not missing, f"{name}: members missing from the stub: {sorted(missing)}"
