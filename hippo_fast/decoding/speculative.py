"""Serial speculative decoding on the device (hippo_ref's decode_speculative): the draft proposes
gamma tokens, one fixed-shape (gamma + 1)-token target forward scores them, one host sync per round.
`timeline=True` records each round's draft block, target forward and verification as busy spans
(hippo_fast/decoding/spans.py; off: nothing is timed)."""

from __future__ import annotations

import time

from hippo.request import DecodeConfig, DecodeResult
from hippo.stats import DecodeStats, Timeline
from hippo_fast import sampling
from hippo_fast.decoding import common, spans


def decode_speculative(target_context, draft_context, cfg: DecodeConfig, timeline: bool = False) -> DecodeResult:
    """Each round commits 1..gamma+1 tokens: the accepted drafts, then the residual draw or the bonus."""
    start = time.perf_counter()
    g = cfg.gamma
    stats = DecodeStats(gamma=g)
    target, draft = common.contexts(target_context, draft_context)
    recorded = Timeline() if timeline else None
    span = spans.recorder(recorded, target.device, draft.device)
    state = common.Decode.start(target, cfg, "sd")
    draft.reserve(len(state.seq))
    draft_valid = 0  # generated tokens whose draft rows agree with seq
    done = state.commit(1, cfg, 1)[2]
    while not done:
        n, r = state.n, len(stats.accepted_per_round)
        with span("draft", r):
            qs, draft_valid = common.draft_block(draft, state, n, draft_valid, g, cfg, target.vocab_size)
        with span("target", r):
            target_logits = target.forward(state.seq[n - 1 : n + g], n - 1)  # gamma + 1 rows
        with span("verify", r):
            accepted, after = sampling.verify(target_logits, state.seq[n : n + g], qs, cfg.sampling, state.uniforms,
                                              n, bonus=True)
            state.put(accepted + n, after)
            proposed, committed, done, rejected = state.commit(accepted + 1, cfg, g + 1, accepted < g)
        stats.record_round(committed, rejected and committed == proposed)
        draft_valid = min(draft_valid, n + proposed - 1)  # rows of the accepted drafts stay valid
    stats.target_forwards = target.forwards
    stats.draft_forwards = draft.forwards
    stats.decode_s = time.perf_counter() - start
    return DecodeResult(state.tokens(), stats, recorded)
