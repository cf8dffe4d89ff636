"""Negative controls: planted bugs, each a small documented mutation of an implementation.

A mutant is a context manager that patches module attributes of an implementation while it is active
(`implementation`: "ref" for hippo_ref, "fast" for hippo_fast, "processes" for two-process PEARL's
target half, whose candidates the suite then runs). The suite runs its checks on every mutant and must
catch each one: a mutant is caught only when a check FAILS on it (a crash is recorded apart, with its
exception). The report names the checks that caught it.

Many are modelled on losslessness (or metric) bugs that shipped in public speculative-decoding code;
such a mutant names its source (`source`: tracker and number, one line on what went wrong). `required`
names checks that must fail on it whatever the profile (run even when the quick profile stops at the
first catch): the check that is there to see that kind of bug. `measure` computes what the report
should carry beside the verdict: the reduced-precision draft's induced TV, for instance, set against
the Monte Carlo's minimal detectable TV.

Every mutant here changes the output, its law, or a reported metric: a mutation that cannot change
anything would be a broken control, and the suite would report it uncaught.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable
from dataclasses import dataclass
from unittest import mock

import torch

from hippo.adapters.base import VideoLLMAdapter
from hippo.stats import DecodeStats
from hippo_fast import cache as fast_cache
from hippo_fast import sampling as fast_sampling
from hippo_fast.decoding import common as fast_common
from hippo_fast.decoding import parallel_split
from hippo_fast.decoding import speculative as fast_speculative
from hippo_ref import sampling
from hippo_ref.decoding import common, parallel, speculative

IMPLEMENTATIONS = ("ref", "fast", "processes")


@dataclass(frozen=True)
class Mutant:
    name: str
    description: str
    patches: tuple  # ((object, attribute name, replacement), ...)
    implementation: str = "ref"  # whose code is patched: the suite runs that implementation's candidates
    source: str | None = None  # the public failure it models: "tracker #number: what went wrong" (one line)
    required: tuple[str, ...] = ()  # checks that must FAIL on it, run in every profile
    measure: Callable | None = None  # (profile) -> dict of numbers for the report (e.g. the induced TV)

    @contextlib.contextmanager
    def active(self):
        with contextlib.ExitStack() as stack:
            for owner, attribute, replacement in self.patches:
                stack.enter_context(mock.patch.object(owner, attribute, replacement))
            yield self

    def as_json(self) -> dict:
        return {"mutant": self.name, "implementation": self.implementation, "description": self.description,
                "source": self.source, "required": list(self.required)}


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


# ==== bugs that shipped: the acceptance test ==========================================================
def _matches_counted_with_the_precedence_slip(accepted: torch.Tensor) -> torch.Tensor:
    """transformers #28508: n_matches = (~is_accepted.cumsum(-1) < 1).sum(). `~` binds to the cumulative
    sum (a bitwise not of non-negative counts is negative), so every candidate counts as a match."""
    return (~accepted.cumsum(0) < 1).sum()


def _matches_counted_without_the_prefix(accepted: torch.Tensor) -> torch.Tensor:
    """Every accepted position counted, including those after the first rejection (the accept mask
    summed instead of its prefix, cumprod, as vLLM #2658 did for its accepted-token metric)."""
    return accepted.to(torch.int64).sum()


def _verify_in_order_counting(count_matches):
    def verify_in_order(candidates, qs, target_logits, cfg, first_index):
        """hippo_ref's verify_in_order computed as a batched sampler does: every accept flag first, then
        the number of matches from them (`count_matches`), then the residual draw at the first miss."""
        ps = [sampling.distribution(target_logits[i], cfg.sampling) for i in range(len(candidates))]
        flags = torch.tensor([sampling.accepts(p, q, token, sampling.keyed_uniform(cfg.seed, sampling.ACCEPT,
                                                                                    first_index + i))
                              for i, (token, q, p) in enumerate(zip(candidates, qs, ps, strict=True))], dtype=torch.bool)
        n = min(int(count_matches(flags)), len(candidates))
        if n == len(candidates):
            return list(candidates), False
        redraw = sampling.sample(sampling.residual(ps[n], qs[n]),
                                 sampling.keyed_uniform(cfg.seed, sampling.RESIDUAL, first_index + n))
        return list(candidates[:n]) + [redraw], True

    return verify_in_order


def _fast_verify(count_matches=None, residual_in_place: bool = False):
    """hippo_fast.sampling.verify with one planted change: `count_matches(accept flags)` instead of the
    cumprod prefix, or the residual max(0, p - q) formed in p's own rows before the accept test reads p."""
    count = count_matches or (lambda ok: torch.cumprod(ok.to(torch.int64), 0).sum())

    def verify(target_logits, candidates, qs, params, uniforms, first_index, bonus):
        c = candidates.shape[0]
        if params.greedy and qs is None:
            best = torch.argmax(target_logits, dim=-1)
            accepted = torch.clamp(count(candidates == best[:c]), max=c)
            after = best[torch.clamp(accepted, max=best.shape[0] - 1)]
            if not bonus:
                after = torch.where(accepted < c, after, torch.full_like(after, -1))
            return accepted, after
        p = fast_sampling.distributions(target_logits, params)
        q = fast_sampling.one_hot(candidates, p.shape[-1]) if qs is None else qs
        residual = torch.clamp(p[:c] - q, min=0)
        total = residual.sum(-1, keepdim=True)
        if residual_in_place:  # vllm-ascend #2881: p's rows now hold max(0, p - q), before the test reads p(x)
            p[:c] = torch.where(total > 0, residual, p[:c])
        rows = torch.arange(c, device=p.device)
        px, qx = p[rows, candidates], q[rows, candidates]
        u = uniforms[fast_sampling.ACCEPT][first_index : first_index + c]
        accepted = torch.clamp(count(u * qx < px), max=c)
        residual = torch.where(total > 0, residual / torch.where(total > 0, total, 1), p[:c])
        redraw = fast_sampling.sample_rows(residual, uniforms[fast_sampling.RESIDUAL][first_index : first_index + c])
        if bonus:
            extra = fast_sampling.sample_rows(p[c : c + 1],
                                              uniforms[fast_sampling.TARGET][first_index + c : first_index + c + 1])
        else:
            extra = torch.full((1,), -1, dtype=torch.int64, device=p.device)
        return accepted, torch.cat([redraw, extra])[accepted]

    return verify


def _step_with_the_residual_formed_in_p(p, q, token, seed, index):
    """vllm-ascend #2881: the recovered-token distribution max(0, p - q) is prepared first, in p's own
    storage (for a one-hot q: p[draft token] = 0), and the accept test then reads the changed p(x)."""
    r = torch.clamp(p - q, min=0)
    if float(r.sum()) > 0:
        p.copy_(r)
    if sampling.accepts(p, q, token, sampling.keyed_uniform(seed, sampling.ACCEPT, index)):
        return token, True
    return sampling.sample(sampling.residual(p, q), sampling.keyed_uniform(seed, sampling.RESIDUAL, index)), False


# ==== bugs that shipped: the draft's distribution ======================================================
def _bfloat16_distribution(logits: torch.Tensor, params) -> torch.Tensor:
    """The draft's distribution through a bfloat16 path (DeepSpec #31's native-dtype sampling): logits
    rounded to bfloat16, the warped probabilities rounded to bfloat16 (float64 for the inverse-CDF draw,
    which divides by their total)."""
    return sampling.distribution(logits.to(torch.bfloat16).float(), params).to(torch.bfloat16).double()


_original_draw = sampling.draw


def _draw_drafts_in_bfloat16(logits, params, seed, purpose, index):
    """The draft's draws (purpose DRAFT, sampled) from bfloat16 probabilities; q returned (what the
    accept test and the residual use) is still the float32-logits distribution."""
    if purpose != sampling.DRAFT or params.greedy:
        return _original_draw(logits, params, seed, purpose, index)
    q = sampling.distribution(logits, params)
    return sampling.sample(_bfloat16_distribution(logits, params), sampling.keyed_uniform(seed, purpose, index)), q


_original_fast_draw = fast_sampling.draw


def _fast_draw_drafts_in_bfloat16(logits, params, uniforms, purpose, index):
    if purpose != fast_sampling.DRAFT or params.greedy:
        return _original_fast_draw(logits, params, uniforms, purpose, index)
    q = fast_sampling.distributions(logits[None], params)[0]
    r = _bfloat16_distribution(logits.cpu(), params).to(q.device)
    return fast_sampling.sample_rows(r[None], uniforms[purpose][index : index + 1])[0], q


def reduced_precision_tv(profile) -> dict:
    return _reduced_precision_tv(profile.mutant_mc_samples, profile.mc_table_samples, profile.alpha)


@functools.cache
def _reduced_precision_tv(mutant_mc_samples: int, mc_table_samples: int, alpha: float) -> dict:
    """What the bfloat16 draft (DeepSpec #31) does to the output law, exactly: on every Monte Carlo table
    setting whose draft samples, the SD and PEARL laws of the first L tokens with draft paths drawn from
    the bfloat16 distribution r while the accept test and residual use q (verification.oracle_jax.Laws
    with r's path weights), their TV to the AR law, and the minimal detectable TV (power 0.8, the
    family's alpha) of the Monte Carlo with the mutant stage's and the main check's sample counts."""
    from verification import statistics
    from verification.checks import TABLE_MC, table_exact_law
    from verification.tables import TablePair

    settings = {}
    for setting in TABLE_MC:
        if setting.draft.greedy:
            continue  # a greedy draft takes the argmax: no reduced-precision draw
        pair = TablePair.make(setting.name, setting.vocab, setting.model_seed, setting.agreement)
        ar = table_exact_law(setting, pair)
        entry = {}
        for schedule in ("sd", "pearl"):
            law = _laws_drawing_drafts_from(setting, pair).law(schedule)
            entry[f"{schedule}_tv"] = 0.5 * sum(abs(law.get(k, 0.0) - ar.get(k, 0.0)) for k in set(law) | set(ar))
        for label, n in (("mutant_mc", mutant_mc_samples), ("mc_table", mc_table_samples)):
            cells = sum(n * v >= statistics.MIN_EXPECTED for v in ar.values())
            cells += any(0 < n * v < statistics.MIN_EXPECTED for v in ar.values())
            entry[f"min_detectable_tv_{label}"] = statistics.min_detectable_tv(n, cells, alpha)
            entry[f"samples_{label}"] = n
        settings[setting.name] = entry
    induced = max(max(e["sd_tv"], e["pearl_tv"]) for e in settings.values())
    detectable = min(e["min_detectable_tv_mc_table"] for e in settings.values())
    return {"induced_tv": induced, "min_detectable_tv": detectable, "below_detectability": induced < detectable,
            "by_setting": settings,
            "note": "induced_tv: the largest exact TV between the mutant's output law (first L tokens) and AR's; "
                    "min_detectable_tv: the smallest minimal detectable TV of the main mc_table check over those "
                    "settings (power 0.8 at alpha)"}


def _laws_drawing_drafts_from(setting, pair):
    """verification.oracle_jax.Laws whose draft paths are weighted by the bfloat16 r the mutant draws
    from, while the accept test and the residual keep the float32 q: the mutant's exact output law."""
    import numpy as np

    from verification.checks import _warp_of
    from verification.oracle_jax import Laws

    @functools.cache
    def r_of(context):
        logits = torch.tensor(pair.draft.logits(context), dtype=torch.float32)
        return _bfloat16_distribution(logits, setting.draft).tolist()

    class DrawnFromR(Laws):
        def draft_paths(self, ctx):
            paths = [((), 1.0)]
            for _ in range(self.gamma):
                grown = []
                for path, prob in paths:
                    r = r_of(ctx + path)
                    grown += [(path + (v,), prob * r[v]) for v in range(self.vocab) if r[v] > 0]
                paths = grown
            return paths

        def acceptance(self, p, q, c) -> float:
            """The implementation's accept test for every q: u q(x) < p(x), so a token that r keeps and q
            drops (a bfloat16 tie at a top-k / top-p edge) is accepted iff p(x) > 0."""
            return min(1.0, float(p[c] / q[c])) if q[c] > 0 else float(p[c] > 0)

        @functools.cache  # noqa: B019  (one law computation; the instance lives as long as it)
        def residual(self, ctx):
            p, q = np.asarray(self.p(ctx)), np.asarray(self.q(ctx))
            r = np.maximum(p - q, 0.0)
            return r / r.sum() if r.sum() > 0 else p

        def law(self, schedule):
            return self.sd() if schedule == "sd" else self.pearl()

    return DrawnFromR(pair.target, pair.draft, setting.length, setting.gamma, _warp_of(setting.target),
                      _warp_of(setting.draft))


# ==== bugs that shipped: stopping at EOS ===============================================================
_drafted: dict = {}  # the round's drafted tokens, as the draft block left them (the EOS mutant reads them)
_original_draft_block_ref = common.draft_block
_original_commit = common.commit


def _draft_block_remembering_its_tokens(draft, sequence, gamma, cfg, vocab_size):
    tokens, qs = _original_draft_block_ref(draft, sequence, gamma, cfg, vocab_size)
    _drafted["tokens"] = list(tokens)
    return tokens, qs


def _commit_stopping_at_a_drafted_eos(tokens, new, cfg):
    """vLLM PR #41493: the stop check runs over the round's drafted tokens, so an EOS among the draft
    positions ends the decode although the target did not commit it (the committed tokens are right)."""
    count, done = _original_commit(tokens, new, cfg)
    drafted = _drafted.pop("tokens", [])
    return count, done or any(t in cfg.eos_token_ids for t in drafted)


_original_fast_commit = fast_common.Decode.commit


def _fast_commit_stopping_at_a_drafted_eos(self, new, cfg, limit, rejected=False):
    """vLLM PR #41493 in hippo_fast: the EOS scan covers the round's whole window seq[n : n + limit]
    (drafted positions past the committed ones included), not only the `new` committed tokens."""
    drafted_eos = bool(torch.isin(self.seq[self.n : self.n + limit], self.eos).any())
    proposed, count, done, was_rejected = _original_fast_commit(self, new, cfg, limit, rejected)
    return proposed, count, done or drafted_eos, was_rejected


# ==== bugs that shipped: stale rows and tokens =========================================================
def _logits_after_without_the_bonus_row(self, sequence, first):
    """vLLM PR #9730: after a round that accepted every draft, the draft's cache row at the bonus position
    is not the bonus token's: it holds the last draft token's keys (the row was never written with the
    bonus), and every later draft forward reads that stale row."""
    fed = self.fed
    if self.role != "draft" or not fed or sequence[: len(fed)] != fed or len(sequence) - len(fed) < 2:
        return _original_logits_after(self, sequence, first)
    bonus_at = len(fed) + 1
    written = list(sequence)
    written[bonus_at] = sequence[bonus_at - 1]
    logits = _original_logits_after(self, written, first)
    self.fed = list(sequence)  # the loop believes the row holds the bonus
    return logits


class _DraftWithoutTheBonusRow:
    """hippo_fast's draft context for one draft block whose first forward, [last draft, bonus] after a
    round that accepted every draft, writes the last draft token into the bonus's row (vLLM PR #9730)."""

    def __init__(self, inner):
        self._inner, self._first = inner, True

    def forward(self, ids, offset):
        if self._first and ids.shape[0] == 2:
            ids = ids[:1].repeat(2)
        self._first = False
        return self._inner.forward(ids, offset)

    def __getattr__(self, name):
        return getattr(self._inner, name)


_original_fast_draft_block = fast_common.draft_block


def _fast_draft_block_without_the_bonus_row(draft, state, start, valid, gamma, cfg, vocab):
    if start - valid == 2:  # the previous round accepted every draft: feed [last draft, bonus]
        draft = _DraftWithoutTheBonusRow(draft)
    return _original_fast_draft_block(draft, state, start, valid, gamma, cfg, vocab)


def _logits_after_with_a_stale_seed(self, sequence, first):
    """vmlx PR #150: the multi-token verify forward's first row (the last committed token, its seed) is
    the token a speculative step last left in `last_token`; a plain one-token step (PEARL's pre-verify
    rounds) does not update it, so after one the seed is stale and the target's cache gets a wrong row."""
    if self.role != "target":
        return _original_logits_after(self, sequence, first)
    start = 0
    while start < min(len(self.fed), first) and self.fed[start] == sequence[start]:
        start += 1
    state = self.__dict__.setdefault("_last_token", {})
    if len(sequence) - start == 1:  # a plain step: last_token keeps what the last speculative step left
        state.setdefault("stale", sequence[start])
        return _original_logits_after(self, sequence, first)
    fed = list(sequence)
    if start == first and "stale" in state:
        fed[first] = state["stale"]
    state.clear()
    logits = _original_logits_after(self, fed, first)
    self.fed = list(sequence)
    return logits


class _TargetWithAStaleSeed:
    """hippo_fast's target context with vmlx PR #150's `last_token`: a multi-token verify forward after a
    one-token step feeds, as its first row, the token the last multi-token forward was seeded after."""

    def __init__(self, inner):
        self._inner, self._stale = inner, None

    def forward(self, ids, offset):
        ids = _stale_seed(self.__dict__, ids)
        return self._inner.forward(ids, offset)

    def __getattr__(self, name):
        return getattr(self._inner, name)


def _stale_seed(state: dict, ids: torch.Tensor) -> torch.Tensor:
    if ids.shape[0] == 1:
        if state.get("_stale") is None:
            state["_stale"] = ids[0].clone()
        return ids
    stale, state["_stale"] = state.get("_stale"), None
    if stale is None:
        return ids
    ids = ids.clone()
    ids[0] = stale
    return ids


_original_contexts = fast_common.contexts


def _contexts_with_a_stale_seed(target_context, draft_context=None):
    target, draft = _original_contexts(target_context, draft_context)
    return _TargetWithAStaleSeed(target), draft


_seed_states: dict = {}


def _target_rows_with_a_stale_seed(target, ids, offset):
    """vmlx PR #150 in two-process PEARL's verification forward (parallel_split.target_rows)."""
    if offset == 0:
        _seed_states.pop(id(target), None)
    state = _seed_states.setdefault(id(target), {})
    return _original_target_rows(target, _stale_seed(state, ids), offset)


# ==== bugs that shipped: randomness shared across requests ===========================================
ENGINE_SEED = 0
_original_keyed_uniform = sampling.keyed_uniform


def _keyed_uniform_of_the_engine_seed(seed, purpose, index):
    """vLLM #6038 / #9441: the request's seed never reaches the sampler; every request draws the engine's
    one stream, so two sampled requests (rows) with different seeds draw the same numbers."""
    return _original_keyed_uniform(ENGINE_SEED, purpose, index)


class _UniformTableOfTheEngineSeed(fast_sampling.UniformTable):
    def __init__(self, seed, size, device):
        super().__init__(ENGINE_SEED, size, device)


# ==== bugs that shipped: counting what a round committed ==============================================
class _StatsCountingTheBonusTwice(DecodeStats):
    """DART #2: a round that ends without a rejection counts its bonus token twice (the accepted drafts
    + 1 for the bonus, whose count already includes it)."""

    def record_round(self, committed: int, rejected: bool) -> None:
        super().record_round(committed if rejected else committed + 1, rejected)


def _commit_counting_past_eos(tokens, new, cfg):
    """vLLM #56101: the round's count is the verified length (accepted drafts + 1) even when an EOS inside
    the accepted prefix ended the decode before the tokens after it (the tokens are right)."""
    count, done = _original_commit(tokens, new, cfg)
    stopped_at_eos = done and count < len(new) and tokens[-1] in cfg.eos_token_ids
    return (len(new) if stopped_at_eos else count), done


def _fast_commit_counting_past_eos(self, new, cfg, limit, rejected=False):
    proposed, count, done, was_rejected = _original_fast_commit(self, new, cfg, limit, rejected)
    if done and count < proposed and int(self.seq[self.n - 1]) in cfg.eos_token_ids:
        count = proposed
    return proposed, count, done, was_rejected


# ==== hippo_fast's own ===============================================================================
def _fast_commit_one_past_a_rejection(self, new, cfg, limit, rejected=False):
    """Decode.commit's count includes the slot after the residual draw on a rejection: the stale draft
    token there is committed too."""
    device = self.seq.device
    extra = torch.as_tensor(rejected, device=device).to(torch.int64)
    new = torch.clamp(torch.as_tensor(new, device=device).to(torch.int64) + extra, max=limit)
    return _original_fast_commit(self, new, cfg, limit, rejected)


_q_buffers: dict = {}


def _fast_draft_block_into_a_reused_buffer(draft, state, start, valid, gamma, cfg, vocab):
    """The draft block's q rows returned in one device buffer reused by every block (a static output
    buffer): PEARL's pending q rows are a view of it, and the next block overwrites them before the
    verification reads them."""
    qs, valid = _original_fast_draft_block(draft, state, start, valid, gamma, cfg, vocab)
    if qs is None:
        return qs, valid
    key = (tuple(qs.shape), str(qs.device))
    if key not in _q_buffers:
        _q_buffers[key] = torch.empty_like(qs)
    _q_buffers[key].copy_(qs)
    return _q_buffers[key], valid


# ==== the catalogue ===================================================================================
TRANSFORMERS_28508 = ("transformers PR #28508: `_speculative_sampling` counted n_matches as (~is_accepted.cumsum() "
                      "< 1).sum(), so every draft token was accepted")
VLLM_41493 = ("vLLM PR #41493: the stop check iterated the round's draft positions, so an EOS there finished "
              "the request before the target had committed it")
VLLM_ASCEND_2881 = ("vllm-ascend PR #2881: the recovered-token sampler zeroed p[draft token] in target_probs "
                    "itself before cloning it, corrupting p for the rest of the step")
DEEPSPEC_31 = ("DeepSpec #31: draft tokens sampled through the native-dtype (bf16) logits path while the accept "
               "test and correction used the float32 q")
VLLM_9730 = ("vLLM PR #9730: with k > 1 the draft's KV row at the bonus token's position was not the bonus's, "
             "corrupting the cache the next proposals read")
VMLX_150 = ("vmlx PR #150: the multi-token verify was seeded with req.last_token, which a plain decode step "
            "did not update, so the verify's first row was a stale token (found on a VLM)")
VLLM_6038 = ("vLLM #6038 / #9441: speculative decoding ignored the per-request seed; requests (rows) with "
             "different seeds drew from one shared random stream")
DART_2 = "DART #2: the acceptance length counted the bonus token twice"
VLLM_56101 = ("vLLM #56101: mean acceptance length counted accepted drafts + 1 even when an EOS inside the "
              "accepted prefix ended the request before the tokens after it")


def catalogue() -> list[Mutant]:
    """The planted bugs the suite must catch (each caught when a check fails on it)."""
    return [
        # ---- hippo_ref: the sampling step ----
        Mutant("accept_q_over_p", "accept with min(1, q/p) instead of min(1, p/q)",
               ((sampling, "accepts", _accept_q_over_p),)),
        Mutant("residual_not_normalised", "residual max(0, p - q) not normalised, sampled as if it summed to 1",
               ((sampling, "speculative_step", _step_with_unnormalised_residual),)),
        Mutant("residual_from_p", "rejected positions redrawn from p instead of norm(max(0, p - q))",
               ((sampling, "residual", _residual_from_p),)),
        Mutant("bonus_from_q", "bonus token after a full block drawn from the draft's q instead of p",
               ((speculative, "verify_block", _verify_block_bonus_from_q),)),
        Mutant("q_not_sampled_distribution", "draft draws with top-k 2 but reports q without top-k",
               ((common, "draft_block", _draft_block_topk_q_mismatch),),
               source="transformers #47932: candidate generators returned the raw q while drawing from the "
                      "top-k processed distribution"),
        Mutant("draft_temperature_ignored", "q computed at temperature 1 while the draft samples at its own",
               ((common, "draft_block", _draft_block_temperature_ignored_in_q),),
               source="vLLM PR #10198 (its mirror): the target's p was computed with default sampling parameters "
                      "(temperature 1, top-p 1) while q used the request's"),
        Mutant("greedy_draft_softmax_q", "greedy draft reports softmax q instead of its one-hot",
               ((common, "draft_block", _greedy_draft_with_softmax_q),),
               source="jaymody/speculative-sampling #3: an argmax draft with the softmax as q in the accept test; "
                      "greedy SD did not reproduce greedy AR"),
        Mutant("accept_reuses_draft_uniform", "accept test reuses the uniform that drew the draft token",
               ((sampling, "speculative_step", _step_reusing_the_draft_uniform),)),
        Mutant("always_accept", "the number of matches counted with a precedence slip (~ on the cumulative sum): "
               "every draft token is accepted, then the bonus", ((common, "verify_in_order",
                                                                 _verify_in_order_counting(_matches_counted_with_the_precedence_slip)),
                                                                (parallel, "verify_in_order",
                                                                 _verify_in_order_counting(_matches_counted_with_the_precedence_slip))),
               source=TRANSFORMERS_28508),
        Mutant("target_probs_changed_in_place", "the residual max(0, p - q) is formed in p's own storage before "
               "the accept test reads p(x) (for a greedy draft: p[draft token] = 0)",
               ((sampling, "speculative_step", _step_with_the_residual_formed_in_p),), source=VLLM_ASCEND_2881),
        Mutant("draft_sampled_in_bfloat16", "the draft draws from bfloat16 probabilities (logits and softmax "
               "rounded) while q, in the accept test and the residual, is the float32-logits distribution",
               ((sampling, "draw", _draw_drafts_in_bfloat16),), source=DEEPSPEC_31, required=("exact_step",),
               measure=reduced_precision_tv),
        Mutant("seed_shared_across_requests", "every request draws the engine's one random stream (its own seed "
               "ignored), so sampled rows with different seeds are one sample repeated",
               ((sampling, "keyed_uniform", _keyed_uniform_of_the_engine_seed),), source=VLLM_6038,
               required=("recorded_sampled",)),
        # ---- hippo_ref: the schedule, caches, stopping, counting ----
        Mutant("kv_rollback_off_by_one", "cache rollback resumes one row late (keeps one stale row)",
               ((common.Track, "logits_after", _logits_after_off_by_one),)),
        Mutant("stale_draft_kv", "draft cache keeps rejected rows after a rejection",
               ((common.Track, "logits_after", _logits_after_stale_draft),)),
        Mutant("bonus_kv_row_not_written", "after a round that accepted every draft, the draft's cache row at the "
               "bonus position holds the last draft token, not the bonus: later draft forwards read a stale row",
               ((common.Track, "logits_after", _logits_after_without_the_bonus_row),), source=VLLM_9730),
        Mutant("verify_seed_stale", "the multi-token verify forward's first row is the token the last speculative "
               "round left (a plain pre-verify round does not update it): a stale row in the target's cache",
               ((common.Track, "logits_after", _logits_after_with_a_stale_seed),), source=VMLX_150),
        Mutant("post_verify_skips_first_new", "post-verify commits the draft's first new token unchecked",
               ((parallel, "verify_in_order", _verify_in_order_skip_first_new),)),
        Mutant("eos_in_block_ignored", "an EOS inside a committed block does not stop decoding",
               ((common, "commit", _commit_ignoring_eos_inside_block),),
               source="transformers #47912: assisted decoding appended the whole accepted block and checked EOS "
                      "on its last token only, generating past an EOS accepted mid-block"),
        Mutant("draft_eos_stops_decoding", "an EOS among the round's drafted tokens ends the decode although the "
               "target did not commit it", ((common, "draft_block", _draft_block_remembering_its_tokens),
                                           (common, "commit", _commit_stopping_at_a_drafted_eos)),
               source=VLLM_41493),
        Mutant("bonus_counted_twice", "SD's round count adds the bonus token again when the round ends without a "
               "rejection (MAT and run length inflated; tokens right)",
               ((speculative, "DecodeStats", _StatsCountingTheBonusTwice),), source=DART_2,
               required=("recorded_metrics",)),
        Mutant("tokens_after_eos_counted", "a round ended by an EOS inside its accepted prefix counts the tokens "
               "after the EOS (MAT inflated; tokens right)", ((common, "commit", _commit_counting_past_eos),),
               source=VLLM_56101),
        Mutant("target_positions_shifted", "target's generated-token positions shifted as after pruning",
               ((common, "first_token", _shifted_first_token),)),
        Mutant("pruning_applied_to_target", "the target's prefill also drops half of its visual tokens",
               ((VideoLLMAdapter, "prefill", _prefill_pruning_the_target),)),
        # ---- hippo_fast: its own failure modes ----
        Mutant("fast_stale_row_visible", "static cache: after a rejection the write pointer resumes one row "
               "late, so the refused token's row stays visible to the mask",
               ((fast_cache.StaticContext, "forward", _forward_resuming_one_row_late),), "fast"),
        Mutant("fast_uniform_index_shifted", "device uniforms of the draft drawn for index + 1 (the law is "
               "kept; the tokens differ from the reference's keyed uniforms)",
               ((fast_sampling, "keyed_uniforms", _keyed_uniforms_draft_shifted),), "fast"),
        Mutant("fast_arithmetic_shift", "device splitmix64 with an arithmetic (sign-extending) right shift",
               ((fast_sampling, "logical_shift", _arithmetic_shift),), "fast"),
        Mutant("fast_verify_mask_not_prefix", "batched verify: the accept mask summed instead of its prefix "
               "(cumprod dropped), so accepts after the first rejection are counted",
               ((fast_sampling, "verify", _fast_verify(_matches_counted_without_the_prefix)),), "fast",
               source="vLLM PR #2658 (the same sum, there in the accepted-token metric): num_accepted_tokens = "
                      "accepted.sum() counted accepts after a rejection"),
        Mutant("fast_commit_past_rejection", "Decode.commit commits one token past a rejection (the stale draft "
               "token after the residual draw)",
               ((fast_common.Decode, "commit", _fast_commit_one_past_a_rejection),), "fast"),
        Mutant("fast_draft_q_buffer_reused", "the draft block's q rows live in one reused device buffer: PEARL's "
               "pending q rows are overwritten by the next block before they are verified",
               ((fast_common, "draft_block", _fast_draft_block_into_a_reused_buffer),), "fast"),
        # ---- hippo_fast: the bugs that shipped elsewhere ----
        Mutant("fast_always_accept", "batched verify counts its matches with the precedence slip: every draft "
               "token accepted", ((fast_sampling, "verify", _fast_verify(_matches_counted_with_the_precedence_slip)),),
               "fast", source=TRANSFORMERS_28508),
        Mutant("fast_target_probs_changed_in_place", "batched verify forms max(0, p - q) in p's rows before the "
               "accept test reads p(x)", ((fast_sampling, "verify", _fast_verify(residual_in_place=True)),), "fast",
               source=VLLM_ASCEND_2881),
        Mutant("fast_draft_sampled_in_bfloat16", "the device draft draws from bfloat16 probabilities while q is "
               "the float32-logits distribution", ((fast_sampling, "draw", _fast_draw_drafts_in_bfloat16),), "fast",
               source=DEEPSPEC_31, measure=reduced_precision_tv),
        Mutant("fast_seed_shared_across_requests", "the device uniform table ignores the request's seed (the "
               "engine's one stream)", ((fast_sampling, "UniformTable", _UniformTableOfTheEngineSeed),), "fast",
               source=VLLM_6038, required=("recorded_sampled",)),
        Mutant("fast_bonus_kv_row_not_written", "after a fully accepted SD round the draft's static-cache row at "
               "the bonus position is written with the last draft token",
               ((fast_common, "draft_block", _fast_draft_block_without_the_bonus_row),), "fast", source=VLLM_9730),
        Mutant("fast_verify_seed_stale", "PEARL's multi-token verify forward after a pre-verify round feeds the "
               "stale seed as its first row", ((fast_common, "contexts", _contexts_with_a_stale_seed),), "fast",
               source=VMLX_150),
        Mutant("fast_draft_eos_stops_decoding", "Decode.commit's EOS scan covers the drafted positions past the "
               "committed tokens", ((fast_common.Decode, "commit", _fast_commit_stopping_at_a_drafted_eos),),
               "fast", source=VLLM_41493),
        Mutant("fast_bonus_counted_twice", "fast SD's round count adds the bonus again when the round ends without "
               "a rejection", ((fast_speculative, "DecodeStats", _StatsCountingTheBonusTwice),), "fast",
               source=DART_2, required=("recorded_metrics",)),
        Mutant("fast_tokens_after_eos_counted", "Decode.commit reports the verified length, not the committed "
               "count, when an EOS ends the round early",
               ((fast_common.Decode, "commit", _fast_commit_counting_past_eos),), "fast", source=VLLM_56101),
        # ---- two-process PEARL: the target's process (the worker is another process) ----
        Mutant("overlap_stale_target_rows", "two processes: the verification reads the target rows of the "
               "previous round when the shapes agree, as a read that does not wait for its forward",
               ((parallel_split, "target_rows", _target_rows_of_the_previous_round),), "processes"),
        Mutant("overlap_decision_wrong_token", "two processes: after a rejection the decision tells the draft "
               "another token than the residual draw committed ((t + 1) mod 2), so the draft continues from a "
               "sequence the target never committed",
               ((parallel_split, "send_decision", _decision_with_the_wrong_token),), "processes"),
        Mutant("processes_always_accept", "two processes: the target's batched verify counts its matches with the "
               "precedence slip", ((fast_sampling, "verify", _fast_verify(_matches_counted_with_the_precedence_slip)),),
               "processes", source=TRANSFORMERS_28508),
        Mutant("processes_verify_seed_stale", "two processes: the target's post-verify forward after a pre-verify "
               "round feeds the stale seed as its first row",
               ((parallel_split, "target_rows", _target_rows_with_a_stale_seed),), "processes", source=VMLX_150),
    ]
