"""The package layout is the architecture: dependencies run one way, Ray stays in ``engine/``, and
the repository stands alone (docs/design.md, "Packages")."""

from __future__ import annotations

import ast
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "runner"

# Each top-level part of ``runner`` and the parts it may import (besides itself). A part lower in the
# list never imports a higher one.
ALLOWED: dict[str, set[str]] = {
    "errors": set(),
    "extras": {"errors"},
    "config": {"errors"},
    "contract": {"errors", "config", "extras"},
    "storage": {"errors", "config", "extras"},
    "records": {"errors", "config", "extras", "contract", "storage"},
    "model": {"errors", "config", "extras", "contract", "storage"},
    "jobs": {"errors", "config", "extras", "contract", "storage", "records", "model"},
    "engine": {"errors", "config", "extras", "contract", "storage", "records", "model", "jobs"},
    "cost": {"errors", "config", "extras", "contract", "storage", "jobs"},
    "client": {"errors", "config", "extras", "contract", "storage", "model", "jobs"},
    "server": {
        "errors", "config", "extras", "contract", "storage", "records", "model", "jobs", "engine", "cost",
    },
    "cli": {
        "errors", "config", "extras", "contract", "storage", "records", "model", "jobs", "engine", "cost",
        "client", "server",
    },
}  # fmt: skip


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


MODULES = _modules()


def _imports(name: str, path: Path) -> Iterator[tuple[str, int]]:
    """Every runner module ``name`` imports, at any depth of the file (function-level and
    TYPE_CHECKING imports too: a cycle hidden inside a function is still a cycle)."""
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[: len(base) - node.level + 1]
                module = ".".join([*base, *([node.module] if node.module else [])])
            else:
                module = node.module or ""
            for alias in node.names:
                target = f"{module}.{alias.name}"
                yield (target if target in MODULES else module), node.lineno
        elif isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno


def _graph() -> dict[str, set[str]]:
    return {
        name: {m for m, _ in _imports(name, path) if m in MODULES and m != name}
        for name, path in MODULES.items()
    }


def _part(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
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


def test_no_import_cycles() -> None:
    assert _cycles(_graph()) == []


def test_the_cycle_check_finds_a_cycle() -> None:
    graph = {"runner.a": {"runner.b"}, "runner.b": {"runner.c"}, "runner.c": {"runner.a"}, "runner.d": set()}
    assert _cycles(graph) == [["runner.a", "runner.b", "runner.c"]]


def test_every_part_is_placed_in_the_layers() -> None:
    parts = {_part(m) for m in MODULES} - {""}
    assert parts <= set(ALLOWED), f"add {sorted(parts - set(ALLOWED))} to ALLOWED, in its layer"


def test_dependencies_run_one_way() -> None:
    wrong = [
        f"{m} imports {t}"
        for m, targets in _graph().items()
        if _part(m)
        for t in targets
        if _part(t) != _part(m) and _part(t) and _part(t) not in ALLOWED[_part(m)]
    ]
    assert wrong == []


@pytest.mark.parametrize("heavy", ["ray", "onnxruntime"])
def test_ray_is_imported_only_in_engine(heavy: str) -> None:
    where = [
        f"{path.relative_to(ROOT)}:{line}"
        for name, path in MODULES.items()
        for module, line in _imports(name, path)
        if module.split(".")[0] == heavy and _part(name) != "engine"
    ]
    allowed = [] if heavy == "ray" else where  # onnxruntime: only models/ and tests use it
    assert where == allowed


# Things a reader outside this repository cannot resolve: a checkout-relative path, and tracker
# numbers. Built from pieces so that this file does not match itself.
OUTSIDE = re.compile(
    "|".join([r"\.\./" + "shared", r"\bCON" + r"TRACT\b", "DESIGN" + r"\.md", r"\b[Ii]ssues?" + r"\s+#?\d+"])
)


def test_the_repository_stands_alone() -> None:
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    hits = []
    for name in tracked:
        path = ROOT / name
        if path.suffix not in {".py", ".md", ".toml", ".yaml", ".yml", ".cfg", ".txt", ".json", ""}:
            continue
        if not path.is_file():
            continue
        for n, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            if OUTSIDE.search(line):
                hits.append(f"{name}:{n}: {line.strip()[:100]}")
    assert hits == []


def test_the_stand_alone_check_sees_each_kind_of_reference() -> None:
    examples = ["see ../" + "shared/x", "DESIGN" + ".md", "CON" + "TRACT §4", "CON" + "TRACT 9"]
    for text in [*examples, "fixed in issue" + " 8", "Issue" + " #12"]:
        assert OUTSIDE.search(text), text
    assert not OUTSIDE.search("docs/contract.md, section 4.3")
