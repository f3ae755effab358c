"""The package's layout, as the README's Layout section states it: each package imports only from
itself and the packages its row names, the root holds commands only, no command imports another,
and no import goes round in a circle. Read from the import statements (deferred ones count too)."""

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

import aigc

PACKAGE = Path(aigc.__file__).parent
README = PACKAGE.parent / "README.md"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in PACKAGE.rglob("*.py")}


def layout_table() -> dict[str, set[str]]:
    """The README's Layout table: package -> the packages it may import."""
    section = README.read_text().split("\n## Layout\n", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[0].startswith("`aigc"):
            rows[cells[0].strip("`")] = set(re.findall(r"`(aigc[\w.]*)`", cells[2]))
    return rows


ALLOWED = layout_table()


def package_of(name: str) -> str:
    """The most specific package of the table that holds module ``name``."""
    return max((package for package in ALLOWED if name == package or name.startswith(package + ".")), key=len)


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


def third_party_imports_of(name: str) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(MODULES[name].read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


COMMANDS = sorted(name for name in MODULES if package_of(name) == "aigc" and name != "aigc")


def test_the_table_names_real_packages_and_every_module_has_a_row():
    assert "aigc" in ALLOWED and len(ALLOWED) > 10, "the README's Layout table was not found"
    for package, allowed in ALLOWED.items():
        assert package in MODULES, f"the Layout table names {package}, which is not a package of aigc"
        assert allowed <= set(ALLOWED), f"{package} may import {allowed - set(ALLOWED)}, which have no row"
    # a module outside every package of the table falls to the root, where only commands may be
    for name in COMMANDS:
        assert MODULES[name].parent == PACKAGE, f"{name} is in a package the Layout table does not name"


@pytest.mark.parametrize("name", sorted(MODULES))
def test_each_module_imports_only_what_its_package_may(name: str):
    package = package_of(name)
    outside = {module for module in imports_of(name) if package_of(module) != package}
    refused = sorted(module for module in outside if package_of(module) not in ALLOWED[package])
    assert refused == [], f"{name} ({package}) imports {refused}; README's Layout lets it import {ALLOWED[package]}"


@pytest.mark.parametrize("name", COMMANDS)
def test_the_root_holds_commands_that_import_no_other_command(name: str):
    text = MODULES[name].read_text()
    assert "def main(" in text and 'if __name__ == "__main__":' in text, f"{name} is not a command"
    assert imports_of(name).isdisjoint(COMMANDS), f"{name} imports another command"


def test_nets_use_no_lightning_and_only_the_tracking_packages_use_mlflow():
    """DESIGN.md: nets are plain nn.Modules; models, data, metrics and callbacks log through Lightning."""
    for name in MODULES:
        used = third_party_imports_of(name)
        if package_of(name) == "aigc.models.nets":
            assert not used & {"lightning", "mlflow"}, f"{name} imports {used & {'lightning', 'mlflow'}}"
        if package_of(name) in ("aigc.models", "aigc.models.nets", "aigc.data", "aigc.metrics", "aigc.callbacks"):
            assert "mlflow" not in used, f"{name} imports mlflow"


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


def test_the_commands_import_torch_lightning_mlflow_and_gradio_only_to_work():
    """`python -m aigc.run --help`, `--cfg job` and a refused override answer without them (issue 15:
    under 2 s); so do those of aigc.sample, aigc.compare and aigc.play (they took 9-10 s)."""
    commands = ("aigc.run", "aigc.sample", "aigc.compare", "aigc.play")
    heavy = ("torch", "lightning", "mlflow", "gradio")
    probe = f"import sys, {', '.join(commands)}; print(' '.join(m for m in {heavy!r} if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == ""
