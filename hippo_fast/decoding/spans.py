"""Opt-in busy spans of the serial decodes: the same hippo.stats.Timeline, with the same lanes, that the
two-process PEARL decode records (hippo_fast/decoding/parallel_split.py), so a serial run's Gantt chart
is drawn from the same measure. Lanes: "draft" (the draft block), "target" (the target's forward),
"verify" (the verification and the round's commit).

Off (the default) every span is one shared no-op context: no clock read, no device sync, nothing kept.
On, a span waits for the CUDA devices at both of its ends: their work is queued asynchronously, and
without the wait a span would time the enqueueing, not the work (so a recorded decode runs a little
slower on a GPU; the tokens are the same).
"""

from __future__ import annotations

import contextlib

import torch

from hippo.stats import Timeline

_OFF = contextlib.nullcontext()  # reusable: entered once per span when no timeline is recorded


def recorder(timeline: Timeline | None, *devices):
    """`span(lane, round_index)` -> context manager that appends (lane, round, start_s, end_s) to
    `timeline`, waiting for `devices` (the decode's, those that are CUDA) at both ends; a no-op when
    `timeline` is None."""
    if timeline is None:
        return lambda lane, round_index: _OFF
    cuda = list(dict.fromkeys(torch.device(d) for d in devices if torch.device(d).type == "cuda"))

    def wait() -> None:
        for device in cuda:
            torch.cuda.synchronize(device)

    @contextlib.contextmanager
    def span(lane: str, round_index: int):
        wait()
        with timeline.busy(lane, round_index):  # the clock and the span, as the two-process decode records them
            try:
                yield
            finally:
                wait()

    return span
