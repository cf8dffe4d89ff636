"""Opt-in wall time of the steps of prepare_contexts (`implementation("fast", phases=True)`), the twin of
the decode's timeline (decoding/spans.py): PreparedContexts.phases holds the seconds of each phase of
PHASES this request went through, for the latency figure (paper/reproduce/plots/latency.py), which reads them
instead of repeating the pipeline's steps.

Off (the default) every phase is one shared no-op context: no clock read, no device sync. On, a phase
waits for a CUDA device at its end (its work is queued asynchronously), so the phases add up to the
wall time of the steps, one after the other, in this process. With the draft in its own process,
"draft prefill" is what this process spent sending the draft's job and waiting for its pruned prefill.
"""

from __future__ import annotations

import contextlib
import time

import torch

PHASES = ("preprocessing", "vision encoding", "target prefill", "scoring", "pruning", "draft prefill")

_OFF = contextlib.nullcontext()  # reusable: entered once per phase when none is recorded


def recorder(times: dict | None, device):
    """`phase(name)` -> context manager adding its wall time to times[name] (waiting for `device` at its
    end when it is a CUDA device); a no-op when `times` is None."""
    if times is None:
        return lambda name: _OFF
    cuda = torch.device(device).type == "cuda"

    @contextlib.contextmanager
    def phase(name: str):
        start = time.perf_counter()
        try:
            yield
        finally:
            if cuda:
                torch.cuda.synchronize(device)
            times[name] = times.get(name, 0.0) + time.perf_counter() - start

    return phase
