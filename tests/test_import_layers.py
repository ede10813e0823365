"""The package-level import graph: each package imports only the layers below it.

Read from the source (every import statement, those inside functions included, since a
function-level import is a dependency too; ``TYPE_CHECKING`` blocks left out). A node is a
package directly under ``bgworkers/`` (its subpackages included) or a module at the root,
except a package's ``__main__`` (``python -m bgworkers.outbox``): a process's entry point,
which nothing imports, so it sits at the very top like the command line. :data:`LAYERS`
orders the nodes from the bottom up; no package imports one further up, so the package graph
has no cycle. Where a package needs something from above (the broker's builder, the schedule
table, a metrics endpoint's collectors), the composition root or the package's ``__init__``
hands it in.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import bgworkers

PACKAGE = Path(bgworkers.__file__).resolve().parent

#: Bottom first. A package may import those before it.
LAYERS: tuple[str, ...] = (
    "errors",
    "queues",
    "compat",
    "settings",
    "logs",
    "tracing",
    "processes",
    "db",
    "migrations",
    "users",
    "metrics",
    "brokers",
    "middleware",
    "tasks",
    "outbox",
    "scheduling",
    "email",
    "sync",
    "files",
    "reminders",
    "maintenance",
    "monitoring",
    "console",
    "stack",  # the composition root: build_broker puts every package's middleware in order
    "bgworkers",  # the package's __init__: what the CLIs load; it hands the wiring its builder
    "cli",
    "__main__",  # each package's ``python -m`` entry point
)


def node_of(dotted: str) -> str | None:
    parts = dotted.split(".")
    if parts[0] != "bgworkers":
        return None
    if len(parts) > 1 and ((PACKAGE / parts[1]).is_dir() or (PACKAGE / f"{parts[1]}.py").is_file()):
        return parts[1]
    return "bgworkers"


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped.update(id(child) for child in ast.walk(node))
    return skipped


def import_graph() -> dict[tuple[str, str], list[str]]:
    """``(importer, imported)`` → the ``file:line`` of each such import."""
    edges: dict[tuple[str, str], list[str]] = defaultdict(list)
    for path in PACKAGE.rglob("*.py"):
        relative = path.relative_to(PACKAGE)
        if relative.parts[:2] == ("migrations", "versions"):
            continue
        source = relative.parts[0].removesuffix(".py")
        source = "bgworkers" if source == "__init__" else source
        source = "__main__" if relative.name == "__main__.py" else source
        tree = ast.parse(path.read_text())
        skipped = _type_checking_nodes(tree)
        for node in ast.walk(tree):
            if id(node) in skipped:
                continue
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names = [f"{node.module}.{alias.name}" for alias in node.names]
            else:
                continue
            for name in names:
                target = node_of(name)
                if target is not None and target != source:
                    edges[(source, target)].append(f"bgworkers/{relative}:{node.lineno}")
    return edges


def test_every_package_and_root_module_has_a_layer() -> None:
    nodes = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()}
    nodes |= {p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__"}
    assert nodes | {"bgworkers", "__main__"} == set(LAYERS), "put the new package in LAYERS"


def test_no_package_imports_one_further_up() -> None:
    rank = {name: i for i, name in enumerate(LAYERS)}
    upward = [
        f"{a} -> {b} ({', '.join(sites[:3])})"
        for (a, b), sites in sorted(import_graph().items())
        if rank[b] > rank[a]
    ]
    assert upward == [], "imports against the layers (a cycle in the making): " + "; ".join(upward)


def cycles(edges: set[tuple[str, str]]) -> list[list[str]]:
    """The strongly connected components of more than one node (Tarjan), each sorted."""
    successors: dict[str, set[str]] = defaultdict(set)
    for source, target in edges:
        successors[source].add(target)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for successor in successors[node]:
            if successor not in index:
                visit(successor)
                low[node] = min(low[node], low[successor])
            elif successor in stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            component = [stack.pop()]
            while component[-1] != node:
                component.append(stack.pop())
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(successors):
        if node not in index:
            visit(node)
    return found


def test_the_package_graph_has_no_cycle() -> None:
    assert cycles(set(import_graph())) == [], "package-level import cycles"


def test_cycles_finds_a_cycle() -> None:
    assert cycles({("a", "b"), ("b", "c"), ("c", "a"), ("c", "d")}) == [["a", "b", "c"]]
