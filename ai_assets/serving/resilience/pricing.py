"""What a model call costs, in exact decimal US dollars, from a per-million-token price table.

Money is :class:`~decimal.Decimal` throughout: binary floats cannot hold $0.000003 exactly and
their errors add up across a day of calls and a budget compared against a limit. Costs are
kept unrounded (rounding belongs to display), so summing per-call costs gives the same total
as pricing the summed tokens.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal

MILLION = Decimal(1_000_000)
BATCH_DISCOUNT = Decimal("0.5")
"""The Message Batches API bills half the standard price."""

Money = Decimal | int | str | float


def to_money(value: Money) -> Decimal:
    """A Decimal from a Decimal, int or string; a float goes through ``str``
    (0.1 -> 0.1, not 0.1000000000000000055...)."""
    if isinstance(value, bool):
        raise TypeError("a bool is not an amount of money")
    if isinstance(value, Decimal):
        result = value
    elif isinstance(value, (int, str)):
        result = Decimal(value)
    elif isinstance(value, float):
        result = Decimal(str(value))
    else:
        raise TypeError(f"not an amount of money: {value!r}")
    if not result.is_finite():
        raise ValueError(f"not a finite amount: {value!r}")
    return result


@dataclass(frozen=True)
class ModelPrice:
    """US dollars per million input and output tokens."""

    input_per_million: Decimal
    output_per_million: Decimal

    @classmethod
    def parse(cls, spec: ModelPrice | Mapping[str, Money] | tuple[Money, Money]) -> ModelPrice:
        """From ``{"input": "3", "output": "15"}``, a ``(input, output)`` pair, or a ModelPrice."""
        if isinstance(spec, ModelPrice):
            return spec
        if isinstance(spec, tuple):
            input_price, output_price = spec
        else:
            missing = {"input", "output"} - set(spec)
            if missing:
                raise ValueError(f"a price needs 'input' and 'output' (per million tokens); missing {sorted(missing)}")
            input_price, output_price = spec["input"], spec["output"]
        price = cls(to_money(input_price), to_money(output_price))
        if price.input_per_million < 0 or price.output_per_million < 0:
            raise ValueError(f"prices cannot be negative: {spec!r}")
        return price


class PriceTable:
    """Prices per model; ``cost(model, input_tokens, output_tokens, batch=...)`` in Decimal dollars.

    An unknown model raises KeyError rather than costing nothing: a call we cannot price is a
    call the budget cannot stop.
    """

    def __init__(self, prices: Mapping[str, ModelPrice | Mapping[str, Money] | tuple[Money, Money]],
                 *, batch_discount: Money = BATCH_DISCOUNT):
        self.prices = {model: ModelPrice.parse(spec) for model, spec in prices.items()}
        self.batch_discount = to_money(batch_discount)
        if not 0 <= self.batch_discount <= 1:
            raise ValueError("batch_discount is a fraction between 0 and 1")

    def __contains__(self, model: object) -> bool:
        return model in self.prices

    def cost(self, model: str, input_tokens: int, output_tokens: int, *, batch: bool = False) -> Decimal:
        if input_tokens < 0 or output_tokens < 0:
            raise ValueError("token counts cannot be negative")
        try:
            price = self.prices[model]
        except KeyError:
            raise KeyError(f"no price for model {model!r}; known: {sorted(self.prices)}") from None
        total = (price.input_per_million * input_tokens + price.output_per_million * output_tokens) / MILLION
        return total * (1 - self.batch_discount) if batch else total


def cost(prices: Mapping[str, ModelPrice | Mapping[str, Money] | tuple[Money, Money]], model: str,
         input_tokens: int, output_tokens: int, batch: bool = False) -> Decimal:
    """One-off pricing straight from a config dict; see :class:`PriceTable`."""
    return PriceTable(prices).cost(model, input_tokens, output_tokens, batch=batch)
