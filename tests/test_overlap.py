"""Draft and target at the same time (hippo_fast/overlap): two processes over torch.distributed (gloo
here), two CUDA streams (serial on a CPU). Same tokens as the one-process schedule, failures that end
a request within seconds with the reason, start failures that say what is wrong."""

from __future__ import annotations

import json
import os
import signal
import socket
import time

import pytest
import torch
from worker_faults import kill_worker_at_round

from hippo.cli import main
from hippo.generation import generate, implementation
from hippo.request import DecodeConfig, GenerationRequest, PruneSpec, SamplingParams
from hippo_fast.decoding import parallel_split
from hippo_fast.overlap import processes
from hippo_fast.overlap.processes import DraftWorker, RemoteDraft, WorkerError

SAMPLINGS = [SamplingParams(), SamplingParams(1.0, top_k=5)]


NO_PRUNING = PruneSpec()


def request(video, sampling, prune=NO_PRUNING, tokens=24, gamma=3, seed=7):
    config = DecodeConfig(max_new_tokens=tokens, gamma=gamma, sampling=sampling, seed=seed)
    return GenerationRequest(video, "what moves", 4, "pearl", prune, config=config)


@pytest.mark.parametrize("sampling", SAMPLINGS, ids=["greedy", "sampled"])
@pytest.mark.parametrize("prune", [PruneSpec(), PruneSpec("hippo", 0.5)], ids=["none", "hippo0.5"])
def test_two_processes_commit_the_one_process_tokens(pair, synthetic_video, sampling, prune):
    """Token for token, round for round, forward for forward: the two-process run IS the schedule."""
    req = request(synthetic_video, sampling, prune)
    one = generate(implementation("fast"), pair.target, pair.draft, req)
    two = generate(implementation("fast", overlap="processes"), pair.target, RemoteDraft(pair.draft_dir), req)
    assert two.tokens == one.tokens
    assert two.stats.decode.accepted_per_round == one.stats.decode.accepted_per_round
    assert two.stats.decode.draft_forwards == one.stats.decode.draft_forwards
    assert two.stats.decode.target_forwards == one.stats.decode.target_forwards
    lanes = {span[0] for span in two.timeline.spans}
    assert lanes == {"target", "draft", "verify"}
    rounds = len(one.stats.decode.accepted_per_round)
    assert sum(span[0] == "draft" for span in two.timeline.spans) == rounds


NEEDS_CUDA = ("not run: needs CUDA. Without it the two lanes are no-ops (hippo_fast/decoding/lanes.py) and the "
              "streams path is fast-pearl's very calls, so its tokens equal the serial loop's by construction")


@pytest.mark.skipif(not torch.cuda.is_available(), reason=NEEDS_CUDA)
@pytest.mark.parametrize("sampling", SAMPLINGS, ids=["greedy", "sampled"])
def test_streams_commit_the_serial_tokens(pair, synthetic_video, sampling):
    """Both models on the GPU, target forward and draft block on two CUDA streams: the serial tokens."""
    from hippo.checkpoint import load_adapter

    target, draft = (load_adapter(d, torch.float32, "cuda") for d in (pair.target_dir, pair.draft_dir))
    req = request(synthetic_video, sampling, PruneSpec("uniform", 0.5))
    off = generate(implementation("fast"), target, draft, req)
    streams = generate(implementation("fast", overlap="streams"), target, draft, req)
    assert streams.tokens == off.tokens
    assert streams.stats.decode.accepted_per_round == off.stats.decode.accepted_per_round


def test_streams_path_runs_on_a_cpu_as_the_serial_calls(pair, synthetic_video):
    """Not an audit of two streams (that one needs CUDA, above): on a CPU the lanes are no-ops, so this only
    shows the streams path runs and is the serial loop, equal by construction."""
    from hippo_fast.decoding.lanes import Lanes

    assert not Lanes(torch.device("cpu"), torch.device("cpu")).cuda
    req = request(synthetic_video, SAMPLINGS[1], PruneSpec("uniform", 0.5))
    off = generate(implementation("fast"), pair.target, pair.draft, req)
    assert generate(implementation("fast", overlap="streams"), pair.target, pair.draft, req).tokens == off.tokens


def test_two_processes_on_table_models_equal_the_serial_loop():
    """The audit's table models travel to the worker whole; every seed gives the serial loop's tokens."""
    from verification import checks
    from verification.candidates import TableCase, builtin_candidates
    from verification.tables import TablePair

    candidates = builtin_candidates()
    serial, two = candidates["fast-pearl"], candidates["fast-pearl-processes"]
    setting = checks.TABLE_MC[1]  # warped target and draft sampling
    case = TableCase(TablePair.make(setting.name, setting.vocab, setting.model_seed, setting.agreement))
    for seed in range(20):
        cfg = DecodeConfig(max_new_tokens=6, gamma=setting.gamma, sampling=setting.target,
                           draft_sampling=setting.draft, seed=seed)
        a, b = serial.run_with_stats(case, cfg), two.run_with_stats(case, cfg)
        assert b.tokens == a.tokens and b.stats.accepted_per_round == a.stats.accepted_per_round, seed


def test_a_killed_worker_ends_the_request_within_seconds(pair, synthetic_video, monkeypatch):
    """SIGKILL of the worker in the middle of a request: a WorkerError naming the signal, no hang; the
    next request starts a new worker and succeeds."""
    req = request(synthetic_video, SamplingParams(), tokens=40, gamma=2)
    worker = processes.session("cpu")
    rounds = kill_worker_at_round(monkeypatch, worker, 3)
    started = time.monotonic()
    with pytest.raises(WorkerError, match="killed by SIGKILL") as caught:
        generate(implementation("fast", overlap="processes"), pair.target, RemoteDraft(pair.draft_dir), req)
    assert time.monotonic() - started < 30
    assert "abandoned" in str(caught.value) and len(rounds) == 3
    monkeypatch.undo()
    again = generate(implementation("fast", overlap="processes"), pair.target, RemoteDraft(pair.draft_dir), req)
    assert again.tokens == generate(implementation("fast"), pair.target, pair.draft, req).tokens


def test_a_job_that_fails_is_answered_and_the_worker_keeps_serving(pair, synthetic_video, tmp_path):
    req = request(synthetic_video, SamplingParams())
    with pytest.raises(WorkerError, match="could not do job"):
        generate(implementation("fast", overlap="processes"), pair.target, RemoteDraft(tmp_path / "nowhere"), req)
    good = generate(implementation("fast", overlap="processes"), pair.target, RemoteDraft(pair.draft_dir), req)
    assert good.tokens == generate(implementation("fast"), pair.target, pair.draft, req).tokens


def test_a_worker_that_cannot_start_says_why():
    processes.close_session()  # one process group per process: start failures are tried without a live one
    with pytest.raises(WorkerError, match="cannot start the draft worker: --device cuda:99"):
        DraftWorker.spawn(device="cuda:99")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(WorkerError, match=f"port {port} is taken"):
            DraftWorker.spawn(port=port)


def test_cli_overlap_processes_equals_serial_and_writes_the_timeline(capsys, pair, synthetic_video):
    def run(*extra):
        argv = ["generate", "--target", pair.target_dir, "--draft", pair.draft_dir, "--video", synthetic_video,
                "--prompt", "what moves", "--frames", "4", "--max-new-tokens", "20", "--json", "--impl", "fast",
                "--decoding", "pearl", "--prune", "hippo", "--ratio", "0.5", *extra]
        assert main(argv) == 0
        return json.loads(capsys.readouterr().out)

    off, two = run(), run("--overlap", "processes")
    assert two["tokens"] == off["tokens"] and two["overlap"] == "processes"
    assert {span["lane"] for span in two["timeline"]} == {"target", "draft", "verify"}


@pytest.mark.parametrize("argv, message", [
    (["--impl", "ref", "--overlap", "processes"], "needs --impl fast --decoding pearl"),
    (["--impl", "fast", "--decoding", "sd", "--overlap", "streams"], "needs --impl fast --decoding pearl"),
    (["--impl", "fast", "--draft-device", "cpu"], "--draft-device applies to --overlap processes"),
])
def test_cli_overlap_errors(capsys, pair, synthetic_video, argv, message):
    base = ["generate", "--target", pair.target_dir, "--draft", pair.draft_dir, "--video", synthetic_video,
            "--prompt", "x"]
    assert main([*base, *argv]) == 2
    assert message in capsys.readouterr().err


@pytest.mark.slow
def test_under_torchrun_rank_one_serves_rank_zero(tmp_path, pair, synthetic_video):
    """`torchrun --nproc-per-node 2 -m hippo.cli generate ... --overlap processes`: rank 1 is the draft's
    process, rank 0 prints the result, the one-process tokens."""
    import subprocess
    import sys

    argv = ["generate", "--target", pair.target_dir, "--draft", pair.draft_dir, "--video", synthetic_video,
            "--prompt", "what moves", "--frames", "4", "--max-new-tokens", "16", "--json", "--impl", "fast",
            "--decoding", "pearl"]
    out = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                          "-m", "hippo.cli", *argv, "--overlap", "processes"], capture_output=True, text=True,
                         timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert out.returncode == 0, out.stderr[-3000:]
    rows = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    assert len(rows) == 1  # rank 0 only
    serial = subprocess.run([sys.executable, "-m", "hippo.cli", *argv], capture_output=True, text=True, timeout=300)
    assert rows[0]["tokens"] == json.loads(serial.stdout)["tokens"]


def test_gamma_auto_is_measured_in_the_placement_used(pair, synthetic_video, monkeypatch):
    """--gamma auto with the draft in its own process: the draft's step is timed in the worker (its
    core, its device) and the target's here; gamma = round(target step / draft step), in [1, 16]."""
    seen = []
    original = processes.RemoteDraftContext.step_time

    def recorded(self, token):
        seen.append(original(self, token))
        return seen[-1]

    monkeypatch.setattr(processes.RemoteDraftContext, "step_time", recorded)
    req = request(synthetic_video, SamplingParams(), tokens=12)
    result = generate(implementation("fast", overlap="processes"), pair.target, RemoteDraft(pair.draft_dir), req,
                      gamma_auto=True)
    assert len(seen) == 1 and seen[0] > 0
    assert 1 <= result.stats.decode.gamma <= 16
    serial = generate(implementation("fast"), pair.target, pair.draft,
                      request(synthetic_video, SamplingParams(), tokens=12, gamma=result.stats.decode.gamma))
    assert result.tokens == serial.tokens


def test_backend_is_nccl_only_between_two_gpus():
    assert processes.backend_for("cpu", "cpu") == "gloo"
    assert processes.backend_for("cuda:0", "cuda:0") == "gloo"  # one GPU, two processes: NCCL refuses it
    assert processes.backend_for("cuda:0", "cuda:1") == "nccl"
    assert processes.split_cores({0, 1}) == ((0,), (1,)) and processes.split_cores({3}) == ((3,), None)


def test_a_failure_on_the_target_side_ends_the_worker_and_the_next_request_runs(pair, synthetic_video,
                                                                                monkeypatch):
    """An exception in this process mid-decode leaves the worker inside a round's messages: the worker
    is ended (never read out of step), and the next request starts a new one and gets the serial tokens."""
    req = request(synthetic_video, SamplingParams(), tokens=30, gamma=2)
    original, rounds = parallel_split.receive_block, []

    def fail_at_the_second_round(link, *args):
        rounds.append(1)
        if len(rounds) == 2:
            raise ValueError("planted failure on the target side")
        return original(link, *args)

    monkeypatch.setattr(parallel_split, "receive_block", fail_at_the_second_round)
    started = time.monotonic()
    with pytest.raises(ValueError, match="planted failure"):
        generate(implementation("fast", overlap="processes"), pair.target, RemoteDraft(pair.draft_dir), req)
    monkeypatch.undo()
    again = generate(implementation("fast", overlap="processes"), pair.target, RemoteDraft(pair.draft_dir), req)
    assert again.tokens == generate(implementation("fast"), pair.target, pair.draft, req).tokens
    assert time.monotonic() - started < 60


def test_an_idle_worker_outlives_the_request_timeout(pair, synthetic_video):
    """A worker waits for its next job as long as this process holds it: the requests' timeout (here 12 s,
    long enough for the worker to load its model) bounds a round, not the pause between two requests (a worker that joined with it left after that
    pause, and the next request failed on a dead worker)."""
    processes.close_session()
    req = request(synthetic_video, SamplingParams(), tokens=12, gamma=2)
    worker = processes.session("cpu", timeout_s=12)
    first = generate(implementation("fast", overlap="processes"), pair.target, RemoteDraft(pair.draft_dir), req)
    time.sleep(14)
    assert worker.process.poll() is None
    again = generate(implementation("fast", overlap="processes"), pair.target, RemoteDraft(pair.draft_dir), req)
    assert again.tokens == first.tokens and processes.session("cpu") is worker
    processes.close_session()


def test_a_worker_that_has_exited_is_replaced_by_the_next_request(pair, synthetic_video, monkeypatch):
    monkeypatch.setattr(processes, "WORKER_IDLE_TIMEOUT_S", 2.0)
    processes.close_session()
    req = request(synthetic_video, SamplingParams(), tokens=12, gamma=2)
    worker = processes.session("cpu")
    worker.process.wait(60)  # it gave up waiting for a job
    again = generate(implementation("fast", overlap="processes"), pair.target, RemoteDraft(pair.draft_dir), req)
    assert again.tokens == generate(implementation("fast"), pair.target, pair.draft, req).tokens
    assert processes.session("cpu") is not worker
    processes.close_session()


def test_a_killed_target_leaves_no_worker_behind(tmp_path, pair):
    """The worker ends when the link closes, so a SIGKILLed target process orphans nothing."""
    import subprocess
    import sys

    script = tmp_path / "target.py"
    script.write_text("import time\nfrom hippo_fast.overlap import processes\n"
                      "w = processes.session('cpu')\nprint(w.process.pid, flush=True)\ntime.sleep(600)\n")
    target = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "OMP_NUM_THREADS": "1"})
    worker_pid = int(target.stdout.readline())
    target.kill()
    target.wait()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            os.kill(worker_pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.2)
    os.kill(worker_pid, signal.SIGKILL)
    pytest.fail(f"the worker (pid {worker_pid}) outlived its SIGKILLed target by 30 s")


def test_a_failed_process_group_start_does_not_hang_the_next_worker(pair, synthetic_video):
    """torch counts default groups from a failed init_process_group too; a worker spawned after one used
    to wait for store keys under another group name (the audit hung after the port-taken test)."""
    import datetime

    import torch.distributed as dist

    processes.close_session()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(Exception):  # noqa: B017 - torch's error class differs by version
            dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{taken.getsockname()[1]}", rank=0,
                                    world_size=2, timeout=datetime.timedelta(seconds=5))
    req = request(synthetic_video, SamplingParams(), tokens=12, gamma=2)
    worker = processes.session("cpu", timeout_s=30)
    again = generate(implementation("fast", overlap="processes"), pair.target, RemoteDraft(pair.draft_dir), req)
    assert again.tokens == generate(implementation("fast"), pair.target, pair.draft, req).tokens
    assert processes.session("cpu") is worker
    processes.close_session()


def test_a_draft_in_its_own_process_refuses_serial_decoding(pair):
    """The worker serves PEARL's draft half only: serial SD with a RemoteDraft is refused by the
    implementation (whoever calls it: the CLI, a sweep, the Python API) before any worker starts or any
    input is read (the clip is not even given)."""
    from hippo.errors import ConfigError

    req = GenerationRequest("unused.mp4", "what moves", 4, "sd", PruneSpec("none", 0.0), config=DecodeConfig(max_new_tokens=4))
    with pytest.raises(ConfigError, match="decoding sd is serial"):
        implementation("fast", overlap="processes").prepare_contexts(pair.target, RemoteDraft(pair.draft_dir), req, None)
