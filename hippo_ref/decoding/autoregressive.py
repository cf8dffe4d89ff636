"""Autoregressive decoding with the target alone: the baseline every other loop must equal."""

from __future__ import annotations

import time

from hippo.stats import DecodeStats
from hippo_ref import sampling
from hippo_ref.decoding import common
from hippo_ref.decoding.common import DecodeConfig, DecodeResult


def decode_autoregressive(target_context, cfg: DecodeConfig) -> DecodeResult:
    """One target forward per token; token i is drawn from p with the TARGET uniform of index i."""
    start = time.perf_counter()
    stats = DecodeStats()
    target = common.Track(target_context, "target")
    tokens: list[int] = []
    _, done = common.commit(tokens, [common.first_token(target_context, cfg)], cfg)
    while not done:
        logits = target.logits_after(tokens, len(tokens) - 1)[-1]
        token, _ = sampling.draw(logits, cfg.sampling, cfg.seed, sampling.TARGET, len(tokens))
        _, done = common.commit(tokens, [token], cfg)
        stats.record_round(1, rejected=False)
    stats.target_forwards = target_context.forwards
    stats.decode_s = time.perf_counter() - start
    return DecodeResult(tokens, stats)
