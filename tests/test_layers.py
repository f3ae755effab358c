"""The package's layers, read from its import statements: no import runs back up, and none goes round in a circle."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import aigc

PACKAGE = Path(aigc.__file__).parent

# From the top down; a module may import only from its own layer or those below it.
LAYERS = [
    (
        "entry points",
        [
            *("aigc.run", "aigc.training", "aigc.evaluate", "aigc.sample", "aigc.register", "aigc.compare"),
            *("aigc.sync", "aigc.runs"),
        ],
    ),
    ("reports", ["aigc.tracking.reports"]),
    ("callbacks", ["aigc.callbacks"]),
    ("the run", ["aigc.tracking.run", "aigc.tracking"]),
    ("the store", ["aigc.tracking.store"]),
    ("models, data, metrics", ["aigc.models", "aigc.data", "aigc.metrics"]),
]


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in PACKAGE.rglob("*.py")}


def imports_of(name: str) -> set[str]:
    """The aigc modules ``name`` imports anywhere in its text (type-only and deferred imports count too)."""
    found = set()
    for node in ast.walk(ast.parse(MODULES[name].read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # `from aigc.tracking import reports` imports the module aigc.tracking.reports
            found |= {
                f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in MODULES else node.module for a in node.names
            }
    return {module for module in found if module in MODULES and module != name}


def layer_of(name: str) -> int | None:
    """The index of the most specific layer prefix that names the module, or None for the shared helpers."""
    matches = [
        (len(prefix), index)
        for index, (_, prefixes) in enumerate(LAYERS)
        for prefix in prefixes
        if name == prefix or name.startswith(prefix + ".")
    ]
    return max(matches)[1] if matches else None


def test_the_layers_name_real_modules():
    for _, prefixes in LAYERS:
        for prefix in prefixes:
            assert prefix in MODULES, f"{prefix} is not a module of aigc"


@pytest.mark.parametrize("name", sorted(MODULES))
def test_no_import_runs_back_up(name: str):
    layer = layer_of(name)
    if layer is None:
        return
    upward = [module for module in imports_of(name) if (other := layer_of(module)) is not None and other < layer]
    assert upward == [], f"{name} ({LAYERS[layer][0]}) imports {upward} from a layer above it"


def test_no_import_cycle():
    graph = {name: imports_of(name) for name in MODULES}
    visiting, done = [], set()

    def visit(name: str) -> None:
        if name in done:
            return
        assert name not in visiting, f"import cycle: {' -> '.join(visiting[visiting.index(name) :] + [name])}"
        visiting.append(name)
        for module in sorted(graph[name]):
            visit(module)
        visiting.pop()
        done.add(name)

    for name in sorted(graph):
        visit(name)


def test_the_train_command_imports_torch_lightning_and_mlflow_only_to_train():
    """`python -m aigc.run --help`, `--cfg job` and a refused override answer without them (issue 15: under 2 s)."""
    probe = "import sys, aigc.run; print(' '.join(m for m in ('torch', 'lightning', 'mlflow') if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == ""
