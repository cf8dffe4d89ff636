"""vLLM outputs as recorded-output rows (verification/engines/vllm_rows.py): the conversion the vLLM audit
(`nox -s vllm`) relies on, checked without vLLM: the rows parse as text-only rows, keep what produced them
apart, and a row whose engine read other prompt ids is refused."""

import json

import pytest

from hippo.errors import ConfigError
from verification.checks import CheckResult
from verification.engines import vllm_rows
from verification.recorded import check_prompt_ids, parse_row
from verification.report import recorded_by_implementation

ENGINE = vllm_rows.engine_facts("0.32.0", "ngram", {"method": "ngram", "num_speculative_tokens": 4}, None,
                                {"threads": 1})


def test_sampling_kwargs_leave_off_what_is_off():
    greedy = vllm_rows.vllm_sampling_kwargs({"temperature": 0.0}, None, 48, [2])
    assert greedy == {"temperature": 0.0, "max_tokens": 48, "seed": None, "stop_token_ids": [2], "detokenize": False}
    nucleus = vllm_rows.vllm_sampling_kwargs({"temperature": 1.0, "top_k": 50, "top_p": 0.9}, 7, 3, [2])
    assert (nucleus["top_k"], nucleus["top_p"], nucleus["seed"]) == (50, 0.9, 7)
    for bad in ({"temperature": -1}, {"temperature": 1.0, "top_k": 0}, {"temperature": 1.0, "top_p": 1.5},
                {"temperature": 1.0, "min_p": 0.1}):
        with pytest.raises(ValueError):
            vllm_rows.vllm_sampling_kwargs(bad, 1, 3, [2])


def test_a_vllm_row_is_a_text_row_named_by_its_engine(tmp_path):
    row = vllm_rows.recorded_row("hi", [1, 5, 9], [11, 12, 2], {"temperature": 1.0, "top_p": 0.9}, 1003, 3, [2],
                                 ENGINE, "/models/target")
    parsed = parse_row(json.loads(json.dumps(row)), 4, tmp_path)
    assert parsed.text_only and parsed.video is None and parsed.frames is None
    assert parsed.tokens == (11, 12, 2) and parsed.prompt_token_ids == (1, 5, 9) and parsed.seed == 1003
    assert parsed.sampling.top_p == 0.9 and parsed.sampling.top_k is None and parsed.eos_token_ids == (2,)
    assert parsed.implementation == "vllm 0.32.0 ngram"
    planted = vllm_rows.engine_facts("0.32.0", "ngram", None, "residual-is-target", {}, fix="expand-copy-back")
    assert vllm_rows.implementation_label(planted) == "vllm 0.32.0 ngram fixed:expand-copy-back planted:residual-is-target"
    with pytest.raises(ValueError, match="no tokens"):
        vllm_rows.recorded_row("hi", [1], [], {"temperature": 0.0}, None, 3, [2], ENGINE, "/t")
    with pytest.raises(ValueError, match="unknown method"):
        vllm_rows.engine_facts("0.32.0", "eagle", None, None, {})


def test_prompt_ids_read_by_the_engine_must_be_the_targets_rendering(tmp_path):
    row = parse_row({"prompt": "hi", "prompt_token_ids": [1, 5, 9], "tokens": [3]}, 1, tmp_path)
    check_prompt_ids(row, [1, 5, 9])
    with pytest.raises(ConfigError, match="from position 1"):
        check_prompt_ids(row, [1, 6, 9])
    with pytest.raises(ConfigError, match="without a video"):
        parse_row({"prompt": "hi", "frames": 8, "tokens": [3]}, 1, tmp_path)


def test_report_sections_keep_implementations_apart():
    results = [
        CheckResult("recorded_greedy", "g1", "pass", {"implementation": "vllm 0.32.0 ar"}, {"first_mismatch": None}),
        CheckResult("recorded_sampled", "s1", "pass", {"implementation": "vllm 0.32.0 ar", "rows": 100},
                    {"tv": 0.05, "min_detectable_tv": 0.2}, p_value=0.4),
        CheckResult("recorded_sampled", "s2", "fail", {"implementation": "vllm 0.32.0 ngram", "rows": 100},
                    {"tv": 0.5, "min_detectable_tv": 0.25, "message": "law differs"}, p_value=1e-9),
    ]
    table = recorded_by_implementation(results)
    assert table["vllm 0.32.0 ar"]["verdict"] == "pass" and table["vllm 0.32.0 ar"]["greedy_identical"] == 1
    assert table["vllm 0.32.0 ngram"]["verdict"] == "fail" and table["vllm 0.32.0 ngram"]["sampled_rows"] == 100
    assert table["vllm 0.32.0 ngram"]["min_detectable_tv"] == 0.25


def _sampled(prompt, seed, tokens, name):
    return {"prompt": prompt, "sampling": {"temperature": 1.0}, "seed": seed, "tokens": tokens, "implementation": name}


def test_a_planted_bug_that_moves_the_law_less_than_the_audit_can_see_is_reported_below_detectability():
    from verification.engines.vllm_report import coupled_difference, negative_controls

    twin, planted = "vllm 0.32.0 draft_model fixed:f", "vllm 0.32.0 draft_model fixed:f planted:b"
    base = [_sampled("p", s, [1, 2, 3, 9], twin) for s in range(10)]
    # seed 0 changes in the first 3 tokens, seed 1 only after them (outside the audited prefix)
    bug = [_sampled("p", s, [1, 5, 3] if s == 0 else [1, 2, 3, 7] if s == 1 else [1, 2, 3, 9], planted)
           for s in range(10)]
    coupling = coupled_difference(bug, base, tokens=3)
    assert coupling["pairs"] == 10 and coupling["changed"] == 1 and coupling["max_bound"] == pytest.approx(0.1)
    table = {twin: {"verdict": "pass", "min_detectable_tv": 0.2},
             planted: {"verdict": "pass", "min_detectable_tv": 0.2}}
    (control,) = negative_controls(table, {twin: base, planted: bug}, tokens=3)
    assert control["outcome"] == "below detectability" and not control["caught"]
    table[planted]["min_detectable_tv"] = 0.05  # the audit had the power and still passed it: not caught
    assert negative_controls(table, {twin: base, planted: bug}, tokens=3)[0]["outcome"] == "NOT CAUGHT"
    table[planted]["verdict"] = "fail"
    assert negative_controls(table, {twin: base, planted: bug}, tokens=3)[0]["outcome"] == "caught"


def test_the_report_says_what_vllm_refused_on_the_video_pair():
    from verification.engines.vllm_report import markdown

    report = {
        "vllm": "0.32.0", "target": "/c/smollm2", "draft": "/c/first6", "threads": 1, "prompts": 3,
        "greedy_max_tokens": 48, "sampled": {"rows_per_pool": 100, "settings": [{"temperature": 1.0}], "max_tokens": 3},
        "audit": {"verdict": "pass", "per_implementation": {}}, "refused": [],
        "negative_controls": [{"planted": "x planted:b", "verdict": "pass", "twin": "x", "twin_verdict": "pass",
                               "caught": False, "outcome": "below detectability", "min_detectable_tv": 0.197,
                               "coupling": {"pairs": 400, "changed": 13, "max_bound": 0.07, "pools": {}}}],
        "video_pair": {"version": "0.32.0", "class": "llava_onevision", "runs": False, "stage": "load",
                       "error": "OSError: no image processor", "frames": 16,
                       "native_implementation": "ModuleNotFoundError: No module named 'torchvision'"},
        "speed": [], "runs": [], "load_average_1min": {"max": 0.5, "busy": False},
    }
    text = markdown(report)
    assert "refused at load" in text and "torchvision" in text and "text target only" in text
    assert "**below detectability**" in text and "13 of 400" in text and "TV <= 0.070" in text
