"""The package's shape: no import cycles (imports inside functions and lazy string imports count), no module far
over 400 lines, and each study's layers importing one way (declare < draw, compute < report, command < study)."""

from __future__ import annotations

import ast
from pathlib import Path

import resx

PACKAGE = Path(resx.__file__).resolve().parent
MAX_LINES = 420  # "about 400": a module longer than this mixes jobs
# a study's layers, bottom to top; a module may import only modules of its own layer or below
LAYERS = {"declare": 0, "draw": 1, "compute": 2, "report": 3, "command": 3, "study": 4}


def module_names() -> dict[str, Path]:
    names = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names[".".join(parts)] = path
    return names


def _absolute(module: str, path: Path, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    package = package[: len(package) - (node.level - 1)]
    return ".".join(package + ([node.module] if node.module else []))


def _known(name: str, modules: dict[str, Path]) -> str | None:
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def imported(module: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """Every resx module `module` imports anywhere in its text (top level, inside functions, TYPE_CHECKING
    blocks, and the string literals given to importlib.import_module or resx's `lazy`), plus the packages those
    imports execute on the way (importing a.b.c runs a/b/__init__.py) that are not `module`'s own packages."""
    targets: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(module, path, node)
            names = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names]
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if called in ("import_module", "lazy") and isinstance(node.args[0].value, str):
                names = [node.args[0].value]
        for name in names:
            known = _known(name, modules)
            if known is None or not known.startswith("resx"):
                continue
            own = {".".join(module.split(".")[:i]) for i in range(1, module.count(".") + 2)}
            parts = known.split(".")
            for i in range(1, len(parts) + 1):
                step = ".".join(parts[:i])
                if step in modules and step not in own:
                    targets.add(step)
    targets.discard(module)
    return targets


def import_graph() -> dict[str, set[str]]:
    modules = module_names()
    return {name: imported(name, path, modules) for name, path in modules.items()}


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each as a cycle through them."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

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
                components.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return [_cycle_through(c, graph) for c in components]


def _cycle_through(component: list[str], graph: dict[str, set[str]]) -> list[str]:
    """One cycle inside a strongly connected component, to name in the failure: a -> b -> ... -> a."""
    members = set(component)
    start = component[0]
    path, seen = [start], {start}
    while True:
        nxt = sorted(w for w in graph[path[-1]] if w in members)
        back = [w for w in nxt if w in seen]
        if back:
            first = path.index(back[0])
            return path[first:] + [back[0]]
        path.append(nxt[0])
        seen.add(nxt[0])


def test_the_cycle_finder_names_a_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert find_cycles(graph) == [["a", "b", "c", "a"]]
    assert find_cycles({"a": {"b"}, "b": set()}) == []


def test_the_import_parser_counts_imports_inside_functions_and_lazy_names(tmp_path):
    modules = {"resx": tmp_path / "__init__.py", "resx.x": tmp_path / "x.py", "resx.y": tmp_path / "y.py",
               "resx.z": tmp_path / "z.py"}
    modules["resx.x"].write_text("def f():\n    from resx import y\n\nPLOT = lazy('resx.z', 'plot')\n")
    assert imported("resx.x", modules["resx.x"], modules) == {"resx.y", "resx.z"}


def test_resx_has_no_import_cycle():
    cycles = find_cycles(import_graph())
    assert not cycles, "import cycles in resx:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_no_module_is_far_over_400_lines():
    long = {str(p.relative_to(PACKAGE.parent)): n for p in PACKAGE.rglob("*.py")
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines (split them by job): {long}"


def test_each_study_is_one_folder_whose_layers_import_one_way():
    from resx.studies.registry import BUILT_IN

    graph = import_graph()
    for name in BUILT_IN:
        folder = PACKAGE / "studies" / name
        assert (folder / "declare.py").is_file() and (folder / "study.py").is_file(), name
        prefix = f"resx.studies.{name}."
        for module, targets in graph.items():
            if not module.startswith(prefix):
                continue
            here = LAYERS.get(module[len(prefix):], LAYERS["compute"])  # helper modules are compute's
            for target in targets:
                if target.startswith(prefix):
                    there = LAYERS.get(target[len(prefix):], LAYERS["compute"])
                    assert there <= here, f"{module} imports {target}, a layer above it"
                elif target.startswith("resx.studies.") and target.split(".")[2] in BUILT_IN:
                    raise AssertionError(f"{module} imports another study's module {target}")


def test_declarations_and_drawings_import_no_torch():
    """A study's declare.py and draw.py, and the registry, name no torch import (resx plot and report run
    without it); imports inside functions count."""
    offenders = []
    for path in [*PACKAGE.glob("studies/*/declare.py"), *PACKAGE.glob("studies/*/draw.py"),
                 *PACKAGE.glob("studies/*/report.py"), *PACKAGE.glob("studies/*/study.py"),
                 PACKAGE / "studies" / "registry.py"]:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            if any(n == "torch" or n.startswith("torch.") for n in names):
                offenders.append(str(path.relative_to(PACKAGE.parent)))
    assert not offenders, f"torch imported by {sorted(set(offenders))}"
