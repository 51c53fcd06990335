"""What every tier returns for one message, successful or not."""

from dataclasses import dataclass, field
from decimal import Decimal


@dataclass
class TierAnswer:
    """One tier's valid answer for one message, with what it cost."""

    intent: str
    confidence: float
    summary: str
    tier: str
    model: str
    latency_ms: float = 0.0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: Decimal = Decimal(0)
    cache_hit: bool = False
    batch: bool = False
    # The local model's best labels with calibrated scores, best first (other tiers: none).
    suggestions: tuple[tuple[str, float], ...] = ()


@dataclass
class TierFailure(Exception):
    """Why a tier gave no valid answer; the cascade records it as the fallback reason."""

    tier: str
    kind: str  # rate_limited | overloaded | server_error | timeout | connection | malformed_output |
    #            circuit_open | budget_exhausted | deadline | auth | bad_request | disabled
    detail: str = ""
    cost_usd: Decimal = field(default=Decimal(0))

    def __str__(self) -> str:
        return f"{self.tier}: {self.kind}" + (f" ({self.detail})" if self.detail else "")
