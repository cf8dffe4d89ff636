"""The graded verdicts of paper/REPRODUCTION.md (paper/reproduce/verdicts.py, paper/reproduce/reproduction.py) on hand-made
numbers: every grade, the settings a claim holds at, ratio-to-ratio sizes from paper/published.json."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from paper.reproduce import reproduction, verdicts
from paper.reproduce.plots import published
from paper.reproduce.plots.job import Outcome
from paper.reproduce.verdicts import DIRECTION, NOT_REPRODUCED, NOT_TESTABLE, REPRODUCED, Effect, Expectation


def ratio_effect(estimate, low, high, n=12):
    return Effect("HIPPO / SD", estimate, low, high, n, "ratio 0.9", 1.0)


PAPER_RATIO = Expectation(+1, 1.46, source="3.27 / 2.24")


@pytest.mark.parametrize("effect, expected, untestable, grade", [
    (ratio_effect(1.45, 1.30, 1.60), PAPER_RATIO, None, REPRODUCED),  # the paper's 1.46 inside the interval
    (ratio_effect(1.08, 1.04, 1.12), PAPER_RATIO, None, DIRECTION),  # above 1, below the paper's size
    (ratio_effect(1.06, 0.97, 1.12), PAPER_RATIO, None, NOT_REPRODUCED),  # includes 1: no effect not excluded
    (ratio_effect(0.80, 0.70, 0.90), PAPER_RATIO, None, NOT_REPRODUCED),  # excludes the paper's direction
    (ratio_effect(1.45, 1.30, 1.60), PAPER_RATIO, "one core: the draft cannot run beside the target", NOT_TESTABLE),
    (Effect("MAT attn - none", -0.7, -0.9, -0.6, 48, "ratio 0.9", 0.0), Expectation(-1), None, REPRODUCED),
    (Effect("MAT hippo - specvlm", 0.07, 0.0, 0.16, 48, "ratio 0.9", 0.0), Expectation(+1), None, NOT_REPRODUCED),
    (Effect("border/interior", 1.3, None, None, 12, "all frames", 1.0), Expectation(+1), None, NOT_REPRODUCED),
    (ratio_effect(2.81, 2.6, 3.0), Expectation(+1, 3.51, reaches=True), None, DIRECTION),  # "up to": not reached
    (ratio_effect(3.6, 3.4, 3.8), Expectation(+1, 3.51, reaches=True), None, REPRODUCED),  # beyond it counts
])
def test_every_grade_follows_from_the_numbers(effect, expected, untestable, grade):
    verdict = verdicts.grade(effect, expected, untestable)
    assert verdict.grade == grade
    text = verdict.text()
    assert f"n={effect.n}" in text and effect.setting in text  # cites samples and setting
    if effect.low is not None:
        assert f"[{effect.low:.2f}, {effect.high:.2f}]" in text  # and its paired interval
    if untestable:
        assert untestable in text


def test_each_decision_alone():
    e = ratio_effect(1.08, 1.04, 1.12)
    assert verdicts.excludes_no_effect(e) and verdicts.on_paper_side(e, PAPER_RATIO)
    assert not verdicts.size_matches(e, PAPER_RATIO) and verdicts.size_matches(e, Expectation(+1))
    assert not verdicts.excludes_no_effect(ratio_effect(1.0, 0.9, 1.1))
    assert not verdicts.on_paper_side(ratio_effect(0.9, 0.8, 0.95), PAPER_RATIO)


def test_bad_numbers_are_refused_with_what_to_do():
    with pytest.raises(ValueError, match="not an interval"):
        ratio_effect(1.0, 1.2, 1.1)
    with pytest.raises(ValueError, match="at least one paired sample"):
        ratio_effect(1.0, 0.9, 1.1, n=0)
    with pytest.raises(ValueError, match=r"\+1 or -1"):
        Expectation(0)


def test_a_claim_over_regimes_takes_the_weakest_testable_grade_and_says_where_it_holds():
    r, d, n, t = (verdicts.Verdict(g, "") for g in (REPRODUCED, DIRECTION, NOT_REPRODUCED, NOT_TESTABLE))
    assert verdicts.weakest([r, d]) == DIRECTION and verdicts.weakest([r, t]) == REPRODUCED
    assert verdicts.weakest([t, t]) == NOT_TESTABLE and verdicts.weakest([r, n, d]) == NOT_REPRODUCED
    assert verdicts.holds_at({"ratio 0.5": n, "ratio 0.9": d, "ratio 0.95": r}) == \
        "holds at ratio 0.9, ratio 0.95; not at ratio 0.5"


def ratio_numbers(differences: dict[str, list[float]], n=48):
    return {"ratio": Outcome(numbers={"qwen": {
        "hippo_minus_specvlm": differences, "hippo": {r: {"n": n} for r in differences},
        "attn": {r: {"n": n, "mat_minus_unpruned": d} for r, d in differences.items()}}})}


def test_pruning_claims_are_graded_at_0_9_and_name_the_ratios_they_hold_at():
    numbers = ratio_numbers({"0.5": [0.0, -0.05, 0.05], "0.9": [0.2, 0.1, 0.3], "0.95": [0.3, 0.2, 0.4]})
    text, grade = reproduction.claim_hippo_over_specvlm(numbers, None)
    assert grade == REPRODUCED
    assert "ratio 0.9" in text and "n=48" in text and "holds at ratio 0.9, ratio 0.95; not at ratio 0.5" in text
    assert "not compared here" in text  # the paper's two MATs measure different things
    text, grade = reproduction.claim_attention_only(numbers, None)
    assert grade == NOT_REPRODUCED  # attn's MAT rose at 0.9: the paper's direction is a drop
    assert reproduction.claim_hippo_over_specvlm({}, None)[1] == NOT_TESTABLE


def main_numbers(ratio_interval, hippo_forwards=100, decode=(2.8, [2.6, 3.0])):
    ar = {"n": 12, "target_decode_forwards": 400, "speedup_decode": 1.0, "speedup_decode_ci": [1, 1],
          "speedup_e2e": 1.0}
    hippo = {"n": 12, "target_decode_forwards": hippo_forwards, "speedup_decode": decode[0],
             "speedup_decode_ci": decode[1], "speedup_e2e": 2.4}
    sd = {"n": 12, "target_decode_forwards": 120, "speedup_decode": 2.5, "speedup_decode_ci": [2.3, 2.7],
          "speedup_e2e": 2.2}
    return {"main_table": Outcome(numbers={"qwen": {
        "AR": ar, "HIPPO": hippo, "SD + SpecVLM": sd,
        "HIPPO vs SD + SpecVLM": {"speedup_e2e": [ratio_interval[0], ratio_interval[1:]]}}})}


def test_parallel_beats_serial_is_judged_ratio_to_ratio_against_the_paper():
    text, grade = reproduction.claim_parallel_beats_serial(main_numbers([1.08, 1.04, 1.12]), None)
    assert grade == DIRECTION
    size, formed = published.ratio("HIPPO", "SpecVLM", "speedup_over_ar", "VideoMME")
    assert round(size, 2) == 1.46 and "3.27 / 2.24" in formed and formed in text
    assert reproduction.claim_parallel_beats_serial(main_numbers([1.5, 1.3, 1.7]), None)[1] == REPRODUCED
    assert reproduction.claim_parallel_beats_serial(main_numbers([1.06, 0.97, 1.12]), None)[1] == NOT_REPRODUCED


def test_up_to_speedup_is_not_testable_where_no_method_can_reach_it():
    # AR's 400 decode forwards over HIPPO's 100: at most 4x, so 3.51x is reachable: graded on the interval
    text, grade = reproduction.claim_max_speedup(main_numbers([1.1, 1.0, 1.2]), None)
    assert grade == DIRECTION and "HIPPO on qwen" in text
    # at best 400 / 120 = 3.33x (SD + SpecVLM's forwards; HIPPO's 160 give 2.5x): 3.51x is out of reach
    text, grade = reproduction.claim_max_speedup(main_numbers([1.1, 1.0, 1.2], hippo_forwards=160), None)
    assert grade == NOT_TESTABLE and "no method here can reach 3.51x" in text and "3.33 (SD + SpecVLM)" in text


def test_boundary_claim_reads_its_interval_over_videos():
    def bias(ratio, interval):
        return {"position_bias": Outcome(numbers={"real_video": "x.mp4", "qwen": {"zoo": {
            "grid": "4x4x4", "videos": 12, "attn_border_to_interior": ratio, "attn_border_to_interior_ci": interval,
            "attn_last_to_first_frame": 1.0, "fused_border_to_interior": 0.9}}})}

    assert reproduction.claim_boundary_attention(bias(1.5, [1.3, 1.7]), None)[1] == REPRODUCED
    assert reproduction.claim_boundary_attention(bias(0.5, [0.4, 0.6]), None)[1] == NOT_REPRODUCED
    assert reproduction.claim_boundary_attention(bias(1.3, None), None)[1] == NOT_REPRODUCED  # no interval


def test_published_numbers_live_in_one_file_each_with_its_source_and_quantity():
    data = json.loads(published.DATA.read_text())
    assert all(v["source"] and v["quantity"] in data["quantities"] for v in data["values"])
    assert {p.method for p in published.of_quantity("run_length")} == {"HIPPO"}  # not drawn on a per-round axis
    assert published.max_speedup_over_ar().value == 3.51
    with pytest.raises(KeyError, match="no published"):
        published.value("HIPPO", "tokens_per_round", "VDC")


def test_the_report_module_types_no_published_number():
    source = Path(reproduction.__file__).read_text()
    for p in published.values():
        assert f"{p.value:g}" not in source.replace("JUDGED_RATIO = \"0.9\"", ""), p
