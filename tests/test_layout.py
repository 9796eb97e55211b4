"""The package's layout (issue 16): data flows one way, so no module imports a module that imports it back,
and no command-line module imports another (what they share lives in library modules)."""

import ast
import pathlib

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "minifcn"
COMMANDS = {"minifcn.train", "minifcn.evaluate", "minifcn.predict", "minifcn.download"}


def _module_name(path: pathlib.Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: pathlib.Path, modules: set[str]) -> set[str]:
    """The package's modules that ``path`` imports by name, anywhere in it (lazily too)."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name in modules)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:  # `from .pkg import mod` imports the module pkg.mod
                if f"{base}.{alias.name}" in modules:
                    found.add(f"{base}.{alias.name}")
                elif base in modules:
                    found.add(base)
    found.discard(name)
    return found


def _graph() -> dict[str, set[str]]:
    paths = sorted(PACKAGE.rglob("*.py"))
    modules = {_module_name(p) for p in paths}
    return {_module_name(p): _imports(p, modules) for p in paths}


def test_the_graph_is_read():
    graph = _graph()
    assert "minifcn.inference" in graph["minifcn.evaluate"] and "minifcn.autograd" in graph["minifcn.functional.basic"]


def test_no_module_imports_one_that_imports_it_back():
    graph = _graph()

    def reaches(start: str) -> set[str]:
        seen, todo = set(), [start]
        while todo:
            for nxt in graph.get(todo.pop(), ()):
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        return seen

    # A package's __init__ gathers its modules; a module importing its own package's __init__ back is a loop too.
    loops = sorted(m for m in graph if m in reaches(m))
    assert loops == [], f"import loops through: {loops}"


def test_no_command_line_module_imports_another():
    graph = _graph()
    for command in COMMANDS:
        assert not graph[command] & (COMMANDS - {command}), (command, graph[command] & COMMANDS)
