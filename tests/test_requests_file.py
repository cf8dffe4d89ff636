"""`hippo generate --requests FILE.jsonl` (issue 25): one recorded-output row per line, equal to the
rows of single calls; a bad line reported by its number while the others run; one draft worker serves
every line, its start-up paid once."""

from __future__ import annotations

import json

import pytest

from hippo.cli import main
from hippo.errors import ConfigError
from hippo.request import GenerationRequest, PruneSpec
from hippo.requests_file import read_requests

COMPARED = ("tokens", "text", "video", "frames", "prompt", "decoding", "prune", "sampling", "seed", "gamma",
            "max_new_tokens", "eos_token_ids", "frame_indices")


def base_argv(pair, *extra):
    return ["generate", "--target", pair.target_dir, "--draft", pair.draft_dir, "--frames", "4",
            "--max-new-tokens", "12", "--impl", "fast", "--decoding", "pearl", *extra]


def single(capsys, pair, video, prompt, *extra) -> dict:
    assert main([*base_argv(pair, "--video", video, "--prompt", prompt, "--json"), *extra]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("overlap", ["off", "processes"])
def test_requests_file_rows_equal_single_calls(capsys, tmp_path, pair, synthetic_video, real_video, overlap):
    """Five lines: two plain requests, a bad one (unknown field), one whose video is missing, and a row
    that a single call printed (a row is a request). Exit 2; each good line's row equals its single
    call's (tokens, text, request fields); the bad lines give error rows naming them; with the draft in
    its own process, one worker (one pid) serves every line and only the first reports its start-up."""
    flags = ["--prune", "uniform", "--ratio", "0.5"]
    # single calls in one process (--overlap processes commits the same rows: tests/test_overlap.py)
    a = single(capsys, pair, synthetic_video, "what moves", *flags)
    b = single(capsys, pair, real_video, "what color", *flags, "--max-new-tokens", "8", "--seed", "3")
    flags += ["--overlap", overlap]
    lines = [
        {"video": synthetic_video, "prompt": "what moves"},
        {"video": real_video, "prompt": "what color", "max_new_tokens": 8, "seed": 3},
        {"video": synthetic_video, "prompt": "x", "max_new_token": 8},
        {"video": str(tmp_path / "missing.mp4"), "prompt": "x"},
        a,
    ]
    path = tmp_path / "requests.jsonl"
    path.write_text("\n".join(json.dumps(line) for line in lines[:2]) + "\n\n"
                    + "\n".join(json.dumps(line) for line in lines[2:]) + "\n")
    assert main([*base_argv(pair, "--requests", str(path)), *flags]) == 2
    captured = capsys.readouterr()
    rows = [json.loads(line) for line in captured.out.splitlines()]
    assert [r["line"] for r in rows] == [1, 2, 4, 5, 6]
    for row, want in zip([rows[0], rows[1], rows[4]], [a, b, a], strict=True):
        assert {k: row[k] for k in COMPARED} == {k: want[k] for k in COMPARED}
    assert "max_new_token" in rows[2]["error"] and "missing.mp4" in rows[3]["error"]
    assert "line 4: unknown field(s) max_new_token" in captured.err and "line 5:" in captured.err
    assert "2 of 5 request(s) could not run (line(s) 4, 5)" in captured.err
    good = [rows[0], rows[1], rows[4]]
    if overlap == "processes":
        assert len({r["stats"]["placement"][1]["pid"] for r in good}) == 1
        assert good[0]["stats"]["worker_start_s"] > 0
        assert [r["stats"]["worker_start_s"] for r in good[1:]] == [0.0, 0.0]


def test_a_line_takes_the_command_lines_values_for_what_it_omits(tmp_path):
    defaults = GenerationRequest("v.mp4", "p", 4, "sd", PruneSpec("uniform", 0.5))
    path = tmp_path / "r.jsonl"
    path.write_text('{"prompt": "q", "prune": {"ratio": 0.75}, "sampling": {"temperature": 0.5}}\n'
                    '{"video": "zoo:test/3", "decoding": "ar", "frames": 8}\nnot json\n[1]\n{"gamma": "five"}\n')
    first, second, *bad = read_requests(path, defaults)
    assert first.request.prompt == "q" and first.request.decoding == "sd" and first.request.frames == 4
    assert first.request.prune.method == "uniform" and first.request.prune.ratio == 0.75
    assert first.request.config.sampling.temperature == 0.5
    assert first.request.video == str(tmp_path / "v.mp4")  # relative: next to the requests file
    assert second.request.video == "zoo:test/3" and second.request.decoding == "ar"
    assert [b.line for b in bad] == [3, 4, 5]
    assert "not valid JSON" in bad[0].error and "JSON object" in bad[1].error and "gamma must be" in bad[2].error
    with pytest.raises(ConfigError, match="no such file"):
        read_requests(tmp_path / "none.jsonl", defaults)


def test_a_line_the_command_cannot_run_is_an_error_row(capsys, tmp_path, pair, synthetic_video, monkeypatch):
    """--overlap processes runs PEARL only: a line asking for serial SD is refused by its number (it
    used to reach the worker and fail there); with no line left to run, no model is loaded."""
    import hippo.checkpoint

    def no_model(*args, **kwargs):
        raise AssertionError("a model was loaded for a file with no runnable line")

    monkeypatch.setattr(hippo.checkpoint, "load_adapter", no_model)
    path = tmp_path / "requests.jsonl"
    path.write_text(json.dumps({"video": synthetic_video, "prompt": "x", "decoding": "sd"}) + "\n")
    assert main([*base_argv(pair, "--requests", str(path)), "--overlap", "processes"]) == 2
    captured = capsys.readouterr()
    row = json.loads(captured.out.splitlines()[0])
    assert row["line"] == 1 and 'give the line "decoding": "pearl"' in row["error"]
