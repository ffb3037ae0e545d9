"""The package's modules import one another without a cycle."""

from __future__ import annotations

import ast
from collections.abc import Collection
from pathlib import Path

import bulk_update

PACKAGE = Path(bulk_update.__file__).parent


def _module_name(path: Path) -> str:
    parts = ["bulk_update", *path.relative_to(PACKAGE).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported_at_load(path: Path, modules: Collection[str]) -> set[str]:
    """The package's modules `path` needs when it is loaded: its top-level imports, not
    those inside functions or under `if TYPE_CHECKING`. `from . import xlsx` needs the
    module xlsx; `from . import __version__` needs the package's `__init__` itself."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = package
            for _ in range(node.level - 1):
                base = base.rpartition(".")[0]
            target = (f"{base}.{node.module}" if node.module else base) if node.level else ""
            target = target or node.module or ""
            for alias in node.names:
                module = f"{target}.{alias.name}"
                found.add(module if module in modules else target)
    return found & set(modules)


def test_no_module_of_the_package_imports_itself_back() -> None:
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = {name: _imported_at_load(path, modules) for name, path in modules.items()}

    def cycle_from(start: str) -> list[str] | None:
        stack, seen = [(start, [start])], set()
        while stack:
            node, path = stack.pop()
            for nxt in graph[node]:
                if nxt == start:
                    return [*path, start]
                if nxt not in seen:
                    seen.add(nxt)
                    stack.append((nxt, [*path, nxt]))
        return None

    cycles = [c for c in map(cycle_from, graph) if c]
    assert not cycles, cycles[0]
