"""hippo_ref's steps of one request (hippo/generation.py runs them in order): video -> both models'
inputs -> target prefill -> pruning -> draft prefill -> decode. This is the data flow an auditor
follows; each step is a call into one module."""

from __future__ import annotations

import time

from hippo import generation
from hippo.adapters.base import VideoLLMAdapter
from hippo.errors import ConfigError
from hippo.generation import PreparedContexts
from hippo.pairing import check_grids, check_vocabulary
from hippo.request import (  # noqa: F401  (re-exported: the request types used to live here)
    DECODINGS,
    GenerationRequest,
    GenerationResult,
)
from hippo_ref.decoding.autoregressive import decode_autoregressive
from hippo_ref.decoding.common import DecodeConfig, DecodeResult
from hippo_ref.decoding.parallel import decode_parallel
from hippo_ref.decoding.speculative import decode_speculative
from hippo_ref.pruning.methods import NEEDS_SCORES, kept_indices
from hippo_ref.pruning.scores import scored_prefill

NAME = "ref"
name = NAME  # hippo.interfaces.Implementation: this module is the implementation


def measured_gamma(target_context, draft_context, probe_token: int, repeats: int = 3) -> int:
    """PEARL's adaptive draft length: round(target step time / draft step time), in [1, 16].
    Probes one-token steps (not counted as forwards) and rolls both caches back."""

    def step_time(context) -> float:
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            context.probe([probe_token], 0)
            times.append(time.perf_counter() - t0)
            context.rollback(0)
        return sorted(times)[repeats // 2]

    return int(min(16, max(1, round(step_time(target_context) / step_time(draft_context)))))


def prepare_contexts(target: VideoLLMAdapter, draft: VideoLLMAdapter | None, request: GenerationRequest,
                     clip) -> PreparedContexts:
    """Video -> both models' inputs -> target prefill (observed by the scores when the method needs
    them) -> kept indices -> draft prefill. Pruning reaches only the draft's prefill."""
    if request.decoding != "ar" and draft is None:
        raise ConfigError(f"--decoding {request.decoding} needs a draft model: pass --draft")
    target_inputs = target.prepare(clip, request.prompt)
    scores = None
    if request.decoding != "ar" and request.prune.method in NEEDS_SCORES:
        # The target's one prefill, observed by the pruning scores (its logits and cache are the same bits).
        target_context, scores = scored_prefill(target, target_inputs, request.prune.params)
    else:
        target_context = target.prefill(target_inputs)  # full video, stock positions: the target's own prefill
    if request.decoding == "ar":
        return PreparedContexts(target_inputs, target_context, None, None)
    check_vocabulary(target, draft)
    draft_inputs = draft.prepare(clip, request.prompt)
    check_grids(target_inputs, draft_inputs, target.name, draft.name)
    kept = kept_indices(request.prune, target_inputs.grid, scores)
    draft_context = draft.prefill(draft_inputs, kept_grid_indices=kept, positions=request.prune.positions)
    return PreparedContexts(target_inputs, target_context, draft_context, kept)


def decode(decoding: str, target_context, draft_context, config: DecodeConfig) -> DecodeResult:
    """The decode loop of `decoding` (ar, sd, pearl) on prefilled contexts."""
    if decoding == "ar":
        return decode_autoregressive(target_context, config)
    if decoding == "sd":
        return decode_speculative(target_context, draft_context, config)
    return decode_parallel(target_context, draft_context, config)


def implementation():
    """This module is the reference implementation (it has no options)."""
    import sys

    return sys.modules[__name__]


def generate(target: VideoLLMAdapter, draft: VideoLLMAdapter | None, request: GenerationRequest,
             gamma_auto: bool = False, clip=None) -> GenerationResult:
    """Run `request` with the reference (hippo.generation.generate with these steps)."""
    return generation.generate(implementation(), target, draft, request, gamma_auto, clip)
