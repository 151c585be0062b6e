"""The shape of the code (ARCHITECTURE.md): dependencies point one way, modules and functions
stay small, and the installed package holds every module and SQL file."""

from __future__ import annotations

import ast
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("rpc", "pipeline", "storage")
# What each package may import of the others: rpc → pipeline → storage, no arrow back.
ALLOWED = {"rpc": {"pipeline", "storage"}, "pipeline": {"storage"}, "storage": set()}
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60


def _modules(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def _imported_roots(path: Path) -> set[str]:
    """The top-level packages a module imports, at any depth of the file (lazy imports too)."""
    roots: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


@pytest.mark.parametrize("package", PACKAGES)
def test_dependencies_point_one_way(package: str) -> None:
    forbidden = set(PACKAGES) - ALLOWED[package] - {package}
    wrong = {
        str(path.relative_to(ROOT)): sorted(_imported_roots(path) & forbidden)
        for path in _modules(package)
        if _imported_roots(path) & forbidden
    }
    assert not wrong, f"{package} must not import {sorted(forbidden)}: {wrong}"


def test_no_module_outside_storage_imports_a_query() -> None:
    offenders = []
    for package in ("rpc", "pipeline"):
        for path in _modules(package):
            tree = ast.parse(path.read_text(), str(path))
            for node in ast.walk(tree):
                names = (
                    [node.module or ""]
                    if isinstance(node, ast.ImportFrom)
                    else [a.name for a in node.names]
                    if isinstance(node, ast.Import)
                    else []
                )
                if any(n == "storage.queries" or n.startswith("storage.sql") for n in names):
                    offenders.append(str(path.relative_to(ROOT)))
                if isinstance(node, ast.ImportFrom) and node.module == "storage":
                    if any(a.name in ("queries", "sql") for a in node.names):
                        offenders.append(str(path.relative_to(ROOT)))
    assert not offenders, f"only storage/ talks SQL: {sorted(set(offenders))}"


@pytest.mark.parametrize("package", PACKAGES)
def test_modules_stay_small(package: str) -> None:
    long = {
        str(p.relative_to(ROOT)): n
        for p in _modules(package)
        if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES
    }
    assert not long, f"modules over {MAX_MODULE_LINES} lines: {long}"


@pytest.mark.parametrize("package", PACKAGES)
def test_functions_stay_small(package: str) -> None:
    long: dict[str, int] = {}
    for path in _modules(package):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                start = min([node.lineno, *(d.lineno for d in node.decorator_list)])
                assert node.end_lineno is not None
                lines = node.end_lineno - start + 1
                if lines > MAX_FUNCTION_LINES:
                    long[f"{path.relative_to(ROOT)}:{node.lineno} {node.name}"] = lines
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines: {long}"


def test_the_wheel_holds_every_module_and_sql_file(tmp_path: Path) -> None:
    """A non-editable install works: every package, module, .sql file and the page's files
    (rpc/ui/static) are in the wheel."""
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(tmp_path), str(ROOT)],
        check=True, capture_output=True,
    )  # fmt: skip
    (wheel,) = tmp_path.glob("vision_pipeline-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {
        str(p.relative_to(ROOT))
        for package in PACKAGES
        for pattern in ("*.py", "*.sql", "py.typed", "*.html", "*.js", "*.css", "*.png")  # ui
        for p in (ROOT / package).rglob(pattern)
        if "__pycache__" not in p.parts
    }
    missing = sorted(expected - names)
    assert not missing, f"not in the wheel: {missing}"
    assert any(n.endswith(".sql") for n in names), "no SQL file shipped"
    assert "rpc/ui/static/index.html" in names, "the built-in page is not shipped"
    assert "rpc/ui/static/sample-brand.png" in names, "the walkthrough's image is not shipped"
