"""The house keeps its shape: every module imports only from its own layer or below, and
no group of modules imports itself in a circle.

The layers are the course's order, bottom to top. A module sits in the layer of its
top-level package (``labsupport.net.run`` in ``net``). Imports inside functions count
too: a lazy import is still a dependency, only a hidden one.
"""
from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PACKAGE = REPO / "labsupport"

#: Bottom to top. A package may import from any package listed before it, never after.
LAYERS: tuple[str, ...] = (
    "kernel",      # the one gateway: syscalls, errors, /proc readers, tables
    "ownership",   # what the lab made, and the registry clean() walks
    "process",     # the child-process runner; the residue check
    "namespaces",  # notebooks 01-07: chroot, uts, ipc, pid, mount, user
    "cgroups",     # notebook 08
    "net",         # notebook 06: links, bridge, publish, shaping, views
    "images",      # notebook 09
    "vm",          # notebooks 12-13: QEMU, guests, KVM, Vagrant
    "container",   # notebook 10 and appendix A: spec -> plan -> shim
    "compose",     # notebook 11
    "bench",       # every benchmark
    "widgets",     # live views for the notebooks
    "course",      # exercises, grading, doctor, glossary
    "cli",         # the command line and the package's own face
)
FACES = {"labsupport": "cli", "labsupport.__main__": "cli"}


def modules() -> dict[str, Path]:
    """Every module of the package by dotted name (a package by its own name)."""
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(REPO).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def _resolve(name: str, known: dict[str, Path]) -> str:
    """The module an imported name lives in: ``labsupport.net.run.serve_page`` -> ``labsupport.net.run``."""
    while name and name not in known:
        name = name.rpartition(".")[0]
    return name


def imports_of(module: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The lab modules one module imports, wherever in the file the import stands."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package
                for _ in range(node.level - 1):
                    anchor = anchor.rpartition(".")[0]
                base = f"{anchor}.{base}" if base else anchor
            names = [f"{base}.{alias.name}" for alias in node.names] or [base]
            names = [n if n in known else base for n in names]
        else:
            continue
        for name in names:
            target = _resolve(name, known) if name.startswith("labsupport") else ""
            if target and target != module:
                found.add(target)
    return found


def graph() -> dict[str, set[str]]:
    known = modules()
    return {module: imports_of(module, path, known) for module, path in known.items()}


def layer(module: str) -> int:
    """The rank of a module's layer; a module outside every layer is an error of its own."""
    if module in FACES:
        return LAYERS.index(FACES[module])
    top = module.split(".")[1]
    if top not in LAYERS:
        raise AssertionError(f"{module} is in no layer: add its package to LAYERS")
    return LAYERS.index(top)


def upward(edges: dict[str, set[str]]) -> list[str]:
    return sorted(f"{a} -> {b}" for a, targets in edges.items() for b in targets
                  if layer(b) > layer(a))


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Groups of modules that import each other in a circle (Tarjan's strongly connected parts)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in edges.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def test_every_module_sits_in_a_layer() -> None:
    for module in modules():
        layer(module)


def test_no_module_imports_a_layer_above_its_own() -> None:
    assert upward(graph()) == []


def test_no_modules_import_each_other_in_a_circle() -> None:
    assert cycles(graph()) == []


def test_the_checks_see_an_upward_import_and_a_circle() -> None:
    """The import that once closed a 22-module circle: ownership calling into the runtime."""
    edges = graph()
    edges["labsupport.ownership"] = edges["labsupport.ownership"] | {"labsupport.container.runtime"}
    assert "labsupport.ownership -> labsupport.container.runtime" in upward(edges)
    assert any("labsupport.ownership" in group for group in cycles(edges))


def test_only_the_kernel_gateway_opens_the_c_library() -> None:
    """One libc handle, one errno-to-sentence table: no module outside kernel/ calls into C."""
    callers = [path.relative_to(REPO) for path in PACKAGE.rglob("*.py")
               if "kernel" not in path.relative_to(PACKAGE).parts
               and any(word in path.read_text() for word in ("CDLL(", "cdll.", ".syscall(", "LIBC."))]
    assert callers == []


def test_lazy_imports_inside_functions_count(tmp_path: Path) -> None:
    source = tmp_path / "lazy.py"
    source.write_text("def later():\n    from labsupport.container import runtime\n")
    known = {**modules(), "labsupport.ownership.lazy": source}
    assert imports_of("labsupport.ownership.lazy", source, known) == {"labsupport.container.runtime"}
