"""PEARL's parallel speculative decoding (Liu et al. 2024, arXiv 2408.11850), executed in one thread.

The schedule is a pure function of the tokens, never of timing, so this serial execution commits
exactly the tokens a run with draft and target on two devices would. Two kinds of round:

PRE-VERIFY (at the start and after every rejection). In parallel:
    draft:  drafts d1..d_gamma after the committed tokens;
    target: one forward on the last committed token -> p for the next position.
  d1 is checked against p. Rejected: commit the residual draw, drop d2..d_gamma, stay in pre-verify.
  Accepted: commit d1, keep d2..d_gamma as PENDING (drafted, not yet verified), go to post-verify.

POST-VERIFY (while the pending tokens look good). In parallel:
    draft:  drafts e1..e_gamma after committed + pending;
    target: one forward on [last committed token] + pending -> len(pending) + 1 rows of p.
  The rows check the pending tokens in order and then e1 (the draft's first new token, ready before
  the target finishes). All accepted: commit pending + e1, e2..e_gamma become pending, stay.
  A rejection: commit the accepted ones and the residual draw, drop everything drafted after it,
  return to pre-verify (both caches are rolled back by the next forward that feeds them).
No bonus token is drawn: in post-verify the draft's next token takes its place.
"""

from __future__ import annotations

import time

from hippo.stats import DecodeStats
from hippo_ref.decoding import common
from hippo_ref.decoding.common import DecodeConfig, DecodeResult, verify_in_order


def decode_parallel(target_context, draft_context, cfg: DecodeConfig) -> DecodeResult:
    """PEARL pre-verify / post-verify with draft length gamma (see the module docstring)."""
    start = time.perf_counter()
    stats = DecodeStats(gamma=cfg.gamma)
    target, draft = common.Track(target_context, "target"), common.Track(draft_context, "draft")
    vocab = target_context.adapter.vocab_size
    tokens: list[int] = []
    _, done = common.commit(tokens, [common.first_token(target_context, cfg)], cfg)
    pending, pending_qs = [], []  # drafted after `tokens`, not yet verified (post-verify only)
    while not done:
        n = len(tokens)
        # The two "parallel" calls: neither reads what the other produces in this round.
        drafts, qs = common.draft_block(draft, tokens + pending, cfg.gamma, cfg, vocab)
        target_logits = target.logits_after(tokens + pending, n - 1)  # len(pending) + 1 rows
        candidates, candidate_qs = pending + drafts[:1], pending_qs + qs[:1]
        new, rejected = verify_in_order(candidates, candidate_qs, target_logits, cfg, n)
        committed, done = common.commit(tokens, new, cfg)
        stats.record_round(committed, rejected and committed == len(new))
        pending, pending_qs = ([], []) if rejected else (drafts[1:], qs[1:])
    stats.target_forwards = target_context.forwards
    stats.draft_forwards = draft_context.forwards
    stats.decode_s = time.perf_counter() - start
    return DecodeResult(tokens, stats)
