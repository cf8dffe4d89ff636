"""hippo_fast's steps of one request (hippo/generation.py runs them in order), the twins of
hippo_ref/pipeline.py: both models prefilled into static caches sized for the request, the pruning
scores and kept indices computed on the device, the decode loops of hippo_fast/decoding.

`implementation(compile=..., overlap=..., timeline=...)` is what hippo.generation.implementation("fast")
returns. With compile=True the one-token and (gamma + 1)-token forwards of both models go through
`torch.compile` of the stock forward (fixed shapes: each is captured once per model; CUDA graphs on
a GPU via mode "reduce-overhead"); the prefill is never compiled.
"""

from __future__ import annotations

import time
import weakref
from dataclasses import dataclass

import torch

from hippo import placement
from hippo.errors import ConfigError
from hippo.generation import PreparedContexts
from hippo.pairing import check_grids, check_vocabulary
from hippo.request import NEEDS_SCORES, DecodeConfig, DecodeResult, GenerationRequest
from hippo_fast.cache import StaticContext, static_prefill
from hippo_fast.decoding.autoregressive import decode_autoregressive
from hippo_fast.decoding.parallel import decode_parallel
from hippo_fast.decoding.speculative import decode_speculative

NAME = "fast"
_COMPILED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_WARMED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # model -> {(cache rows, step tokens)} captured


# Graphs one compiled forward may hold: transformers wraps every model's forward in one shared
# function, so dynamo keeps the graphs of the target and the draft, of every step shape (1, 2,
# gamma, gamma + 1 tokens) and of every cache size (cache_rows buckets) in one list, whose default
# limit (8) a benchmark over varied prompts exceeds; with fullgraph=True that is a hard failure.
RECOMPILE_LIMIT = 64


def compiled_forward(model):
    """torch.compile of the model's stock forward, one per model (fixed shapes, whole graph)."""
    import torch._dynamo

    torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, RECOMPILE_LIMIT)
    if model not in _COMPILED:
        mode = "reduce-overhead" if next(model.parameters()).device.type == "cuda" else None
        options = None if mode else {"cpp_wrapper": True}  # CPU: launch the kernels from C++, not Python
        compiled = torch.compile(model.forward, fullgraph=True, dynamic=False, mode=mode, options=options)
        compiled.cuda_graphs = mode == "reduce-overhead"  # read by cache.StaticContext (its cache pool, warm-up)
        _COMPILED[model] = compiled
    return _COMPILED[model]


def step_sizes(decoding: str, gamma: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The forward shapes (tokens per step) a decode meets: (target's, draft's)."""
    if decoding == "ar":
        return (1,), ()
    if decoding == "sd":
        return (gamma + 1,), (1, 2)  # the draft's 2-token step follows a fully accepted block
    return (1, gamma), (1,)


def request_capacity(config: DecodeConfig, decoding: str) -> int:
    """Generated tokens a request's caches may need rows for (their bound; they start smaller and grow:
    hippo_fast/cache.py): max_new_tokens + gamma + 2 (PEARL drafts up to gamma tokens past its pending
    ones: + 2 gamma)."""
    gamma = 0 if decoding == "ar" else config.gamma * (2 if decoding == "pearl" else 1)
    return config.max_new_tokens + gamma + 2


def check_request(target, draft, worker, target_inputs, request: GenerationRequest, capacity: int) -> None:
    """hippo_fast.cache.check_fits for this request's caches (the target's; the draft's, here or in the
    `worker`), before any is allocated: ConfigError when its positions or its memory do not fit."""
    from hippo_fast.cache import CacheNeed, check_fits, kv_row_bytes, max_positions

    rows = target_inputs.num_tokens  # the draft's (pruned) prompt has at most as many rows

    def here(adapter) -> CacheNeed:
        dtype = next(adapter.model.parameters()).dtype
        return CacheNeed(adapter.name, str(adapter.device), rows, kv_row_bytes(adapter.model.config, dtype),
                         max_positions(adapter.model.config))

    needs = [here(target)]
    if request.decoding != "ar" and worker is not None:
        from hippo_fast.overlap.processes import RemoteDraft

        remote = RemoteDraft.of(draft)
        facts = worker.drafts.get(remote.key, {})
        if "kv_row_bytes" in facts:
            needs.append(CacheNeed(remote.path, remote.device, rows, facts["kv_row_bytes"], facts.get("max_positions")))
    elif request.decoding != "ar":
        needs.append(here(draft))
    next_position = int(target.prompt_positions(target_inputs).max()) + 1
    check_fits(needs, next_position, request.config.max_new_tokens, capacity)


OVERLAPS = ("off", "streams", "processes")


@dataclass(frozen=True)
class FastImplementation:
    """`overlap`: how PEARL's two halves run. "off": one after the other (decode_parallel); "streams":
    one process, the draft and the target on two CUDA streams (serial on a CPU, the same code);
    "processes": the draft in its own process (hippo_fast/overlap/processes.py). SD and AR are serial
    by definition and ignore it. `timeline`: SD and serial PEARL record their busy spans per round
    (DecodeResult.timeline; hippo_fast/decoding/spans.py); the two-process decode always does; AR
    records none."""

    compile: bool = False
    overlap: str = "off"
    timeline: bool = False
    name: str = NAME

    def __post_init__(self):
        if self.overlap not in OVERLAPS:
            raise ConfigError(f"unknown overlap {self.overlap!r}; choose one of {', '.join(OVERLAPS)}")
        if self.timeline and self.overlap == "streams":
            raise ConfigError("timeline=True waits for the device at every span, which serialises the two streams: "
                              "use overlap off or processes")

    def remote(self, decoding: str) -> bool:
        return self.overlap == "processes" and decoding == "pearl"

    def forward_fn(self, adapter):
        return compiled_forward(adapter.model) if self.compile else None

    def prepare_contexts(self, target, draft, request: GenerationRequest, clip) -> PreparedContexts:
        """Video -> both models' inputs -> the request checked against the models' positions and the memory
        (before any cache exists) -> the target's static-cache prefill (observed by the scores when the
        method needs them) -> kept indices -> the draft's static-cache prefill (in the worker's process
        for overlap "processes", whose start or draft load, if this request meets it, is reported apart)."""
        if request.decoding != "ar" and draft is None:
            raise ConfigError(f"--decoding {request.decoding} needs a draft model: pass --draft")
        capacity = request_capacity(request.config, request.decoding)
        if self.compile and self.overlap == "streams" and request.decoding == "pearl":
            from hippo_fast.overlap.lanes import check_graph_pools

            check_graph_pools(target.device, draft.device, next(target.model.parameters()).device.type == "cuda")
        worker = startup = None
        if self.remote(request.decoding):
            from hippo_fast.overlap import processes

            remote = processes.RemoteDraft.of(draft)
            started = time.perf_counter()
            worker = processes.session(remote.device, target_device=str(target.device), preload=remote)
            startup = {"worker_start_s": worker.take_startup(), "worker_start_waited_s": time.perf_counter() - started}
        target_inputs = target.prepare(clip, request.prompt)
        check_request(target, draft, worker, target_inputs, request, capacity)
        if worker is None:
            return self._prepare_here(target, draft, request, clip, target_inputs, capacity)
        try:
            prepared = self._prepare_remote(worker, target, draft, request, clip, target_inputs, capacity)
        except BaseException:
            worker.widen()
            raise
        prepared.startup = startup
        return prepared

    def _prefill_target(self, target, request, target_inputs, capacity):
        """The target's context, and the pruning scores when the method needs them."""
        from hippo_fast.pruning.scores import scored_prefill

        def prefill(inputs, video_embeds=None, observe=None):
            return static_prefill(target, inputs, capacity, video_embeds=video_embeds, observe=observe,
                                  forward_fn=self.forward_fn(target))

        if request.decoding != "ar" and request.prune.method in NEEDS_SCORES:
            return scored_prefill(target, target_inputs, request.prune.params, prefill=prefill)
        return prefill(target_inputs), None  # full video, stock positions: the target's own prefill

    def _prepare_here(self, target, draft, request, clip, target_inputs, capacity) -> PreparedContexts:
        from hippo_fast.pruning.methods import kept_indices

        target_context, scores = self._prefill_target(target, request, target_inputs, capacity)
        if request.decoding == "ar":
            return PreparedContexts(target_inputs, target_context, None, None, placement=[placement.describe("target")])
        check_vocabulary(target, draft)
        draft_inputs = draft.prepare(clip, request.prompt)
        check_grids(target_inputs, draft_inputs, target.name, draft.name)
        kept = kept_indices(request.prune, target_inputs.grid, scores)
        kept = None if kept is None else kept.cpu()
        draft_context = static_prefill(draft, draft_inputs, capacity, kept_grid_indices=kept,
                                       positions=request.prune.positions, forward_fn=self.forward_fn(draft))
        return PreparedContexts(target_inputs, target_context, draft_context, kept,
                                placement=[placement.describe("target+draft")])

    def _prepare_remote(self, worker, target, draft, request, clip, target_inputs, capacity) -> PreparedContexts:
        """The draft's job goes first, so that the worker encodes the video while the target prefills and
        scores; start_video_job narrows this process to its own cores until the decode ends."""
        from hippo_fast.overlap import processes
        from hippo_fast.pruning.methods import kept_indices

        job = processes.start_video_job(worker, processes.RemoteDraft.of(draft), request, clip, capacity,
                                        self.compile)
        here = placement.describe("target")
        target_context, scores = self._prefill_target(target, request, target_inputs, capacity)
        kept = kept_indices(request.prune, target_inputs.grid, scores)
        kept = None if kept is None else kept.cpu()
        remote = processes.finish_video_job(worker, job, kept, target, target_inputs)
        return PreparedContexts(target_inputs, target_context, remote, kept,
                                placement=[here, remote.facts.get("placement") or worker.placement])

    def measured_gamma(self, target_context: StaticContext, draft_context: StaticContext, probe_token: int,
                       repeats: int = 3) -> int:
        """PEARL's adaptive draft length round(target step / draft step) in [1, 16], measured on these
        contexts' own (possibly compiled) one-token forwards; forward counts are left unchanged."""

        def step_time(context) -> float:
            if hasattr(context, "step_time"):  # the draft in its own process: measured there
                return context.step_time(probe_token)
            ids = torch.tensor([probe_token], device=context.device)
            times = []
            for _ in range(repeats + 1):  # the first call may compile: not timed
                t0 = time.perf_counter()
                context.forward(ids, 0)[-1, 0].item()  # .item(): wait for the device
                times.append(time.perf_counter() - t0)
            context.forwards -= repeats + 1
            return sorted(times[1:])[repeats // 2]

        return int(min(16, max(1, round(step_time(target_context) / step_time(draft_context)))))

    def decode(self, decoding: str, target_context, draft_context, config: DecodeConfig) -> DecodeResult:
        if self.compile:  # capture every shape before the loop starts, not when an acceptance first needs it
            for context, sizes in zip((target_context, draft_context), step_sizes(decoding, config.gamma),
                                      strict=True):
                if isinstance(context, StaticContext):
                    context.warm(sizes, _WARMED.setdefault(context.adapter.model, set()))
        if decoding == "ar":
            return decode_autoregressive(target_context, config)
        if decoding == "sd":
            return decode_speculative(target_context, draft_context, config, timeline=self.timeline)
        if self.remote(decoding):
            from hippo_fast.overlap.processes import decode_remote

            return decode_remote(target_context, draft_context, config)
        return decode_parallel(target_context, draft_context, config, lanes=self.overlap == "streams",
                               timeline=self.timeline)


def implementation(compile: bool = False, overlap: str = "off", timeline: bool = False) -> FastImplementation:
    return FastImplementation(compile=compile, overlap=overlap, timeline=timeline)


def generate(target, draft, request: GenerationRequest, gamma_auto: bool = False, clip=None, compile: bool = False):
    """Run `request` with the fast implementation (hippo.generation.generate with these steps)."""
    from hippo import generation

    return generation.generate(implementation(compile), target, draft, request, gamma_auto, clip)
