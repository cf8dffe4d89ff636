"""PEARL's pre-verify / post-verify schedule on the device (hippo_ref's decode_parallel, which states
the schedule), executed serially in one thread: each round's draft block and target forward do not
read each other's output, which is what lets part 2 run them at the same time.

Shapes: the draft always takes one-token steps; the target forward takes 1 token (pre-verify) or
gamma tokens (post-verify: the last committed token and the gamma - 1 pending ones).
`timeline=True` records each round's target forward, draft block and verification as busy spans
(hippo_fast/decoding/spans.py), one after the other here as they run.
"""

from __future__ import annotations

import time

import torch

from hippo.errors import ConfigError
from hippo.request import DecodeConfig, DecodeResult
from hippo.stats import DecodeStats, Timeline
from hippo_fast import sampling
from hippo_fast.decoding import common, spans
from hippo_fast.overlap.lanes import lanes_for


def decode_parallel(target_context, draft_context, cfg: DecodeConfig, lanes: bool = False,
                    timeline: bool = False) -> DecodeResult:
    """PEARL with draft length gamma; pending tokens are seq[n : n + pending] with distributions `pending_qs`.
    `lanes`: enqueue the target forward and the draft block on two CUDA streams (hippo_fast/overlap/
    lanes.py; on a CPU the same calls in order). `timeline` with `lanes` is refused: a span waits for
    the device, which would run the two streams one after the other."""
    if lanes and timeline:
        raise ConfigError("a timeline waits for the device at every span, which serialises the two streams: "
                          "record it with the serial schedule or the draft in its own process")
    start = time.perf_counter()
    g = cfg.gamma
    stats = DecodeStats(gamma=g)
    target, draft = common.contexts(target_context, draft_context)
    streams = lanes_for(target, draft, lanes)
    recorded = Timeline() if timeline else None
    span = spans.recorder(recorded, target.device, draft.device)
    state = common.Decode.start(target, cfg, 2 * g)
    draft.reserve(cfg.max_new_tokens + 2 * g + 2)
    draft_valid = 0
    pending, pending_qs = 0, None
    done = state.commit(1, cfg, 1)[2]
    while not done:
        n, r = state.n, len(stats.accepted_per_round)
        # The two "parallel" calls: neither reads what the other produces in this round. The target's
        # is enqueued first (the longer one), each on its lane; the verification waits for both.
        streams.fork()
        with streams.lane("target"), span("target", r):
            target_logits = target.forward(state.seq[n - 1 : n + pending], n - 1)  # pending + 1 rows
        with streams.lane("draft"), span("draft", r):
            qs, draft_valid = common.draft_block(draft, state, n + pending, draft_valid, g, cfg, target.vocab_size)
        streams.join()
        with span("verify", r):
            candidate_qs = None if qs is None else (qs[:1] if pending_qs is None else torch.cat([pending_qs, qs[:1]]))
            accepted, after = sampling.verify(target_logits, state.seq[n : n + pending + 1], candidate_qs,
                                              cfg.sampling, state.uniforms, n, bonus=False)
            candidates = pending + 1
            rejected = accepted < candidates
            # On a rejection the residual draw replaces the refused token; otherwise seq already holds them all.
            state.put(torch.where(rejected, accepted + n, n), torch.where(rejected, after, state.seq[n]))
            proposed, committed, done, rejected = state.commit(torch.where(rejected, accepted + 1, candidates), cfg,
                                                               candidates, rejected)
        stats.record_round(committed, rejected and committed == proposed)
        if rejected:
            draft_valid = min(draft_valid, n + proposed - 1)
            pending, pending_qs = 0, None
        else:
            pending, pending_qs = g - 1, None if qs is None else qs[1:]
    stats.target_forwards = target.forwards
    stats.draft_forwards = draft.forwards
    stats.decode_s = time.perf_counter() - start
    return DecodeResult(state.tokens(), stats, recorded)

