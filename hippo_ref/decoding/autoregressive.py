"""Autoregressive decoding with the target alone: the baseline every other loop must equal."""

from __future__ import annotations

import time

from hippo.stats import DecodeStats
from hippo_ref.decoding.common import DecodeConfig, DecodeResult, Track, commit, first_token
from hippo_ref.sampling import TARGET, draw


def decode_autoregressive(target_context, cfg: DecodeConfig) -> DecodeResult:
    """One target forward per token; token i is drawn from p with the TARGET uniform of index i."""
    start = time.perf_counter()
    stats = DecodeStats()
    target = Track(target_context)
    tokens: list[int] = []
    _, done = commit(tokens, [first_token(target_context, cfg)], cfg)
    while not done:
        logits = target.logits_after(tokens, len(tokens) - 1)[-1]
        token, _ = draw(logits, cfg.sampling, cfg.seed, TARGET, len(tokens))
        _, done = commit(tokens, [token], cfg)
        stats.record_round(1, rejected=False)
    stats.target_forwards = target_context.forwards
    stats.decode_s = time.perf_counter() - start
    return DecodeResult(tokens, stats)
