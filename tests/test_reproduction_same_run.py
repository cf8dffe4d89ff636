"""Same-run comparisons and the figures' gates: no speedup or paired difference divides rows of two
sweeps (paper/reproduce/plots/same_run.py), every row names its sweep (paper/sweep/runner.py), greedy rows that differ
from AR's are never drawn, and the systems figure draws only the current code's results."""

from __future__ import annotations

import json

import pytest

from paper.reproduce.plots import latency, rows, same_run, systems
from paper.reproduce.plots.same_run import CrossSweepError
from paper.sweep.grid import Grid, load_samples
from paper.sweep.runner import planned_configs, row_order, sweep_id


def row(sample, decoding="sd", tokens=(1, 2, 3), seconds=1.0, sweep="a1", run="r1", pair="qwen"):
    return {"key": f"{pair}|{sample}|{decoding}|{sweep}", "sample": {"sample_id": sample, "index": int(sample[-1])},
            "config": {"pair": pair, "decoding": decoding, "temperature": 0.0, "max_new_tokens": 8, "frames": 4,
                       "dtype": "float32", "prune": "none", "impl": "fast"},
            "tokens": list(tokens), "stats": {"decode_s": seconds, "total_s": seconds,
                                              "accepted_per_round": [2, 1] if decoding != "ar" else [1, 1, 1]},
            **({"sweep": {"id": sweep, "file": f"{sweep}.jsonl", "run": run}} if sweep else {})}


def test_a_speedup_over_rows_of_two_sweeps_is_refused_naming_both():
    ar = [row("test/0", "ar", seconds=2.0, sweep="main0"), row("test/1", "ar", seconds=2.0, sweep="main0")]
    method = [row("test/0", seconds=1.0, sweep="ratio1"), row("test/1", seconds=1.0, sweep="ratio1")]
    with pytest.raises(CrossSweepError) as caught:
        rows.speedup(ar, method, resamples=10)
    message = str(caught.value)
    assert "sweep main0" in message and "sweep ratio1" in message and "one sweep" in message
    with pytest.raises(CrossSweepError, match="two different sweeps"):
        rows.mat_difference(ar, method, resamples=10)
    same = [row("test/0", seconds=1.0, sweep="main0"), row("test/1", seconds=1.0, sweep="main0")]
    assert rows.speedup(ar, same, resamples=10)[0] == 2.0  # the same sweep: divided


def test_rows_that_name_no_sweep_are_unpaired():
    with pytest.raises(CrossSweepError, match="names no sweep.*rerun its sweep"):
        rows.speedup([row("test/0", "ar", sweep=None)], [row("test/0", sweep=None)], resamples=10)
    with pytest.raises(CrossSweepError, match="no rows"):
        same_run.check_same_sweep([], [])


def test_resumed_runs_of_one_grid_share_the_sweep():
    assert same_run.check_same_sweep([row("test/0", run="r1")], [row("test/0", run="r2")]) == "a1"


def test_sweep_id_names_the_file_and_the_grid():
    keys = ["qwen|test/0|ar", "qwen|test/0|sd"]
    assert sweep_id("results/main.jsonl", keys) == sweep_id("elsewhere/main.jsonl", keys)  # shards on other machines
    assert sweep_id("results/main.jsonl", keys) != sweep_id("results/ratio.jsonl", keys)
    assert sweep_id("results/main.jsonl", keys) != sweep_id("results/main.jsonl", keys[:1])


def test_grids_of_one_sweep_interleave_sample_by_sample_and_must_read_the_same_samples():
    grid = Grid.from_mapping({"pairs": "qwen", "decodings": "pearl", "prune": "hippo", "impls": "fast-processes",
                              "n": 2})
    also = (Grid.from_mapping({"pairs": "qwen", "decodings": "ar", "impls": "fast", "n": 2}),)
    configs = planned_configs(grid, also, [])
    assert [(c.decoding, c.impl) for c in configs] == [("pearl", "fast-processes"), ("ar", "fast")]
    order = [(s.sample_id, c.decoding) for c, s, _ in row_order(grid, configs, load_samples(grid))]
    assert [d for _, d in order] == ["pearl", "ar", "pearl", "ar"]  # per sample, every configuration
    with pytest.raises(Exception, match="same samples.*n is 2 in the first and 3"):
        planned_configs(grid, (Grid.from_mapping({"pairs": "qwen", "decodings": "ar", "n": 3}),), [])


def test_the_lossless_gate_refuses_rows_that_differ_from_their_sweeps_ar():
    ar = row("test/0", "ar")
    assert rows.lossless_gate([ar, row("test/0")]) == [ar, row("test/0")]
    with pytest.raises(rows.NotLosslessError, match="differ from AR's.*from token 2"):
        rows.lossless_gate([ar, row("test/0", tokens=(1, 2, 4))])
    with pytest.raises(rows.NotLosslessError, match="no greedy AR row.*add decoding ar"):
        rows.lossless_gate([ar, row("test/1")])
    with pytest.raises(rows.NotLosslessError, match="no greedy AR row"):  # AR of another sweep does not count
        rows.lossless_gate([ar, row("test/0", sweep="other")])


def test_latency_refuses_to_draw_a_method_whose_tokens_differ():
    latency.check_lossless({"same_tokens_as_ar": {"AR": True, "HIPPO": True}})
    with pytest.raises(ValueError, match="HIPPO differ from AR's"):
        latency.check_lossless({"same_tokens_as_ar": {"AR": True, "HIPPO": False}})
    with pytest.raises(ValueError, match="records no token check"):
        latency.check_lossless({})


def test_the_systems_figure_reads_only_results_of_this_code(tmp_path):
    from verification.report import source_hash

    result = {"config": {"preset": "p", "acceptance": "a"}, "cases": []}
    (tmp_path / "current.json").write_text(json.dumps({**result, "source_sha256": source_hash()}))
    (tmp_path / "old.json").write_text(json.dumps({**result, "source_sha256": "e" * 64}))
    (tmp_path / "unhashed.json").write_text(json.dumps(result))
    found, skipped = systems.reports((tmp_path,))
    assert [p.name for p, _ in found] == ["current.json"]
    assert len(skipped) == 2 and any("other code (source eeeeeeeeeeee" in s for s in skipped)
    assert any("did not record its source hash" in s for s in skipped)
