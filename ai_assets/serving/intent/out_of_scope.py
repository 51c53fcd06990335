"""The out-of-scope material: hand-written messages and the CLINC150 rows, and how each is used.

BANKING77 has only in-scope messages. Two sources teach the intent model its `out_of_scope`
class and judge it:

- ai_assets/data/out_of_scope/ (written for this project, see the README beside them):
  `train` is used for training and (answered out-of-fold) threshold selection; `heldout` is
  the promotion gate's hand-written share, `heldout2` is for reports only (`heldout` was
  scored once before train.txt was last extended, `heldout2` was written after that);
- ai_assets/data/clinc150_out_of_scope/ (CC BY 3.0): split by `clinc_out_of_scope_split`
  into training, calibration, gate and never-seen parts.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
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


# --------------------------------------------------------------------------- CLINC150 material

# The CLINC150 domain kept out of training and threshold selection: the shipped model is judged
# on it as a kind of request it never saw. Chosen before any model was scored on it; the
# benchmark (`python -m benchmarks.intent_model_report --never-seen DOMAIN`) measures the others.
NEVER_SEEN_DOMAINS: tuple[str, ...] = ("kitchen_and_dining",)
CLINC_DOMAINS: tuple[str, ...] = ("oos", "kitchen_and_dining", "home", "auto_and_commute", "travel")
# CLINC rows that a bank's inbox must *not* refuse: they are BANKING77 requests. CLINC's own
# `exchange_rate` intent is BANKING77's `exchange_rate`; one of CLINC's out-of-scope queries
# is BANKING77's `transfer_timing` (CLINC's out-of-scope set is "none of CLINC's 150 intents",
# not "not banking").
IN_SCOPE_CLINC_INTENTS = frozenset({"exchange_rate"})
IN_SCOPE_CLINC_TEXTS = frozenset({"how long do wire transfers take"})
CLINC_SPLIT_SALT = "ai-assets-clinc150-oos-split-v1"
CLINC_SHARES = {"train": 0.6, "calibration": 0.2}  # the rest: the gate's held-out share
ClincPart = Literal["train", "calibration", "gate", "never_seen"]


def clinc_out_of_scope_split(never_seen: Sequence[str] = NEVER_SEEN_DOMAINS, *,
                             train_per_intent: int = 0) -> dict[ClincPart, list[str]]:
    """The shipped CLINC150 rows, less the banking ones, cut deterministically.

    Rows of the `never_seen` domains all go to `never_seen` (reports only). In every other
    domain, within each CLINC intent, rows are ordered by a salted SHA-256 of their text and
    cut 60/20/20 into `train` (the out-of-scope class), `calibration` (joins the threshold's
    out-of-scope pool) and `gate` (the promotion gate's held-out set, never used for
    choosing anything). `train_per_intent` > 0 keeps only the first N training rows of each
    CLINC intent of the four domains: 7,000 near-duplicate out-of-scope rows would outweigh
    the 7,000 banking ones, and a few dozen phrasings per kind of request carry most of what
    there is to learn (CLINC's `oos` queries, each a different request, are all kept).
    """
    from ai_assets.data.datasets import load_clinc_out_of_scope

    unknown = set(never_seen) - set(CLINC_DOMAINS)
    if unknown:
        raise ValueError(f"unknown CLINC domain(s) {sorted(unknown)}: expected some of {CLINC_DOMAINS}")
    groups: dict[tuple[str, str], list[str]] = {}
    seen: set[str] = set()
    for row in load_clinc_out_of_scope():
        if row.clinc_intent in IN_SCOPE_CLINC_INTENTS or row.text in IN_SCOPE_CLINC_TEXTS or row.text in seen:
            continue  # a text under two CLINC intents is kept once, under the first, so parts never share one
        seen.add(row.text)
        groups.setdefault((row.domain, row.clinc_intent), []).append(row.text)
    parts: dict[ClincPart, list[str]] = {"train": [], "calibration": [], "gate": [], "never_seen": []}
    for (domain, _), texts in sorted(groups.items()):
        ordered = sorted(texts, key=lambda t: hashlib.sha256(f"{CLINC_SPLIT_SALT}\x00{t}".encode()).hexdigest())
        if domain in never_seen:
            parts["never_seen"] += ordered
            continue
        n_train = round(len(ordered) * CLINC_SHARES["train"])
        n_cal = round(len(ordered) * CLINC_SHARES["calibration"])
        train = ordered[:n_train]
        # CLINC's own out-of-scope queries are each a different request: never capped.
        parts["train"] += train[:train_per_intent] if train_per_intent > 0 and domain != "oos" else train
        parts["calibration"] += ordered[n_train:n_train + n_cal]
        parts["gate"] += ordered[n_train + n_cal:]
    return parts
