"""PEARL's pre-verify / post-verify schedule on the device (hippo_ref's decode_parallel, which states
the schedule), executed serially in one thread: each round's draft block and target forward do not
read each other's output, which is what lets part 2 run them at the same time.

Shapes: the draft always takes one-token steps; the target forward takes 1 token (pre-verify) or
gamma tokens (post-verify: the last committed token and the gamma - 1 pending ones).
`timeline=True` records each round's target forward, draft block and verification as busy spans
(hippo_fast/decoding/spans.py), one after the other here as they run.

The round's verification (`verify_round`) and what it leaves pending (`next_pending`) are shared with
the two-process decode (parallel_split.py), which cuts this loop at its seam.
"""

from __future__ import annotations

import time

import torch

from hippo.errors import ConfigError
from hippo.request import DecodeConfig, DecodeResult
from hippo.stats import DecodeStats, Timeline
from hippo_fast import sampling
from hippo_fast.decoding import common, spans
from hippo_fast.decoding.lanes import lanes_for


def decode_parallel(target_context, draft_context, cfg: DecodeConfig, lanes: bool = False,
                    timeline: bool = False) -> DecodeResult:
    """PEARL with draft length gamma; pending tokens are seq[n : n + pending] with distributions `pending_qs`.
    `lanes`: enqueue the target forward and the draft block on two CUDA streams (hippo_fast/decoding/
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
    state = common.Decode.start(target, cfg, "pearl")
    draft.reserve(len(state.seq))
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
            proposed, done, rejected, _ = verify_round(state, target_logits, pending,
                                                       candidate_qs(pending_qs, qs), cfg, stats)
        if rejected:
            draft_valid = min(draft_valid, n + proposed - 1)
        pending, pending_qs = next_pending(rejected, g, qs)
    stats.target_forwards = target.forwards
    stats.draft_forwards = draft.forwards
    stats.decode_s = time.perf_counter() - start
    return DecodeResult(state.tokens(), stats, recorded)


def candidate_qs(pending_qs, block_qs):
    """q of this round's candidates: the pending tokens' then the new block's first (None: a greedy draft).
    Rows of a (k, V) q matrix, or q(x) values alone (the two-process decode's BLOCK)."""
    if block_qs is None:
        return None
    return block_qs[:1] if pending_qs is None else torch.cat([pending_qs, block_qs[:1]])


def verify_round(state: common.Decode, target_logits, pending: int, qs, cfg: DecodeConfig, stats: DecodeStats):
    """Verify the round's pending + 1 candidates seq[n : n + pending + 1] against the target's logits
    (`qs`: their q rows, None for a greedy draft), put the residual draw in place of a refused one,
    commit (the round's one host sync) and record the round. Returns (tokens proposed, done, rejected,
    the index of the replaced token as a device value: n when nothing was refused)."""
    n = state.n
    candidates = pending + 1
    accepted, after = sampling.verify(target_logits, state.seq[n : n + candidates], qs, cfg.sampling,
                                      state.uniforms, n, bonus=False)
    rejected = accepted < candidates
    # On a rejection the residual draw replaces the refused token; otherwise seq already holds them all.
    replaced = torch.where(rejected, accepted + n, n)
    state.put(replaced, torch.where(rejected, after, state.seq[n]))
    proposed, committed, done, rejected = state.commit(torch.where(rejected, accepted + 1, candidates), cfg,
                                                       candidates, rejected)
    stats.record_round(committed, rejected and committed == proposed)
    return proposed, done, rejected, replaced


def next_pending(rejected: bool, gamma: int, block_qs):
    """(pending tokens, their q) after a round: none after a rejection, else the block's last gamma - 1."""
    if rejected:
        return 0, None
    return gamma - 1, None if block_qs is None else block_qs[1:]
