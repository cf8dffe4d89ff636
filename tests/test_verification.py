"""The verification suite's parts: each must pass on the reference and fail on a planted bug."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from hippo.errors import ConfigError
from verification import checks, statistics
from verification.candidates import builtin_candidates, load_candidate
from verification.mutants import catalogue
from verification.oracle_jax import Laws, Warp, greedy_rounds, max_abs_difference
from verification.tables import TablePair

REF = [builtin_candidates()["ref-sd"], builtin_candidates()["ref-pearl"]]
MUTANTS = {m.name: m for m in catalogue()}


def test_oracle_sd_and_pearl_laws_equal_ar_and_control_does_not():
    pair = TablePair.make("t", 3, seed=5, agreement=0.5)
    laws = Laws(pair.target, pair.draft, 4, 2, Warp(0.8, top_k=2), Warp(1.2))
    ar = laws.ar()
    assert abs(sum(ar.values()) - 1) < 1e-12
    assert max_abs_difference(ar, laws.sd()) < 1e-12
    assert max_abs_difference(ar, laws.pearl()) < 1e-12
    broken = Laws(pair.target, pair.draft, 4, 2, Warp(0.8, top_k=2), Warp(1.2), broken_control=True)
    assert max_abs_difference(ar, broken.sd()) > 1e-3


def test_oracle_greedy_simulation_matches_the_reference():
    assert all(r.verdict == "pass" for r in checks.check_greedy_table(REF, checks.TABLE_MC, 3))


def test_table_model_context_behaves_like_a_cache():
    pair = TablePair.make("t", 4, seed=1, agreement=0.0)
    t, _ = pair.contexts()
    first = t.step([1, 2, 3], 0)
    again = t.step([2, 3], 1)  # rollback to 1 row, then the same tokens
    assert (first[1:] == again).all()
    t.rollback(0)
    assert t.generated_in_cache == 0


def test_exact_step_passes_on_reference_and_fails_on_wrong_residual():
    assert [r.verdict for r in checks.check_exact_step(10, seed=3)] == ["pass", "pass"]  # hippo_ref, hippo_fast
    with MUTANTS["residual_from_p"].active():
        assert [r.verdict for r in checks.check_exact_step(10, seed=3)] == ["fail", "pass"]


@pytest.mark.parametrize("name", ["accept_q_over_p", "eos_in_block_ignored", "stale_draft_kv",
                                  "kv_rollback_off_by_one", "post_verify_skips_first_new", "bonus_from_q"])
def test_greedy_table_catches_structural_mutants(name):
    with MUTANTS[name].active():
        results = checks.check_greedy_table(REF, checks.TABLE_MC, 2)
    assert any(r.verdict == "fail" for r in results)


def test_monte_carlo_catches_a_q_mismatch_and_passes_the_reference():
    setting = checks.TABLE_MC[0]
    ok = checks.check_mc_table(REF[:1], [setting], 600, 1, 0.01)
    checks.settle_statistical(ok, 0.01)
    assert ok[0].verdict == "pass"
    with MUTANTS["greedy_draft_softmax_q"].active():
        bad = checks.check_mc_table(REF[:1], [checks.TABLE_MC[2]], 600, 1, 0.01)
    checks.settle_statistical(bad, 0.01)
    assert bad[0].verdict == "fail"


def test_goodness_of_fit_and_power():
    exact = {"a": 0.5, "b": 0.3, "c": 0.2}
    fair = ["a"] * 500 + ["b"] * 300 + ["c"] * 200
    assert statistics.goodness_of_fit(fair, exact).p_value > 0.99
    skewed = ["a"] * 600 + ["b"] * 250 + ["c"] * 150
    assert statistics.goodness_of_fit(skewed, exact).p_value < 1e-6
    impossible = fair[:-1] + ["z"]
    assert statistics.goodness_of_fit(impossible, exact).p_value == 0.0
    small, large = statistics.min_detectable_tv(1000, 3, 0.01), statistics.min_detectable_tv(10000, 3, 0.01)
    assert 0 < large < small < 1


def test_holm():
    assert statistics.holm([0.001, 0.02, 0.5], 0.05) == [True, True, False]
    assert statistics.holm([0.03, 0.03], 0.05) == [False, False]


def test_greedy_rounds_stop_at_eos():
    pair = TablePair.make("t", 3, seed=2, agreement=0.9)
    tokens, rounds = greedy_rounds(pair.target, pair.draft, 20, 3, "sd", eos=tokens_eos(pair))
    assert tokens[-1] == tokens_eos(pair) and sum(rounds) == len(tokens) - 1


def tokens_eos(pair):
    tokens, _ = greedy_rounds(pair.target, pair.draft, 6, 3, "sd")
    return Counter(tokens).most_common(1)[0][0]


FAST = [builtin_candidates()["fast-sd"], builtin_candidates()["fast-pearl"]]


def test_candidates():
    from verification.candidates import Candidate

    assert checks.check_greedy_table(FAST, checks.TABLE_MC, 1)[0].verdict == "pass"
    missing = Candidate("missing", "sd", unavailable="not installed here")
    assert checks.check_greedy_table([missing], checks.TABLE_MC, 1)[0].verdict == "not available"
    user = load_candidate("hippo_ref.decoding.parallel:decode_parallel@pearl")
    assert checks.check_greedy_table([user], checks.TABLE_MC, 1)[0].verdict == "pass"
    with pytest.raises(ConfigError, match="unknown candidate 'nope'"):
        load_candidate("nope")


def test_every_mutant_changes_something():
    """Each mutant's patch targets must exist (a typo would make a control silently inert)."""
    for mutant in catalogue():
        assert mutant.patches, mutant.name
        for owner, attribute, _ in mutant.patches:
            assert hasattr(owner, attribute), (mutant.name, attribute)


def test_report_files(tmp_path):
    from verification.checks import CheckResult
    from verification.report import write_report
    from verification.suite import QUICK, SuiteRun

    run = SuiteRun(QUICK, results=[CheckResult("exact_step", "exact_step|x", "pass", {}, {"max_abs_error": 0.0})],
                   mutants=[{"mutant": "m", "description": "d", "caught_by": ["exact_step"], "seconds": 0}],
                   calibration={"runs": 2, "samples_per_check": 10, "false_alarms": 0, "false_alarm_rate": 0.0,
                                "rate_95ci": [0, 0.8], "declared_alpha": 0.01, "verdict": "pass"},
                   pairs=[], timings={"total": 1.0})
    cert = write_report(run, tmp_path, "hippo verify --quick")
    assert cert["verdict"] == "PASS"
    summary = (tmp_path / "summary.md").read_text()
    assert "mutation score 1/1" in summary and "| exact_step | 1 | 0 |" in summary
    assert json.loads((tmp_path / "report.json").read_text())["checks"][0]["verdict"] == "pass"
    run.results[0].verdict = "fail"
    assert write_report(run, tmp_path, "x")["verdict"] == "FAIL"


def test_calibration_keeps_every_p_value():
    """The report carries each calibration test's p-value (the calibration histogram reads them)."""
    from dataclasses import replace

    from verification.suite import QUICK, SuiteRun, run_calibration

    small = replace(QUICK, calibration_runs=2, calibration_samples=30)
    calibration = run_calibration(SuiteRun(small), log=lambda line: None)
    values = calibration["p_values"]
    assert len(values) == 2 * len(checks.TABLE_MC) and all(0.0 <= v <= 1.0 for v in values)
    assert all(v == float(f"{v:.6g}") for v in values)  # rounded to 6 significant digits
    json.dumps(calibration)


@pytest.fixture(scope="module")
def tiny_near_pair(tmp_path_factory):
    from verification.models import tiny_pairs

    return tiny_pairs(tmp_path_factory.mktemp("verify-models"), families=("qwen2_5_vl",), unrelated=False)[0]


def test_reduced_precision_diagnosis_classifies_ties_and_bugs(tiny_near_pair, real_video):
    """bf16 mismatches are diagnosed, not tolerated: a wrong algorithm is "algorithmic" (fail), and the
    classifier calls a step a near-tie only for the float64 top-2 within the tolerance."""
    import torch

    from hippo.video import load_video

    ref = [builtin_candidates()["ref-sd"]]
    ok = checks.check_reduced_precision(ref, [tiny_near_pair], real_video, 4, 12)
    assert [r.verdict for r in ok] == ["pass"]
    with MUTANTS["kv_rollback_off_by_one"].active():  # breaks SD, leaves the AR reference intact
        bad = checks.check_reduced_precision(ref, [tiny_near_pair], real_video, 4, 12)
    assert bad[0].verdict == "fail"
    assert bad[0].numbers["diagnosis"]["classification"] == "algorithmic"

    clip = load_video(real_video, 4)

    def inputs_of(adapter):
        return adapter.prepare(clip, "describe the video")

    from hippo.checkpoint import load_adapter

    target64 = load_adapter(tiny_near_pair.target_path, torch.float64)
    top2 = torch.topk(target64.prefill(inputs_of(target64)).last_logits.double(), 3).indices.tolist()
    first, second, third = top2
    tie = checks.diagnose_divergence(tiny_near_pair.target_path, inputs_of, [], first, second, torch.bfloat16)
    expected = "numerical near-tie" if tie["float64_gap"] <= tie["tolerance"] else "algorithmic"
    assert tie["classification"] == expected
    not_top2 = checks.diagnose_divergence(tiny_near_pair.target_path, inputs_of, [], first, third, torch.bfloat16)
    assert not_top2["classification"] == "algorithmic"


def test_seeded_equivalence_passes_on_fast_and_is_not_applicable_to_foreign_randomness():
    results = checks.check_seeded_equivalence([*REF, *FAST, builtin_candidates()["hf-assisted"]], checks.TABLE_MC,
                                              [], 30, 0, seed_base=4)
    verdicts = {r.name.split("|")[1]: r.verdict for r in results}
    assert verdicts == {"fast-sd": "pass", "fast-pearl": "pass", "hf-assisted": "not applicable"}


@pytest.mark.parametrize("name", ["fast_uniform_index_shifted", "fast_arithmetic_shift"])
def test_fast_uniform_mutants_are_caught_by_seeded_equivalence(name):
    with MUTANTS[name].active():
        results = checks.check_seeded_equivalence(FAST, checks.TABLE_MC, [], 20, 0, seed_base=4)
    assert all(r.verdict == "fail" for r in results)


def test_fast_stale_row_mutant_is_caught_on_video(pair, real_video):
    from hippo.request import PruneSpec
    from hippo.video import load_video
    from verification.candidates import VideoCase

    clip = load_video(real_video, 4)

    def cases():
        return [VideoCase(pair.family, pair.target, pair.perturbed(0.05), real_video, clip, "what moves", PruneSpec())]

    assert not any(r.failed for r in checks.check_greedy_video(FAST, cases(), 4, 24))
    with MUTANTS["fast_stale_row_visible"].active():
        assert any(r.failed for r in checks.check_greedy_video(FAST, cases(), 4, 24))


def test_progress_line_counts_the_settled_monte_carlo_verdicts(monkeypatch):
    """The mc progress line must count failures after Holm's settlement, as the report does (a pending
    verdict is not a failure, so counting before it printed '0 failed' for a failing family)."""
    from verification import suite
    from verification.checks import CheckResult

    for name in ("check_exact_step", "check_oracle", "check_greedy_table", "check_self_draft_table",
                 "check_greedy_video", "check_seeded_equivalence", "check_reduced_precision"):
        monkeypatch.setattr(checks, name, lambda *a, **k: [])
    monkeypatch.setattr(suite, "video_cases", lambda *a, **k: [])
    monkeypatch.setattr(suite, "sampled_video_cases", lambda *a, **k: [])
    monkeypatch.setattr(suite, "videos", lambda: ["unused.mp4"])
    monkeypatch.setattr(suite, "statistical_checks", lambda *a, **k: [
        CheckResult("mc_table", "bad", "pending", p_value=1e-12), CheckResult("mc_table", "ok", "pending", p_value=0.5)])
    lines = []
    run = suite.SuiteRun(suite.QUICK)
    results = suite.run_checks(run, [], [], 0, lines.append)
    assert [r.verdict for r in results] == ["fail", "pass"]
    assert any(line.startswith("  mc: 1 failed of 2") for line in lines), lines


# ---- the catalogue of planted bugs --------------------------------------------------------------------
PUBLIC_BUGS = ("transformers PR #28508", "vLLM PR #41493", "vllm-ascend PR #2881", "DeepSpec #31", "vLLM PR #9730",
               "vmlx PR #150", "vLLM #6038", "DART #2", "vLLM #56101", "transformers #47912")


def test_catalogue_names_its_public_sources_in_every_implementation():
    mutants = catalogue()
    assert len(mutants) >= 30 and len({m.name for m in mutants}) == len(mutants)
    assert {m.implementation for m in mutants} == {"ref", "fast", "processes"}
    for m in mutants:
        assert m.source is None or (m.source.strip() and "\n" not in m.source), m.name
    for bug in PUBLIC_BUGS:
        where = {m.implementation for m in mutants if m.source and m.source.startswith(bug)}
        assert "ref" in where, (bug, where)
        if bug != "transformers #47912":  # the existing EOS mutant: hippo_ref only
            assert "fast" in where, (bug, where)
    assert {m.name for m in mutants if m.implementation == "processes" and m.source} == {
        "processes_always_accept", "processes_verify_seed_stale"}


FAST_ALL = [builtin_candidates()["fast-sd"], builtin_candidates()["fast-pearl"]]

# The cheap check that must fail on each planted bug (the audit may catch it with others too).
CAUGHT_BY = {
    "always_accept": "greedy_table", "fast_always_accept": "greedy_table",
    "target_probs_changed_in_place": "exact_step", "fast_target_probs_changed_in_place": "exact_step",
    "draft_sampled_in_bfloat16": "exact_step", "fast_draft_sampled_in_bfloat16": "exact_step",
    "bonus_kv_row_not_written": "self_draft_table", "fast_bonus_kv_row_not_written": "self_draft_table",
    "verify_seed_stale": "greedy_table", "fast_verify_seed_stale": "greedy_table",
    "draft_eos_stops_decoding": "greedy_table", "fast_draft_eos_stops_decoding": "greedy_table",
    "bonus_counted_twice": "greedy_table", "fast_bonus_counted_twice": "greedy_table",
    "tokens_after_eos_counted": "greedy_table", "fast_tokens_after_eos_counted": "greedy_table",
    "seed_shared_across_requests": "mc_table", "fast_seed_shared_across_requests": "mc_table",
    "fast_verify_mask_not_prefix": "greedy_table", "fast_commit_past_rejection": "greedy_table",
    "fast_draft_q_buffer_reused": "self_draft_table",
}


def _run_check(check: str, mutant) -> list:
    candidates = REF if mutant.implementation == "ref" else FAST_ALL
    if check == "greedy_table":
        return checks.check_greedy_table(candidates, checks.TABLE_MC, 2)
    if check == "self_draft_table":
        return checks.check_self_draft_table(candidates, checks.TABLE_MC, 1)
    if check == "exact_step":
        return checks.check_exact_step(10, 3, implementations=(mutant.implementation,))
    results = checks.check_mc_table(candidates, checks.TABLE_MC[:1], 200, 1, 0.01)
    checks.settle_statistical(results, 0.01)
    return results


@pytest.mark.parametrize("name", sorted(CAUGHT_BY))
def test_each_planted_bug_fails_its_check_and_the_correct_code_passes_it(name):
    mutant = MUTANTS[name]
    with mutant.active():
        assert any(r.verdict == "fail" for r in _run_check(CAUGHT_BY[name], mutant)), name
    assert not any(r.failed for r in _run_check(CAUGHT_BY[name], mutant))


def test_the_reduced_precision_draft_is_below_the_monte_carlo_power_and_caught_exactly():
    """DeepSpec #31's bug moves the output law by far less than mc_table can see; exact_step's bisection
    of the draw's law sees it (error ~1e-4 against a 1e-9 tolerance)."""
    from verification.suite import QUICK

    measured = MUTANTS["draft_sampled_in_bfloat16"].measure(QUICK)
    assert 0 < measured["induced_tv"] < measured["min_detectable_tv"] and measured["below_detectability"]
    with MUTANTS["draft_sampled_in_bfloat16"].active():
        (step,) = checks.check_exact_step(10, 3, implementations=("ref",))
    assert step.verdict == "fail" and step.numbers["max_abs_error"] > 1e-6


def test_a_candidate_without_round_stats_is_not_applicable_to_round_level_checks():
    """A decode function that returns bare tokens passes greedy_table on its tokens, but the round
    comparison and the self-draft rejection count say "not applicable", with the reason."""
    from verification.candidates import Candidate

    bare = Candidate("bare", "sd", lambda t, d, cfg: builtin_candidates()["ref-sd"].decode(t, d, cfg).tokens)
    greedy = checks.check_greedy_table([bare], checks.TABLE_MC, 1)
    assert [r.verdict for r in greedy] == ["pass", "not applicable"]
    assert "no round stats" in greedy[1].numbers["reason"]
    (selfdraft,) = checks.check_self_draft_table([bare], checks.TABLE_MC, 1)
    assert selfdraft.verdict == "not applicable" and "no round stats" in selfdraft.numbers["reason"]


def test_mutation_scoring_counts_failing_checks_only(monkeypatch):
    """A mutant is caught only by a check that FAILS; a crash is listed apart with its exception; a check
    that ran nothing is not applicable; a mutant whose measured effect is below detectability is reported
    as such; a required check that does not fail leaves the mutant uncaught."""
    from verification import suite
    from verification.checks import CheckResult
    from verification.mutants import Mutant

    def fail():
        return [CheckResult("x", "x", "fail")]

    def crash():
        raise RuntimeError("boom")

    def skipped():
        return [CheckResult("y", "y", "not applicable", numbers={"reason": "no stats"})]

    def error():
        return [CheckResult("z", "z", "error", numbers={"error": "ValueError: bad"})]

    plans = {"caught": [("a", crash), ("b", fail)], "crash_only": [("a", crash), ("b", error)],
             "vacuous": [("a", skipped)], "faint": [("a", skipped)], "missed": [("a", fail), ("b", skipped)]}
    mutants = [Mutant(name, name, ()) for name in ("caught", "crash_only", "vacuous")]
    mutants.append(Mutant("faint", "faint", (), measure=lambda p: {"below_detectability": True, "induced_tv": 0.001,
                                                                   "min_detectable_tv": 0.05}))
    mutants.append(Mutant("missed", "missed", (), required=("b",)))
    monkeypatch.setattr(suite, "catalogue", lambda: mutants)
    monkeypatch.setattr(suite, "mutant_stages", lambda mutant, *a: plans[mutant.name])
    monkeypatch.setattr(suite, "builtin_candidates", lambda: {n: None for names in suite.MUTATED_CANDIDATES.values()
                                                              for n in names})
    lines = []
    out = {m["mutant"]: m for m in suite.run_mutants(suite.SuiteRun(suite.QUICK), [], lines.append)}
    assert out["caught"]["status"] == "caught" and out["caught"]["caught_by"] == ["b"]
    assert out["caught"]["crashed"] == [{"check": "a", "error": "RuntimeError: boom"}]
    assert out["crash_only"]["status"] == "not caught" and out["crash_only"]["caught_by"] == []
    assert [c["check"] for c in out["crash_only"]["crashed"]] == ["a", "b"]
    assert out["vacuous"]["status"] == "not caught"
    assert out["vacuous"]["not_applicable"] == [{"check": "a", "reason": "no stats"}]
    assert out["faint"]["status"] == "below detectability"
    assert out["missed"]["status"] == "not caught" and out["missed"]["missed_required"] == ["b"]
    score = suite.mutation_score(list(out.values()))
    assert score == {"caught": 1, "planted": 5, "crashed": 2, "below_detectability": 1, "not_caught": 3,
                     "modelled_on_public_bugs": 0}
    run = suite.SuiteRun(suite.QUICK, mutants=list(out.values()))
    assert not run.passed
    assert any("CRASH" not in line and "crashed: a (RuntimeError: boom)" in line for line in lines)


@pytest.mark.parametrize("name", ["processes_always_accept", "processes_verify_seed_stale"])
def test_two_process_planted_bugs_fail_greedy_table(name):
    """Patched in the target's process (the worker is another, unpatched, process)."""
    two = [builtin_candidates()["fast-pearl-processes"]]
    with MUTANTS[name].active():
        assert any(r.verdict == "fail" for r in checks.check_greedy_table(two, checks.TABLE_MC, 2))
