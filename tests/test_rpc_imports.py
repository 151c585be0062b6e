"""``rpc`` has no import cycle (issue 14 item 4): every import counts, the ones inside functions
and under ``TYPE_CHECKING`` too, so no module of ``rpc`` needs another that needs it back."""

from __future__ import annotations

import ast
from pathlib import Path

RPC = Path(__file__).resolve().parent.parent / "rpc"


def module_name(path: Path) -> str:
    parts = path.relative_to(RPC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    modules = {module_name(p): p for p in RPC.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                for alias in node.names:  # `from rpc.wire import sse` names a module
                    full = f"{node.module}.{alias.name}"
                    found.add(full if full in modules else node.module)
            elif isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
        graph[name] = {m for m in found if m in modules and m != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    state: dict[str, int] = {}  # 1: on the path, 2: done
    path: list[str] = []
    found: list[list[str]] = []

    def visit(module: str) -> None:
        state[module] = 1
        path.append(module)
        for target in sorted(graph[module]):
            if state.get(target) == 1:
                found.append([*path[path.index(target) :], target])
            elif target not in state:
                visit(target)
        path.pop()
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module)
    return found


def test_the_graph_sees_the_rooms() -> None:
    graph = import_graph()
    assert {"rpc.wire.dispatch", "rpc.procedures.routes", "rpc.auth.sessions"} <= set(graph)
    assert "rpc.wire.superjson" in graph["rpc.wire.dispatch"]


def test_a_cycle_is_found() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c", "a"]]


def test_rpc_has_no_import_cycle() -> None:
    assert cycles(import_graph()) == []
