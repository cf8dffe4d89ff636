"""A fault the two-process tests plant: the draft worker killed in the middle of a request."""

from __future__ import annotations

import os
import signal

from hippo_fast.decoding import parallel_split


def kill_worker_at_round(monkeypatch, worker, at: int = 3) -> list[int]:
    """SIGKILL `worker`'s process when the target starts receiving its `at`-th draft block; returns the
    list that grows by one per block received (so a test can say how far the request got)."""
    original, rounds = parallel_split.receive_block, []

    def kill_then_receive(link, *args):
        rounds.append(1)
        if len(rounds) == at:
            os.kill(worker.process.pid, signal.SIGKILL)
        return original(link, *args)

    monkeypatch.setattr(parallel_split, "receive_block", kill_then_receive)
    return rounds
