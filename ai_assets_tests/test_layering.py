"""The layout's rules, read from the source: what each package may import.

A package may import only packages of its own rank or below; layer packages (and the shared
modules under them) import no Dagster; `defs/` areas never import each other, only
`defs/common`; nothing shipped imports the tests, their doubles or the benchmarks; and only
`ai_assets/config.py` reads the environment.
"""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "ai_assets"

# Lowest first. Shared plain modules at the bottom, then the layers in pipeline order, then
# the Dagster wiring and the command line on top.
RANKS = {
    "config": 0, "schemas": 0, "data": 0, "files": 0,
    "ingestion": 1, "simulator": 1,
    "ops_db": 2,
    "serving": 3,
    "actions": 4,
    "monitoring": 5,
    "review": 6,
    "resources": 7,
    "defs": 8,
    "definitions": 9,
    "cli": 10,
}
NO_DAGSTER_ABOVE = 6  # ranks 0..6 are plain Python
NOT_SHIPPED = ("ai_assets_tests", "benchmarks", "scripts")


def modules() -> list[tuple[str, Path]]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found.append((".".join(parts), path))
    return found


def imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every import, including imports inside functions."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append((node.lineno, node.module))
    return out


def top(module: str) -> str:
    """The ranked package of an `ai_assets.x.y` module name: `x`."""
    return module.split(".")[1]


MODULES = modules()


def test_every_top_level_package_has_a_rank():
    tops = {top(name) for name, _ in MODULES if name.count(".") >= 1}
    assert tops <= set(RANKS), f"give {sorted(tops - set(RANKS))} a rank in RANKS"


@pytest.mark.parametrize("name,path", MODULES, ids=[name for name, _ in MODULES])
def test_imports_point_down_the_layers(name, path):
    if name == "ai_assets":
        return
    rank = RANKS[top(name)]
    wrong = []
    for line, module in imports(path):
        root = module.split(".")[0]
        if root in NOT_SHIPPED:
            wrong.append(f"{line}: {module} is not shipped (tests, doubles, benchmarks)")
        if root.startswith("dagster") and rank <= NO_DAGSTER_ABOVE:
            wrong.append(f"{line}: {module}: a layer package imports no Dagster")
        if root == "ai_assets" and "." in module:
            if RANKS[top(module)] > rank:
                wrong.append(f"{line}: {module} is above {top(name)} (rank {RANKS[top(module)]} > {rank})")
    assert not wrong, f"{path.name} ({name}):\n" + "\n".join(wrong)


def defs_area(module: str) -> str | None:
    parts = module.split(".")
    return parts[2] if len(parts) > 2 and parts[1] == "defs" else None


@pytest.mark.parametrize("name,path", [(n, p) for n, p in MODULES if defs_area(n) not in (None, "common")],
                         ids=[n for n, _ in MODULES if defs_area(n) not in (None, "common")])
def test_defs_areas_do_not_import_each_other(name, path):
    area = defs_area(name)
    others = [f"{line}: {module}" for line, module in imports(path)
              if defs_area(module) not in (None, "common", area)]
    assert not others, f"{name} imports another area (share through ai_assets.defs.common):\n" + "\n".join(others)


def test_each_defs_area_declares_its_definitions():
    from dagster import Definitions

    import ai_assets.definitions as root

    areas = sorted(p.name for p in (PACKAGE / "defs").iterdir() if (p / "__init__.py").exists())
    found = list(root.area_definitions())
    assert len(found) == len(areas) >= 5 and all(isinstance(d, Definitions) for d in found)


def _reads_environment(tree: ast.AST) -> list[int]:
    lines = []
    for node in ast.walk(tree):
        # os.environ.get(...), os.environ[...], os.getenv(...); os.environ.setdefault is a write
        # (a library's switch, e.g. GX analytics off), not configuration.
        if isinstance(node, ast.Attribute) and node.attr == "getenv":
            lines.append(node.lineno)
        if isinstance(node, ast.Attribute) and node.attr == "environ":
            parent = getattr(node, "parent", None)
            if not (isinstance(parent, ast.Attribute) and parent.attr == "setdefault"):
                lines.append(node.lineno)
    return lines


@pytest.mark.parametrize("name,path", MODULES, ids=[name for name, _ in MODULES])
def test_only_config_reads_the_environment(name, path):
    if name == "ai_assets.config":
        return
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for parent in ast.walk(tree):
        for child in ast.iter_child_nodes(parent):
            child.parent = parent
    assert not _reads_environment(tree), (
        f"{name} reads the environment at lines {_reads_environment(tree)}: read it through ai_assets.config")


def test_the_rules_catch_what_they_forbid(tmp_path):
    """The checks above can fail: an upward import, Dagster in a layer, an environment read."""
    bad = tmp_path / "bad.py"
    bad.write_text("import os\nimport dagster\nfrom ai_assets.actions.triage import triage\n"
                   "from ai_assets_tests.doubles import oracle\nx = os.environ.get('X')\n")
    found = [m for _, m in imports(bad)]
    assert "dagster" in found and RANKS[top("ai_assets.actions.triage")] > RANKS["ingestion"]
    tree = ast.parse(bad.read_text())
    for parent in ast.walk(tree):
        for child in ast.iter_child_nodes(parent):
            child.parent = parent
    assert _reads_environment(tree) == [5]
    with pytest.raises(AssertionError, match="is above ingestion"):
        test_imports_point_down_the_layers("ai_assets.ingestion.bad", bad)
    with pytest.raises(AssertionError, match="is not shipped"):
        test_imports_point_down_the_layers("ai_assets.actions.bad", bad)
    with pytest.raises(AssertionError, match="imports no Dagster"):
        test_imports_point_down_the_layers("ai_assets.serving.bad", bad)
