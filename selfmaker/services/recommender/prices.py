"""CostPerHour of an instance type: a price table the operator can replace.

The default table (prices.json beside this module) holds approximate us-east-1 on-demand
real-time inference prices, illustrative defaults whose provenance its ``source`` states
(a few checked against AWS's published figures, the rest not); ``--price-table FILE``
(SELFMAKER_PRICE_TABLE) points at another file of the same shape, with current prices.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

DEFAULT_TABLE = Path(__file__).with_name("prices.json")


@lru_cache(maxsize=4)
def _load(path: str) -> dict[str, float]:
    table = json.loads(Path(path).read_text())
    return {str(k): float(v) for k, v in table["prices"].items()}


def price_table(settings) -> dict[str, float]:
    return _load(str(getattr(settings, "price_table", None) or DEFAULT_TABLE))


def cost_per_hour(settings, instance_type: str, count: int = 1) -> float | None:
    """USD per hour of ``count`` instances of the type, None when the table does not price it."""
    price = price_table(settings).get(instance_type)
    return None if price is None else price * count


def cost_per_inference(cost_hour: float | None, max_invocations_per_minute: int) -> float | None:
    """AWS's identity: CostPerInference = CostPerHour / (MaxInvocations x 60)."""
    if cost_hour is None or max_invocations_per_minute <= 0:
        return None
    return cost_hour / (max_invocations_per_minute * 60)
