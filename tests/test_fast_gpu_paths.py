"""hippo_fast's CUDA branches, pinned on a CPU (issue 27): what a GPU run would get wrong, made testable
without one. CUDA-graph output buffers (a copy outlives the next replay), the refusal of graphs on two
streams of one GPU, the host reads a decode makes (counted through hippo_fast/host_syncs.py), the cache
pool and warm-up that leave nothing to record in a timed decode, the link's devices, NCCL's set-up and
its watched receives (the same WorkerError as gloo), and the per-round payload of a sampled draft."""

from __future__ import annotations

import gc
import math
import threading
import types

import pytest
import torch
from worker_faults import kill_worker_at_round

from hippo.errors import ConfigError
from hippo.generation import generate, implementation
from hippo.request import DecodeConfig, GenerationRequest, PruneSpec, SamplingParams
from hippo.video import load_video
from hippo_fast import sampling
from hippo_fast.cache import WARM_CALLS_CUDA_GRAPHS, static_prefill
from hippo_fast.cache_pool import POOL
from hippo_fast.decoding import lanes, parallel_split
from hippo_fast.decoding.autoregressive import decode_autoregressive
from hippo_fast.decoding.parallel import decode_parallel
from hippo_fast.decoding.speculative import decode_speculative
from hippo_fast.host_syncs import HostSyncs
from hippo_fast.overlap import link, processes
from hippo_fast.overlap.processes import RemoteDraft, WorkerError
from hippo_ref.decoding.autoregressive import decode_autoregressive as ref_ar

PROMPT = "what moves"
SAMPLED = SamplingParams(1.0, top_k=5)


@pytest.fixture(scope="module")
def clip(synthetic_video):
    return load_video(synthetic_video, 4)


def graphed(model, calls=None):
    """The stock forward marked as replayed by CUDA graphs (what compiled.compiled_forward marks on a GPU),
    counting its calls."""

    def forward(**kwargs):
        if calls is not None:
            calls.append(kwargs["input_ids"].shape[-1])
        return model.forward(**kwargs)

    forward.cuda_graphs = True
    return forward


# ---- 2: a CUDA graph's output buffer is overwritten by the next replay ----------------------------------
def test_fp32_logits_outlive_the_next_forward_that_reuses_its_output_buffer(pair, clip):
    """A forward that returns the same output buffer every call (as a CUDA graph does): the logits a
    StaticContext returned are still the first forward's after a second one."""
    buffer = {}

    def one_output_buffer(**kwargs):
        out = pair.target.model.forward(**kwargs)
        shape = tuple(out.logits.shape)
        buffer.setdefault(shape, torch.empty(shape))
        buffer[shape].copy_(out.logits)
        return types.SimpleNamespace(logits=buffer[shape])

    one_output_buffer.cuda_graphs = True  # what compiled.compiled_forward marks on such a forward
    context = static_prefill(pair.target, pair.target.prepare(clip, PROMPT), 16, forward_fn=one_output_buffer)
    first = context.forward(torch.tensor([5]), 0)
    kept = first.clone()
    context.forward(torch.tensor([9]), 1)
    assert torch.equal(first, kept) and first.dtype == torch.float32


# ---- 1: CUDA graphs on two streams of one GPU ---------------------------------------------------------------
def test_cuda_graphs_on_two_streams_of_one_gpu_are_refused():
    with pytest.raises(ConfigError, match=r"one GPU \(cuda:0\).*one memory pool.*drop --compile, or use --overlap "
                                          r"processes"):
        lanes.check_graph_pools("cuda:0", "cuda", cuda_graphs=True)
    lanes.check_graph_pools("cuda:0", "cuda:1", cuda_graphs=True)  # two devices: two pools
    lanes.check_graph_pools("cuda:0", "cuda:0", cuda_graphs=False)
    lanes.check_graph_pools("cpu", "cpu", cuda_graphs=True)
    contexts = [types.SimpleNamespace(device=torch.device("cuda:0"), cuda_graphs=graphs) for graphs in (False, True)]
    with pytest.raises(ConfigError, match="one memory pool"):  # decode_parallel(lanes=True) asks before any stream
        lanes.lanes_for(*contexts, overlap=True)


# ---- 3: host reads per round, counted on any device ---------------------------------------------------------
def test_the_host_sync_counter_sees_hidden_reads():
    values = torch.arange(6)
    for hidden in (lambda: values[torch.tensor(2)], lambda: bool(values[0]), lambda: values.tolist(),
                   lambda: torch.as_tensor(3, device="cpu"), lambda: values[1].item()):
        with HostSyncs() as syncs:
            hidden()
        assert syncs.count == 1
    with HostSyncs() as syncs:
        sampling.pick(values, torch.tensor(2)), torch.full((1,), 3), values.gather(0, torch.tensor([1]))
        values[2] = values[3]
    assert syncs.count == 0


@pytest.mark.parametrize("params", [SamplingParams(), SAMPLED], ids=["greedy", "sampled"])
def test_verification_reads_nothing_on_the_host(params):
    logits = torch.randn(4, 30, generator=torch.Generator().manual_seed(1))
    candidates = torch.tensor([3, 7, 1])
    qs = None if params.greedy else sampling.distributions(logits[:3] + 0.5, params)
    table = sampling.UniformTable(3, 16, "cpu")
    with HostSyncs() as syncs:
        sampling.verify(logits, candidates, qs, params, table, 2, bonus=True)
        sampling.verify(logits[:3], candidates, qs, params, table, 2, bonus=False)
    assert syncs.events == []


def _decodes(gamma=3):
    return {"ar": lambda t, d, cfg: decode_autoregressive(t, cfg, sync_every=8),
            "ar-every-token": lambda t, d, cfg: decode_autoregressive(t, cfg, sync_every=1),
            "sd": decode_speculative,
            "pearl": decode_parallel,
            "pearl-lanes": lambda t, d, cfg: decode_parallel(t, d, cfg, lanes=True)}


@pytest.mark.parametrize("params", [SamplingParams(), SAMPLED], ids=["greedy", "sampled"])
@pytest.mark.parametrize("decoding", list(_decodes()))
def test_a_decode_reads_the_device_once_per_round(pair, clip, decoding, params):
    """Outside the model's forwards (a compiled graph on a GPU), a decode reads device values on the host
    once per round (its commit), plus once to make the EOS ids and once to return the tokens: never
    per token (AR: once per sync_every tokens)."""
    cfg = DecodeConfig(max_new_tokens=17, gamma=3, sampling=params, draft_sampling=params, seed=4)
    target = static_prefill(pair.target, pair.target.prepare(clip, PROMPT), 40)
    draft = static_prefill(pair.draft, pair.draft.prepare(clip, PROMPT), 40)
    with HostSyncs() as syncs:
        target.forward_fn, draft.forward_fn = syncs.outside(target.forward_fn), syncs.outside(draft.forward_fn)
        result = _decodes()[decoding](target, draft, cfg)
    tokens = len(result.tokens)
    if decoding.startswith("ar"):
        every = 1 if decoding == "ar-every-token" else 8
        commits = 1 + math.ceil((tokens - 1) / every)
    else:
        commits = 1 + len(result.stats.accepted_per_round)
    reads = [what for what, _ in syncs.events]
    assert reads.count("tolist") == commits + 1, syncs.events  # the commits, the tokens returned
    assert [r for r in reads if r != "tolist"] == ["tensor from host data"], syncs.events  # the EOS ids, once


# ---- 4: nothing left to record inside a timed decode ---------------------------------------------------------
def test_graphed_forwards_reuse_their_caches_across_requests(pair, clip):
    """Under CUDA graphs a context's cache comes from the pool: the next request gets the same buffers
    (reset), a target that is its own draft gets two, and the tokens are the reference's."""
    inputs = pair.target.prepare(clip, PROMPT)
    cfg = DecodeConfig(max_new_tokens=12)
    want = ref_ar(pair.target.prefill(inputs), cfg).tokens
    POOL.clear()
    first = static_prefill(pair.target, inputs, 16, forward_fn=graphed(pair.target.model))
    addresses = first.buffer_addresses()
    assert decode_autoregressive(first, cfg).tokens == want
    del first
    gc.collect()
    second = static_prefill(pair.target, inputs, 16, forward_fn=graphed(pair.target.model))
    assert second.buffer_addresses() == addresses and POOL.made == 1
    as_draft = static_prefill(pair.target, inputs, 16, forward_fn=graphed(pair.target.model))
    assert set(as_draft.buffer_addresses()).isdisjoint(addresses) and POOL.made == 2
    assert decode_autoregressive(second, cfg).tokens == want
    unpooled = static_prefill(pair.target, inputs, 16)
    assert set(unpooled.buffer_addresses()).isdisjoint(addresses) and POOL.made == 2
    POOL.clear()


def test_warm_runs_each_shape_until_its_graph_replays_and_once_per_buffers(pair, clip):
    inputs = pair.target.prepare(clip, PROMPT)
    POOL.clear()
    calls, seen = [], set()
    context = static_prefill(pair.target, inputs, 16, forward_fn=graphed(pair.target.model, calls))
    context.warm((1, 4), seen)
    assert sorted(calls) == [1] * WARM_CALLS_CUDA_GRAPHS + [4] * WARM_CALLS_CUDA_GRAPHS and context.forwards == 1
    calls.clear()
    del context
    gc.collect()
    again = static_prefill(pair.target, inputs, 16, forward_fn=graphed(pair.target.model, calls))
    again.warm((1, 4), seen)  # the same pooled buffers: already recorded
    other = static_prefill(pair.target, inputs, 16, forward_fn=graphed(pair.target.model, calls))
    other.warm((1,), seen)  # other buffers: recorded again
    assert calls == [1] * WARM_CALLS_CUDA_GRAPHS
    POOL.clear()


def test_a_grown_graphed_context_gives_its_smaller_cache_back(pair, clip, monkeypatch):
    from hippo_fast import cache

    monkeypatch.setattr(cache, "FIRST_CAPACITY", 8)
    inputs = pair.target.prepare(clip, PROMPT)
    POOL.clear()
    cfg = DecodeConfig(max_new_tokens=80)
    context = static_prefill(pair.target, inputs, 90, forward_fn=graphed(pair.target.model))
    small = context.cache
    assert decode_autoregressive(context, cfg).tokens == ref_ar(pair.target.prefill(inputs), cfg).tokens
    assert context.cache is not small and any(small in free for free in POOL._free[pair.target.model].values())
    POOL.clear()


# ---- 5, 6: the link's devices, NCCL's set-up, a dead worker under a watched receive -----------------------
def test_links_carry_on_the_backends_device_and_deliver_at_home():
    over_gloo = processes.link_for(1, "gloo", "cuda:0")
    assert over_gloo.device == torch.device("cpu") and over_gloo.home == torch.device("cuda:0")
    over_nccl = processes.link_for(0, "nccl", "cuda:1")
    assert over_nccl.device == over_nccl.home == torch.device("cuda:1")


def test_nccl_names_the_gpu_before_the_group_exists(monkeypatch):
    import torch.distributed as dist

    calls = []
    monkeypatch.setattr(torch.cuda, "set_device", lambda device: calls.append(("set_device", torch.device(device))))
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(dist, "init_process_group", lambda backend, **kw: calls.append((backend, kw.get("device_id"))))
    processes.init_group("nccl", "cuda:1", rank=0, world_size=2)
    processes.init_group("nccl", "cuda", rank=0, world_size=2)
    processes.init_group("gloo", "cuda:1", rank=0, world_size=2)
    assert calls == [("set_device", torch.device("cuda:1")), ("nccl", torch.device("cuda:1")),
                     ("set_device", torch.device("cuda")), ("nccl", torch.device("cuda:0")), ("gloo", None)]


def test_under_torchrun_rank_zero_picks_the_backend_and_home_of_its_devices(monkeypatch):
    import torch.distributed as dist

    joined = []
    monkeypatch.setattr(dist, "is_initialized", lambda: False)
    monkeypatch.setattr(processes, "init_group", lambda backend, device, **kw: joined.append((backend, device)))
    worker = processes.DraftWorker.attach(target_device="cuda:0", draft_device="cuda:1")
    assert joined == [("nccl", "cuda:0")] and worker.link.home == worker.link.device == torch.device("cuda:0")
    worker = processes.DraftWorker.attach(target_device="cuda:0", draft_device="cuda:0")
    assert joined[-1] == ("gloo", "cuda:0") and worker.link.home == torch.device("cuda:0")
    assert worker.link.device == torch.device("cpu")


class _PostedReceive:
    def __init__(self, done_after: int | None = None):
        self.polls, self.done_after = 0, done_after

    def is_completed(self):
        self.polls += 1
        return self.done_after is not None and self.polls > self.done_after

    def wait(self):
        return True


def test_a_watched_receive_ends_at_a_dead_peer_or_its_deadline():
    alive = link.Link(1, "cpu", watch=lambda: None, timeout_s=0.05)
    alive._wait(_PostedReceive(done_after=3), patient=False)
    with pytest.raises(TimeoutError, match="timed out"):
        alive._wait(_PostedReceive(), patient=False)
    gone = link.Link(1, "cpu", watch=lambda: "the draft worker's process ended (status -9)")
    with pytest.raises(ConnectionError, match="Connection closed by peer: the draft worker's process ended"):
        gone._wait(_PostedReceive(), patient=True)


def _request(video, sampling, tokens=30, gamma=2):
    return GenerationRequest(video, PROMPT, 4, "pearl", PruneSpec(),
                             DecodeConfig(max_new_tokens=tokens, gamma=gamma, sampling=sampling, seed=7))


class _PollableReceive:
    """NCCL's receive as the watched link uses it (posted at once, polled with is_completed), over gloo,
    whose own irecv completes only inside wait(): the blocking receive runs in a thread."""

    def __init__(self, receive, tensor, peer):
        self.done, self.error = threading.Event(), None

        def run():
            try:
                receive(tensor, peer)
            except Exception as err:  # noqa: BLE001 - the peer died: wait() raises it
                self.error = err
            finally:
                self.done.set()

        threading.Thread(target=run, daemon=True).start()

    def is_completed(self):
        return self.done.is_set()

    def wait(self):
        self.done.wait()
        if self.error is not None:
            raise self.error


def _killed_at_the_third_round(pair, video, monkeypatch, watched: bool) -> str:
    import torch.distributed as dist

    worker = processes.session("cpu")
    if watched:  # what join() sets up under NCCL, on this gloo link: receives polled, the worker's process watched
        worker.link.watch, worker.link.timeout_s = processes.watch_process(worker.process), 300.0
        monkeypatch.setattr(dist, "irecv", lambda tensor, peer, receive=dist.recv: _PollableReceive(receive, tensor,
                                                                                                      peer))
    kill_worker_at_round(monkeypatch, worker, 3)
    try:
        with pytest.raises(WorkerError) as caught:
            generate(implementation("fast", overlap="processes"), pair.target, RemoteDraft(pair.draft_dir),
                     _request(video, SamplingParams()))
    finally:
        monkeypatch.undo()
    return str(caught.value).split(" [")[0].replace(f"pid {worker.process.pid}", "pid N")


def test_a_dead_worker_under_a_watched_receive_ends_with_gloos_error(pair, synthetic_video, monkeypatch):
    """The NCCL path's receive (polled, the worker's process watched), run here over gloo: a worker killed
    mid-request ends it with the WorkerError a closed gloo socket gives, word for word."""
    if pair.family != "qwen2_5_vl":
        pytest.skip("the link is the same for every family: one is enough")
    assert (_killed_at_the_third_round(pair, synthetic_video, monkeypatch, watched=True)
            == _killed_at_the_third_round(pair, synthetic_video, monkeypatch, watched=False))


# ---- 7: what crosses per round ----------------------------------------------------------------------------
class _RowsOnRequest:
    """The draft's side of a ROW request, in this process: the q rows it drew from."""

    def __init__(self, qs):
        self.qs, self.asked = qs, []

    def send_row_request(self, row):
        self.asked.append(row)

    def recv_row(self, vocab):
        return self.qs[self.asked[-1]]


@pytest.mark.parametrize("params", [SamplingParams(1.0), SAMPLED, SamplingParams(0.8, top_p=0.9)], ids=str)
def test_q_of_the_candidates_and_the_refused_row_verify_as_every_row(params):
    """Two-process verification gets q(x) of each candidate and, on a refusal, that candidate's row only:
    the accepted count and the token after are those of the full (c, V) matrix, every time."""
    generator = torch.Generator().manual_seed(5)
    refusals = 0
    for trial in range(60):
        c, vocab = 1 + trial % 4, 40
        target_logits = torch.randn(c, vocab, generator=generator) * 2
        qs = sampling.distributions(target_logits + torch.randn(c, vocab, generator=generator) * (trial % 3),
                                    params)
        table = sampling.UniformTable(trial, 64, "cpu")
        candidates = sampling.sample_rows(qs, table[sampling.DRAFT][9 : 9 + c])
        channel = _RowsOnRequest(qs)
        q_of_candidates = qs[torch.arange(c), candidates]
        sent = parallel_split.candidate_rows(channel, target_logits, candidates, q_of_candidates,
                                             DecodeConfig(sampling=params), table, 9)
        want = sampling.verify(target_logits, candidates, qs, params, table, 9, bonus=False)
        got = sampling.verify(target_logits, candidates, sent, params, table, 9, bonus=False)
        assert [int(x) for x in got] == [int(x) for x in want]
        assert channel.asked == ([] if int(want[0]) == c else [int(want[0])])
        refusals += bool(channel.asked)
    assert 10 < refusals < 60
