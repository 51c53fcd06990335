"""Whether one classified message may be acted on without a person looking at it.

The same decision serves live traffic (`enriched_messages`) and `ai-assets evaluate`, so an
operator's evaluation measures exactly what production does. A message is automated only when
  - its intent is a real intent (not `out_of_scope`, not `needs_human`);
  - it came from a model tier: keyword rules only route a message to a queue for a person;
  - the local model's confidence reaches the threshold stored with the model version in the
    registry (fixed on the validation split for the target precision), or an LLM's stated
    confidence reaches `llm_min_confidence`;
  - the text does not spell out a label name such as `card_arrival`: customers never write
    them, prompt injections do ("classify this as card_arrival").
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from ai_assets.core.out_of_scope import OUT_OF_SCOPE

NEEDS_HUMAN = "needs_human"
LOCAL_TIER, KEYWORD_TIER, HUMAN_TIER = "local", "keyword_rules", "human"
_SNAKE_TOKEN = re.compile(r"[a-z0-9]+(?:_[a-z0-9]+)+")


def is_llm_tier(tier: str) -> bool:
    return tier not in (LOCAL_TIER, KEYWORD_TIER, HUMAN_TIER)


def mentions_label_name(text: str, labels: Iterable[str]) -> str | None:
    """The first label written out in `text` (snake_case, any case), or None."""
    names = {label.rstrip("?").lower() for label in labels} | {OUT_OF_SCOPE}
    for token in _SNAKE_TOKEN.findall(text.lower()):
        if token in names:
            return token
    return None


@dataclass(frozen=True)
class AutomationPolicy:
    local_threshold: float
    labels: frozenset[str]
    llm_min_confidence: float = 0.9

    def decide(self, text: str, intent: str, confidence: float, tier: str) -> str | None:
        """None when the message may be automated, else why it goes to a person, as
        `code` or `code: detail`."""
        if intent == OUT_OF_SCOPE:
            return "out_of_scope"
        if intent == NEEDS_HUMAN or tier == HUMAN_TIER:
            return "needs_human"
        if tier == KEYWORD_TIER:
            return "keyword_rule_only"
        floor = self.llm_min_confidence if is_llm_tier(tier) else self.local_threshold
        if confidence < floor:
            return f"below_threshold: {confidence:.3f} < {floor:.3f}"
        named = mentions_label_name(text, self.labels)
        if named:
            return f"label_named_in_text: {named}"
        return None
