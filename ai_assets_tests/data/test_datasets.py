"""The shipped BANKING77 copy and its one deterministic, stratified split."""

import fnmatch
import hashlib
import tomllib
from collections import Counter
from importlib import resources
from pathlib import Path

import pytest

from ai_assets.data.datasets import LabelledText, load_banking77, load_categories, split_banking77

PARTS = ("train", "validation", "replay")


@pytest.fixture(scope="module")
def rows() -> list[LabelledText]:
    return load_banking77()


@pytest.fixture(scope="module")
def split(rows) -> dict[str, list[LabelledText]]:
    return split_banking77(rows)


def _digest(part: list[LabelledText]) -> str:
    return hashlib.sha256("\n".join(f"{r.category}\t{r.text}" for r in part).encode()).hexdigest()


def test_shipped_copy_has_every_row_and_intent(rows):
    assert len(rows) == 10_003
    categories = load_categories()
    assert len(categories) == 77
    assert len(set(categories)) == 77
    assert {r.category for r in rows} == set(categories)
    assert all(r.text.strip() for r in rows)


def test_split_sizes_are_the_documented_ones(split):
    assert {part: len(split[part]) for part in PARTS} == {
        "train": 6999, "validation": 1498, "replay": 1506}
    assert sum(len(split[part]) for part in PARTS) == 10_003


def test_split_without_argument_loads_the_shipped_copy(split):
    assert split_banking77() == split


def test_parts_are_disjoint_and_cover_every_row(rows, split):
    # No row appears in two parts (the texts are unique in the shipped copy), and together
    # the parts are exactly the shipped rows: nothing lost, nothing invented.
    texts = {part: {r.text for r in split[part]} for part in PARTS}
    assert not texts["train"] & texts["validation"]
    assert not texts["train"] & texts["replay"]
    assert not texts["validation"] & texts["replay"]
    together = Counter(r for part in PARTS for r in split[part])
    assert together == Counter(rows)


def test_every_intent_is_in_every_part_with_its_share(rows, split):
    total = Counter(r.category for r in rows)
    per_part = {part: Counter(r.category for r in split[part]) for part in PARTS}
    assert len(total) == 77
    for intent, n in total.items():
        n_train, n_val, n_replay = (per_part[p][intent] for p in PARTS)
        assert min(n_train, n_val, n_replay) > 0, intent
        # Rounded per intent: at most one row away from the exact 70/15/15 share.
        assert abs(n_train - 0.70 * n) <= 1, intent
        assert abs(n_val - 0.15 * n) <= 1, intent
        assert abs(n_replay - 0.15 * n) <= 2, intent
        assert n_train + n_val + n_replay == n


def test_split_is_deterministic(rows, split):
    again = split_banking77(load_banking77())
    for part in PARTS:
        assert again[part] == split[part]


def test_split_is_pinned(split):
    # A change of salt, shares or ordering would silently move rows between training and
    # the validation gate; a model trained before the change would then be scored on rows
    # it has seen. Changing the split must be a deliberate, visible act.
    assert {part: _digest(split[part]) for part in PARTS} == {
        "train": "d17e3e897a2e5b7aecb581b4c82b168482c3c5710f992f01506f0c36ed913c98",
        "validation": "01a04a191fc75ac6071dc84eef7eca60dcca6ed50af035f8fd96063b6be8d213",
        "replay": "63b67e9156516bcda54afc2ca989211f4893c9e093509e2c40d61a8352324595",
    }


def test_split_of_a_small_labelled_set_is_stratified():
    data = [LabelledText(f"{intent} question {i}", intent) for intent in ("a", "b") for i in range(20)]
    out = split_banking77(data)
    for intent in ("a", "b"):
        assert [sum(r.category == intent for r in out[p]) for p in PARTS] == [14, 3, 3]
    assert split_banking77(list(data)) == out


def test_licence_and_attribution_ship_with_the_data():
    package = resources.files("ai_assets.data.banking77")
    licence = package.joinpath("LICENSE").read_text(encoding="utf-8")
    attribution = package.joinpath("ATTRIBUTION.md").read_text(encoding="utf-8")
    assert "Attribution 4.0 International" in licence
    assert "Creative Commons" in licence
    assert "Casanueva" in attribution
    assert "PolyAI" in attribution
    assert "CC BY 4.0" in attribution
    assert "2003.04807" in attribution  # the paper to cite


def test_package_data_configuration_ships_licence_and_attribution():
    # resources.files() reads the source tree here; an installed wheel only carries what
    # pyproject's package-data lists, so the licence must be listed there too.
    pyproject = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())
    patterns = pyproject["tool"]["setuptools"]["package-data"]["ai_assets.data.banking77"]
    for name in ("LICENSE", "ATTRIBUTION.md", "train.csv", "categories.json"):
        assert any(fnmatch.fnmatch(name, p) for p in patterns), name
