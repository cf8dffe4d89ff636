"""Autoregressive decoding with the target alone, on the device (hippo_ref's decode_autoregressive)."""

from __future__ import annotations

import time

from hippo.request import DecodeConfig, DecodeResult
from hippo.stats import DecodeStats
from hippo_fast import sampling
from hippo_fast.decoding import common


def decode_autoregressive(target_context, cfg: DecodeConfig, sync_every: int | None = None) -> DecodeResult:
    """One target forward per token; token i drawn with the TARGET uniform of index i. The host looks
    for an EOS every `sync_every` tokens (default: 1 on the CPU, 8 on an accelerator, where a sync
    stalls the queue); tokens computed after an EOS are dropped, so the output is the same."""
    start = time.perf_counter()
    stats = DecodeStats()
    target, _ = common.contexts(target_context)
    state = common.Decode.start(target, cfg, "ar")
    every = sync_every or (1 if target.device.type == "cpu" else 8)
    done = state.commit(1, cfg, 1)[2]
    while not done:
        steps = min(every, cfg.max_new_tokens - state.n)
        for j in range(steps):
            m = state.n + j
            logits = target.forward(state.seq[m - 1 : m], m - 1)[-1]
            token, _ = sampling.draw(logits, cfg.sampling, state.uniforms, sampling.TARGET, m)
            state.put(m, token)
        _, count, done, _ = state.commit(steps, cfg, steps)
        for _ in range(count):
            stats.record_round(1, rejected=False)
    stats.target_forwards = target.forwards
    stats.decode_s = time.perf_counter() - start
    return DecodeResult(state.tokens(), stats)
