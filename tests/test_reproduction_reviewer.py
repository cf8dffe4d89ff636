"""The rows a reviewer asks for (issue 24, items 4 and 5), on hand-made sweep rows and numbers: what pruning
buys PEARL, HIPPO's pruning against random, the three position biases each judged on its own, where
SpecVLM is attention top-k, the largest same-run speedup with its configuration, and the figures' new
numbers (paired against no pruning, serial SD over gamma, auto's picks, ablation intervals)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from hippo.adapters.base import VideoGrid
from paper.reproduce import reproduction
from paper.reproduce.plots import ablation, gamma, latency, main_table, position_bias, ratio
from paper.reproduce.plots.job import Outcome
from paper.reproduce.plots.rows import summarize
from paper.reproduce.verdicts import NOT_REPRODUCED, NOT_TESTABLE, REPRODUCED


def row(index, decoding, prune="none", seconds=1.0, accepted=(2, 2), rejected=(True, False), impl="fast", r=0.9,
        g=5, weights=(1.0, 1.0, 1.0), used_gamma=None, total=None):
    """One sweep row of sample `index`, all in sweep s1, greedy, with AR's tokens."""
    ratio_value = 0.0 if prune == "none" else r
    config = {"pair": "qwen", "decoding": decoding, "prune": prune, "ratio": ratio_value,
              "gamma": None if decoding == "ar" else g, "impl": impl, "weights": list(weights), "temperature": 0.0,
              "max_new_tokens": 8, "frames": 4, "dtype": "float32"}
    return {"key": f"{index}|{decoding}|{prune}|{ratio_value}|{g}|{impl}|{weights}", "config": config,
            "sample": {"sample_id": f"test/{index}", "index": index}, "tokens": [1, 2, 3, 4],
            "gamma": used_gamma if used_gamma is not None else config["gamma"],
            "stats": {"decode_s": seconds, "total_s": total if total is not None else seconds + 1.0,
                      "accepted_per_round": list(accepted), "rejected_per_round": list(rejected),
                      "target_forwards": len(accepted) + 1},
            "sweep": {"id": "s1", "file": "s1.jsonl", "run": "r1"}}


def job_of(**profile):
    fields = {"pairs": ("qwen",), "methods": ("random", "hippo"), "ratios": (0.9,), "gammas": (2, 3), "bootstrap": 50,
              "seed": 0, "n": 2, "ratio_n": None}
    return SimpleNamespace(profile=SimpleNamespace(**{**fields, **profile}))


# ---- item 4: HIPPO vs PEARL without pruning ----------------------------------------------------------------
def test_main_table_pairs_hippo_with_pearl_without_pruning():
    rows = [r for i in range(2) for r in (
        row(i, "ar", seconds=4.0, accepted=(1, 1, 1, 1), rejected=(False,) * 4),
        row(i, "pearl", "none", seconds=2.0, impl="fast-processes", total=4.0),
        row(i, "pearl", "hippo", seconds=1.0, impl="fast-processes", total=2.0))]
    numbers = main_table.measure(job_of(), rows)["qwen"]
    versus = numbers["HIPPO vs PEARL"]
    assert versus["n"] == 2
    assert versus["speedup_decode"][0] == pytest.approx(2.0) and versus["speedup_e2e"][0] == pytest.approx(2.0)
    assert "HIPPO vs SD + SpecVLM" not in numbers  # no SD + SpecVLM rows: nothing divided


def versus_pearl(e2e, decode=(1.5, [1.2, 1.8])):
    return {"main_table": Outcome(numbers={"qwen": {"HIPPO vs PEARL": {"n": 12, "speedup_e2e": [e2e[0], e2e[1:]],
                                                                         "speedup_decode": list(decode)}}})}


def test_what_pruning_buys_pearl_is_graded_on_its_paired_interval():
    text, grade = reproduction.claim_pruning_speeds_pearl(versus_pearl([1.2, 1.1, 1.3]), None)
    assert grade == REPRODUCED and "n=12" in text and "[1.10, 1.30]" in text and "decode only 1.50x" in text
    assert reproduction.claim_pruning_speeds_pearl(versus_pearl([1.02, 0.95, 1.1]), None)[1] == NOT_REPRODUCED
    assert reproduction.claim_pruning_speeds_pearl(versus_pearl([0.8, 0.7, 0.9]), None)[1] == NOT_REPRODUCED
    assert reproduction.claim_pruning_speeds_pearl({}, None)[1] == NOT_TESTABLE


# ---- item 4: HIPPO's pruning vs random, paired; item 5: ratio paired against no pruning ---------------------
def test_ratio_sweep_pairs_every_method_against_no_pruning_and_hippo_against_random():
    rows = [r for i in range(2) for r in (
        row(i, "ar", seconds=4.0, accepted=(1, 1, 1, 1), rejected=(False,) * 4),
        row(i, "sd", "none", seconds=2.0, accepted=(3, 1), rejected=(True, False)),
        row(i, "sd", "random", seconds=2.0, accepted=(1, 1, 1, 1), rejected=(True, True, True, False)),
        row(i, "sd", "hippo", seconds=1.0, accepted=(2, 2), rejected=(True, False)))]
    entry = ratio.measure(job_of(), rows)["qwen"]
    hippo, rand = entry["hippo"]["0.9"], entry["random"]["0.9"]
    assert hippo["mat_minus_unpruned"][0] == pytest.approx(0.0)  # 4 tokens in 2 rounds on both sides
    assert rand["mat_minus_unpruned"][0] == pytest.approx(-1.0)  # 4 in 4 rounds against 4 in 2
    assert hippo["speedup_over_unpruned"] == pytest.approx(2.0) and rand["speedup_over_unpruned"] == pytest.approx(1.0)
    assert hippo["speedup_decode"] == pytest.approx(4.0)  # over AR, kept for the table
    assert entry["hippo_minus_random"]["0.9"][0] == pytest.approx(1.0)
    assert entry["hippo_over_random_speed"]["0.9"][0] == pytest.approx(2.0)
    assert "hippo_minus_specvlm" not in entry  # no SpecVLM rows in this sweep
    text = ratio.markdown(ratio.measure(job_of(), rows), job_of())
    assert "| qwen | random | 0.9 | -1.00" in text and "| qwen | hippo | 0.9 | +0.00" in text


def random_numbers(differences: dict, speeds: dict, n=48):
    return {"ratio": Outcome(numbers={"qwen": {"hippo_minus_random": differences, "hippo_over_random_speed": speeds,
                                               "hippo": {r: {"n": n} for r in differences}}})}


def test_hippo_over_random_is_graded_at_every_ratio_with_its_speed_cited():
    numbers = random_numbers({"0.5": [0.01, -0.05, 0.07], "0.9": [0.4, 0.2, 0.6], "0.95": [0.5, 0.3, 0.7]},
                             {"0.9": [1.1, 1.0, 1.2], "0.5": [1.0, 0.9, 1.1]})
    text, grade = reproduction.claim_hippo_over_random(numbers, None)
    assert grade == REPRODUCED and "MAT hippo - random" in text and "n=48" in text
    assert "holds at ratio 0.9, ratio 0.95; not at ratio 0.5" in text
    assert "1.00x [0.90, 1.10] at 0.5, 1.10x [1.00, 1.20] at 0.9" in text  # ratios in order
    numbers = random_numbers({"0.9": [-0.3, -0.5, -0.1]}, {})
    assert reproduction.claim_hippo_over_random(numbers, None)[1] == NOT_REPRODUCED
    assert reproduction.claim_hippo_over_random({}, None)[1] == NOT_TESTABLE


# ---- item 4: SpecVLM's two stages at tiny budgets -----------------------------------------------------------
def test_specvlm_is_attention_top_k_where_stage_one_needs_the_whole_budget():
    grid = VideoGrid(frames=2, height=2, width=2)
    flat = torch.full((8,), 1 / 8, dtype=torch.float64)  # even attention: 40% of it takes 4 of 8 tokens
    budget, degenerate = position_bias.specvlm_degenerates(flat, grid, 0.75, 0.4)
    assert budget == 2 and degenerate  # 2 tokens cannot hold 40%: stage I takes both, stage II nothing
    peaked = torch.tensor([0.6, 0.2, 0.05, 0.05, 0.04, 0.03, 0.02, 0.01], dtype=torch.float64)
    budget, degenerate = position_bias.specvlm_degenerates(peaked, grid, 0.5, 0.4)
    assert budget == 4 and not degenerate  # token 0 holds 60%: stage II spreads 3 more, not the next-highest


def test_the_specvlm_claim_says_where_specvlm_is_top_k():
    numbers = random_numbers({}, {})
    numbers["ratio"].numbers["qwen"]["hippo_minus_specvlm"] = {"0.9": [0.2, 0.1, 0.3]}
    numbers["ratio"].numbers["qwen"]["hippo"] = {"0.9": {"n": 48}}
    numbers["position_bias"] = Outcome(numbers={"real_video": "x", "qwen": {"zoo": {"grid": "4x4x4", "specvlm_top_k": {
        "0.95": {"budget": 4, "tokens": 64, "top_k_videos": 12, "videos": 12, "mass": 0.4},
        "0.5": {"budget": 32, "tokens": 64, "top_k_videos": 0, "videos": 12, "mass": 0.4}}}}})
    text, grade = reproduction.claim_hippo_over_specvlm(numbers, None)
    assert grade == REPRODUCED
    assert "qwen ratio 0.5: budget 32 of 64 visual tokens, top-k on 0/12 videos; qwen ratio 0.95: budget 4 of 64" in text


# ---- item 4: position bias split into three, each judged on its own -----------------------------------------
def test_first_token_and_frame_shares_by_hand():
    grid = VideoGrid(frames=2, height=3, width=3)
    one = torch.full((2, 3, 3), 1.0)
    one[0, 0, 0] = 10.0  # the first token: a sink
    one[1] = 2.0  # the last frame holds twice the first's other tokens
    pooled = position_bias.pooled([position_bias.shares(one.flatten(), grid)] * 3, grid)
    total = 10 + 8 + 18
    assert pooled["first_token_to_uniform"] == pytest.approx(10 / total * 18)
    assert pooled["last_to_first_frame"] == pytest.approx(18 / 18)
    assert pooled["first_token_to_uniform_ci"] == pytest.approx([10 / total * 18] * 2)  # same videos: no spread
    assert position_bias.last_to_first(torch.tensor([0.0, 1.0])) is None


def bias_numbers(border, frames, first):
    def pair(value):
        return value[0], list(value[1:]) if len(value) > 1 else None

    row = {"grid": "4x4x4", "videos": 12}
    for key, value in (("border_to_interior", border), ("last_to_first_frame", frames),
                       ("first_token_to_uniform", first)):
        row[f"attn_{key}"], row[f"attn_{key}_ci"] = pair(value)
        row[f"fused_{key}"] = 1.0
    return {"position_bias": Outcome(numbers={"real_video": "x.mp4", "qwen": {"zoo": row}})}


def test_each_position_bias_is_judged_on_its_own():
    numbers = bias_numbers(border=(0.5, 0.4, 0.6), frames=(1.6, 1.3, 1.9), first=(3.0, 2.5, 3.5))
    assert reproduction.claim_boundary_attention(numbers, None)[1] == NOT_REPRODUCED
    text, grade = reproduction.claim_temporal_bias(numbers, None)
    assert grade == REPRODUCED and "last/first frame share 1.60 [1.30, 1.90], n=12" in text
    text, grade = reproduction.claim_first_token_sink(numbers, None)
    assert grade == REPRODUCED and "first token / uniform share 3.00" in text and "at least 1.2x: yes" in text
    numbers = bias_numbers(border=(1.5, 1.3, 1.7), frames=(1.1,), first=(0.9, 0.8, 1.05))
    assert reproduction.claim_boundary_attention(numbers, None)[1] == REPRODUCED
    assert reproduction.claim_temporal_bias(numbers, None)[1] == NOT_REPRODUCED  # no interval
    assert reproduction.claim_first_token_sink(numbers, None)[1] == NOT_REPRODUCED  # includes 1


# ---- item 4: "up to" as the largest same-run speedup, with its configuration -------------------------------
def test_up_to_reports_the_largest_same_run_speedup_of_every_sweep():
    ar = {"n": 12, "target_decode_forwards": 400}
    hippo = {"n": 12, "target_decode_forwards": 100, "speedup_decode": 2.5, "speedup_decode_ci": [2.3, 2.7]}
    outcomes = {"main_table": Outcome(numbers={"qwen": {"AR": ar, "HIPPO": hippo}}),
                "gamma": Outcome(numbers={"pair": "qwen-large", "gammas": {
                    "3": {"n": 12, "speedup_decode": 3.0, "speedup_decode_ci": [2.8, 3.2]},
                    "auto": {"n": 12, "speedup_decode": 2.9, "speedup_decode_ci": [2.7, 3.1], "measured_gamma": [3, 4]}},
                    "sd_specvlm": {"3": {"n": 12, "speedup_decode": 2.0, "speedup_decode_ci": [1.9, 2.1]}}}),
                "ratio": Outcome(numbers={"qwen": {"none": {"mat": 3.0}, "hippo_minus_random": {"0.9": [0, 0, 0]},
                                                   "random": {"0.5": {"n": 48, "speedup_decode": 2.2,
                                                                      "speedup_decode_ci": [2.1, 2.3]}}}})}
    assert len(reproduction.speedup_candidates(outcomes)) == 5
    text, grade = reproduction.claim_max_speedup(outcomes, None)
    assert "HIPPO on qwen-large" in text and "gamma sweep, gamma 3, ratio 0.9" in text and "of 5 same-run" in text
    assert grade != NOT_TESTABLE  # the main sweep's ceiling 4x reaches 3.51: graded


# ---- item 5: figures' numbers ------------------------------------------------------------------------------
def test_gamma_sweep_measures_serial_sd_per_gamma_and_the_spread_of_auto():
    rows = [r for i in range(3) for r in (
        row(i, "ar", seconds=4.0, accepted=(1, 1, 1, 1), rejected=(False,) * 4),
        row(i, "pearl", "hippo", seconds=2.0, g=2, impl="fast-processes"),
        row(i, "pearl", "hippo", seconds=1.0, g="auto", used_gamma=3 if i < 2 else 4, impl="fast-processes"),
        row(i, "sd", "specvlm", seconds=4.0, g=2))]
    numbers = gamma.measure(job_of(gammas=(2,), overlap_pair="qwen"), rows)
    assert numbers["gammas"]["auto"]["picked_gammas"] == {"3": 2, "4": 1}
    assert numbers["gammas"]["auto"]["measured_gamma"] == [3, 4]
    assert numbers["sd_specvlm"]["2"]["speedup_decode"] == pytest.approx(1.0)
    assert numbers["gammas"]["2"]["speedup_decode"] == pytest.approx(2.0)
    assert gamma.picked_gammas([{"gamma": 10}, {"gamma": 9}]) == {"9": 1, "10": 1}  # numeric order


def test_ablation_has_pearl_without_pruning_and_intervals_on_both_measures():
    rows = [r for i in range(2) for r in (
        row(i, "ar", seconds=4.0, accepted=(1, 1, 1, 1), rejected=(False,) * 4),
        *(row(i, "pearl", "hippo", seconds=1.0, impl="fast-processes", weights=w) for _, w in ablation.VARIANTS),
        row(i, "pearl", "hippo", seconds=2.0),
        row(i, "sd", "hippo", seconds=2.0),
        row(i, "pearl", "none", seconds=4.0, impl="fast-processes", accepted=(1, 1, 1, 1),
            rejected=(True, True, True, True)))]
    entry = ablation.measure(job_of(), rows)["qwen"]
    assert list(entry) == list(ablation.LABELS)
    assert entry["PEARL, no pruning"]["speedup_decode"] == pytest.approx(1.0)
    assert entry["PEARL, no pruning"]["run_length"] == pytest.approx(1.0)
    assert entry["HIPPO"]["speedup_decode"] == pytest.approx(4.0)
    assert all(len(e["run_length_ci"]) == 2 and len(e["speedup_decode_ci"]) == 2 for e in entry.values())
    assert "| qwen | PEARL, no pruning | 1.00 [1.00, 1.00] | 1.0 [1.0, 1.0] | 1.00x" in ablation.markdown({"qwen": entry})


def test_run_length_interval_is_the_paired_bootstrap_of_committed_over_runs():
    rows = [row(0, "sd", accepted=(2, 2), rejected=(True, False)), row(1, "sd", accepted=(4, 4), rejected=(False, False))]
    summary = summarize(rows, resamples=200)
    assert summary.run_length == pytest.approx(12 / 3)
    low, high = summary.run_length_interval
    assert low == pytest.approx(2.0) and high == pytest.approx(8.0)  # all of one video, all of the other


def test_latency_draws_ar_decode_as_such():
    assert latency.segment_name("AR", "verify decode") == latency.AR_DECODE
    assert latency.segment_name("SD", "verify decode") == "verify decode"
    assert latency.segment_name("AR", "target prefill") == "target prefill"


def test_one_sample_cannot_exclude_no_effect():
    from paper.reproduce import verdicts
    from paper.reproduce.verdicts import Effect, Expectation

    one = Effect("HIPPO / PEARL", 1.13, 1.13, 1.13, 1, "ratio 0.9", 1.0)  # a bootstrap over one video: no spread
    verdict = verdicts.grade(one, Expectation(+1))
    assert verdict.grade == NOT_REPRODUCED and "one sample" in verdict.reason
    assert verdicts.grade(Effect("HIPPO / PEARL", 1.13, 1.1, 1.2, 2, "ratio 0.9", 1.0), Expectation(+1)).grade == REPRODUCED
