"""The package's layers (docs/architecture.md): each module imports only its own layer or those below,
lazy imports included; no import cycle; no module over 450 lines."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "skfungi"
MAX_LINES = 450

# bottom to top; a module belongs to the first layer one of whose prefixes it starts with
LAYERS = [
    ("utilities", ("skfungi._version", "skfungi._defaults", "skfungi._utils")),
    ("inputs, views, projections", ("skfungi.inputs", "skfungi.views", "skfungi.projection")),
    ("backbones", ("skfungi.backbones",)),
    ("losses", ("skfungi.losses",)),
    ("engine", ("skfungi._engine",)),
    (
        "estimators",
        (
            "skfungi._transformer",
            "skfungi.dense",
            "skfungi.neighbors",
            "skfungi.protocols",
            "skfungi.evaluation",
            "skfungi.evidence",
            "skfungi.dask",
            "skfungi.datasets",
            "skfungi.monitoring",
        ),
    ),
    ("command line", ("skfungi.cli", "skfungi.__main__")),
]


def module_names() -> dict[str, Path]:
    names = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        names[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return names


def imported_modules(name: str, path: Path, names: dict[str, Path]) -> set[str]:
    """Every skfungi module ``name`` imports, at the top or inside a function (a lazy import)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([node.module] if node.module else [])])
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in names else base for alias in node.names]
        else:
            continue
        found.update(target for target in targets if target in names and target != name)
    return found


def layer_of(name: str) -> int | None:
    for index, (_, prefixes) in enumerate(LAYERS):
        if any(name == prefix or name.startswith(prefix + ".") for prefix in prefixes):
            return index
    return None  # the package's facade (skfungi/__init__.py), which names everything lazily


def import_graph() -> dict[str, set[str]]:
    names = module_names()
    return {name: imported_modules(name, path, names) for name, path in names.items()}


def test_every_module_has_a_layer():
    assert [name for name in module_names() if layer_of(name) is None] == ["skfungi"]


def test_modules_import_only_their_own_layer_or_those_below():
    def layer_name(module: str) -> str:
        layer = layer_of(module)
        return "the package's facade" if layer is None else LAYERS[layer][0]

    upward = [
        f"{name} ({layer_name(name)}) imports {target} ({layer_name(target)})"
        for name, targets in import_graph().items()
        for target in targets
        if name != "skfungi" and (layer_of(target) is None or layer_of(target) > layer_of(name))
    ]
    assert upward == []


def test_there_is_no_import_cycle():
    graph = import_graph()
    cycles, state = [], {}

    def visit(name, path):
        state[name] = "open"
        for target in sorted(graph[name]):
            if state.get(target) == "open":
                cycles.append(" -> ".join([*path[path.index(target) :], target]))
            elif target not in state:
                visit(target, [*path, target])
        state[name] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert cycles == []


def test_no_module_is_longer_than_450_lines():
    long = {
        str(path.relative_to(PACKAGE.parent)): lines
        for path in PACKAGE.rglob("*.py")
        if (lines := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert long == {}
