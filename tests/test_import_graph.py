"""The package's own import graph: no circles, and the layers point one way.

    config, postprocess, checkpoint, defaults -> data, model
        -> training, evaluation, inference, export, tracking -> commands, cli

Every `import` counts, at module level and inside functions alike: a function-local
import hides a dependency from the reader, not from the graph. The first layer are
leaves (each imports nothing else of the package); a module may import its own
layer's other folders (inference uses tracking) as long as no circle forms. The
benchmarks are outside the package (tools/benchmarks), on top of all of it.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "detector"

# Top-level names under detector/, lowest layer first. `detector` itself (the re-exports
# in __init__.py) sits with the commands.
LAYERS: tuple[frozenset[str], ...] = (
    frozenset({"config", "postprocess", "_postprocess", "checkpoint", "defaults"}),
    frozenset({"data", "model"}),
    frozenset({"training", "evaluation", "inference", "export", "tracking"}),
    frozenset({"commands", "cli", "__main__", "__init__"}),
)
# One concern split over two names: postprocess.py re-exports _postprocess/.
SAME_LEAF = {"_postprocess": "postprocess"}


def module_files(package: Path = PACKAGE) -> dict[str, Path]:
    """Dotted module name -> file, for every .py under `package` (packages by __init__)."""
    modules = {}
    for path in sorted(package.rglob("*.py")):
        parts = list(path.relative_to(package.parent).with_suffix("").parts)
        if parts[-1] == "__init__" and len(parts) > 1:
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def _owner(name: str, modules: dict[str, Path]) -> str | None:
    """The module of `modules` that `name` (a module or a name inside one) resolves to."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def imports_of(module: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """Modules of the package that `module` imports anywhere in its file (relative ones too)."""
    is_package = path.name == "__init__.py"
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")[: None if is_package else -1]
                base = base[: len(base) - (node.level - 1)]
                origin = ".".join(base + ([node.module] if node.module else []))
            else:
                origin = node.module or ""
            # `from detector.x import y`: y may be a submodule or a name in x.
            targets = [f"{origin}.{alias.name}" for alias in node.names]
        else:
            continue
        for target in targets:
            if target == "detector" or target.startswith("detector."):
                owner = _owner(target, modules)
                if owner is not None and owner != module:
                    found.add(owner)
    return found


def import_graph(package: Path = PACKAGE) -> dict[str, set[str]]:
    """Module -> the package's modules it imports."""
    modules = module_files(package)
    return {name: imports_of(name, path, modules) for name, path in modules.items()}


def _top(module: str) -> str:
    parts = module.split(".")
    return "__init__" if len(parts) == 1 else SAME_LEAF.get(parts[1], parts[1])


def _layer(module: str) -> int | None:
    top = module.split(".")[1] if "." in module else "__init__"
    return next((index for index, names in enumerate(LAYERS) if top in names), None)


def layer_violations(graph: dict[str, set[str]]) -> list[str]:
    """`"a -> b (why)"` for every import against the layers, and modules in no layer."""
    problems = []
    for module, targets in sorted(graph.items()):
        here = _layer(module)
        if here is None:
            problems.append(f"{module}: in no layer (add its folder to LAYERS)")
            continue
        for target in sorted(targets):
            there = _layer(target)
            if there is not None and there > here:
                problems.append(f"{module} -> {target} (layer {here} imports layer {there})")
            elif here == 0 and _top(module) != _top(target):
                problems.append(f"{module} -> {target} (the first layer are leaves)")
    return problems


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_package_imports_form_no_circle() -> None:
    found = circles(import_graph())
    assert not found, "import circles:\n" + "\n".join(" <-> ".join(c) for c in found)


def test_the_layers_point_one_way() -> None:
    problems = layer_violations(import_graph())
    assert not problems, "imports against the layers:\n" + "\n".join(problems)


def test_below_the_commands_nothing_imports_training() -> None:
    """The engine is the commands' to drive: inference, export and data share what they need
    with training through the first two layers (detector.checkpoint, not training's)."""
    allowed = {"training", "commands", "cli", "__main__", "__init__"}
    found = [
        f"{module} -> {target}"
        for module, targets in sorted(import_graph().items())
        for target in sorted(targets)
        if target.startswith("detector.training") and _top(module) not in allowed
    ]
    assert not found, "imports of detector.training below the commands:\n" + "\n".join(found)


def test_the_graph_sees_function_local_and_relative_imports(tmp_path: Path) -> None:
    package = tmp_path / "detector"
    (package / "model").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "config.py").write_text("def f():\n    from detector.model import build\n")
    (package / "model" / "__init__.py").write_text("")
    (package / "model" / "build.py").write_text("from . import head\nfrom ..config import f\n")
    (package / "model" / "head.py").write_text("import detector.config\n")
    graph = import_graph(package)
    assert graph["detector.config"] == {"detector.model.build"}
    assert graph["detector.model.build"] == {"detector.model.head", "detector.config"}
    assert circles(graph) == [["detector.config", "detector.model.build", "detector.model.head"]]
    assert layer_violations(graph) == [
        "detector.config -> detector.model.build (layer 0 imports layer 1)"
    ]
