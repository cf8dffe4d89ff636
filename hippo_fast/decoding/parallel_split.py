"""PEARL with draft and target in two processes: decode_parallel (hippo_fast/decoding/parallel.py, the
schedule, stated in hippo_ref/decoding/parallel.py) cut at its seam. In every round the draft block
and the target forward do not read each other's output, so they run at the same time here, one in
each process; then the draft's BLOCK goes to the target, which verifies and sends its DECISION back
(hippo_fast/overlap/link.py). The tokens are the one-process schedule's, token for token: the same
forwards on the same token ids, the same keyed uniforms, the same verify.

    target process                                draft process
    token 0 from the prefill  --START-->          seq[0]
    round r: forward seq[n-1 : n+pending]         draft gamma tokens after seq[:n+pending]
             <--BLOCK--                            send them (and q of each, when it samples)
             verify pending + block[0]
             (a sampled candidate refused: --ROW?-->, <--q ROW--)
             commit --DECISION-->                  apply: n, rollback, replaced token

The target verifies with the same batched rule as the one-process decode (sampling.verify over a
(candidates, V) q matrix); only the rows it reads cross: q(x) of every candidate, and the full q row
of the first refused one (its residual). The other rows of that matrix are zeros there, which the
rule never reads (the accepted count reads q(x) only; the residual drawn is the refused row's).
"""

from __future__ import annotations

import time

import torch

from hippo.request import DecodeConfig, DecodeResult
from hippo.stats import DecodeStats, Timeline
from hippo_fast import sampling
from hippo_fast.cache import as_fast_context
from hippo_fast.decoding import common
from hippo_fast.decoding.parallel import candidate_qs, next_pending, verify_round


def decode_parallel_target(target_context, link, cfg: DecodeConfig, draft_samples: bool) -> DecodeResult:
    """The target's half: its forwards, the verification, the decisions. `draft_samples`: the draft
    draws from q (its BLOCK carries q rows); False for a greedy draft."""
    start = time.perf_counter()
    g = cfg.gamma
    stats, timeline = DecodeStats(gamma=g), Timeline()
    target = as_fast_context(target_context)
    state = common.Decode.start(target, cfg, "pearl")
    pending, pending_qs = 0, None
    done = state.commit(1, cfg, 1)[2]
    link.send_start(state.seq[0], done)
    round_index = 0
    while not done:
        n = state.n
        with timeline.busy("target", round_index):
            target_logits = target_rows(target, state.seq[n - 1 : n + pending], n - 1)  # pending + 1 rows
        block, q_of_block = receive_block(link, g, target.vocab_size, draft_samples)
        with timeline.busy("verify", round_index):
            state.seq[n + pending : n + pending + g] = block.to(state.seq.device)
            q_of_candidates = candidate_qs(pending_qs, q_of_block)
            qs = None if q_of_candidates is None else candidate_rows(
                link, target_logits, state.seq[n : n + pending + 1], q_of_candidates, cfg, state.uniforms, n)
            proposed, done, rejected, replaced = verify_round(state, target_logits, pending, qs, cfg, stats)
        valid = n + proposed - 1 if rejected else -1  # the draft's cache rows that still agree (-1: all)
        send_decision(link, state.n, valid, replaced, state.seq[replaced], rejected, done)
        pending, pending_qs = next_pending(rejected, g, q_of_block)
        round_index += 1
    draft_report = link.recv_object()  # the draft's forward count and its lane of the timeline
    stats.target_forwards = target.forwards
    stats.draft_forwards = draft_report["forwards"]
    timeline.spans += [tuple(span) for span in draft_report["spans"]]
    stats.decode_s = time.perf_counter() - start
    return DecodeResult(state.tokens(), stats, timeline)


def candidate_rows(link, target_logits, candidates, q_of_candidates, cfg: DecodeConfig, uniforms, n: int):
    """The (c, V) q matrix sampling.verify reads: q(x) of each candidate, and the full row of the first one
    the rule refuses, asked of the draft (the accepted count is the rule's own: sampling.accepted_count)."""
    c, vocab = candidates.shape[0], target_logits.shape[-1]
    rows = torch.arange(c, device=candidates.device)
    qs = torch.zeros(c, vocab, dtype=torch.float64, device=candidates.device)
    qs[rows, candidates] = q_of_candidates
    p = sampling.distributions(target_logits[:c], cfg.sampling)
    refused = int(sampling.accepted_count(p, qs, candidates, uniforms, n))  # this round's host read
    if refused < c:
        link.send_row_request(refused)
        qs[refused] = link.recv_row(vocab)
    return qs


def target_rows(target, ids, offset: int):
    """The target's forward of the round, waited for (a device works asynchronously; the verification
    must read finished rows: a seam of its own, so the audit can plant a read that does not wait)."""
    logits = target.forward(ids, offset)
    logits[-1, 0].item()
    return logits


def receive_block(link, gamma: int, vocab: int, sampled: bool):
    """The draft's block of this round and, when it samples, q of each token (a seam of its own, so the
    audit can plant a bug in it)."""
    return link.recv_block(gamma, sampled)


def send_decision(link, n: int, valid: int, replaced_index, replaced_token, rejected: bool, done: bool) -> None:
    """The round's decision to the draft (a seam of its own, so the audit can plant a bug in it)."""
    link.send_decision(n, valid, replaced_index, replaced_token, rejected, done)


def draft_parallel(draft_context, link, cfg: DecodeConfig, vocab: int) -> dict:
    """The draft's half: a block per round after the committed + pending tokens, with the DRAFT uniforms
    of their indices (common.draft_block, as in decode_parallel); the target's decision then says what
    was committed (the link answers its requests for a refused candidate's q row on the way). Returns
    what the target's half reports: forwards and the draft lane's spans."""
    g = cfg.gamma
    draft = as_fast_context(draft_context)
    state = common.Decode.buffers(draft.device, cfg, "pearl")
    draft.reserve(len(state.seq))
    timeline = Timeline()
    first, done = link.recv_start()
    state.put(0, first)
    state.n, valid, pending, round_index = 1, 0, 0, 0
    pending_qs = None
    while not done:
        with timeline.busy("draft", round_index):
            qs, valid = common.draft_block(draft, state, state.n + pending, valid, g, cfg, vocab)
            block = state.seq[state.n + pending : state.n + pending + g]
            block[-1].item()  # the block is drawn (a device works asynchronously)
        q_of_block = None if qs is None else qs[torch.arange(g, device=qs.device), block]
        link.send_block(block, q_of_block)
        rows = candidate_qs(pending_qs, qs)
        decision = link.recv_decision(row_of=lambda i, rows=rows: rows[i])
        done = bool(decision["done"])
        if decision["rejected"]:
            state.put(decision["replaced_index"], torch.tensor(decision["replaced_token"]))
            valid = min(valid, decision["valid"])
        pending, pending_qs = next_pending(decision["rejected"], g, qs)
        state.n = decision["n"]
        round_index += 1
    return {"forwards": draft.forwards, "spans": timeline.spans}
