"""Pruning on the command line: `hippo generate` pruning flags and their error messages, and the
`hippo inspect` diagnostics (PNG + JSON)."""

from __future__ import annotations

import json

import pytest
import torch

from hippo.adapters.base import VideoGrid
from hippo.cli import main
from hippo_ref.pruning.diagnostics import border_share, position_bias

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def run_cli(capsys, argv):
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def generate_argv(pair, video, *extra):
    return ["generate", "--target", pair.target_dir, "--draft", pair.draft_dir, "--video", video,
            "--prompt", "what moves", "--frames", "4", "--max-new-tokens", "16", "--json", *extra]


def test_generate_with_every_pruning_flag_equals_ar(capsys, pair, real_video):
    code, out, _ = run_cli(capsys, generate_argv(pair, real_video, "--decoding", "ar"))
    ar = json.loads(out)
    flags = ["--decoding", "sd", "--gamma", "3", "--prune", "hippo", "--ratio", "0.75", "--weights", "2,0,1",
             "--budget", "global", "--attn-layers", "-1", "--text-tokens", "3", "--first-frame-temp", "0.5",
             "--spatial-window", "5", "--positions", "compact"]
    code, out, _ = run_cli(capsys, generate_argv(pair, real_video, *flags))
    assert code == 0
    spec = json.loads(out)
    assert spec["tokens"] == ar["tokens"]
    assert spec["stats"]["kept_visual_tokens"] < spec["stats"]["visual_tokens"]
    for extra in (["--prune", "specvlm", "--specvlm-mass", "0.6"], ["--prune", "random", "--prune-seed", "3"],
                  ["--prune", "attn", "--budget", "per-frame"]):
        code, out, _ = run_cli(capsys, generate_argv(pair, real_video, "--decoding", "pearl", "--ratio", "0.5", *extra))
        assert code == 0 and json.loads(out)["tokens"] == ar["tokens"], extra


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--prune", "hippo", "--ratio", "1"], "pruning ratio must be in [0, 1)"),
        (["--prune", "hippo", "--ratio", "-0.5"], "pruning ratio must be in [0, 1)"),
        (["--prune", "fastv"], "unknown pruning method 'fastv'; choose one of attn, hippo, none"),
        (["--prune", "hippo", "--weights=-1,1,1"], "pruning weights must be finite and >= 0"),
        (["--prune", "hippo", "--weights", "0,0,0"], "are all zero: at least one score must count"),
        (["--prune", "hippo", "--weights", "1,x,1"], "--weights takes comma-separated numbers like 1,1,1"),
        (["--prune", "hippo", "--weights", "1,1"], "pruning weights are three numbers"),
        (["--prune", "hippo", "--budget", "weekly"], "unknown budget 'weekly'; choose per-frame or global"),
        (["--prune", "hippo", "--ratio", "0.5", "--attn-layers", "0,9"], "--attn-layers 9 out of range"),
        (["--prune", "specvlm", "--specvlm-mass", "1.5"], "specvlm mass must be in (0, 1]"),
    ],
)
def test_generate_pruning_errors_are_one_line(capsys, pair, real_video, flags, message):
    code, _, err = run_cli(capsys, generate_argv(pair, real_video, *flags))
    assert code == 2
    assert err.startswith("hippo: error: ") and message in err and "Traceback" not in err


# ---- hippo inspect -------------------------------------------------------------------------------------------
def inspect_argv(command, pair, video, out, *extra):
    argv = ["inspect", command, "--target", pair.target_dir, "--video", video, "--prompt", "what moves",
            "--frames", "4", "--out", str(out), *extra]
    if command == "mat":
        argv[4:4] = ["--draft", pair.draft_dir]
    return argv


def assert_png(path):
    assert path.read_bytes()[:8] == PNG_MAGIC, path


def test_inspect_position_bias(capsys, pair, real_video, tmp_path):
    code, _, err = run_cli(capsys, inspect_argv("position-bias", pair, real_video, tmp_path, "--ratio", "0.75"))
    assert code == 0, err
    profile = json.loads((tmp_path / "position_bias.json").read_text())
    g = profile["grid"]
    assert len(profile["by_frame"]) == g["frames"] and len(profile["by_row"]) == g["height"]
    assert abs(sum(profile["by_frame"]) - 1) < 1e-5 and abs(profile["border_mass"] + profile["interior_mass"] - 1) < 1e-5
    assert set(profile["kept_border_share"]) == {"random", "uniform", "attn", "specvlm", "hippo"}
    assert_png(tmp_path / "position_bias.png")


def test_inspect_kept_writes_one_png_per_method(capsys, pair, real_video, tmp_path):
    code, _, err = run_cli(capsys, inspect_argv("kept", pair, real_video, tmp_path, "--ratio", "0.5",
                                                "--methods", "uniform,attn,hippo"))
    assert code == 0, err
    report = json.loads((tmp_path / "kept.json").read_text())
    assert set(report["methods"]) == {"uniform", "attn", "hippo"}
    for method, entry in report["methods"].items():
        assert_png(tmp_path / f"kept_{method}.png")
        assert entry["kept"] == sorted(set(entry["kept"]))
    assert report["methods"]["hippo"]["per_frame"] == [len(report["methods"]["hippo"]["kept"]) // report["grid"]["frames"]] \
        * report["grid"]["frames"]


def test_inspect_mat_sweep(capsys, pair, real_video, tmp_path):
    code, out, err = run_cli(capsys, inspect_argv("mat", pair, real_video, tmp_path, "--methods", "none,attn,hippo",
                                                  "--ratios", "0.5,0.9", "--max-new-tokens", "8", "--gamma", "3"))
    assert code == 0, err
    rows = json.loads((tmp_path / "mat.json").read_text())["rows"]
    assert [(r["method"], r["ratio"]) for r in rows] == [("none", 0.0), ("attn", 0.5), ("attn", 0.9),
                                                         ("hippo", 0.5), ("hippo", 0.9)]
    assert all(r["equals_ar"] and r["mat"] >= 1.0 for r in rows)
    assert_png(tmp_path / "mat.png")


@pytest.mark.parametrize(
    "command, extra, message",
    [
        ("kept", ["--methods", "hippo,magic"], "--methods 'hippo,magic': unknown magic; choose from"),
        ("mat", ["--ratios", "0.5,1.2"], "every pruning ratio must be in [0, 1)"),
        ("kept", ["--weights", "0,0,0"], "are all zero"),
        ("position-bias", ["--ratio", "2"], "pruning ratio must be in [0, 1)"),
    ],
)
def test_inspect_errors(capsys, pair, real_video, tmp_path, command, extra, message):
    code, _, err = run_cli(capsys, inspect_argv(command, pair, real_video, tmp_path, *extra))
    assert code == 2 and message in err and "Traceback" not in err


def test_position_bias_profile_by_hand():
    grid = VideoGrid(frames=2, height=3, width=3)
    s = torch.zeros(2, 3, 3)
    s[0, 0, 0], s[1, 1, 1], s[1, 2, 2] = 0.5, 0.2, 0.3  # border 0.8 over 16 tokens, interior 0.2 over 2
    profile = position_bias(s.flatten(), grid)
    assert profile["by_frame"] == pytest.approx([0.5, 0.5])
    assert profile["by_row"] == pytest.approx([0.5, 0.2, 0.3])
    assert profile["by_col"] == pytest.approx([0.5, 0.2, 0.3])
    assert profile["border_mass"] == pytest.approx(0.8)
    assert profile["border_to_interior"] == pytest.approx((0.8 / 16) / (0.2 / 2))
    assert border_share(torch.tensor([0, 4, 13]), grid) == pytest.approx(1 / 3)
    assert position_bias(torch.full((4,), 0.25), VideoGrid(1, 2, 2))["border_to_interior"] is None
