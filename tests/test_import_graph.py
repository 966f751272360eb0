"""The package's imports run one way: no cycle among django_prometheus' modules, top level or in functions.

Read from the source (``src/django_prometheus`` and ``_core``) with ``ast``, so an
import inside a function counts as much as one at the top: a cycle there still
means two modules that each need the other (the scrape path once ran
exposition -> metrics -> exposition). Imports under ``if TYPE_CHECKING:`` never
run and are left out.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "django_prometheus"
SOURCES = {PACKAGE: ROOT / "src" / PACKAGE, f"{PACKAGE}._core": ROOT / "_core"}


def _modules() -> dict[str, Path]:
    found = {}
    for prefix, folder in SOURCES.items():
        for path in folder.rglob("*.py"):
            parts = list(path.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join([prefix, *parts])] = path
    return found


def _type_checking(node: ast.AST) -> bool:
    test = getattr(node, "test", None)
    return isinstance(node, ast.If) and (
        isinstance(test, ast.Name)
        and test.id == "TYPE_CHECKING"
        or isinstance(test, ast.Attribute)
        and test.attr == "TYPE_CHECKING"
    )


def _imported(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """Every module of ours that ``name`` (the module at ``path``) imports, anywhere in its body."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    stack: list[ast.AST] = [ast.parse(path.read_text(), str(path))]
    while stack:
        node = stack.pop()
        if _type_checking(node):
            stack.extend(node.orelse)
            continue
        stack.extend(ast.iter_child_nodes(node))
        if isinstance(node, ast.Import):
            for alias in node.names:
                target = alias.name
                while target and target not in modules:  # import a.b.c runs a.b.c (and its parents)
                    target = target.rpartition(".")[0]
                if target:
                    out.add(target)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, base]) if base else ".".join(anchor)
            for alias in node.names:
                if f"{base}.{alias.name}" in modules:  # from pkg import submodule
                    out.add(f"{base}.{alias.name}")
                elif base in modules:
                    out.add(base)
    out.discard(name)
    return out


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imported(name, path, modules) for name, path in modules.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_cycle_in_the_package():
    graph = _graph()
    cycles = _cycles(graph)
    detail = [{m: sorted(graph[m] & set(c)) for m in c} for c in cycles]
    assert cycles == [], detail


def test_the_writer_is_blind_to_the_collectors_and_they_to_it():
    # Data flows collector -> writer -> bytes: the metric classes and the multiprocess aggregate
    # hand the writer their data; the writer (exposition) imports neither of them.
    graph = _graph()
    assert not graph[f"{PACKAGE}.text_format"] & {f"{PACKAGE}.metrics", f"{PACKAGE}.multiprocess"}
    assert f"{PACKAGE}.text_format" not in graph[f"{PACKAGE}.metrics"]
    assert f"{PACKAGE}.text_format" not in graph[f"{PACKAGE}.multiprocess"]


def test_the_graph_sees_imports_inside_functions_and_finds_a_cycle(tmp_path):
    # The check itself: a cycle made only by a function-level import is found.
    (tmp_path / "a.py").write_text("import os\n\ndef f():\n    from pkg import b\n")
    (tmp_path / "b.py").write_text("from pkg.a import f\n")
    (tmp_path / "c.py").write_text("import typing\nif typing.TYPE_CHECKING:\n    from pkg import a\n")
    modules = {f"pkg.{n}": tmp_path / f"{n}.py" for n in "abc"}
    graph = {name: _imported(name, path, modules) for name, path in modules.items()}
    assert graph == {"pkg.a": {"pkg.b"}, "pkg.b": {"pkg.a"}, "pkg.c": set()}
    assert _cycles(graph) == [["pkg.a", "pkg.b"]]


def test_every_name_a_core_dispatcher_exports_is_read_by_the_package():
    # A dispatcher (``_core/_cells.py``...) re-exports what the package uses of its core; a name
    # nobody reads through it is dead weight (the tests reach the twins themselves).
    package_text = "\n".join(p.read_text() for p in SOURCES[PACKAGE].rglob("*.py"))
    unread = []
    for path in sorted(SOURCES[f"{PACKAGE}._core"].glob("_*.py")):
        if "pick(" not in path.read_text() or path.stem == "_dispatch":
            continue  # not a dispatcher
        tree = ast.parse(path.read_text())
        exported = [
            element.value
            for node in tree.body
            if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "__all__" for t in node.targets)
            for element in node.value.elts
        ]
        for name in exported:
            if name in ("USE_EXTENSIONS", "NO_EXTENSIONS"):
                continue
            module = path.stem
            if not re.search(
                rf"\b{module}\.{name}\b|from {PACKAGE}\._core\.{module} import[^\n]*\b{name}\b", package_text
            ):
                unread.append(f"{module}.{name}")
    assert unread == [], unread


def _run_at_import(node: ast.AST):
    # What runs when the module is imported: module and class bodies, not function bodies.
    for child in ast.iter_child_nodes(node):
        if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)) or _type_checking(child):
            continue
        yield child
        yield from _run_at_import(child)


def _connects_at_import(tree: ast.Module) -> list[int]:
    return [
        node.lineno
        for node in _run_at_import(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "connect"
    ]


def test_no_module_connects_a_signal_when_imported():
    # Receivers are connected in ``AppConfig.ready()`` (or by the code that first needs them),
    # never by importing a module: issue 24, item 5.
    found = [
        f"{name}:{line}"
        for name, path in _modules().items()
        for line in _connects_at_import(ast.parse(path.read_text()))
    ]
    assert found == [], found


def test_the_signal_check_sees_a_connect_at_import_but_not_in_a_function():
    tree = ast.parse(
        "from django.core.signals import setting_changed\n"
        "def ready():\n    setting_changed.connect(f)\n"
        "class A:\n    def m(self):\n        setting_changed.connect(f)\n"
        "if True:\n    setting_changed.connect(f)\n"
    )
    assert _connects_at_import(tree) == [8]
