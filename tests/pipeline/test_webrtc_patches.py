"""After a pipecat or aiortc upgrade: every private member server/pipeline/webrtc/ relies on is still there."""

from __future__ import annotations

import ast
import importlib
import inspect
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from server.pipeline.webrtc import patches
from server.pipeline.webrtc.patches import PRIVATE_MEMBERS, PrivateMember
from server.pipeline.webrtc.transport import LessonTransport

PACKAGE = Path(patches.__file__).parent
OURS = "server."


def mangled(name: str, cls: type) -> str:
    if name.startswith("__") and not name.endswith("__"):
        return f"_{cls.__name__.lstrip('_')}{name}"
    return name


def upstream(cls: type) -> list[type]:
    return [c for c in cls.__mro__ if c is not object and not c.__module__.startswith(OURS)]


def class_tree(cls: type) -> ast.ClassDef | None:
    try:
        source = textwrap.dedent(inspect.getsource(cls))
    except (OSError, TypeError):
        return None  # a class without Python source (a C extension type)
    tree = ast.parse(source).body[0]
    return tree if isinstance(tree, ast.ClassDef) else None


def assigned_attributes(cls: type, tree: ast.AST | None = None) -> set[str]:
    """Attribute names the class's own code assigns (`self.x = ...`, `packet.x: T = ...`), mangled as Python does."""
    tree = tree if tree is not None else class_tree(cls)
    if tree is None:
        return set()
    names = set()
    for node in ast.walk(tree):
        targets: list[ast.expr] = []
        if isinstance(node, ast.Assign):
            targets = list(node.targets)
        elif isinstance(node, (ast.AnnAssign, ast.AugAssign)):
            targets = [node.target]
        names |= {mangled(t.attr, cls) for t in targets if isinstance(t, ast.Attribute)}
    return names


def private_members_of(cls: type) -> set[str]:
    """Every private name an upstream class in `cls`'s hierarchy defines or assigns."""
    names: set[str] = set()
    for c in upstream(cls):
        names |= {n for n in vars(c) if n.startswith("_") and not n.endswith("__")}
        names |= {n for n in assigned_attributes(c) if n.startswith("_") and not n.endswith("__")}
    return names


def describe(member: PrivateMember) -> str:
    return f"{member.owner.__module__}.{member.owner.__qualname__}.{member.name} ({member.use})"


@pytest.mark.parametrize("member", PRIVATE_MEMBERS, ids=lambda m: f"{m.owner.__name__}.{m.name}")
def test_each_listed_private_member_is_still_there_as_we_use_it(member: PrivateMember) -> None:
    if member.kind == "method":
        found = next((vars(c)[member.name] for c in member.owner.__mro__ if member.name in vars(c)), None)
        assert callable(found), f"no longer a method: {describe(member)}"
        params = tuple(inspect.signature(found).parameters)[1:]
        assert params == member.params, f"{describe(member)} now takes {params}, not {member.params}"
        assert inspect.iscoroutinefunction(found) == member.is_async, f"async or not changed: {describe(member)}"
    else:
        defined = any(member.name in vars(c) or member.name in assigned_attributes(c) for c in upstream(member.owner))
        assert defined, f"no longer set anywhere in its class: {describe(member)}"


def private_uses(tree: ast.Module) -> Iterator[tuple[str | None, str]]:
    """(class name or None, private name) for each private attribute our code touches, and each private method
    it defines in a class; `self.x` is reported with its class, `other.x` without one."""
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            for item in ast.walk(node):
                if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)) and _private(item.name):
                    yield node.name, item.name
                if isinstance(item, ast.Attribute) and _private(item.attr):
                    on_self = isinstance(item.value, ast.Name) and item.value.id == "self"
                    yield (node.name if on_self else None), item.attr
        else:
            for item in ast.walk(node):
                if isinstance(item, ast.Attribute) and _private(item.attr):
                    yield None, item.attr


def _private(name: str) -> bool:
    return name.startswith("_") and not name.endswith("__")


def test_the_package_touches_no_private_upstream_member_missing_from_the_list() -> None:
    listed = {m.name for m in PRIVATE_MEMBERS}
    missing = []
    for path in sorted(PACKAGE.glob("*.py")):
        if path.name in {"patches.py", "__init__.py"}:
            continue
        module = importlib.import_module(f"server.pipeline.webrtc.{path.stem}")
        for class_name, name in private_uses(ast.parse(path.read_text())):
            if class_name is None:
                # On another object (an aiortc receiver, a track, a packet): always upstream's.
                if name not in listed:
                    missing.append(f"{path.name}: .{name}")
                continue
            cls = getattr(module, class_name)
            if name in private_members_of(cls) and name not in listed:
                missing.append(f"{path.name}: {class_name}.{name}")
    unlisted = "\n".join(sorted(set(missing)))
    assert not unlisted, f"private upstream members used but not in webrtc/patches.py:\n{unlisted}"


def test_our_transport_sets_up_what_pipecats_does() -> None:
    """LessonTransport repeats SmallWebRTCTransport.__init__ with our client: an upgrade that sets up more there
    must be repeated here too."""
    (base,) = [c for c in upstream(LessonTransport) if c.__name__ == "SmallWebRTCTransport"]

    def init_attributes(cls: type) -> set[str]:
        tree = class_tree(cls)
        assert tree is not None
        init = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "__init__")
        return assigned_attributes(cls, init)

    assert init_attributes(LessonTransport) == init_attributes(base)
