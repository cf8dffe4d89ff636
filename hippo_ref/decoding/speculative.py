"""Plain speculative decoding (Leviathan et al. 2023; Chen et al. 2023), serial draft-then-verify."""

from __future__ import annotations

import time

from hippo.stats import DecodeStats
from hippo_ref import sampling
from hippo_ref.decoding import common
from hippo_ref.decoding.common import DecodeConfig, DecodeResult


def verify_block(drafts, qs, target_logits, cfg: DecodeConfig, first_index: int) -> tuple[list[int], bool]:
    """Check drafts in order against the target rows; stop at the first rejection with its residual
    draw, or append the bonus token drawn from the last row. Returns (tokens to commit, rejected?)."""
    out, rejected = common.verify_in_order(drafts, qs, target_logits, cfg, first_index)
    if rejected:
        return out, True
    bonus, _ = sampling.draw(target_logits[len(drafts)], cfg.sampling, cfg.seed, sampling.TARGET, first_index + len(drafts))
    return out + [bonus], False


def decode_speculative(target_context, draft_context, cfg: DecodeConfig) -> DecodeResult:
    """Each round: the draft proposes gamma tokens, one target forward over [last token, drafts] scores
    them all, and 1..gamma+1 tokens are committed."""
    start = time.perf_counter()
    stats = DecodeStats(gamma=cfg.gamma)
    target, draft = common.Track(target_context, "target"), common.Track(draft_context, "draft")
    vocab = target_context.adapter.vocab_size
    tokens: list[int] = []
    _, done = common.commit(tokens, [common.first_token(target_context, cfg)], cfg)
    while not done:
        n = len(tokens)
        drafts, qs = common.draft_block(draft, tokens, cfg.gamma, cfg, vocab)
        target_logits = target.logits_after(tokens + drafts, n - 1)  # gamma + 1 rows
        new, rejected = verify_block(drafts, qs, target_logits, cfg, n)
        committed, done = common.commit(tokens, new, cfg)
        stats.record_round(committed, rejected and committed == len(new))
    stats.target_forwards = target_context.forwards
    stats.draft_forwards = draft_context.forwards
    stats.decode_s = time.perf_counter() - start
    return DecodeResult(tokens, stats)
