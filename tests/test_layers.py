"""Layers run one way, checked by import-linter's contracts in pyproject.toml (`make lint` runs them): no import cycle
in the library, its layers one way, the library below Ray and the apps, the apps apart. Here: the contracts hold, and
they fail on a deliberate cycle and on a deliberate break of each promise; importing the library imports no Ray."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib

REPO = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_imports(root: Path) -> subprocess.CompletedProcess:
    """`lint-imports` run on the packages under `root` with `root`'s pyproject.toml (no cache: the tree may change)."""
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"], cwd=root, capture_output=True, text=True, timeout=120, check=False
    )


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    """A copy of the packages and the contracts, to break on purpose."""
    root = tmp_path_factory.mktemp("tree")
    shutil.copy(REPO / "pyproject.toml", root)
    for package in ("rerank_core", "serve", "pipelines"):
        shutil.copytree(REPO / package, root / package, ignore=shutil.ignore_patterns("assets", "__pycache__"))
    return root


def test_the_contracts_hold():
    result = lint_imports(REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "4 kept, 0 broken" in result.stdout


LATER = "def _later():\n    "  # an import inside a function: lazy imports count
BREAKS = {
    # A lazy import that closes a circle inside one layer (the template and the encoder of one family).
    "no-cycle": ("rerank_core/families/qwen3/template.py", LATER + "from .encoder import PairTokenizer\n"),
    # Resolution reaching up into the exporter (they are siblings: the API composes them).
    "library-layers": (
        "rerank_core/locate/__init__.py",
        LATER + "from ..export.cache import cached_export\n",
    ),
    "library-below-apps": ("rerank_core/scorer.py", LATER + "import ray\n"),
    "apps-apart": ("pipelines/scoring.py", LATER + "from serve.config import ServeAppConfig\n"),
}


def test_each_contract_fails_on_a_deliberate_break(tree):
    """One break per contract, all in one tree: one run of the linter shows every contract failing."""
    originals = {path: (tree / path).read_text() for path, _ in BREAKS.values()}
    for path, code in BREAKS.values():
        (tree / path).write_text(originals[path] + "\n\n" + code)
    try:
        result = lint_imports(tree)
    finally:
        for path, text in originals.items():
            (tree / path).write_text(text)
    assert result.returncode != 0
    for contract in BREAKS:
        assert f"{contract_name(contract)} BROKEN" in result.stdout, result.stdout
    assert f"0 kept, {len(BREAKS)} broken" in result.stdout, result.stdout


def contract_name(contract_id: str) -> str:
    """A contract's name in pyproject.toml."""
    contracts = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    return next(c["name"] for c in contracts if c["id"] == contract_id)


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
