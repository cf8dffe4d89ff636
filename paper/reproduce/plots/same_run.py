"""Same-run comparisons: a speedup or a paired difference divides only rows of one sweep.

Timings drift between runs (other work on the cores, thermal state, another machine): the same HIPPO
configuration read 2.74x over an AR baseline of its own sweep and 3.17x in another. Rows of one sweep
ran interleaved, sample by sample, so drift weighs on both sides alike; rows of two sweeps carry the
drift between them into the ratio. Every row paper/sweep/runner.py writes names its sweep (`sweep.id`,
paper.sweep.runner.sweep_id); these functions refuse anything else.
"""

from __future__ import annotations


class CrossSweepError(ValueError):
    """Rows of two different sweeps (or rows that name no sweep) were to be divided."""


def sweep_of(row: dict) -> str:
    """The sweep id a row was written under; rows without one (written before sweeps were named, or by
    hand) cannot be paired."""
    record = row.get("sweep")
    if not isinstance(record, dict) or not record.get("id"):
        raise CrossSweepError(f"row {row.get('key', '?')} names no sweep (no sweep.id: written before rows "
                              "recorded their sweep, or not by `hippo bench sweep`): it is unpaired and no speedup "
                              "or difference is computed from it; rerun its sweep into a new file")
    return str(record["id"])


def describe(row: dict) -> str:
    record = row.get("sweep") or {}
    return f"sweep {record.get('id', '?')} (file {record.get('file', '?')}, run {record.get('run', '?')})"


def check_same_sweep(*groups: list[dict]) -> str:
    """The one sweep id shared by every row of `groups` (e.g. AR's rows and a method's); raises
    CrossSweepError naming both sweeps when two differ."""
    first: dict | None = None
    for group in groups:
        for row in group:
            sweep = sweep_of(row)
            if first is None:
                first = row
            elif sweep != sweep_of(first):
                raise CrossSweepError(
                    f"rows of two different sweeps were to be divided: {first.get('key', '?')} of {describe(first)} "
                    f"and {row.get('key', '?')} of {describe(row)}; timings of separate runs carry the drift "
                    "between them into the ratio: put both configurations (the AR baseline included) in one sweep "
                    "(FigureJob.sweep(..., also=...)) and divide its own rows")
    if first is None:
        raise CrossSweepError("no rows to compare: both sides of a same-run comparison need rows of one sweep")
    return sweep_of(first)
