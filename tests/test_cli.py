"""`hippo generate` end to end, in process: JSON fields, AR equivalence, and one-line errors."""

from __future__ import annotations

import json

import pytest

from hippo.cli import main


def generate_json(capsys, pair, video, *extra):
    argv = ["generate", "--target", pair.target_dir, "--draft", pair.draft_dir, "--video", video,
            "--prompt", "what moves", "--frames", "4", "--max-new-tokens", "20", "--json", *extra]
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out)


def test_generate_json_has_the_documented_fields(capsys, pair, real_video):
    out = generate_json(capsys, pair, real_video, "--decoding", "pearl", "--prune", "uniform", "--ratio", "0.5")
    assert set(out) >= {"tokens", "text", "stats"}
    assert set(out["stats"]) >= {"mat", "target_forwards", "draft_forwards", "accepted_per_round", "decode_s",
                                 "total_s", "visual_tokens", "kept_visual_tokens", "mean_run_length"}
    assert len(out["tokens"]) <= 20
    assert out["stats"]["kept_visual_tokens"] < out["stats"]["visual_tokens"]


@pytest.mark.parametrize("decoding", ["sd", "pearl"])
def test_cli_speculative_equals_cli_ar(capsys, pair, synthetic_video, decoding):
    ar = generate_json(capsys, pair, synthetic_video, "--decoding", "ar")
    spec = generate_json(capsys, pair, synthetic_video, "--decoding", decoding, "--gamma", "3")
    assert spec["tokens"] == ar["tokens"] and spec["text"] == ar["text"]
    assert ar["stats"]["mat"] == 1.0 and ar["stats"]["draft_forwards"] == 0


def test_cli_gamma_auto_records_the_measured_gamma(capsys, pair, synthetic_video):
    out = generate_json(capsys, pair, synthetic_video, "--decoding", "sd", "--gamma", "auto")
    assert 1 <= out["stats"]["gamma"] <= 16


@pytest.mark.parametrize(
    "args, message",
    [
        (["--ratio", "1.5", "--prune", "uniform"], "pruning ratio must be in [0, 1)"),
        (["--temperature", "-1"], "temperature must be >= 0"),
        (["--compile"], "--compile applies to --impl fast only"),
        (["--device", "cuda:7"], "--device cuda:7"),
        (["--device", "nonsense"], "is not a device name"),
        (["--frames", "100000"], "lower --frames"),
        (["--video", "/no/such/video.mp4"], "no such file"),
        (["--target", "/no/such/dir"], "does not exist"),
    ],
)
def test_cli_errors_are_one_line(capsys, pair, real_video, args, message):
    argv = ["generate", "--target", pair.target_dir, "--draft", pair.draft_dir, "--video", real_video,
            "--prompt", "q", "--frames", "4", *args]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("hippo: error: ") and message in err
    assert "Traceback" not in err


def test_missing_target_is_named_before_the_draft(capsys, real_video):
    argv = ["generate", "--target", "/no/such/folder", "--video", real_video, "--prompt", "q"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "target checkpoint folder /no/such/folder does not exist" in err and "draft" not in err.split(":", 2)[2][:40]


@pytest.mark.parametrize("decoding", ["ar", "sd", "pearl"])
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_cli_fast_equals_cli_ref(capsys, pair, synthetic_video, decoding, dtype):
    argv = ["generate", "--target", pair.target_dir, "--draft", pair.draft_dir, "--video", synthetic_video,
            "--prompt", "what moves", "--frames", "4", "--max-new-tokens", "24", "--decoding", decoding,
            "--prune", "hippo", "--ratio", "0.5", "--dtype", dtype, "--json"]
    outputs = []
    for impl in ("ref", "fast"):
        assert main([*argv, "--impl", impl]) == 0
        outputs.append(json.loads(capsys.readouterr().out))
    assert outputs[0]["tokens"] == outputs[1]["tokens"]
    assert outputs[0]["stats"]["accepted_per_round"] == outputs[1]["stats"]["accepted_per_round"]


def test_cli_sd_without_draft(capsys, pair, real_video):
    argv = ["generate", "--target", pair.target_dir, "--video", real_video, "--prompt", "q", "--decoding", "sd"]
    assert main(argv) == 2
    assert "needs a draft model" in capsys.readouterr().err
