"""The paper's published numbers, read from their one data file, paper/published.json (each value with
its source and the quantity it measures). Figures draw a published value only beside a measurement of
the same quantity (`of_quantity`), and the report compares ratio to ratio (`ratio`)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path

DATA = Path(__file__).resolve().parents[2] / "published.json"


@dataclass(frozen=True)
class Published:
    method: str  # HIPPO, SpecVLM, PEARL, or a model whose fact it is
    quantity: str  # a key of published.json's "quantities": what the number measures
    setting: str  # benchmark or condition
    value: float
    source: str

    def cite(self) -> str:
        return f"{self.method} {self.value:g} ({self.quantity}, {self.setting}; {self.source})"


@cache
def data() -> dict:
    try:
        return json.loads(DATA.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"{DATA} is not readable JSON ({err}): restore it from git") from None


def values() -> tuple[Published, ...]:
    known = data()["quantities"]
    out = []
    for entry in data()["values"]:
        if entry["quantity"] not in known:
            raise ValueError(f"{DATA}: {entry['method']} {entry['setting']} measures {entry['quantity']!r}, not "
                             f"one of the defined quantities ({', '.join(known)}): define it first")
        out.append(Published(**entry))
    return tuple(out)


def definition(quantity: str) -> str:
    return data()["quantities"][quantity]


def value(method: str, quantity: str, setting: str) -> Published:
    """The one published value of `method`'s `quantity` in `setting`; KeyError naming what exists."""
    for p in values():
        if (p.method, p.quantity, p.setting) == (method, quantity, setting):
            return p
    have = ", ".join(f"{p.method}/{p.quantity}/{p.setting}" for p in values())
    raise KeyError(f"no published {quantity} of {method} in {setting} in {DATA} (it holds: {have})")


def of_quantity(quantity: str) -> tuple[Published, ...]:
    """Every published value that measures `quantity`: the only ones a figure of that quantity may draw."""
    return tuple(p for p in values() if p.quantity == quantity)


def ratio(numerator: str, denominator: str, quantity: str, setting: str) -> tuple[float, str]:
    """The paper's own ratio of two methods' `quantity` in one setting (e.g. HIPPO over SpecVLM speedup on
    VideoMME), with the text that shows how it was formed."""
    a, b = value(numerator, quantity, setting), value(denominator, quantity, setting)
    result = a.value / b.value
    return result, f"{a.value:g} / {b.value:g} = {result:.2f} ({quantity}, {setting}; {a.source})"


def max_speedup_over_ar() -> Published:
    """The abstract's "up to" speedup of HIPPO over autoregressive decoding."""
    return value("HIPPO", "speedup_over_ar", "best case over the paper's models and benchmarks")
