"""hippo_fast's steps of one request (hippo/generation.py runs them in order), the twins of
hippo_ref/pipeline.py: both models prefilled into static caches sized for the request, the pruning
scores and kept indices computed on the device, the decode loops of hippo_fast/decoding.

`implementation(compile=..., overlap=..., timeline=...)` is what hippo.generation.implementation("fast")
returns. With compile=True the decode steps go through hippo_fast/compiled.py (torch.compile of the
stock forward, every shape captured before the decode); the prefill is never compiled. The draft's
worker process (overlap "processes") is reached through the implementation too (`launch_draft`,
`serve_draft`, `close`), so that nothing outside hippo_fast imports hippo_fast/overlap.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from hippo import placement
from hippo.errors import ConfigError
from hippo.generation import PreparedContexts
from hippo.pairing import check_grids, check_vocabulary
from hippo.request import NEEDS_SCORES, DecodeConfig, DecodeResult, GenerationRequest
from hippo_fast import compiled, phases
from hippo_fast.cache import (
    CacheNeed,
    check_fits,
    kv_row_bytes,
    max_positions,
    request_capacity,
    static_prefill,
)
from hippo_fast.decoding.autoregressive import decode_autoregressive
from hippo_fast.decoding.lanes import check_graph_pools
from hippo_fast.decoding.parallel import decode_parallel
from hippo_fast.decoding.speculative import decode_speculative
from hippo_fast.overlap import processes
from hippo_fast.overlap.worker import serve_under_torchrun
from hippo_fast.pruning.methods import kept_indices
from hippo_fast.pruning.scores import scored_prefill

NAME = "fast"


def check_request(target, draft, worker, target_inputs, request: GenerationRequest, capacity: int) -> None:
    """hippo_fast.cache.check_fits for this request's caches (the target's; the draft's, here or in the
    `worker`), before any is allocated: ConfigError when its positions or its memory do not fit."""
    rows = target_inputs.num_tokens  # the draft's (pruned) prompt has at most as many rows

    def here(adapter) -> CacheNeed:
        dtype = next(adapter.model.parameters()).dtype
        return CacheNeed(adapter.name, str(adapter.device), rows, kv_row_bytes(adapter.model.config, dtype),
                         max_positions(adapter.model.config))

    needs = [here(target)]
    if request.decoding != "ar" and worker is not None:
        remote = processes.RemoteDraft.of(draft)
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
    records none. `phases`: prepare_contexts records the wall time of its steps (PreparedContexts.phases;
    hippo_fast/phases.py)."""

    compile: bool = False
    overlap: str = "off"
    timeline: bool = False
    phases: bool = False
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
        return compiled.compiled_forward(adapter.model) if self.compile else None

    # ---- the draft's worker process (overlap "processes"), for the CLI -----------------------------------
    def check_devices(self, target_device, draft_device) -> None:
        """Before any model is loaded: ConfigError for compiled forwards on two streams of one GPU."""
        if self.compile and self.overlap == "streams":
            check_graph_pools(target_device, draft_device, cuda_graphs=True)

    def launch_draft(self, path, dtype: str, device: str, target_device: str):
        """Start the draft's worker process now, loading `path` while this process loads the target; the
        draft to pass to generate(). Under torchrun rank 1 is the worker (serve_draft)."""
        draft = processes.RemoteDraft(path, dtype, device)
        processes.start_session(draft.device, target_device=target_device, preload=draft)
        return draft

    def serve_draft(self, device: str, target_device: str) -> None:
        """Rank 1 under torchrun: serve rank 0's requests as the draft's process until it is done."""
        serve_under_torchrun(device, target_device=target_device)

    def draft_in_worker(self, draft_context):
        """`draft_context` (any DecodeContext: the audit's table models) sent whole to this process's draft
        worker: the draft context that decode("pearl", ...) runs there."""
        return processes.table_job(processes.session("cpu"), draft_context)

    def close(self) -> None:
        """Stop this process's draft worker, if it has one."""
        processes.close_session()

    def prepare_contexts(self, target, draft, request: GenerationRequest, clip) -> PreparedContexts:
        """Video -> both models' inputs -> the request checked against the models' positions and the memory
        (before any cache exists) -> the target's static-cache prefill (observed by the scores when the
        method needs them) -> kept indices -> the draft's static-cache prefill (in the worker's process
        for overlap "processes", whose start or draft load, if this request meets it, is reported apart)."""
        if request.decoding != "ar" and draft is None:
            raise ConfigError(f"--decoding {request.decoding} needs a draft model: pass --draft")
        if isinstance(draft, processes.RemoteDraft) and request.decoding != "ar" and not self.remote(request.decoding):
            raise ConfigError(f"the draft is loaded in its own process, which serves PEARL's draft half only: decoding "
                              f"{request.decoding} is serial; use decoding pearl (with overlap 'processes'), or a draft "
                              "loaded in this process")
        capacity = request_capacity(request.config, request.decoding)
        if self.compile and self.overlap == "streams" and request.decoding == "pearl":
            check_graph_pools(target.device, draft.device, next(target.model.parameters()).device.type == "cuda")
        worker = startup = None
        if self.remote(request.decoding):
            remote = processes.RemoteDraft.of(draft)
            started = time.perf_counter()
            worker = processes.session(remote.device, target_device=str(target.device), preload=remote)
            startup = {"worker_start_s": worker.take_startup(), "worker_start_waited_s": time.perf_counter() - started}
        times = dict.fromkeys(phases.PHASES, 0.0) if self.phases else None
        phase = phases.recorder(times, target.device)
        with phase("preprocessing"):
            target_inputs = target.prepare(clip, request.prompt)
        check_request(target, draft, worker, target_inputs, request, capacity)
        if worker is None:
            prepared = self._prepare_here(target, draft, request, clip, target_inputs, capacity, phase)
        else:
            try:
                prepared = self._prepare_remote(worker, target, draft, request, clip, target_inputs, capacity, phase)
            except BaseException:
                worker.widen()
                raise
            prepared.startup = startup
        prepared.phases = times
        return prepared

    def _prefill_target(self, target, request, target_inputs, capacity, phase):
        """The target's context, and the pruning scores when the method needs them."""

        def prefill(inputs, video_embeds=None, observe=None):
            return static_prefill(target, inputs, capacity, video_embeds=video_embeds, observe=observe,
                                  forward_fn=self.forward_fn(target))

        with phase("vision encoding"):
            embeds = target.encode_video(target_inputs)
        if request.decoding != "ar" and request.prune.method in NEEDS_SCORES:
            return scored_prefill(target, target_inputs, request.prune.params, video_embeds=embeds, prefill=prefill,
                                  phase=phase)
        with phase("target prefill"):
            return prefill(target_inputs, embeds), None  # full video, stock positions: the target's own prefill

    def _prepare_here(self, target, draft, request, clip, target_inputs, capacity, phase) -> PreparedContexts:
        target_context, scores = self._prefill_target(target, request, target_inputs, capacity, phase)
        if request.decoding == "ar":
            return PreparedContexts(target_inputs, target_context, None, None, placement=[placement.describe("target")])
        check_vocabulary(target, draft)
        with phase("preprocessing"):
            draft_inputs = draft.prepare(clip, request.prompt)
        check_grids(target_inputs, draft_inputs, target.name, draft.name)
        with phase("pruning"):
            kept = kept_indices(request.prune, target_inputs.grid, scores)
            kept = None if kept is None else kept.cpu()
        with phase("vision encoding"):
            draft_embeds = draft.encode_video(draft_inputs)
        with phase("draft prefill"):
            draft_context = static_prefill(draft, draft_inputs, capacity, kept_grid_indices=kept,
                                           positions=request.prune.positions, video_embeds=draft_embeds,
                                           forward_fn=self.forward_fn(draft))
        return PreparedContexts(target_inputs, target_context, draft_context, kept,
                                placement=[placement.describe("target+draft")])

    def _prepare_remote(self, worker, target, draft, request, clip, target_inputs, capacity,
                        phase) -> PreparedContexts:
        """The draft's job goes first, so that the worker encodes the video while the target prefills and
        scores; start_video_job narrows this process to its own cores until the decode ends."""
        with phase("draft prefill"):
            job = processes.start_video_job(worker, processes.RemoteDraft.of(draft), request, clip, capacity,
                                            self.compile)
        here = placement.describe("target")
        target_context, scores = self._prefill_target(target, request, target_inputs, capacity, phase)
        with phase("pruning"):
            kept = kept_indices(request.prune, target_inputs.grid, scores)
            kept = None if kept is None else kept.cpu()
        with phase("draft prefill"):
            remote = processes.finish_video_job(worker, job, kept, target, target_inputs)
        return PreparedContexts(target_inputs, target_context, remote, kept,
                                placement=[here, remote.facts.get("placement") or worker.placement])

    def measured_gamma(self, target_context, draft_context, probe_token: int) -> int:
        """PEARL's adaptive draft length round(target step / draft step) in [1, 16], measured on these
        contexts' own (possibly compiled) one-token forwards, where each context lives (a remote draft's
        in its process); probes, not counted as forwards."""
        ratio = target_context.step_time(probe_token) / draft_context.step_time(probe_token)
        return int(min(16, max(1, round(ratio))))

    def decode(self, decoding: str, target_context, draft_context, config: DecodeConfig) -> DecodeResult:
        if self.compile:  # capture every shape before the loop starts, not when an acceptance first needs it
            compiled.warm_decode(decoding, config.gamma, target_context, draft_context)
        if decoding == "ar":
            return decode_autoregressive(target_context, config)
        if decoding == "sd":
            return decode_speculative(target_context, draft_context, config, timeline=self.timeline)
        if self.remote(decoding):
            return processes.decode_remote(target_context, draft_context, config)
        return decode_parallel(target_context, draft_context, config, lanes=self.overlap == "streams",
                               timeline=self.timeline)


def implementation(compile: bool = False, overlap: str = "off", timeline: bool = False,
                   phases: bool = False) -> FastImplementation:
    return FastImplementation(compile=compile, overlap=overlap, timeline=timeline, phases=phases)
