"""Where the two processes of `--overlap processes` run (issue 25): each process's torch threads follow
the cores it may run on, whatever OMP_NUM_THREADS says; the placement is in --json's stats; the draft
worker's start-up is reported apart from the request's times. Nothing here is timed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
import torch

from hippo import placement
from hippo.generation import generate, implementation
from hippo.request import DecodeConfig, GenerationRequest, PruneSpec, SamplingParams
from hippo_fast.decoding import parallel_split
from hippo_fast.overlap import processes
from hippo_fast.overlap.processes import RemoteDraft


def request(video, tokens=16, gamma=3):
    config = DecodeConfig(max_new_tokens=tokens, gamma=gamma, sampling=SamplingParams(), seed=3)
    return GenerationRequest(video, "what moves", 4, "pearl", PruneSpec("uniform", 0.5), config=config)


def assert_threads_within_cores(entry: dict) -> None:
    """The test of issue 25: a process's torch threads (intra-op and inter-op) never exceed its cores."""
    cores = len(entry["cores"])
    assert 1 <= entry["threads"] <= cores, entry
    assert 1 <= entry["interop_threads"] <= cores, entry


def cli_json(pair, video, *extra, env=None) -> dict:
    argv = [sys.executable, "-m", "hippo.cli", "generate", "--target", pair.target_dir, "--draft", pair.draft_dir,
            "--video", video, "--prompt", "what moves", "--frames", "4", "--max-new-tokens", "12", "--impl", "fast",
            "--decoding", "pearl", "--prune", "uniform", "--ratio", "0.5", "--json", "--verbose", *extra]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout), out.stderr


@pytest.fixture
def one_family(pair):
    if pair.family != "qwen2_5_vl":
        pytest.skip("the placement does not depend on the model family: one is enough")
    return pair


def test_cli_threads_follow_the_cores_in_both_processes(one_family, synthetic_video):
    """As a user runs it (a fresh process, no flag for threads), with OMP_NUM_THREADS asking for more
    threads than there are cores: both processes' torch threads, intra-op and inter-op, stay within
    the cores each may run on, which are disjoint when the machine gives two or more; the placement is
    logged once (--verbose) and recorded in the stats; the worker's start-up is its own stat."""
    env = {**os.environ, "OMP_NUM_THREADS": str(4 * len(placement.allowed_cores()))}
    row, err = cli_json(one_family, synthetic_video, "--overlap", "processes", env=env)
    entries = row["stats"]["placement"]
    assert [e["role"] for e in entries] == ["target", "draft"]
    for entry in entries:
        assert_threads_within_cores(entry)
    target, draft = entries
    assert target["pid"] != draft["pid"]
    if len(placement.allowed_cores()) >= 2:
        assert not set(target["cores"]) & set(draft["cores"])
    assert err.count("placement:") == 1
    assert row["stats"]["worker_start_s"] > 0 and row["stats"]["worker_start_waited_s"] >= 0


def test_cli_serial_threads_follow_the_cores(pair, synthetic_video, capsys):
    """One process: one torch thread per core it may run on, whatever it held before; no worker start-up."""
    from hippo.cli import main

    torch.set_num_threads(len(placement.allowed_cores()) + 3)
    try:
        assert main(["generate", "--target", pair.target_dir, "--draft", pair.draft_dir, "--video", synthetic_video,
                     "--prompt", "what moves", "--frames", "4", "--max-new-tokens", "12", "--impl", "fast",
                     "--decoding", "pearl", "--prune", "uniform", "--ratio", "0.5", "--json"]) == 0
    finally:
        torch.set_num_threads(1)
    serial = json.loads(capsys.readouterr().out)
    (entry,) = serial["stats"]["placement"]
    assert entry["role"] == "target+draft" and entry["threads"] == len(entry["cores"])
    assert serial["stats"]["worker_start_s"] is None


def test_a_request_narrows_this_process_and_gives_its_threads_back(pair, synthetic_video, monkeypatch):
    """In a library process holding more threads than cores, a two-process request runs the target with
    threads within the cores it keeps (measured inside the decode); after it, the process has its
    cores and its thread count back (serial work between requests gets the whole machine)."""
    before_cores, before_threads = placement.allowed_cores(), len(placement.allowed_cores()) + 3
    original, seen = parallel_split.receive_block, []

    def observed(link, *args):
        seen.append((torch.get_num_threads(), placement.allowed_cores()))
        return original(link, *args)

    monkeypatch.setattr(parallel_split, "receive_block", observed)
    torch.set_num_threads(before_threads)
    try:
        result = generate(implementation("fast", overlap="processes"), pair.target, RemoteDraft(pair.draft_dir),
                          request(synthetic_video))
        assert seen and all(threads <= len(cores) for threads, cores in seen)
        assert placement.allowed_cores() == before_cores and torch.get_num_threads() == before_threads
    finally:
        torch.set_num_threads(1)
    target, draft = result.stats.placement
    assert target["threads"] <= len(target["cores"])
    assert_threads_within_cores(draft)
    worker = processes.session("cpu")
    assert draft["pid"] == worker.process.pid


def test_worker_start_up_is_not_request_time(pair, synthetic_video, monkeypatch):
    """A request that starts the worker reports the start-up apart: a start made 5 s slower (planted)
    lands in worker_start_waited_s, not in prefill_s / total_s; the next request reports none."""
    processes.close_session()
    original = processes.DraftWorker.join

    def slow_join(self):
        time.sleep(5.0)
        return original(self)

    monkeypatch.setattr(processes.DraftWorker, "join", slow_join)
    impl = implementation("fast", overlap="processes")
    first = generate(impl, pair.target, RemoteDraft(pair.draft_dir), request(synthetic_video))
    monkeypatch.undo()
    assert first.stats.worker_start_waited_s >= 5.0 and first.stats.worker_start_s > 0
    assert first.stats.prefill_s < 5.0 and first.stats.total_s < 5.0 + first.stats.decode.decode_s
    again = generate(impl, pair.target, RemoteDraft(pair.draft_dir), request(synthetic_video))
    assert again.stats.worker_start_s == 0.0 and again.tokens == first.tokens


def test_cli_starts_the_worker_before_it_loads_the_target(pair, synthetic_video, monkeypatch, capsys):
    """The worker is launched (and loads its draft) before the target's load begins, so the two loads
    overlap; the request joins it."""
    from hippo import cli
    from hippo.checkpoint import load_adapter

    events = []
    launch = processes.DraftWorker.launch.__func__

    def launched(cls, *args, **kwargs):
        events.append("launch")
        return launch(cls, *args, **kwargs)

    def loaded(*args, **kwargs):
        events.append("load target")
        return load_adapter(*args, **kwargs)

    monkeypatch.setattr(processes.DraftWorker, "launch", classmethod(launched))
    monkeypatch.setattr("hippo.checkpoint.load_adapter", loaded)
    argv = ["generate", "--target", pair.target_dir, "--draft", pair.draft_dir, "--video", synthetic_video,
            "--prompt", "what moves", "--frames", "4", "--max-new-tokens", "8", "--json", "--impl", "fast",
            "--decoding", "pearl", "--overlap", "processes"]
    assert cli.main(argv) == 0
    row = json.loads(capsys.readouterr().out)
    assert events == ["launch", "load target"]
    assert row["stats"]["worker_start_s"] > 0


def test_split_and_share_of_the_cores(monkeypatch):
    assert placement.split_cores({4, 5, 6}) == ((4, 5), (6,)) and placement.split_cores({2}) == ((2,), None)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    assert placement.torchrun_share((0, 1, 2, 3)) == 2 and placement.torchrun_share((0,)) == 1
    assert placement.core_list((0, 1, 2, 3, 6, 8, 9)) == "0-3,6,8-9"
