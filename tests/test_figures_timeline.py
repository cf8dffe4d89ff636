"""The timeline figures (paper/reproduce/plots/gantt.py, paper/reproduce/plots/latency.py) at the smoke profile: they run,
draw, and their numbers hold together. One draft worker serves both (as in tests/test_overlap.py, the
session's worker is kept instead of one started per figure)."""

from __future__ import annotations

import pytest

from hippo_fast.overlap import processes
from paper.reproduce.plots import gantt, latency
from paper.reproduce.plots.job import PROFILES, FigureJob


@pytest.fixture
def job(tmp_path, monkeypatch):
    close = processes.close_session
    monkeypatch.setattr(processes, "close_session", lambda: None)  # the sweep and the latency keep the worker
    yield FigureJob(tmp_path / "results", tmp_path / "figures", tmp_path / "tables", PROFILES["smoke"], progress=False)
    close()


def test_the_gantt_and_latency_figures_build_at_the_smoke_profile(job):
    outcome = gantt.build(job)
    assert all(path.is_file() and path.suffix == ".png" for path in outcome.figures)
    numbers = outcome.numbers
    assert numbers["same_tokens"]  # greedy, lossless: both schedules commit the same tokens
    serial, hippo = (numbers["decodes"][label] for label in gantt.DECODES)
    for d in (serial, hippo):
        assert 0 < d["target_busy_s"] <= d["decode_s"] and 0 < d["draft_busy_s"] <= d["decode_s"]
        assert d["rounds"] >= 1 and d["generated"] >= 1 and 0 <= d["draft_overlapped_fraction"] <= 1
    assert serial["overlap_s"] == 0.0  # one thread: the draft never runs while the target does

    outcome = latency.build(job)
    assert outcome.figures[0].is_file()
    numbers = outcome.numbers
    assert list(numbers["methods"]) == ["AR", "SD", "SD + SpecVLM", "PEARL", "HIPPO"]
    assert all(numbers["same_tokens_as_ar"].values())
    for label, m in numbers["methods"].items():
        phases = m["phases_ms"]
        assert all(v >= 0 for v in phases.values()) and m["end_to_end_ms"] > 0
        assert phases["video load"] > 0 and phases["target prefill"] > 0 and phases["verify decode"] > 0
        assert (phases["scoring"] > 0) == (label in ("SD + SpecVLM", "HIPPO"))  # only they need the scores
        assert (phases["draft prefill"] > 0) == (label != "AR")
    assert numbers["methods"]["SD"]["draft_hidden_ms"] == 0.0
    assert latency.build(job).numbers == numbers  # cached for this code and profile
