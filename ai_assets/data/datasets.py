"""The shipped BANKING77 copy and its one deterministic split.

The split depends on nothing but the shipped file and a fixed salt, so it is the same on
every machine and every library version: within each intent, rows are ordered by a salted
SHA-256 of their text and file position and cut 70/15/15 into training, validation and
replay pool.
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections import defaultdict
from dataclasses import dataclass
from importlib import resources
from typing import Literal

SPLIT_SALT = "ai-assets-banking77-split-v1"
SPLIT_SHARES = {"train": 0.70, "validation": 0.15}  # the rest is the replay pool
Split = Literal["train", "validation", "replay"]


@dataclass(frozen=True)
class LabelledText:
    text: str
    category: str


def _data_file(name: str):
    return resources.files("ai_assets.data.banking77").joinpath(name)


def load_banking77() -> list[LabelledText]:
    """All 10,003 rows of the shipped training split, in file order."""
    with _data_file("train.csv").open(encoding="utf-8", newline="") as fh:
        return [LabelledText(r["text"], r["category"]) for r in csv.DictReader(fh)]


def load_categories() -> list[str]:
    with _data_file("categories.json").open(encoding="utf-8") as fh:
        return list(json.load(fh))


def _split_order(row: LabelledText, index: int) -> str:
    # The index breaks ties between identical texts of one intent.
    return hashlib.sha256(f"{SPLIT_SALT}\x00{row.text}\x00{index}".encode()).hexdigest()


def split_banking77(rows: list[LabelledText] | None = None) -> dict[Split, list[LabelledText]]:
    """Stratified, seeded split: every intent keeps its share in every part."""
    rows = load_banking77() if rows is None else rows
    by_intent: dict[str, list[tuple[str, LabelledText]]] = defaultdict(list)
    for i, row in enumerate(rows):
        by_intent[row.category].append((_split_order(row, i), row))
    out: dict[Split, list[LabelledText]] = {"train": [], "validation": [], "replay": []}
    for intent in sorted(by_intent):
        ordered = [r for _, r in sorted(by_intent[intent], key=lambda p: p[0])]
        n_train = round(len(ordered) * SPLIT_SHARES["train"])
        n_val = round(len(ordered) * SPLIT_SHARES["validation"])
        out["train"] += ordered[:n_train]
        out["validation"] += ordered[n_train : n_train + n_val]
        out["replay"] += ordered[n_train + n_val :]
    return out


def intent_words(intent: str) -> str:
    """A label as words for a sentence: `card_arrival` -> `card arrival`,
    `reverted_card_payment?` -> `reverted card payment`."""
    return intent.replace("_", " ").rstrip("?")


@dataclass(frozen=True)
class OutOfScopeText:
    """One CLINC150 row that is not a banking request, with where it came from."""

    text: str
    domain: str  # oos, kitchen_and_dining, home, auto_and_commute or travel
    clinc_intent: str


def load_clinc_out_of_scope() -> list[OutOfScopeText]:
    """All 7,400 rows of the shipped CLINC150 out-of-scope copy, in file order (see its
    ATTRIBUTION.md: CC BY 3.0, Larson et al. 2019)."""
    path = resources.files("ai_assets.data.clinc150_out_of_scope").joinpath("out_of_scope_train.csv")
    with path.open(encoding="utf-8", newline="") as fh:
        return [OutOfScopeText(r["text"], r["domain"], r["clinc_intent"]) for r in csv.DictReader(fh)]
