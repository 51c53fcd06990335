"""The hand-written out-of-scope messages shipped in ai_assets/data/out_of_scope/.

BANKING77 has only in-scope messages. These files (written for this project, see docs/serving.md
beside them) give the intent model an `out_of_scope` class to learn and a held-out set to be
judged on. `train` is used for training and threshold selection; `heldout` and `heldout2` only
for reports (`heldout` was scored once before train.txt was last extended, `heldout2` was
written after that; see docs/serving.md).
"""

from __future__ import annotations

from importlib import resources
from typing import Literal

OUT_OF_SCOPE = "out_of_scope"
OOS_ALIASES = frozenset({OUT_OF_SCOPE, "oos"})
OosSplit = Literal["train", "heldout", "heldout2"]
OOS_SPLITS: tuple[str, ...] = ("train", "heldout", "heldout2")


def is_out_of_scope_label(label: str) -> bool:
    """`out_of_scope` and its common short form `oos` (any case) both mark out-of-scope rows."""
    return label.strip().lower() in OOS_ALIASES


def _read(split: str) -> str:
    if split not in OOS_SPLITS:
        raise ValueError(f"unknown out-of-scope split {split!r}: expected one of {OOS_SPLITS}")
    return resources.files("ai_assets.data.out_of_scope").joinpath(f"{split}.txt").read_text("utf-8")


def load_out_of_scope(split: OosSplit = "train") -> list[str]:
    """The messages of one file, in file order, comments and blank lines dropped."""
    text = _read(split)
    return [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]


def load_out_of_scope_topics(split: OosSplit = "train") -> dict[str, list[str]]:
    """The messages grouped by their `# topic:` header."""
    text = _read(split)
    topics: dict[str, list[str]] = {}
    current = "(none)"
    for line in text.splitlines():
        if line.startswith("# topic:"):
            current = line.removeprefix("# topic:").strip()
        elif line.strip() and not line.startswith("#"):
            topics.setdefault(current, []).append(line.strip())
    return topics
