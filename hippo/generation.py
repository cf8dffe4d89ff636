"""One request end to end, for any implementation: the flow both hippo_ref and hippo_fast follow.

    video -> both models' inputs -> target prefill (observed by the pruning scores when the method
    needs them) -> kept indices -> draft prefill -> [gamma auto] -> decode -> text + stats

An implementation is an object (from the module hippo_ref.pipeline or hippo_fast.pipeline, whose
`implementation(**options)` makes it) that provides the three hot steps of that flow, typed as
hippo.interfaces.Implementation (and its contexts there):

    prepare_contexts(target, draft, request, clip) -> PreparedContexts
    measured_gamma(target_context, draft_context, probe_token) -> int
    decode(decoding, target_context, draft_context, config) -> DecodeResult

`IMPLEMENTATIONS` names them; the CLI, the audit and the benchmark reach every implementation
through `implementation(name)` and `generate(...)` here, never by importing one directly.
"""

from __future__ import annotations

import importlib
import time
from dataclasses import dataclass, replace

import torch

from hippo import placement
from hippo.adapters.base import PreparedInputs
from hippo.errors import ConfigError
from hippo.interfaces import Implementation, PreparedContext, TimedContext
from hippo.request import GenerationRequest, GenerationResult
from hippo.stats import RequestStats

IMPLEMENTATIONS = {"ref": "hippo_ref.pipeline", "fast": "hippo_fast.pipeline"}
# The implementation variants, one vocabulary for the sweep (`--impls`), the benchmarks' rows and the
# audit's candidates: name -> (its registered implementation, the options that make it).
VARIANTS: dict[str, tuple[str, dict]] = {
    "ref": ("ref", {}),
    "fast": ("fast", {}),
    "fast-compiled": ("fast", {"compile": True}),
    "fast-processes": ("fast", {"overlap": "processes"}),  # the draft in its own (spawned) process: PEARL only
    "fast-streams": ("fast", {"overlap": "streams"}),  # two CUDA streams (serial on a CPU): PEARL only
    "fast-timed": ("fast", {"timeline": True}),  # SD and serial PEARL record their busy spans (the timeline)
}


def implementation(name: str, **options) -> Implementation:
    """The implementation registered as `name`, with its options (hippo_fast: compile=True|False)."""
    if name not in IMPLEMENTATIONS:
        raise ConfigError(f"unknown implementation {name!r}; choose one of {', '.join(IMPLEMENTATIONS)}")
    return importlib.import_module(IMPLEMENTATIONS[name]).implementation(**options)


def variant(name: str, **options) -> Implementation:
    """The implementation variant `name` (VARIANTS), with further `options` (e.g. compile=True, phases=True)."""
    if name not in VARIANTS:
        raise ConfigError(f"unknown implementation {name!r}; choose one of {', '.join(VARIANTS)}")
    registered, preset = VARIANTS[name]
    return implementation(registered, **{**preset, **options})


@dataclass
class PreparedContexts:
    """Both models prefilled for one request: what every decoding algorithm starts from."""

    target_inputs: PreparedInputs  # the target's
    target_context: PreparedContext  # the full video, the target's own prefill
    # The pruned draft context (None for AR); a draft in the worker's process: a TimedContext held there.
    draft_context: PreparedContext | TimedContext | None
    kept: torch.Tensor | None  # the kept grid indices (None: every visual token)
    # hippo.placement.describe() of each process of the request (None: this process alone, described by generate)
    placement: list | None = None
    # The draft worker's start-up met by this request, not request time: {"worker_start_s": its start-up
    # (launch to draft loaded) or a new draft's load, reported by the first request to use it (0.0 after);
    # "worker_start_waited_s": how long preparing the contexts waited for it}. None: no worker.
    startup: dict | None = None
    # Seconds of each step of preparing the contexts, when the implementation records them (hippo_fast's
    # phases=True; None otherwise).
    phases: dict | None = None


def generate(impl: Implementation | str, target, draft, request: GenerationRequest, gamma_auto: bool = False,
             clip=None) -> GenerationResult:
    """Run `request` with implementation `impl`. The target always reads the full video;
    `request.prune` shapes the draft only. `clip` (a VideoClip of request.video, already loaded) skips
    loading the video again."""
    from hippo.video import load_video

    impl = implementation(impl) if isinstance(impl, str) else impl
    start = time.perf_counter()
    config = request.config
    if not config.eos_token_ids:
        config = replace(config, eos_token_ids=target.eos_token_ids)
        request = replace(request, config=config)
    if clip is None:
        clip = load_video(request.video, request.frames)
    prepared = impl.prepare_contexts(target, draft, request, clip)
    target_context, draft_context, kept = prepared.target_context, prepared.draft_context, prepared.kept
    startup = prepared.startup or {}
    excluded = startup.get("worker_start_waited_s") or 0.0  # start-up is not request time
    if gamma_auto and draft_context is not None:
        probe = int(torch.argmax(target_context.last_logits))
        config = replace(config, gamma=impl.measured_gamma(target_context, draft_context, probe))
    prefill_s = time.perf_counter() - start - excluded
    result = impl.decode(request.decoding, target_context, draft_context, config)
    grid = prepared.target_inputs.grid
    stats = RequestStats(
        decode=result.stats,
        total_s=time.perf_counter() - start - excluded,
        prefill_s=prefill_s,
        visual_tokens=grid.total_tokens,
        kept_visual_tokens=grid.total_tokens if kept is None else int(kept.numel()) + grid.extra_tokens,
        placement=prepared.placement or [placement.describe("target" if draft_context is None else "target+draft")],
        worker_start_s=startup.get("worker_start_s"),
        worker_start_waited_s=startup.get("worker_start_waited_s"),
    )
    text = target.tokenizer.decode(result.tokens, skip_special_tokens=True)
    return GenerationResult(result.tokens, text, stats, kept, request=replace(request, config=config),
                            frame_indices=clip.frame_indices, timeline=result.timeline)
