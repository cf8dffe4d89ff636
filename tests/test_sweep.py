"""`hippo bench sweep` (paper/sweep/runner.py): the plan, the rows, resume after SIGKILL and a cut-short line,
shards under torchrun merged equal to one run, the refusal of rows of other code, bad input."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import types
from dataclasses import replace
from pathlib import Path

import pytest

from hippo.cli import build_parser, main
from hippo.errors import ConfigError
from hippo.tiny import write_tiny_pair
from hippo.video import sample_frame_indices
from paper.sweep import runner as sweep
from paper.sweep.grid import Grid, load_samples, plan
from verification.report import source_hash

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    target, draft = write_tiny_pair(tmp_path_factory.mktemp("sweep-pair"), "qwen2_5_vl")
    return str(target), str(draft)


def argv_of(folders, out, *extra):
    return ["bench", "sweep", "--target", folders[0], "--draft", folders[1], "--max-new-tokens", "8",
            "--no-progress", "--out", str(out), *extra]


def run_cli(argv) -> None:
    """The command in this process (what `hippo ...` runs after parsing)."""
    assert sweep.run(build_parser().parse_args(argv)) == 0


def expected_keys(argv) -> list[str]:
    grid = sweep.grid_from_args(build_parser().parse_args(argv))
    return [key for _, _, key in sweep.row_order(grid, plan(grid), load_samples(grid))]


# ---- the plan ---------------------------------------------------------------------------------------------
def test_plan_counts_configurations_and_reports_dropped_ones(tmp_path):
    values = {"pairs": "qwen,llava", "decodings": "ar,sd,pearl", "prune": "none,specvlm,hippo", "ratios": "0.5,0.9",
              "gammas": "5", "temperatures": "0", "impls": "fast,fast-processes"}
    notes: list[str] = []
    configs = plan(Grid.from_mapping(values), notes)
    # per pair: ar 1 (fast; ar ignores prune / ratio / gamma), sd 1 + 2 x 2 (fast), pearl 5 x 2 implementations
    assert len(configs) == 2 * (1 + 5 + 10)
    assert len(set(configs)) == len(configs)
    assert all(c.ratio == 0 for c in configs if c.prune == "none")
    assert {c.impl for c in configs if c.decoding != "pearl"} == {"fast"}
    assert len(notes) == 1 and "fast-processes" in notes[0] and "ar, sd" in notes[0]
    # the committed-plan form: a JSON object with the same keys (lists as lists), flags on top
    (tmp_path / "plan.json").write_text(json.dumps({**values, "ratios": [0.5, 0.9], "max-new-tokens": 16}))
    from_file = plan(Grid.from_json(tmp_path / "plan.json", {"gammas": "3,4"}))
    assert len(from_file) == 2 * (1 + 5 * 2 + 10 * 2)
    assert {c.max_new_tokens for c in from_file} == {16} and {c.gamma for c in from_file} == {None, 3, 4}


# ---- the rows ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def small_run(folders, tmp_path_factory):
    """2 zoo samples x (ar, pearl none, pearl hippo 0.5) x temperatures 0 and 1, seed 7."""
    out = tmp_path_factory.mktemp("sweep-run") / "rows.jsonl"
    argv = argv_of(folders, out, "-n", "2", "--decodings", "ar,pearl", "--prune", "none,hippo", "--ratios", "0.5",
                   "--gammas", "3", "--temperatures", "0,1", "--seed", "7")
    run_cli(argv)
    return argv, out, sweep.read_rows(out)


def test_a_run_writes_one_recorded_row_per_sample_and_configuration(small_run):
    from verification.recorded import read_rows as read_recorded

    argv, out, rows = small_run
    assert [r["key"] for r in rows] == expected_keys(argv)
    assert len(rows) == 2 * 6
    for r in rows:
        assert r["source_sha256"] == source_hash() and r["environment"]["torch"] and r["time_utc"].endswith("+00:00")
        assert {"decode_s", "prefill_s", "total_s", "mat", "accepted_per_round"} <= set(r["stats"])
        assert r["video"] == r["sample"]["video"] == f"zoo:{r['sample']['sample_id']}"
        assert r["frame_indices"] == list(range(8)) and len(r["tokens"]) == 8
        greedy = r["config"]["temperature"] == 0
        assert r["seed"] == (7 if greedy else 7 + r["sample"]["index"])
    by_sample = {}
    for r in rows:  # greedy: every configuration commits the target's tokens
        if r["config"]["temperature"] == 0:
            by_sample.setdefault(r["sample"]["sample_id"], set()).add(tuple(r["tokens"]))
    assert all(len(tokens) == 1 for tokens in by_sample.values()) and len(by_sample) == 2
    recorded, problems = read_recorded(out)  # `hippo verify --recorded`'s reader takes the file as it is
    assert not problems and [list(r.tokens) for r in recorded] == [r["tokens"] for r in rows]


def test_benchmark_samples_read_their_segment_and_score_choices(folders, synthetic_video, tmp_path, monkeypatch,
                                                                 capsys):
    """paper.sweep.datasets' samples (its loader replaced by two samples of synthetic_video): a segment (1.0-2.5 s
    of 30 frames at 10 fps = frames 10..25) is read as its 8 segment-centre frames; a multiple-choice row
    records score_choice; the rows pass `hippo verify --recorded`'s greedy check against the target;
    a sample made of a frame folder is refused in one line."""
    from hippo.checkpoint import load_adapter
    from paper.sweep import datasets
    from verification.recorded import check_recorded_greedy
    from verification.recorded import read_rows as read_recorded

    video = Path(synthetic_video)
    samples = [datasets.BenchmarkSample("fake", "a", "t", video, (1.0, 2.5), "which? (A) x (B) y", "which?", "y",
                                        ("x", "y"), "B"),
               datasets.BenchmarkSample("fake", "b", "t", video, None, "what moves", "what moves", "a box")]
    asked = {}

    def load_benchmark(name, root, prompt_mode="benchmark", tasks=None, limit=None):
        asked.update(name=name, root=root, prompt_mode=prompt_mode, tasks=tasks, limit=limit)
        return samples[:limit]

    monkeypatch.setattr(datasets, "load_benchmark", load_benchmark)
    out = tmp_path / "bench.jsonl"
    run_cli(argv_of(folders, out, "--dataset", "fake", "--root", str(tmp_path), "--prompt-mode", "speed",
                    "--tasks", "t", "-n", "2", "--decodings", "sd", "--no-warmup"))
    a, b = sweep.read_rows(out)
    assert asked == {"name": "fake", "root": str(tmp_path), "prompt_mode": "speed", "tasks": ["t"], "limit": 2}
    assert a["frame_indices"] == [10 + i for i in sample_frame_indices(16, 8)]
    assert b["frame_indices"] == list(sample_frame_indices(30, 8))
    assert a["correct"] == datasets.score_choice(a["text"], samples[0]) and a["correct"] is not None
    assert b["correct"] is None
    assert a["video"] == str(video.resolve()) and a["sample"] == samples[0].as_record()
    rows, problems = read_recorded(out)
    results = check_recorded_greedy(load_adapter(folders[0]), folders[0], rows, None)
    assert not problems and [r.verdict for r in results] == ["pass", "pass"]

    samples[1] = replace(samples[1], task="episodic", video=tmp_path, frame_folder=tmp_path)
    assert main(argv_of(folders, tmp_path / "other.jsonl", "--dataset", "fake", "--root", str(tmp_path))) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "task(s) episodic are folders of frames" in err and "--tasks" in err


# ---- resume -----------------------------------------------------------------------------------------------
def test_scan_finds_a_cut_short_last_line(tmp_path):
    path = tmp_path / "rows.jsonl"
    good = [json.dumps({"key": k}) + "\n" for k in "ab"]
    path.write_text("".join(good) + '{"key": "c", "tok')
    assert [r["key"] for r in sweep.read_rows(path)] == ["a", "b"]
    rows, offset, why = sweep._scan(path)
    assert offset == len("".join(good)) and "not a complete row" in why
    path.write_text("".join(good) + json.dumps({"key": "c"}))  # complete JSON, no newline: redone too
    assert sweep._repair(path) == [{"key": "a"}, {"key": "b"}] and path.read_text() == "".join(good)
    path.write_text(good[0] + "not json\n" + good[1])
    with pytest.raises(ConfigError, match=r"rows.jsonl:2 is not a sweep row"):
        sweep.read_rows(path)


def test_resume_after_sigkill_and_a_cut_short_line_has_every_row_once(folders, tmp_path, capsys):
    out = tmp_path / "rows.jsonl"
    argv = argv_of(folders, out, "-n", "3", "--decodings", "ar,sd,pearl", "--prune", "none,uniform,random",
                   "--ratios", "0.5,0.75", "--gammas", "2,3", "--no-warmup")
    keys = expected_keys(argv)
    process = subprocess.Popen([sys.executable, "-m", "hippo.cli", *argv], env=ENV, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while len(sweep.read_rows(out) if out.exists() else []) < 3 and process.poll() is None:
            assert time.monotonic() < deadline, "the sweep wrote no row in 120 s"
            time.sleep(0.02)
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait()
    before = sweep.read_rows(out)
    assert 3 <= len(before) < len(keys), "the sweep was not killed midway"
    # the last complete row, cut in half by hand: the resumed run truncates it and redoes that row
    lines = out.read_bytes().splitlines(keepends=True)
    complete = [line for line in lines if line.endswith(b"\n")]
    out.write_bytes(b"".join(complete[:-1]) + complete[-1][: len(complete[-1]) // 2])
    run_cli(argv)
    assert "the last line was cut short" in capsys.readouterr().err
    after = sweep.read_rows(out)
    assert [r["key"] for r in after] == keys
    kept = len(complete) - 1
    assert after[:kept] == before[:kept]  # rows written before the kill are kept, not redone


# ---- shards -----------------------------------------------------------------------------------------------
def test_two_torchrun_shards_merge_to_the_one_process_run(folders, tmp_path):
    """Under torchrun each rank runs its rows (fast-processes: its own spawned draft worker, not
    torchrun's group) into its shard; rank 0 merges: the grid's keys in order, each once, and the greedy
    tokens of one unsharded run (run here with fast only, to spare a worker's start: fast-processes
    commits fast's tokens, tests/test_overlap.py)."""
    grid = ["-n", "2", "--decodings", "ar,pearl", "--prune", "none,hippo", "--ratios", "0.5", "--gammas", "3",
            "--no-warmup"]
    sharded, single = tmp_path / "sharded.jsonl", tmp_path / "single.jsonl"
    argv = argv_of(folders, sharded, *grid, "--impls", "fast,fast-processes")
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                           "-m", "hippo.cli", *argv], env=ENV, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    run_cli(argv_of(folders, single, *grid, "--impls", "fast"))
    merged = sweep.read_rows(sharded)
    assert [r["key"] for r in merged] == expected_keys(argv)
    assert [r["shard"] for r in merged] == [[i % 2, 2] for i in range(len(merged))]
    assert {r["impl"] for r in (m["config"] for m in merged)} == {"fast", "fast-processes"}
    assert all(r["timeline"] for r in merged if r["implementation"] == "fast-processes")

    def unsharded_tokens(row):  # the same sample and configuration, implementation fast
        return {r["key"]: r["tokens"] for r in sweep.read_rows(single)}[row["key"].replace("|fast-processes|", "|fast|")]

    assert [r["tokens"] for r in merged] == [unsharded_tokens(r) for r in merged]
    assert not sweep.shard_files(sharded)


def test_merge_command_merges_shards_in_row_order_once(small_run, tmp_path, capsys):
    """`--merge OUT` (shards run elsewhere), and a plain run that finds shards of its <out> (a torchrun
    run interrupted before its merge): both give the rows in grid order, each once, and nothing to redo."""
    argv, _, rows = small_run
    for out in (tmp_path / "merged.jsonl", tmp_path / "resumed.jsonl"):
        for rank in (0, 1):
            shard = [r for r in rows if r["row_index"] % 2 == rank] + [rows[0]]  # rows[0] twice
            sweep.shard_path(out, rank, 2).write_text("".join(json.dumps(r) + "\n" for r in reversed(shard)))
    assert main(["bench", "sweep", "--merge", str(tmp_path / "merged.jsonl")]) == 0
    run_cli([*argv, "--out", str(tmp_path / "resumed.jsonl")])  # the last --out counts
    assert f"{len(rows)} already in" in capsys.readouterr().err
    for out in (tmp_path / "merged.jsonl", tmp_path / "resumed.jsonl"):
        assert sweep.read_rows(out) == rows and not sweep.shard_files(out)


# ---- refusals ---------------------------------------------------------------------------------------------
def test_rows_of_other_code_are_refused_unless_allowed(folders, tmp_path, capsys):
    out = tmp_path / "rows.jsonl"
    old = {"key": "from another commit", "source_sha256": "0" * 64}
    out.write_text(json.dumps(old) + "\n")
    argv = argv_of(folders, out, "-n", "1", "--decodings", "ar", "--no-warmup")
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "written by other code" in err and "0" * 64 in err and source_hash() in err
    assert "--out" in err and "--allow-mixed-code" in err and len(err.splitlines()) == 1
    assert sweep.read_rows(out) == [old]
    assert main([*argv, "--allow-mixed-code"]) == 0
    assert [r["key"] for r in sweep.read_rows(out)] == [old["key"], *expected_keys(argv)]


@pytest.mark.parametrize("extra, message", [
    (["--pairs", "nope"], "unknown pair 'nope'"),
    (["--impls", "fast,fastest"], "unknown implementation 'fastest'"),
    (["--impls", "fast-streams", "--decodings", "pearl"], "fast-streams runs the draft and the target on two CUDA"),
    (["--ratios", "1.5"], "pruning ratio 1.5 is outside [0, 1)"),
    (["--gammas", "x"], "gammas 'x' is not an integer or auto"),
], ids=["pair", "impl", "streams-without-cuda", "ratio", "gamma"])
def test_bad_input_is_one_line_and_exit_status_2(tmp_path, capsys, extra, message):
    out = tmp_path / "rows.jsonl"
    assert main(["bench", "sweep", "--no-progress", "--out", str(out), *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and not out.exists()


def test_nox_bench_session_passes_subcommands_and_defaults_to_perf(monkeypatch):
    """noxfile.py's bench session (nox itself is not needed: a stand-in records the command)."""
    from pathlib import Path

    stand_in = types.ModuleType("nox")
    stand_in.options = types.SimpleNamespace()
    stand_in.session = lambda *a, **k: (lambda fn: fn)
    monkeypatch.setitem(sys.modules, "nox", stand_in)
    namespace: dict = {}
    exec(compile((Path(__file__).parents[1] / "noxfile.py").read_text(), "noxfile.py", "exec"), namespace)

    def command(posargs):
        ran = []
        session = types.SimpleNamespace(posargs=posargs, install=lambda *a: None, run=lambda *a, **k: ran.append(a))
        namespace["bench"](session)
        return ran[-1]

    assert command([]) == ("hippo", "bench", "perf")
    assert command(["--pair", "llava", "-n", "5"]) == ("hippo", "bench", "perf", "--pair", "llava", "-n", "5")
    assert command(["sweep", "--grid", "p.json"]) == ("hippo", "bench", "sweep", "--grid", "p.json")
