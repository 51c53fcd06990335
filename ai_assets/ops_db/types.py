"""Column types that behave the same on SQLite and PostgreSQL.

- `UtcDateTime`: timezone-aware UTC in, timezone-aware UTC out, on both databases.
  SQLite has no time zones, so it stores naive UTC in SQLAlchemy's fixed-width text
  format (which sorts correctly for window queries). Naive datetimes are refused: an
  unlabelled time is a bug waiting for a daylight-saving change.
- `Money`: exact `Decimal` amounts of US dollars to 1e-9 (a nano-dollar; the cheapest
  price per token in use is a multiple of it). PostgreSQL stores NUMERIC(18, 9). SQLite
  has no decimal type: its NUMERIC is a binary float, whose sums drift, so SQLite stores
  the integer number of nano-dollars, and SUM over it stays exact. Anyone reading the
  SQLite file by hand sees nano-dollars in `cost_usd`; through SQLAlchemy both
  databases give the same `Decimal`.
- `JSON_DOC`: JSON on SQLite, JSONB on PostgreSQL.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Decimal

from sqlalchemy import JSON, BigInteger, DateTime, Numeric
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.types import TypeDecorator

MONEY_SCALE = 9
MONEY_PRECISION = 18
_QUANTUM = Decimal(1).scaleb(-MONEY_SCALE)

JSON_DOC = JSON().with_variant(JSONB(), "postgresql")


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_money(value: Decimal | int | str | float) -> Decimal:
    """An exact amount rounded (half-even) to 1e-9 dollars. Floats go through their
    shortest repr (`0.1` is 0.1, not 0.1000000000000000055...); pass Decimal to be exact."""
    if isinstance(value, bool):
        raise TypeError("a money amount cannot be a bool")
    if isinstance(value, float):
        value = repr(value)
    amount = Decimal(value)
    if not amount.is_finite():
        raise ValueError(f"a money amount must be finite, got {value!r}")
    return amount.quantize(_QUANTUM, rounding=ROUND_HALF_EVEN)


def as_utc(value: datetime, label: str = "time") -> datetime:
    """`value` in UTC; a naive datetime is refused (ValueError)."""
    if not isinstance(value, datetime):
        raise TypeError(f"{label}: expected a datetime, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{label}: naive datetime {value.isoformat()}; pass a timezone-aware time (UTC)")
    return value.astimezone(UTC)


class UtcDateTime(TypeDecorator[datetime]):
    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        value = as_utc(value)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Money(TypeDecorator[Decimal]):
    impl = Numeric(MONEY_PRECISION, MONEY_SCALE, asdecimal=True)
    cache_ok = True

    def load_dialect_impl(self, dialect):
        if dialect.name == "sqlite":
            return dialect.type_descriptor(BigInteger())
        return dialect.type_descriptor(Numeric(MONEY_PRECISION, MONEY_SCALE, asdecimal=True))

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        amount = as_money(value)
        return int(amount.scaleb(MONEY_SCALE)) if dialect.name == "sqlite" else amount

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        if dialect.name == "sqlite":
            return Decimal(int(value)).scaleb(-MONEY_SCALE).quantize(_QUANTUM)
        return Decimal(value).quantize(_QUANTUM)

    @property
    def python_type(self):
        return Decimal
