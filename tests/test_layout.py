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


def _code_lines(node: ast.AST, source: list[str]) -> int:
    """Lines of a function that hold code: not blank, not a comment, not its docstring."""
    skip = set()
    body = getattr(node, "body", [])
    if body and isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant):
        skip = set(range(body[0].lineno, body[0].end_lineno + 1))
    lines = range(node.lineno, node.end_lineno + 1)
    return sum(
        1 for i in lines if i not in skip and source[i - 1].strip() and not source[i - 1].strip().startswith("#")
    )


def test_files_and_functions_stay_short_enough_to_read():
    """No file in minifcn/ over 500 lines, no function over 50 lines of code, train.py at most 280 lines."""
    long_files, long_functions = [], []
    for path in sorted(PACKAGE.rglob("*.py")):
        source = path.read_text(encoding="utf-8").splitlines()
        if len(source) > 500:
            long_files.append((path.name, len(source)))
        for node in ast.walk(ast.parse("\n".join(source))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and _code_lines(node, source) > 50:
                long_functions.append((path.name, node.name, _code_lines(node, source)))
    assert long_files == [] and long_functions == [], (long_files, long_functions)
    assert len((PACKAGE / "train.py").read_text(encoding="utf-8").splitlines()) <= 280


def test_the_convolution_file_reaches_its_matrix_product_early():
    """A reader who opens functional/conv.py for "im2col and one matrix product" meets the product within 150
    lines of the top: the reference comes first."""
    tree = ast.parse((PACKAGE / "functional" / "conv.py").read_text(encoding="utf-8"))
    products = [n.lineno for n in ast.walk(tree) if isinstance(n, ast.BinOp) and isinstance(n.op, ast.MatMult)]
    assert products and min(products) <= 150, products
