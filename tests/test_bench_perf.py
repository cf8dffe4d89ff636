"""`hippo bench perf` on the tiny random pair: the report's structure, and the equality gate that keeps
a row with different tokens from ever getting a time."""

from __future__ import annotations

import json

import pytest
import torch

from hippo.cli import main
from hippo.tiny import write_tiny_pair
from paper.measure import rows as perf_rows

ROWS = ["hf-generate", "hf-assisted", "ref-ar", "ref-sd", "ref-pearl", "fast-ar/eager", "fast-sd/eager",
        "fast-sd-specvlm/eager", "fast-pearl/eager", "fast-hippo/eager", "fast-pearl-processes/eager",
        "fast-hippo-processes/eager"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return write_tiny_pair(tmp_path_factory.mktemp("bench-tiny"), "qwen2_5_vl")


def bench(tiny, video, tmp_path, *extra):
    target, draft = tiny
    paths = ["--json", str(tmp_path / "b.json"), "--markdown", str(tmp_path / "b.md")]
    return main(["bench", "perf", "--target", str(target), "--draft", str(draft), "--video", video, "--prompt",
                 "what happens?", "--frames", "4", "--max-new-tokens", "6", "--compile", "off", *paths, *extra])


def test_report_structure(tiny, synthetic_video, tmp_path, capsys):
    assert bench(tiny, synthetic_video, tmp_path, "--profile", "fast-ar") == 0
    report = json.loads((tmp_path / "b.json").read_text())
    assert [r["id"] for r in report["rows"]] == ROWS
    assert report["gate"] == {"mode": "greedy", "passed": True, "reference": "HF generate() greedy tokens, every run"}
    for key in ("torch", "transformers", "device", "threads", "git_revision", "affinity"):
        assert key in report["environment"]
    assert report["bandwidth"]["read_gbs"] > 0
    ok = [r for r in report["rows"] if r["status"] == "ok"]
    assert {r["id"] for r in ok} >= set(ROWS) - {"hf-assisted"}  # assisted may be skipped, with its reason
    hf_tokens = [r for r in ok if r["id"] == "hf-generate"][0]["runs"][0]["tokens"]
    for row in ok:
        assert row["warmup_s"] > 0
        (run,) = row["runs"]
        assert run["tokens"] == hf_tokens and run["generated"] == len(hf_tokens)
        assert 0 < run["decode_s"] <= run["total_s"]
        s = row["summary"]
        assert s["tokens_per_s"] > 0 and s["decode_tokens_per_s"] >= s["tokens_per_s"]
        assert s["peak_memory_bytes"] is None or s["peak_memory_bytes"] > 0
    fast_sd = next(r for r in ok if r["id"] == "fast-sd/eager")
    assert fast_sd["summary"]["speedup_fast_ar"] is not None and fast_sd["summary"]["mat"] >= 1
    assert fast_sd["ideal"]["ideal_serial"] > 0 and "ideal_overlap" not in fast_sd["ideal"]
    assert "ideal_overlap" in next(r for r in ok if r["id"] == "fast-hippo/eager")["ideal"]
    assert next(r for r in ok if r["id"] == "fast-sd-specvlm/eager")["runs"][0]["kept_visual_tokens"] < \
        fast_sd["runs"][0]["kept_visual_tokens"]
    costs = report["forward_costs"]["eager"]
    assert costs["target_step"]["median_ms"] > 0 and costs["target_step"]["floor_ms"] > 0
    assert costs["rows"]["fast-sd/eager"]["verify"]["tokens"] == 5 + 1
    assert costs["rows"]["fast-pearl/eager"]["verify"]["tokens"] == 5
    assert "ideal_overlap" in next(r for r in ok if r["id"] == "fast-hippo-processes/eager")["ideal"]
    # the measured timeline of one request, from the overlapped HIPPO row (the figures' Gantt chart)
    timeline = report["timeline"]
    assert timeline["row"] == "fast-hippo-processes/eager" and timeline["rounds"] >= 1
    assert timeline["target_busy_s"] > 0 and timeline["draft_busy_s"] > 0 and timeline["overlap_s"] >= 0
    assert {span["lane"] for span in timeline["spans"]} == {"target", "draft", "verify"}
    assert "## Timeline of one request (fast-hippo-processes/eager" in (tmp_path / "b.md").read_text()
    assert [p["row"] for p in report["profile"]] == ["fast-ar/eager"]
    assert 0.99 < sum(report["profile"][0]["share"].values()) < 1.01
    out = capsys.readouterr().out
    assert "| row | tok/s e2e |" in out and out == (tmp_path / "b.md").read_text()
    # re-rendered from the JSON alone: the same table, with a new note
    again = tmp_path / "again.md"
    assert main(["bench", "perf", "--render", str(tmp_path / "b.json"), "--markdown", str(again), "--note", "N"]) == 0
    assert again.read_text() == out.replace("```\n\n", "```\n\nN\n\n", 1)


def test_gate_fails_when_a_row_differs(tiny, synthetic_video, tmp_path, capsys, monkeypatch):
    """A row that drops its last token: exit 1, the row / input / divergence named, no timing table."""
    original = perf_rows.run_row

    def broken(row, *args, **kwargs):
        run = original(row, *args, **kwargs)
        if row.id == "fast-sd/eager":
            run.tokens = run.tokens[:-1]
        return run

    monkeypatch.setattr(perf_rows, "run_row", broken)
    assert bench(tiny, synthetic_video, tmp_path, "--rows", "hf-generate,fast-ar,fast-sd", "--profile", "none") == 1
    captured = capsys.readouterr()
    assert "OUTPUT MISMATCH" in captured.err and "row fast-sd/eager" in captured.err
    assert "lengths differ" in captured.err and "fast-ar/eager" not in captured.err.split("MISMATCH", 1)[1]
    assert "tok/s" not in captured.out and not (tmp_path / "b.json").exists() and not (tmp_path / "b.md").exists()


def test_gate_checks_every_timed_run(tiny, synthetic_video, tmp_path, capsys, monkeypatch):
    """Right in the warm-up, wrong in a timed run: still caught before anything is reported."""
    original, calls = perf_rows.run_row, []

    def broken_later(row, *args, **kwargs):
        run = original(row, *args, **kwargs)
        if row.id == "fast-hippo/eager":
            calls.append(1)
            if len(calls) == 3:  # warm-up, first timed pass, then this one
                run.tokens = run.tokens[:2] + [run.tokens[2] + 1] + run.tokens[3:]
        return run

    monkeypatch.setattr(perf_rows, "run_row", broken_later)
    assert bench(tiny, synthetic_video, tmp_path, "--rows", "hf-generate,fast-hippo", "--repeats", "2",
                 "--profile", "none") == 1
    captured = capsys.readouterr()
    assert "row fast-hippo/eager" in captured.err and "first divergence at generated token 2" in captured.err
    assert "tok/s" not in captured.out and not (tmp_path / "b.json").exists()


def test_a_row_that_fails_in_a_timed_run_is_reported_without_times(tiny, synthetic_video, tmp_path, monkeypatch):
    original, calls = perf_rows.run_row, []

    def failing_later(row, *args, **kwargs):
        if row.id == "fast-pearl/eager":
            calls.append(1)
            if len(calls) == 2:
                raise RuntimeError("planted failure\nsecond line")
        return original(row, *args, **kwargs)

    monkeypatch.setattr(perf_rows, "run_row", failing_later)
    assert bench(tiny, synthetic_video, tmp_path, "--rows", "fast-ar,fast-pearl", "--profile", "none") == 0
    rows = {r["id"]: r for r in json.loads((tmp_path / "b.json").read_text())["rows"]}
    assert rows["fast-ar/eager"]["status"] == "ok"
    failed = rows["fast-pearl/eager"]
    assert failed["status"] == "skipped" and "runs" not in failed
    assert "failed in a timed run on" in failed["skip_reason"] and "RuntimeError: planted failure" in failed["skip_reason"]
    assert "| fast-pearl/eager | not measured: failed in a timed run" in (tmp_path / "b.md").read_text()


def test_gate_without_the_hf_row_still_compares_to_hf_generate(tiny, synthetic_video, tmp_path, capsys, monkeypatch):
    original = perf_rows.run_row

    def broken(row, *args, **kwargs):
        run = original(row, *args, **kwargs)
        if row.id == "fast-ar/eager":
            run.tokens = [run.tokens[0] + 1] + run.tokens[1:]
        return run

    monkeypatch.setattr(perf_rows, "run_row", broken)
    assert bench(tiny, synthetic_video, tmp_path, "--rows", "fast-ar", "--profile", "none") == 1
    assert "first divergence at generated token 0" in capsys.readouterr().err


def test_sampling_gate_compares_fast_with_ref(tiny, synthetic_video, tmp_path):
    assert bench(tiny, synthetic_video, tmp_path, "--rows", "fast-sd,fast-hippo,fast-hippo-processes", "--temperature", "1",
                 "--seed", "3", "--profile", "none") == 0
    report = json.loads((tmp_path / "b.json").read_text())
    assert report["gate"]["mode"] == "sampling"


@pytest.mark.parametrize("extra, message", [
    (["--rows", "fast-nope"], "unknown row(s) fast-nope"),
    (["--gamma", "0"], "--gamma must be >= 1"),
    (["--ratio", "1.5"], "pruning ratio"),
    (["--overlap", "streams"], "--overlap streams needs --device cuda"),
] + ([] if torch.cuda.is_available() else [(["--device", "cuda"], "no usable CUDA device")]))
def test_errors_are_one_line(tiny, synthetic_video, tmp_path, capsys, extra, message):
    assert bench(tiny, synthetic_video, tmp_path, *extra) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_video_needs_a_prompt(tiny, synthetic_video, capsys):
    target, draft = tiny
    assert main(["bench", "perf", "--target", str(target), "--draft", str(draft), "--video", synthetic_video]) == 2
    assert "--video needs --prompt" in capsys.readouterr().err


def test_zoo_inputs(tmp_path, capsys):
    """The default inputs: zoo test-split videos, the detailed-caption prompt when the dataset has one."""
    from hippo.zoo import dataset

    assert main(["bench", "perf", "-n", "1", "--rows", "fast-ar", "--compile", "off", "--max-new-tokens", "4",
                 "--profile", "none", "--json", str(tmp_path / "z.json"), "--markdown", str(tmp_path / "z.md")]) == 0
    report = json.loads((tmp_path / "z.json").read_text())
    assert report["config"]["pair"] == "qwen" and report["inputs"][0]["name"] == "test/0"
    expected = getattr(dataset, "DETAIL_PROMPT", None) or dataset.example("test", 0).question
    assert report["inputs"][0]["prompt"] == expected


def test_default_placement_is_the_one_hippo_generate_uses(tiny, synthetic_video, tmp_path):
    """No --threads, no environment variable: the one-process rows run with one torch thread per core of
    this process (whatever it held before), the two-process rows with each process's threads within its
    cores; the placement is recorded once in the report's environment and said in its Markdown."""
    from hippo import placement

    torch.set_num_threads(len(placement.allowed_cores()) + 3)  # what a default torch may hold: more than the cores
    try:
        assert bench(tiny, synthetic_video, tmp_path, "--rows", "fast-pearl,fast-pearl-processes", "--profile",
                     "none") == 0
        report = json.loads((tmp_path / "b.json").read_text())
        record = report["environment"]["placement"]
        one = record["one_process"]
        assert one["threads"] == len(one["cores"]) == len(placement.allowed_cores())
        assert [e["role"] for e in record["two_processes"]] == ["target", "draft"]
        for entry in record["two_processes"]:
            assert 1 <= entry["threads"] <= len(entry["cores"])
        assert "one-process rows: benchmark on core(s)" in (tmp_path / "b.md").read_text()
    finally:
        torch.set_num_threads(1)
