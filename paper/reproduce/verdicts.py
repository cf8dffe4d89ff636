"""Graded verdicts on the paper's claims, computed from paired, same-run measurements.

A claim is judged on Effects: one paired measurement each (a speedup ratio or a MAT difference of rows
of one sweep), with its bootstrap interval, sample count and the setting it was measured at. The paper's
side is an Expectation: the direction of its effect and, where it published a commensurable size, that
size on the same scale (ratio to ratio). The grades, one decision function each:

- not testable here: the mechanism cannot act in this regime (a reason says why);
- not reproduced: the interval includes no effect, or lies on the other side of it;
- reproduced: the interval excludes no effect on the paper's side and holds the paper's size (or reaches
  it, for an "up to" claim; a claim with no published size is a claim of direction);
- direction reproduced: the same side, no effect excluded, the size differs.
"""

from __future__ import annotations

from dataclasses import dataclass

REPRODUCED = "reproduced"
DIRECTION = "direction reproduced"
NOT_REPRODUCED = "not reproduced"
NOT_TESTABLE = "not testable here"
STRENGTH = {REPRODUCED: 3, DIRECTION: 2, NOT_REPRODUCED: 1}  # not testable is no strength: it judges nothing


@dataclass(frozen=True)
class Effect:
    """One paired measurement: `estimate` with its interval [low, high] (None: none was measured) over
    `n` paired samples, at `setting`; `no_effect` is 1 for a ratio, 0 for a difference."""

    what: str
    estimate: float
    low: float | None
    high: float | None
    n: int
    setting: str
    no_effect: float

    def __post_init__(self):
        if (self.low is None) != (self.high is None) or (self.low is not None and self.low > self.high):
            raise ValueError(f"{self.what}: interval [{self.low}, {self.high}] is not an interval: pass both ends, "
                             "low <= high, or neither")
        if self.n < 1:
            raise ValueError(f"{self.what}: {self.n} samples; an effect needs at least one paired sample")

    def cite(self) -> str:
        interval = "no interval" if self.low is None else f"[{self.low:.2f}, {self.high:.2f}]"
        return f"{self.what} {self.estimate:.2f} {interval}, n={self.n}, {self.setting}"


@dataclass(frozen=True)
class Expectation:
    """The paper's side: `direction` +1 (above no effect) or -1 (below); `size` on the Effect's scale, or
    None where the paper published none that measures the same thing; `reaches`: an "up to" claim, whose
    size is reproduced by reaching it; `source`: how the size was formed."""

    direction: int
    size: float | None = None
    reaches: bool = False
    source: str = ""

    def __post_init__(self):
        if self.direction not in (1, -1):
            raise ValueError(f"direction must be +1 or -1, got {self.direction!r}")


@dataclass(frozen=True)
class Verdict:
    grade: str
    reason: str
    effect: Effect | None = None

    def text(self) -> str:
        return self.reason if self.effect is None else f"{self.effect.cite()}: {self.grade} ({self.reason})"


def excludes_no_effect(effect: Effect) -> bool:
    """The interval lies wholly on one side of no effect (no interval, or one over a single sample, whose
    bootstrap has no spread: it cannot exclude it)."""
    return (effect.low is not None and effect.n >= 2
            and (effect.low > effect.no_effect or effect.high < effect.no_effect))


def on_paper_side(effect: Effect, expected: Expectation) -> bool:
    """The estimate lies on the side of no effect the paper's effect lies on."""
    return (effect.estimate - effect.no_effect) * expected.direction > 0


def size_matches(effect: Effect, expected: Expectation) -> bool:
    """The paper's size lies inside the interval (an "up to" claim: the interval reaches it); a claim with
    no published size has no size to miss."""
    if expected.size is None:
        return True
    if effect.low is None:
        return False
    if expected.reaches:
        return effect.high >= expected.size if expected.direction > 0 else effect.low <= expected.size
    return effect.low <= expected.size <= effect.high


def grade(effect: Effect, expected: Expectation, untestable: str | None = None) -> Verdict:
    """The graded verdict on one Effect; `untestable`: why the mechanism cannot act here (then nothing is
    judged)."""
    if untestable:
        return Verdict(NOT_TESTABLE, untestable, effect)
    if not excludes_no_effect(effect):
        why = ("no interval measured" if effect.low is None else
               "one sample: its bootstrap interval has no spread" if effect.n < 2 else
               f"the interval includes {effect.no_effect:g}, no effect")
        return Verdict(NOT_REPRODUCED, why, effect)
    if not on_paper_side(effect, expected):
        return Verdict(NOT_REPRODUCED, "the interval excludes the paper's direction", effect)
    if size_matches(effect, expected):
        why = ("the paper's direction; it publishes no size for this comparison" if expected.size is None else
               f"the paper's direction, and {'reaches' if expected.reaches else 'holds'} its size {expected.size:.2f}"
               + (f" ({expected.source})" if expected.source else ""))
        return Verdict(REPRODUCED, why, effect)
    return Verdict(DIRECTION, f"the paper's direction; its size {expected.size:.2f} lies outside the interval"
                   + (f" ({expected.source})" if expected.source else ""), effect)


def weakest(verdicts: list[Verdict]) -> str:
    """A claim's grade over its regimes' verdicts (pairs at the judged setting): the weakest testable one;
    not testable only when none could be tested."""
    tested = [v.grade for v in verdicts if v.grade != NOT_TESTABLE]
    if not tested:
        return NOT_TESTABLE
    return min(tested, key=STRENGTH.__getitem__)


def holds_at(by_setting: dict[str, Verdict]) -> str:
    """Where a claim judged at several settings holds (at least its direction), and where it does not."""
    held = [s for s, v in by_setting.items() if v.grade in (REPRODUCED, DIRECTION)]
    missed = [s for s, v in by_setting.items() if v.grade == NOT_REPRODUCED]
    untested = [s for s, v in by_setting.items() if v.grade == NOT_TESTABLE]
    parts = [f"holds at {', '.join(held) if held else 'none'}"]
    if missed:
        parts.append(f"not at {', '.join(missed)}")
    if untested:
        parts.append(f"not testable at {', '.join(untested)}")
    return "; ".join(parts)
