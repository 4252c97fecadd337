"""The layers hold: each rule reads every module's imports (ast, so nothing is imported) and lists what breaks it."""

from __future__ import annotations

import ast
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SERVER = ROOT / "server"
WEB_FRAMEWORK = ("quart", "quart_schema", "werkzeug", "hypercorn")
# Top-level modules that are the web app's own glue, not the domain: the factory, its state, the command line.
APP_GLUE = {"server", "server.app", "server.state", "server.cli"}
# What the domain may take from SQLAlchemy: the session's type (an opaque unit of work there) and its exceptions.
DOMAIN_SQLALCHEMY_ALLOWED = ("sqlalchemy.ext.asyncio.AsyncSession", "sqlalchemy.exc")
# The unit-of-work calls that read or write rows; in the domain a session is only handed on to the store.
SESSION_CALLS = {"add", "add_all", "delete", "execute", "flush", "get", "merge", "refresh", "scalar", "scalars"}


@dataclass(frozen=True)
class Import:
    module: str
    target: str
    line: int

    def __str__(self) -> str:
        return f"{self.module} -> {self.target} (line {self.line})"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def server_modules() -> dict[str, ast.Module]:
    return {module_name(p): ast.parse(p.read_text(), filename=str(p)) for p in sorted(SERVER.rglob("*.py"))}


def imports(module: str, tree: ast.Module) -> Iterator[Import]:
    """Every import anywhere in the module (inside functions and TYPE_CHECKING blocks too), as dotted targets.

    `from a.b import c` yields `a.b.c`, whether `c` is a module or a name in one, so rules can match by prefix.
    """
    package = module if _is_package(module) else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(module, alias.name, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                yield Import(module, f"{base}.{alias.name}", node.lineno)


def _is_package(module: str) -> bool:
    return (ROOT / module.replace(".", "/") / "__init__.py").exists()


def under(target: str, *prefixes: str) -> bool:
    return any(target == p or target.startswith(p + ".") for p in prefixes)


def is_store(module: str) -> bool:
    return under(module, "server.store")


def is_domain(module: str) -> bool:
    """server/<concern>.py: the domain modules (rules, limits, views)."""
    return module.count(".") == 1 and module not in APP_GLUE


def offending(rule: Callable[[Import], bool], modules: Callable[[str], bool]) -> list[str]:
    found = [str(i) for m, tree in server_modules().items() if modules(m) for i in imports(m, tree) if rule(i)]
    return sorted(found)


def web_import(i: Import) -> bool:
    return under(i.target, *WEB_FRAMEWORK)


def test_domain_and_store_import_no_web_framework() -> None:
    bad = offending(web_import, lambda m: is_domain(m) or is_store(m))
    assert not bad, "the domain and the store must not know about HTTP:\n" + "\n".join(bad)


def test_only_the_store_imports_sqlalchemy() -> None:
    def rule(i: Import) -> bool:
        if not under(i.target, "sqlalchemy") or is_store(i.module):
            return False
        return not (is_domain(i.module) and under(i.target, *DOMAIN_SQLALCHEMY_ALLOWED))

    bad = offending(rule, lambda m: True)
    assert not bad, "SQL lives in server/store/:\n" + "\n".join(bad)


def test_the_domain_neither_queries_nor_builds_rows() -> None:
    """The domain hands its session to the store; it never calls the session itself nor constructs a model row."""
    bad = []
    for module, tree in server_modules().items():
        if not is_domain(module):
            continue
        models = {
            alias.asname or alias.name
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and node.module == "server.store.models"
            for alias in node.names
            if alias.name[:1].isupper()
        }
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) and func.value.id == "session":
                if func.attr in SESSION_CALLS:
                    bad.append(f"{module} -> session.{func.attr}() (line {node.lineno})")
            elif isinstance(func, ast.Name) and func.id in models:
                bad.append(f"{module} -> {func.id}(...) (line {node.lineno})")
    assert not bad, "queries and inserts belong in server/store/:\n" + "\n".join(sorted(bad))


def test_the_store_imports_nothing_above_it() -> None:
    """Of the server, the store knows only itself and the settings (Alembic's env reads the database URL there)."""

    def rule(i: Import) -> bool:
        return under(i.target, "server") and not under(i.target, "server.store", "server.settings")

    bad = offending(rule, is_store)
    assert not bad, "server/store/ must not import routes or the domain:\n" + "\n".join(bad)


def test_the_pipeline_imports_no_store_lessons_or_routes() -> None:
    def rule(i: Import) -> bool:
        return under(i.target, "server.store", "server.lessons", "server.api", "quart")

    bad = offending(rule, lambda m: under(m, "server.pipeline"))
    assert not bad, "server/pipeline/ gets callbacks, not a database or routes:\n" + "\n".join(bad)


def test_settings_import_nothing_from_the_pipeline() -> None:
    bad = offending(lambda i: under(i.target, "server.pipeline"), lambda m: m == "server.settings")
    assert not bad, "server/settings.py must not import the pipeline:\n" + "\n".join(bad)


def test_the_scanner_sees_every_kind_of_import() -> None:
    """A check on the checker, so that an empty list above means something: plain, from- and in-function imports."""
    source = "import quart\nfrom server.store import db\ndef f():\n    from sqlalchemy.exc import IntegrityError\n"
    tree = ast.parse(source)
    found = [i.target for i in imports("server.example", tree)]
    assert found == ["quart", "server.store.db", "sqlalchemy.exc.IntegrityError"]


def resolve(target: str, known: Collection[str]) -> str | None:
    """The module an import target names: the longest known prefix (`a.b.c` from `a.b` is module a.b)."""
    parts = target.split(".")
    for end in range(len(parts), 0, -1):
        if (name := ".".join(parts[:end])) in known:
            return name
    return None


def mutual_imports(modules: dict[str, ast.Module], within: str) -> list[str]:
    """Pairs of modules under `within` that import each other (a direct cycle), each as "a <-> b"."""
    arrows = {
        (m, target)
        for m, tree in modules.items()
        if under(m, within)
        for i in imports(m, tree)
        if (target := resolve(i.target, modules)) is not None and target != m and under(target, within)
    }
    return sorted(f"{a} <-> {b}" for a, b in arrows if a < b and (b, a) in arrows)


def test_no_two_pipeline_modules_import_each_other() -> None:
    # One of a pair that needs the other's helper is a helper in the wrong place: compute.py holds the shared ones.
    cycles = mutual_imports(server_modules(), "server.pipeline")
    assert not cycles, "modules of server/pipeline/ that import each other:\n" + "\n".join(cycles)


# What starts threads of its own: a pool, a thread, or a class built on one.
THREAD_MAKERS = {"Thread", "Timer", "ThreadPoolExecutor", "ProcessPoolExecutor"}
# The one module of the pipeline that makes them, so that every thread a lesson's models run on is named,
# prioritized and gated in one place. (webrtc/ starts none: aiortc's and pipecat's own run on the event loop.)
THREAD_OWNER = "server.pipeline.compute"


def thread_makers(module: str, tree: ast.Module) -> Iterator[str]:
    """Where `module` constructs or subclasses a thread or a pool, as "module: Name (line n)"."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            named = [node.func]
        elif isinstance(node, ast.ClassDef):
            named = list(node.bases)
        else:
            continue
        for expr in named:
            name = expr.attr if isinstance(expr, ast.Attribute) else expr.id if isinstance(expr, ast.Name) else ""
            if name in THREAD_MAKERS:
                yield f"{module}: {name} (line {node.lineno})"


def test_only_compute_makes_the_pipelines_threads_and_pools() -> None:
    found = [
        where
        for module, tree in server_modules().items()
        if under(module, "server.pipeline") and module != THREAD_OWNER
        for where in thread_makers(module, tree)
    ]
    assert not found, f"threads and pools of server/pipeline/ are made in {THREAD_OWNER}:\n" + "\n".join(found)


def test_the_pipeline_rules_see_a_cycle_and_a_thread() -> None:
    """A check on the two checks above: a cycle through a function-level import, a pool and a Thread subclass."""
    modules = {
        "server.pipeline.a": ast.parse("from server.pipeline.b import helper\n"),
        "server.pipeline.b": ast.parse("def f():\n    from server.pipeline import a\n"),
        "server.pipeline.c": ast.parse("from server.pipeline.a import x\n"),
    }
    assert mutual_imports(modules, "server.pipeline") == ["server.pipeline.a <-> server.pipeline.b"]
    source = "import threading\nclass T(threading.Thread): ...\npool = cf.ThreadPoolExecutor(2)\n"
    assert list(thread_makers("m", ast.parse(source))) == ["m: Thread (line 2)", "m: ThreadPoolExecutor (line 3)"]
