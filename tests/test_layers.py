"""Layers run one way: the library never imports the apps (its CLI excepted), the apps never import each other, and
importing any library module imports no Ray."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# Which top-level packages each package must never import, anywhere in its code (function bodies included).
FORBIDDEN = {"rerank_core": {"serve", "pipelines"}, "serve": {"pipelines"}, "pipelines": {"serve"}}
COMPOSITION_ROOT = REPO / "rerank_core" / "cli.py"


def imported_packages(path: Path) -> set[str]:
    """Top-level packages a module imports (absolute imports, at any depth of its code)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


def violations(package: str) -> list[str]:
    """`module → package` for every import of `package`'s modules that runs against the layers."""
    bad = []
    for path in sorted((REPO / package).rglob("*.py")):
        if path == COMPOSITION_ROOT:
            continue
        bad += [f"{path.relative_to(REPO)} → {name}" for name in sorted(imported_packages(path) & FORBIDDEN[package])]
    return bad


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_no_import_runs_against_the_layers(package):
    assert violations(package) == []


def test_the_check_sees_an_import_inside_a_function(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from serve.app import build_app\n    import pipelines.offline\n")
    assert imported_packages(module) >= {"serve", "pipelines"}


def test_the_cli_is_the_composition_root_that_imports_both_apps():
    assert imported_packages(COMPOSITION_ROOT) >= {"serve", "pipelines"}


def test_importing_every_library_module_imports_no_ray():
    modules = sorted(
        ".".join(path.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")
        for path in (REPO / "rerank_core").rglob("*.py")
    )
    code = (
        "import importlib, sys\n"
        + "".join(f"importlib.import_module({m!r})\n" for m in modules)
        + ("bad = [m for m in sys.modules if m == 'ray' or m.startswith('ray.')]\nassert not bad, bad[:5]\n")
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)
