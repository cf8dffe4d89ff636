"""Negative controls: planted bugs, each a small documented mutation of hippo_ref.

A mutant is a context manager that patches one function of an implementation while it is active
(`implementation`: "ref" for hippo_ref, "fast" for hippo_fast, "processes" for two-process PEARL's
target half, whose candidates the suite then runs).
The suite runs its checks on every mutant and must catch each one (the mutation score); the report
names the checks that caught it. Every mutant here changes the output (or its law): a mutation
that cannot change anything would be a broken control, and the suite would report it uncaught.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from unittest import mock

import torch

from hippo.adapters.base import VideoLLMAdapter
from hippo_fast import cache as fast_cache
from hippo_fast import sampling as fast_sampling
from hippo_fast.decoding import parallel_split
from hippo_ref import sampling
from hippo_ref.decoding import common, parallel, speculative


@dataclass(frozen=True)
class Mutant:
    name: str
    description: str
    patches: tuple  # ((object, attribute name, replacement), ...)
    implementation: str = "ref"  # whose code is patched: the suite runs that implementation's candidates

    @contextlib.contextmanager
    def active(self):
        with contextlib.ExitStack() as stack:
            for owner, attribute, replacement in self.patches:
                stack.enter_context(mock.patch.object(owner, attribute, replacement))
            yield self


# ---- sampling-step mutants ------------------------------------------------------------------------
def _accept_q_over_p(p, q, token, u):
    return u * float(p[token]) < float(q[token])  # min(1, q/p)


def _residual_unnormalised(p, q):
    return torch.clamp(p - q, min=0)


def _sample_assuming_normalised(probs, u):
    """Inverse CDF that assumes the vector sums to 1 (with the unnormalised residual it falls off the end)."""
    cdf = torch.cumsum(probs, dim=0)
    index = int(torch.searchsorted(cdf, torch.tensor([u], dtype=cdf.dtype), right=True))
    return min(index, probs.numel() - 1)


def _residual_from_p(p, q):
    return p


_original_speculative_step = sampling.speculative_step


def _step_with_unnormalised_residual(p, q, token, seed, index):
    if sampling.accepts(p, q, token, sampling.keyed_uniform(seed, sampling.ACCEPT, index)):
        return token, True
    r = _residual_unnormalised(p, q)
    return _sample_assuming_normalised(r, sampling.keyed_uniform(seed, sampling.RESIDUAL, index)), False


def _step_reusing_the_draft_uniform(p, q, token, seed, index):
    """Accept test with the same uniform that drew the draft token: correlated randomness."""
    if sampling.accepts(p, q, token, sampling.keyed_uniform(seed, sampling.DRAFT, index)):
        return token, True
    return sampling.sample(sampling.residual(p, q), sampling.keyed_uniform(seed, sampling.RESIDUAL, index)), False


# ---- draft mutants ---------------------------------------------------------------------------------
_original_draft_block = common.draft_block


def _draft_block_topk_q_mismatch(draft, sequence, gamma, cfg, vocab_size):
    """The draw uses top-k 2 (or the configured draft warp), but q reported is the plain softmax."""
    seq = list(sequence)
    tokens, qs = [], []
    params = cfg.draft_params
    for _ in range(gamma):
        logits = common.align_vocab(draft.logits_after(seq, len(seq) - 1)[-1], vocab_size)
        drawn_with = sampling.SamplingParams(max(params.temperature, 1e-6) if not params.greedy else 0.0, top_k=2)
        token, _ = sampling.draw(logits, drawn_with, cfg.seed, sampling.DRAFT, len(seq))
        q = sampling.distribution(logits, sampling.SamplingParams(1.0) if not params.greedy else params)
        tokens.append(token)
        qs.append(q)
        seq.append(token)
    return tokens, qs


def _draft_block_temperature_ignored_in_q(draft, sequence, gamma, cfg, vocab_size):
    """The draft samples at its temperature, but q is computed at temperature 1."""
    seq = list(sequence)
    tokens, qs = [], []
    params = cfg.draft_params
    for _ in range(gamma):
        logits = common.align_vocab(draft.logits_after(seq, len(seq) - 1)[-1], vocab_size)
        token, q = sampling.draw(logits, params, cfg.seed, sampling.DRAFT, len(seq))
        if not params.greedy:
            q = sampling.distribution(logits, sampling.SamplingParams(1.0, params.top_k, params.top_p))
        tokens.append(token)
        qs.append(q)
        seq.append(token)
    return tokens, qs


def _greedy_draft_with_softmax_q(draft, sequence, gamma, cfg, vocab_size):
    """A greedy (argmax) draft that reports the softmax as q instead of the one-hot it sampled from."""
    seq = list(sequence)
    tokens, qs = [], []
    for _ in range(gamma):
        logits = common.align_vocab(draft.logits_after(seq, len(seq) - 1)[-1], vocab_size)
        token = int(torch.argmax(logits))
        q = torch.softmax(logits.double(), -1)
        tokens.append(token)
        qs.append(q)
        seq.append(token)
    return tokens, qs


# ---- verification-structure mutants ----------------------------------------------------------------
def _verify_block_bonus_from_q(drafts, qs, target_logits, cfg, first_index):
    """Bonus token drawn from the draft's last q instead of the target's p."""
    out, rejected = common.verify_in_order(drafts, qs, target_logits, cfg, first_index)
    if rejected:
        return out, True
    bonus = sampling.sample(qs[-1], sampling.keyed_uniform(cfg.seed, sampling.TARGET, first_index + len(drafts)))
    return out + [bonus], False


def _verify_in_order_skip_first_new(candidates, qs, target_logits, cfg, first_index):
    """Post-verify that does not check the draft's first new token (commits it unchecked)."""
    if len(candidates) < 2:
        return common.verify_in_order(candidates, qs, target_logits, cfg, first_index)
    out, rejected = common.verify_in_order(candidates[:-1], qs[:-1], target_logits, cfg, first_index)
    return (out, True) if rejected else (out + [candidates[-1]], False)


def _commit_ignoring_eos_inside_block(tokens, new, cfg):
    """Stops at EOS only when it is the last token of the block."""
    for count, token in enumerate(new, start=1):
        tokens.append(token)
        if len(tokens) >= cfg.max_new_tokens:
            return count, True
    return len(new), bool(new) and new[-1] in cfg.eos_token_ids


# ---- cache / position mutants ----------------------------------------------------------------------
def _logits_after_off_by_one(self, sequence, first):
    """Rollback crops one row too few: the first refused row stays in the cache under the new tokens."""
    context = self.context
    original = context.rollback

    def rollback_one_short(offset):
        original(min(offset + 1, context.generated_in_cache))

    context.rollback = rollback_one_short
    try:
        return _original_logits_after(self, sequence, first)
    finally:
        context.rollback = original


def _logits_after_stale_draft(self, sequence, first):
    """The draft never crops rejected rows: new rows are appended after the ones the target refused."""
    if self.role != "draft":
        return _original_logits_after(self, sequence, first)
    start = 0
    while start < min(len(self.fed), first) and self.fed[start] == sequence[start]:
        start += 1
    logits = _NoRollback(self.context).step(sequence[start:], start)
    self.fed = list(sequence)
    return logits[first - start :]


class _NoRollback:
    """A view of a context whose rollback does nothing, so new rows are appended after stale ones."""

    def __init__(self, context):
        self._context = context

    def step(self, tokens, offset):
        context = self._context
        original = context.rollback
        context.rollback = lambda offset: None
        try:
            return type(context).step(context, tokens, offset)
        finally:
            context.rollback = original


_original_logits_after = common.Track.logits_after


def catalogue() -> list[Mutant]:
    """The planted bugs the suite must catch."""
    return [
        Mutant("accept_q_over_p", "accept with min(1, q/p) instead of min(1, p/q)",
               ((sampling, "accepts", _accept_q_over_p),)),
        Mutant("residual_not_normalised", "residual max(0, p - q) not normalised, sampled as if it summed to 1",
               ((sampling, "speculative_step", _step_with_unnormalised_residual),)),
        Mutant("residual_from_p", "rejected positions redrawn from p instead of norm(max(0, p - q))",
               ((sampling, "residual", _residual_from_p),)),
        Mutant("bonus_from_q", "bonus token after a full block drawn from the draft's q instead of p",
               ((speculative, "verify_block", _verify_block_bonus_from_q),)),
        Mutant("q_not_sampled_distribution", "draft draws with top-k 2 but reports q without top-k",
               ((common, "draft_block", _draft_block_topk_q_mismatch),)),
        Mutant("draft_temperature_ignored", "q computed at temperature 1 while the draft samples at its own",
               ((common, "draft_block", _draft_block_temperature_ignored_in_q),)),
        Mutant("greedy_draft_softmax_q", "greedy draft reports softmax q instead of its one-hot",
               ((common, "draft_block", _greedy_draft_with_softmax_q),)),
        Mutant("accept_reuses_draft_uniform", "accept test reuses the uniform that drew the draft token",
               ((sampling, "speculative_step", _step_reusing_the_draft_uniform),)),
        Mutant("kv_rollback_off_by_one", "cache rollback resumes one row late (keeps one stale row)",
               ((common.Track, "logits_after", _logits_after_off_by_one),)),
        Mutant("stale_draft_kv", "draft cache keeps rejected rows after a rejection",
               ((common.Track, "logits_after", _logits_after_stale_draft),)),
        Mutant("post_verify_skips_first_new", "post-verify commits the draft's first new token unchecked",
               ((parallel, "verify_in_order", _verify_in_order_skip_first_new),)),
        Mutant("eos_in_block_ignored", "an EOS inside a committed block does not stop decoding",
               ((common, "commit", _commit_ignoring_eos_inside_block),)),
        Mutant("target_positions_shifted", "target's generated-token positions shifted as after pruning",
               ((common, "first_token", _shifted_first_token),)),
        Mutant("pruning_applied_to_target", "the target's prefill also drops half of its visual tokens",
               ((VideoLLMAdapter, "prefill", _prefill_pruning_the_target),)),
        # hippo_fast's own failure modes
        Mutant("fast_stale_row_visible", "static cache: after a rejection the write pointer resumes one row "
               "late, so the refused token's row stays visible to the mask",
               ((fast_cache.StaticContext, "forward", _forward_resuming_one_row_late),), "fast"),
        Mutant("fast_uniform_index_shifted", "device uniforms of the draft drawn for index + 1 (the law is "
               "kept; the tokens differ from the reference's keyed uniforms)",
               ((fast_sampling, "keyed_uniforms", _keyed_uniforms_draft_shifted),), "fast"),
        Mutant("fast_arithmetic_shift", "device splitmix64 with an arithmetic (sign-extending) right shift",
               ((fast_sampling, "logical_shift", _arithmetic_shift),), "fast"),
        # two-process PEARL's own failure modes (the target's process; the worker is another process)
        Mutant("overlap_stale_target_rows", "two processes: the verification reads the target rows of the "
               "previous round when the shapes agree, as a read that does not wait for its forward",
               ((parallel_split, "target_rows", _target_rows_of_the_previous_round),), "processes"),
        Mutant("overlap_decision_wrong_token", "two processes: after a rejection the decision tells the draft "
               "another token than the residual draw committed ((t + 1) mod 2), so the draft continues from a "
               "sequence the target never committed",
               ((parallel_split, "send_decision", _decision_with_the_wrong_token),), "processes"),
    ]


_original_first_token = common.first_token


def _shifted_first_token(target_context, cfg):
    if hasattr(target_context, "next_position"):
        target_context.next_position -= 7
    return _original_first_token(target_context, cfg)


_original_prefill = VideoLLMAdapter.prefill


def _prefill_pruning_the_target(self, inputs, video_embeds=None, kept_grid_indices=None, positions="keep", **kw):
    """The target's full-video prefill (kept=None) silently keeps only every other visual token."""
    if kept_grid_indices is None:
        kept_grid_indices = torch.arange(0, inputs.grid.grid_tokens, 2)
    return _original_prefill(self, inputs, video_embeds, kept_grid_indices, positions, **kw)


# ---- hippo_fast mutants ------------------------------------------------------------------------------
_original_static_forward = fast_cache.StaticContext.forward


def _forward_resuming_one_row_late(self, ids, offset):
    """A rewind (offset before the last write's end) writes one row late: row `offset` keeps the
    refused token's keys, and the mask, built from the pointer, shows it to every later query."""
    end = getattr(self, "_mutant_written", 0)
    original = self.set_write_row
    if offset < end and offset + ids.shape[0] < self.capacity:
        self.set_write_row = lambda o: original(o + 1)
    try:
        return _original_static_forward(self, ids, offset)
    finally:
        self.set_write_row = original
        self._mutant_written = offset + ids.shape[0]


_original_keyed_uniforms = fast_sampling.keyed_uniforms


def _keyed_uniforms_draft_shifted(seed, purpose, indices):
    return _original_keyed_uniforms(seed, purpose, indices + 1 if purpose == fast_sampling.DRAFT else indices)


def _arithmetic_shift(x, bits):
    return x >> bits


_original_target_rows = parallel_split.target_rows
_previous_rows: dict = {}


def _target_rows_of_the_previous_round(target, ids, offset):
    fresh = _original_target_rows(target, ids, offset)
    stale = _previous_rows.get("rows")
    _previous_rows["rows"] = fresh
    return stale if stale is not None and stale.shape == fresh.shape and offset > 1 else fresh


_original_send_decision = parallel_split.send_decision


def _decision_with_the_wrong_token(link, n, valid, replaced_index, replaced_token, rejected, done):
    if rejected:
        replaced_token = (torch.as_tensor(replaced_token) + 1) % 2  # always another id, always a valid one
    return _original_send_decision(link, n, valid, replaced_index, replaced_token, rejected, done)
