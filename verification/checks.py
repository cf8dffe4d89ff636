"""The checks. Each returns CheckResults: what was run (inputs, seeds), the numbers, a verdict.

Verdicts: "pass", "fail", "not available" (the implementation does not exist yet), "not applicable"
(the candidate cannot run this case, with the reason), "error" (it raised; counted as a failure).
Statistical checks carry a p-value; their verdicts are set together, after Holm's correction.
"""

from __future__ import annotations

import traceback
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from unittest import mock

import torch

from hippo_ref import sampling
from hippo_ref.decoding.autoregressive import decode_autoregressive
from hippo_ref.decoding.common import DecodeConfig
from hippo_ref.sampling import SamplingParams
from verification import statistics
from verification.candidates import Candidate, TableCase, VideoCase
from verification.oracle_jax import Laws, Warp, max_abs_difference


@dataclass
class CheckResult:
    check: str
    name: str
    verdict: str
    inputs: dict = field(default_factory=dict)
    numbers: dict = field(default_factory=dict)
    p_value: float | None = None

    def as_json(self) -> dict:
        return asdict(self)

    @property
    def failed(self) -> bool:
        return self.verdict in ("fail", "error")


def _unavailable(check, candidate: Candidate, case, inputs) -> CheckResult | None:
    reason = candidate.supports(case)
    if reason is None:
        return None
    verdict = "not available" if candidate.unavailable else "not applicable"
    return CheckResult(check, f"{check}|{candidate.name}|{case.label}", verdict, inputs, {"reason": reason})


# ==== 3a: the exact law of one accept / residual step ==================================================
@contextmanager
def controlled_uniforms(values: dict):
    """Make sampling.keyed_uniform return values[purpose] (the step's randomness, under our control)."""
    with mock.patch.object(sampling, "keyed_uniform", lambda seed, purpose, index: values[purpose]):
        yield


def _bisect_threshold(predicate, iterations: int = 60) -> float:
    """sup{u in [0, 1): predicate(u)} for a predicate true on an initial interval of [0, 1)."""
    lo, hi = 0.0, 1.0
    if not predicate(0.0):
        return 0.0
    for _ in range(iterations):
        mid = (lo + hi) / 2
        if predicate(mid):
            lo = mid
        else:
            hi = mid
    return hi


def law_of_draw(draw_at) -> dict[int, float]:
    """Exact law of a monotone inverse-CDF draw `draw_at(u)`, u ~ U[0, 1): the length of the u-interval
    of each token, found by bisecting the breakpoints."""
    law, start = {}, 0.0
    while start < 1.0:
        token = draw_at(start)
        lo, hi = start, 1.0  # draw_at(lo) == token; find the end of the token's interval
        for _ in range(60):
            mid = (lo + hi) / 2
            if mid <= lo:
                break
            lo, hi = (mid, hi) if draw_at(mid) == token else (lo, mid)
        end = 1.0 if draw_at(lo) == token and hi >= 1.0 else hi
        law[token] = law.get(token, 0.0) + (end - start)
        start = end
    return law


def exact_step_law(p_logits, q_logits, p_params: SamplingParams, q_params: SamplingParams) -> tuple:
    """(law of the committed token, p) for one verification with the implemented primitives:
    the draft's draw (sampling.draw), the accept test and residual draw (sampling.speculative_step)."""
    vocab = p_logits.shape[0]
    p = sampling.distribution(p_logits, p_params)

    def draft_at(u):
        with controlled_uniforms({sampling.DRAFT: u}):
            return sampling.draw(q_logits, q_params, 0, sampling.DRAFT, 0)[0]

    with controlled_uniforms({sampling.DRAFT: 0.5}):
        _, q = sampling.draw(q_logits, q_params, 0, sampling.DRAFT, 0)

    def step(x, u_accept, u_residual):
        values = {sampling.ACCEPT: u_accept, sampling.RESIDUAL: u_residual, sampling.DRAFT: 0.5,
                  sampling.TARGET: 0.5}
        with controlled_uniforms(values):
            return sampling.speculative_step(p, q, x, 0, 0)

    return _committed_law(vocab, draft_at, step), p


def _committed_law(vocab: int, draft_at, step) -> torch.Tensor:
    """The law of the committed token of one verification: the draft's draw `draft_at(u)` bisected into
    its law; per drafted x, `step(x, u_accept, u_residual) -> (token, accepted)` bisected over the accept
    uniform (the acceptance probability), then, past it, over the residual uniform (the residual's law)."""
    law = torch.zeros(vocab, dtype=torch.float64)
    for x, mass in law_of_draw(draft_at).items():
        accept = _bisect_threshold(lambda u, x=x: step(x, u, 0.5)[1])
        law[x] += mass * accept
        if accept < 1:
            u_reject = min(1 - 2**-53, (accept + 1) / 2)
            for y, m in law_of_draw(lambda u, r=u_reject, x=x: step(x, r, u)[0]).items():
                law[y] += mass * (1 - accept) * m
    return law


class _FixedUniforms:
    """A hippo_fast UniformTable whose every index of a purpose holds one value we choose."""

    def __init__(self, values: dict):
        self.values = values

    def __getitem__(self, purpose: int) -> torch.Tensor:
        return torch.full((64,), self.values[purpose], dtype=torch.float64)


def exact_step_law_fast(p_logits, q_logits, p_params: SamplingParams, q_params: SamplingParams) -> tuple:
    """exact_step_law for hippo_fast's device primitives: the draft's draw (hippo_fast.sampling.draw) and
    the batched verification of one candidate (hippo_fast.sampling.verify, no bonus), bisected over the
    uniforms of its UniformTable."""
    from hippo_fast import sampling as fast

    vocab = p_logits.shape[0]
    p = sampling.distribution(p_logits, p_params)

    def draft_at(u):
        return int(fast.draw(q_logits, q_params, _FixedUniforms({fast.DRAFT: u}), fast.DRAFT, 0)[0])

    _, q = fast.draw(q_logits, q_params, _FixedUniforms({fast.DRAFT: 0.5}), fast.DRAFT, 0)

    def step(x, u_accept, u_residual):
        table = _FixedUniforms({fast.TARGET: 0.5, fast.DRAFT: 0.5, fast.ACCEPT: u_accept, fast.RESIDUAL: u_residual})
        accepted, after = fast.verify(p_logits[None], torch.tensor([x]), None if q is None else q[None],
                                      p_params, table, 0, bonus=False)
        return (x, True) if int(accepted) == 1 else (int(after), False)

    return _committed_law(vocab, draft_at, step), p


def check_exact_step(cases: int, seed: int, tolerance: float = 1e-9,
                     implementations: tuple[str, ...] = ("ref", "fast")) -> list[CheckResult]:
    """3a: random p, q (dense, one-hot q, warped q, zeros in p or q): law of the step == p, for the
    primitives of each implementation (hippo_ref's sampling, hippo_fast's device sampling)."""
    return [_exact_step(cases, seed, tolerance, implementation) for implementation in implementations]


def _exact_step(cases: int, seed: int, tolerance: float, implementation: str) -> CheckResult:
    law_of_step = exact_step_law if implementation == "ref" else exact_step_law_fast
    g = torch.Generator().manual_seed(seed)
    worst, kinds = 0.0, {}
    param_sets = [
        (SamplingParams(1.0), SamplingParams(1.0)),
        (SamplingParams(1.0), SamplingParams(0.0)),  # greedy draft: one-hot q
        (SamplingParams(0.7, top_k=3), SamplingParams(1.3, top_p=0.8)),  # zeros in p and q
        (SamplingParams(1.0, top_p=0.6), SamplingParams(0.5, top_k=2)),
        (SamplingParams(0.0), SamplingParams(1.0)),  # greedy target: one-hot p
    ]
    for i in range(cases):
        vocab = int(torch.randint(2, 9, (1,), generator=g))
        p_logits = torch.randn(vocab, generator=g) * 2
        q_logits = p_logits * 0.5 + torch.randn(vocab, generator=g)
        p_params, q_params = param_sets[i % len(param_sets)]
        law, p = law_of_step(p_logits, q_logits, p_params, q_params)
        err = float((law - p).abs().max())
        key = f"p{p_params}|q{q_params}"
        kinds[key] = max(kinds.get(key, 0.0), err)
        worst = max(worst, err)
    verdict = "pass" if worst <= tolerance else "fail"
    name = "exact_step|accept-residual" + ("" if implementation == "ref" else f"|{implementation}")
    return CheckResult("exact_step", name, verdict,
                       {"cases": cases, "seed": seed, "tolerance": tolerance, "implementation": implementation},
                       {"max_abs_error": worst, "max_abs_error_by_params": kinds})


# ==== 3b: the JAX oracle ================================================================================
ORACLE_CONFIGS = [
    # (vocab, length, gamma, target warp, draft warp, agreement)
    (3, 4, 2, Warp(1.0), Warp(1.0), 0.6),
    (3, 4, 3, Warp(0.7, top_k=2), Warp(1.0, top_p=0.8), 0.5),
    (3, 4, 2, Warp(1.0), Warp(0.0), 0.6),
    (4, 3, 2, Warp(0.0), Warp(0.0), 0.7),
    (3, 4, 1, Warp(1.0, top_p=0.7), Warp(1.3, top_k=2), 0.3),
    (2, 5, 3, Warp(1.0), Warp(1.0), 0.8),
]


def check_oracle(configs, seed: int, tolerance: float = 1e-12) -> list[CheckResult]:
    """3b: exact laws of SD and PEARL on table models equal AR's; a broken control must differ."""
    from verification.tables import TablePair

    results = []
    for i, (vocab, length, gamma, tw, dw, agreement) in enumerate(configs):
        pair = TablePair.make(f"oracle{i}", vocab, seed + i, agreement)
        laws = Laws(pair.target, pair.draft, length, gamma, tw, dw)
        ar = laws.ar()
        numbers = {"sd_vs_ar": max_abs_difference(ar, laws.sd()), "pearl_vs_ar": max_abs_difference(ar, laws.pearl()),
                   "ar_total_mass": sum(ar.values()), "outcomes": len(ar)}
        control = Laws(pair.target, pair.draft, length, gamma, tw, dw, broken_control=True)
        numbers["control_sd_vs_ar"] = max_abs_difference(ar, control.sd())
        # With one-hot p and q, min(1, q/p) and min(1, p/q) agree: the control cannot differ there.
        numbers["control_applicable"] = not (tw.temperature == 0 and dw.temperature == 0)
        control_ok = not numbers["control_applicable"] or numbers["control_sd_vs_ar"] > 1e-6
        ok = numbers["sd_vs_ar"] <= tolerance and numbers["pearl_vs_ar"] <= tolerance and control_ok
        inputs = {"vocab": vocab, "length": length, "gamma": gamma, "target_warp": asdict(tw),
                  "draft_warp": asdict(dw), "agreement": agreement, "seed": seed + i, "tolerance": tolerance}
        results.append(CheckResult("oracle", f"oracle|config{i}", "pass" if ok else "fail", inputs, numbers))
    return results


# ==== 3c: Monte Carlo on the implementations ============================================================
@dataclass(frozen=True)
class TableMC:
    """One Monte Carlo setting on table models: the candidate's first `length` tokens vs AR's exact law."""

    name: str
    vocab: int
    length: int
    gamma: int
    target: SamplingParams
    draft: SamplingParams
    agreement: float
    model_seed: int


TABLE_MC = [
    TableMC("T1", 4, 3, 3, SamplingParams(1.0), SamplingParams(1.0), 0.6, 11),
    TableMC("warped", 4, 3, 2, SamplingParams(0.8, top_k=3), SamplingParams(1.5, top_p=0.9), 0.5, 12),
    TableMC("greedy-draft", 4, 3, 2, SamplingParams(1.0), SamplingParams(0.0), 0.7, 13),
    TableMC("gamma1", 3, 4, 1, SamplingParams(1.0), SamplingParams(1.0), 0.8, 14),
]


def _warp_of(params: SamplingParams) -> Warp:
    return Warp(params.temperature, params.top_k, params.top_p)


def table_exact_law(setting: TableMC, pair) -> dict:
    laws = Laws(pair.target, pair.draft, setting.length, setting.gamma, _warp_of(setting.target),
                _warp_of(setting.draft))
    return laws.ar()


def _mc_result(check, name, inputs, samples, exact, alpha_for_power) -> CheckResult:
    gof = statistics.goodness_of_fit(samples, exact)
    numbers = gof.as_json()
    numbers["min_detectable_tv"] = statistics.min_detectable_tv(gof.n, gof.cells, alpha_for_power)
    numbers["min_detectable_tv_power"] = 0.8
    return CheckResult(check, name, "pending", inputs, numbers, p_value=gof.p_value)


def sampled_table_outputs(candidate, case, setting, samples: int, seed_base: int) -> list[tuple[int, ...]]:
    """The first `setting.length` tokens of `samples` decodes of a table setting, seeds seed_base,
    seed_base + 1, ...: what mc_table tests against the exact law."""
    outs = []
    for s in range(samples):
        cfg = DecodeConfig(max_new_tokens=setting.length, gamma=setting.gamma, sampling=setting.target,
                           draft_sampling=setting.draft, seed=seed_base + s)
        outs.append(tuple(candidate.run(case, cfg)[: setting.length]))
    return outs


def check_mc_table(candidates, settings, samples: int, seed_base: int, alpha_for_power: float) -> list[CheckResult]:
    from verification.tables import TablePair

    results = []
    for setting in settings:
        pair = TablePair.make(setting.name, setting.vocab, setting.model_seed, setting.agreement)
        exact = table_exact_law(setting, pair)
        case = TableCase(pair)
        for candidate in candidates:
            inputs = {"setting": asdict(setting), "samples": samples, "seeds": [seed_base, seed_base + samples - 1]}
            skipped = _unavailable("mc_table", candidate, case, inputs)
            if skipped:
                results.append(skipped)
                continue
            try:
                outs = sampled_table_outputs(candidate, case, setting, samples, seed_base)
            except Exception as err:  # a crashing candidate fails the check, with its message
                results.append(_error("mc_table", f"mc_table|{candidate.name}|{setting.name}", inputs, err))
                continue
            results.append(_mc_result("mc_table", f"mc_table|{candidate.name}|{setting.name}", inputs, outs, exact,
                                      alpha_for_power))
    return results


def video_exact_law(case: VideoCase, params: SamplingParams, length: int = 2) -> dict:
    """The target's exact law over its first `length` (1 or 2) tokens, by enumeration from its own p."""
    from hippo_ref.decoding.common import Track

    target_context, _ = case.contexts("sd")
    p0 = sampling.distribution(target_context.last_logits, params)
    law = {}
    for t0 in torch.nonzero(p0 > 0).flatten().tolist():
        if length == 1:
            law[(t0,)] = float(p0[t0])
            continue
        track = Track(target_context, "target")
        p1 = sampling.distribution(track.logits_after([t0], 0)[-1], params)
        for t1 in torch.nonzero(p1 > 0).flatten().tolist():
            law[(t0, t1)] = float(p0[t0] * p1[t1])
    return law


def check_mc_video(candidates, cases, params: SamplingParams, gamma: int, samples: int, seed_base: int,
                   alpha_for_power: float) -> list[CheckResult]:
    results = []
    for case in cases:
        exact = video_exact_law(case, params)
        for candidate in candidates:
            inputs = {"case": case.label, "sampling": asdict(params), "gamma": gamma, "samples": samples,
                      "seeds": [seed_base, seed_base + samples - 1], "tokens_compared": 2}
            name = f"mc_video|{candidate.name}|{case.label}"
            skipped = _unavailable("mc_video", candidate, case, inputs)
            if skipped:
                results.append(skipped)
                continue
            try:
                outs = []
                for s in range(samples):
                    cfg = DecodeConfig(max_new_tokens=2, gamma=gamma, sampling=params, seed=seed_base + s)
                    outs.append(tuple(candidate.run(case, cfg)[:2]))
            except Exception as err:
                results.append(_error("mc_video", name, inputs, err))
                continue
            results.append(_mc_result("mc_video", name, inputs, outs, exact, alpha_for_power))
    return results


def _error(check, name, inputs, err) -> CheckResult:
    return CheckResult(check, name, "error", inputs,
                       {"error": f"{type(err).__name__}: {err}", "traceback": traceback.format_exc(limit=3)})


def settle_statistical(results: list[CheckResult], alpha: float) -> None:
    """Holm's correction over every pending statistical check: set their verdicts."""
    pending = [r for r in results if r.verdict == "pending"]
    rejected = statistics.holm([r.p_value for r in pending], alpha)
    for r, rej in zip(pending, rejected, strict=True):
        r.verdict = "fail" if rej else "pass"
        r.numbers["family_alpha"] = alpha
        r.numbers["tests_in_family"] = len(pending)


# ==== greedy equivalence on video models ================================================================
def target_greedy_tokens(case: VideoCase, max_new_tokens: int, eos: tuple[int, ...]) -> tuple[list[int], list[int]]:
    """(hippo_ref AR tokens, the stock generate() tokens) of the target on the case's prompt."""
    inputs = case.target.prepare(case.clip, case.prompt)
    cfg = DecodeConfig(max_new_tokens=max_new_tokens, eos_token_ids=eos)
    ours = decode_autoregressive(case.target.prefill(inputs), cfg).tokens
    out = case.target.model.generate(**case.target.hf_generate_inputs(inputs), do_sample=False,
                                     max_new_tokens=max_new_tokens, eos_token_id=list(eos) or None, pad_token_id=0)
    return ours, out[0, inputs.num_tokens :].tolist()


def _greedy_verdict(case: VideoCase, reference: list[int], tokens: list[int], dtype: torch.dtype | None) -> tuple:
    """(verdict, numbers) of greedy tokens against the reference: exact in float32 (dtype None); in
    reduced precision a mismatch passes only if diagnosed a numerical near-tie at its first step."""
    mismatch = _first_mismatch(tokens, reference)
    numbers = {"tokens": len(tokens), "first_mismatch": mismatch}
    if mismatch is None:
        return "pass", numbers
    if dtype is None or case.target_path is None or mismatch >= min(len(tokens), len(reference)):
        return "fail", numbers
    numbers["diagnosis"] = diagnose_divergence(case.target_path, lambda a: a.prepare(case.clip, case.prompt),
                                               reference[:mismatch], reference[mismatch], tokens[mismatch], dtype)
    return ("pass" if numbers["diagnosis"]["classification"] == "numerical near-tie" else "fail"), numbers


def check_greedy_video(candidates, cases, gamma: int, max_new_tokens: int, eos: tuple[int, ...] = (),
                       diagnose_dtype: torch.dtype | None = None) -> list[CheckResult]:
    """Candidates' greedy tokens == the target's own greedy tokens, themselves == stock generate().
    `diagnose_dtype` (the models' reduced precision): mismatches get the near-tie diagnosis."""
    results, references = [], {}
    dtype_name = str(diagnose_dtype or torch.float32).removeprefix("torch.")
    for case in cases:
        key = (case.pair_name, case.video, case.prompt)
        if key not in references:
            ours, stock = target_greedy_tokens(case, max_new_tokens, eos)
            references[key] = ours
            verdict, numbers = _greedy_verdict(case, ours, stock, diagnose_dtype)
            results.append(CheckResult("greedy_target_vs_generate",
                                       f"greedy_target|{case.pair_name}|{case.video}|{case.prompt}",
                                       verdict, {"pair": case.pair_name, "video": case.video, "prompt": case.prompt,
                                                 "max_new_tokens": max_new_tokens, "dtype": dtype_name}, numbers))
        reference = references[key]
        for candidate in candidates:
            inputs = {"case": case.label, "gamma": gamma, "max_new_tokens": max_new_tokens, "dtype": dtype_name}
            name = f"greedy_video|{candidate.name}|{case.label}"
            skipped = _unavailable("greedy_video", candidate, case, inputs)
            if skipped:
                results.append(skipped)
                continue
            try:
                tokens = candidate.run(case, DecodeConfig(max_new_tokens=max_new_tokens, gamma=gamma,
                                                          eos_token_ids=eos))
            except Exception as err:
                results.append(_error("greedy_video", name, inputs, err))
                continue
            verdict, numbers = _greedy_verdict(case, reference, tokens, diagnose_dtype)
            results.append(CheckResult("greedy_video", name, verdict, inputs, numbers))
    return results


def _first_mismatch(a: list[int], b: list[int]) -> int | None:
    for i, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            return i
    return None if len(a) == len(b) else min(len(a), len(b))


def check_greedy_table(candidates, settings, seeds: int) -> list[CheckResult]:
    """Greedy on table models (fast, exact): each candidate's tokens AND tokens committed per round
    equal the oracle's independent simulation of its schedule (verification.oracle_jax.greedy_rounds),
    for many models, with an EOS token inside blocks."""
    from verification.oracle_jax import greedy_rounds
    from verification.tables import TablePair

    results = []
    for candidate in candidates:
        token_mismatches, round_mismatches, runs, no_stats = 0, 0, 0, 0
        inputs = {"seeds": seeds, "settings": [asdict(s) for s in settings], "max_new_tokens": 12}
        case = TableCase(TablePair.make("probe", 2, 0, 0.5))
        skipped = _unavailable("greedy_table", candidate, case, inputs)
        if skipped:
            results.append(skipped)
            continue
        try:
            for setting in settings:
                for s in range(seeds):
                    pair = TablePair.make(setting.name, setting.vocab, setting.model_seed + 100 * s, setting.agreement)
                    eos = setting.vocab - 1 if s % 2 else None
                    cfg = DecodeConfig(max_new_tokens=12, gamma=setting.gamma,
                                       eos_token_ids=() if eos is None else (eos,))
                    tokens, rounds = greedy_rounds(pair.target, pair.draft, 12, setting.gamma, candidate.decoding, eos)
                    result = candidate.run_with_stats(TableCase(pair), cfg)
                    runs += 1
                    token_mismatches += list(result.tokens) != tokens
                    if result.stats is None:
                        no_stats += 1
                    else:
                        round_mismatches += list(result.stats.accepted_per_round) != rounds
        except Exception as err:
            results.append(_error("greedy_table", f"greedy_table|{candidate.name}", inputs, err))
            continue
        ok = token_mismatches == 0 and round_mismatches == 0
        results.append(CheckResult("greedy_table", f"greedy_table|{candidate.name}", "pass" if ok else "fail", inputs,
                                   {"runs": runs, "token_mismatches": token_mismatches,
                                    "round_mismatches": round_mismatches, "runs_without_round_stats": no_stats,
                                    "rounds_compared": runs - no_stats}))
        if no_stats:  # the round comparison did not run on these: say so, never a silent pass
            results.append(CheckResult("greedy_table", f"greedy_table|{candidate.name}|rounds", "not applicable",
                                       inputs, {"reason": NO_ROUND_STATS, "runs_without_round_stats": no_stats}))
    return results


NO_ROUND_STATS = ("the candidate returns no round stats (DecodeStats): it cannot be held to round-level checks "
                  "(tokens committed per round, rejections)")


def check_self_draft_table(candidates, settings, seeds: int) -> list[CheckResult]:
    """The target as its own draft (q == p exactly on table models): every drafted token must be
    accepted, greedy or sampled. A rejection reveals draft-side state bugs that cannot change the
    output (a stale or misplaced draft cache) but make a lossless decoder slow."""
    from verification.tables import TablePair

    results = []
    for candidate in candidates:
        inputs = {"seeds": seeds, "settings": [s.name for s in settings]}
        case = TableCase(TablePair.make("probe", 2, 0, 0.5))
        skipped = _unavailable("self_draft_table", candidate, case, inputs)
        if skipped:
            results.append(skipped)
            continue
        rejections, runs, counted = 0, 0, 0
        try:
            for setting in settings:
                for s in range(seeds):
                    pair = TablePair.make(setting.name, setting.vocab, setting.model_seed + 100 * s, 1.0)
                    self_pair = TablePair(pair.name, pair.target, pair.target)
                    for params in (SamplingParams(0.0), setting.target):
                        cfg = DecodeConfig(max_new_tokens=10, gamma=setting.gamma, sampling=params, seed=s)
                        result = candidate.run_with_stats(TableCase(self_pair), cfg)
                        runs += 1
                        if result.stats is not None:
                            counted += 1
                            rejections += sum(result.stats.rejected_per_round)
        except Exception as err:
            results.append(_error("self_draft_table", f"self_draft_table|{candidate.name}", inputs, err))
            continue
        numbers = {"runs": runs, "rejections": rejections, "runs_with_round_stats": counted}
        if counted == 0:  # nothing was counted: not a pass
            results.append(CheckResult("self_draft_table", f"self_draft_table|{candidate.name}", "not applicable",
                                       inputs, {**numbers, "reason": NO_ROUND_STATS}))
            continue
        results.append(CheckResult("self_draft_table", f"self_draft_table|{candidate.name}",
                                   "pass" if rejections == 0 else "fail", inputs, numbers))
    return results


# ==== reduced precision: diagnose, do not tolerate =======================================================
EPS = {torch.bfloat16: 2.0**-7, torch.float16: 2.0**-10, torch.float32: 2.0**-23}
NEAR_TIE_FACTOR = 16.0


def diagnose_divergence(target_path: str, inputs_of, prefix: list[int], token_a: int, token_b: int,
                        dtype: torch.dtype) -> dict:
    """At the first divergent step (after `prefix`), recompute the target's logits in float64 and
    classify: "numerical near-tie" if the two tokens are the float64 top-2 and their gap is within
    NEAR_TIE_FACTOR * eps(dtype) * max(1, |top logit|) (what rounding in `dtype` can flip),
    otherwise "algorithmic"."""
    from hippo.checkpoint import load_adapter
    from hippo_ref.decoding.common import Track

    target64 = load_adapter(target_path, torch.float64)
    context = target64.prefill(inputs_of(target64))
    logits = context.last_logits.double() if not prefix else Track(context).logits_after(prefix, len(prefix) - 1)[-1]
    logits = logits.double()
    top2 = torch.topk(logits, 2)
    gap = float(top2.values[0] - top2.values[1])
    tau = NEAR_TIE_FACTOR * EPS[dtype] * max(1.0, float(top2.values[0].abs()))
    tie = {token_a, token_b} == set(top2.indices.tolist()) and gap <= tau
    return {"step": len(prefix), "tokens": [token_a, token_b], "float64_top2": top2.indices.tolist(),
            "float64_gap": gap, "tolerance": tau, "classification": "numerical near-tie" if tie else "algorithmic"}


def check_reduced_precision(candidates, pairs, video: str, frames: int, max_new_tokens: int,
                            dtype: torch.dtype = torch.bfloat16, device: str = "cpu") -> list[CheckResult]:
    """bf16 greedy: candidates vs the target's own bf16 greedy decoding. A mismatch passes only if
    diagnosed a numerical near-tie at its first divergent step."""
    from hippo.checkpoint import load_adapter
    from hippo.video import load_video
    from verification.candidates import VideoCase

    results = []
    clip = load_video(video, frames)
    for pair in pairs:
        target = load_adapter(pair.target_path, dtype, device)
        draft = load_adapter(pair.draft_path, dtype, device)
        prompt = "describe the video"
        case = VideoCase(pair.name, target, draft, video, clip, prompt)

        def inputs_of(adapter, prompt=prompt):
            return adapter.prepare(clip, prompt)

        cfg = DecodeConfig(max_new_tokens=max_new_tokens, gamma=4)
        reference = decode_autoregressive(target.prefill(inputs_of(target)), cfg).tokens
        for candidate in candidates:
            name = f"reduced_precision|{candidate.name}|{case.label}|{str(dtype).removeprefix('torch.')}"
            inputs = {"case": case.label, "dtype": str(dtype), "max_new_tokens": max_new_tokens}
            try:
                tokens = candidate.run(case, cfg)
            except Exception as err:
                results.append(_error("reduced_precision", name, inputs, err))
                continue
            i = _first_mismatch(tokens, reference)
            if i is None:
                results.append(CheckResult("reduced_precision", name, "pass", inputs, {"first_mismatch": None}))
                continue
            diagnosis = diagnose_divergence(pair.target_path, inputs_of, reference[:i], reference[i], tokens[i], dtype)
            verdict = "pass" if diagnosis["classification"] == "numerical near-tie" else "fail"
            results.append(CheckResult("reduced_precision", name, verdict, inputs,
                                       {"first_mismatch": i, "diagnosis": diagnosis}))
    return results


# ==== seeded equivalence: the same keyed uniforms give the reference's very tokens ======================
def check_seeded_equivalence(candidates, settings, video_cases, table_samples: int, video_samples: int,
                             seed_base: int, video_tokens: int = 8) -> list[CheckResult]:
    """A candidate that draws hippo's keyed uniforms (hippo_ref/sampling.py) and claims a schedule (sd,
    pearl) must commit, for every seed, exactly the tokens of the reference implementation of that
    schedule: the uniforms are a function of (seed, purpose, index) alone. Stronger than Monte Carlo
    where it applies: it catches a bug that keeps the output law (e.g. the uniforms of the wrong index)."""
    from verification.candidates import REFERENCE_OF, builtin_candidates
    from verification.tables import TablePair

    references = builtin_candidates()
    results = []
    for candidate in candidates:
        reference = references.get(REFERENCE_OF.get(candidate.decoding, ""))
        name = f"seeded_equivalence|{candidate.name}"
        if candidate.unavailable or not candidate.keyed_uniforms or reference is None:
            reason = candidate.unavailable or "does not draw hippo's keyed uniforms (its randomness is its own)"
            results.append(CheckResult("seeded_equivalence", name, "not available" if candidate.unavailable
                                       else "not applicable", {}, {"reason": reason}))
            continue
        if candidate.name == reference.name:
            continue  # the reference itself
        inputs = {"reference": reference.name, "table_settings": [s.name for s in settings],
                  "table_samples": table_samples, "video_cases": [c.label for c in video_cases],
                  "video_samples": video_samples, "video_tokens": video_tokens, "seed_base": seed_base}
        compared, mismatches, first = 0, 0, None
        try:
            runs = []
            for setting in settings:
                case = TableCase(TablePair.make(setting.name, setting.vocab, setting.model_seed, setting.agreement))
                runs += [(case, DecodeConfig(max_new_tokens=setting.length + 3, gamma=setting.gamma,
                                             sampling=setting.target, draft_sampling=setting.draft, seed=seed_base + s))
                         for s in range(table_samples)]
            params = SamplingParams(temperature=1.0, top_k=3)
            for case in video_cases:
                runs += [(case, DecodeConfig(max_new_tokens=video_tokens, gamma=3, sampling=params,
                                             seed=seed_base + s)) for s in range(video_samples)]
            for case, cfg in runs:
                a, b = candidate.run(case, cfg), reference.run(case, cfg)
                compared += 1
                if a != b:
                    mismatches += 1
                    first = first or {"case": case.label, "seed": cfg.seed, "candidate": a, "reference": b}
        except Exception as err:
            results.append(_error("seeded_equivalence", name, inputs, err))
            continue
        results.append(CheckResult("seeded_equivalence", name, "pass" if mismatches == 0 else "fail", inputs,
                                   {"decodes": compared, "mismatches": mismatches, "first_mismatch": first}))
    return results
