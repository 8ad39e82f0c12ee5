"""The packages keep their layers: ``detector`` (what a worker runs) <- ``handlers``/``export``/``ops`` <-
``training``/``loadtest``; nothing imports upward, and no module imports itself back through others, at module
level or inside a function."""

from __future__ import annotations

import ast

from tests.conftest import REPO

ALLOWED = {   # package -> the project packages its modules may import
    "detector": {"detector"},
    "handlers": {"detector", "handlers"},
    "export": {"detector", "export"},
    "ops": {"detector", "export", "ops"},
    "monitoring": {"monitoring"},
    "training": {"detector", "export", "training"},
    "loadtest": {"detector", "export", "handlers", "ops", "loadtest"},
}


def project_imports() -> dict[str, set[str]]:
    """Module name -> the project modules it imports (anywhere in its body)."""
    modules = {}
    for package in ALLOWED:
        for path in sorted((REPO / package).glob("*.py")):
            modules[f"{package}.{path.stem}"] = path
    graph = {}
    for name, path in modules.items():
        imported = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                imported.add(node.module)
                imported |= {f"{node.module}.{alias.name}" for alias in node.names}
        graph[name] = {module for module in imported if module in modules and module != name}
    return graph


def test_no_package_imports_from_a_higher_layer() -> None:
    upward = {name: sorted(target for target in targets if target.split(".")[0] not in ALLOWED[name.split(".")[0]])
              for name, targets in project_imports().items()}
    assert {name: targets for name, targets in upward.items() if targets} == {}


def test_no_module_imports_itself_back_through_others() -> None:
    graph = project_imports()
    loops = []
    for start in graph:
        stack, seen = [(start, (start,))], set()
        while stack:
            module, path = stack.pop()
            for target in graph[module]:
                if target == start:
                    loops.append(" -> ".join((*path, start)))
                elif target not in seen:
                    seen.add(target)
                    stack.append((target, (*path, target)))
    assert loops == []


def test_the_rules_cover_every_package_of_the_project() -> None:
    packages = {path.parent.name for path in REPO.glob("*/__init__.py")} - {"tests"}
    assert packages == set(ALLOWED)
