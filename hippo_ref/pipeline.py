"""One request end to end: video -> both models' inputs -> target prefill -> pruning -> draft prefill
-> decode. This is the data flow an auditor follows; each step is a call into one module."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch

from hippo.adapters.base import VideoLLMAdapter
from hippo.errors import ConfigError
from hippo.pairing import check_grids, check_vocabulary
from hippo.stats import RequestStats
from hippo.video import load_video
from hippo_ref.decoding.autoregressive import decode_autoregressive
from hippo_ref.decoding.common import DecodeConfig
from hippo_ref.decoding.parallel import decode_parallel
from hippo_ref.decoding.speculative import decode_speculative
from hippo_ref.pruning.methods import NEEDS_SCORES, PruneSpec, kept_indices
from hippo_ref.pruning.scores import scored_prefill

DECODINGS = ("ar", "sd", "pearl")


@dataclass(frozen=True)
class GenerationRequest:
    video: str
    prompt: str
    frames: int = 8
    decoding: str = "pearl"
    prune: PruneSpec = field(default_factory=PruneSpec)
    config: DecodeConfig = field(default_factory=DecodeConfig)

    def __post_init__(self):
        if self.decoding not in DECODINGS:
            raise ConfigError(f"unknown decoding {self.decoding!r}; choose one of {', '.join(DECODINGS)}")


@dataclass
class GenerationResult:
    tokens: list[int]
    text: str
    stats: RequestStats
    kept_grid_indices: torch.Tensor | None = None

    def as_json(self) -> dict:
        return {"tokens": self.tokens, "text": self.text, "stats": self.stats.as_json()}


def measured_gamma(target_context, draft_context, probe_token: int, repeats: int = 3) -> int:
    """PEARL's adaptive draft length: round(target step time / draft step time), in [1, 16].
    Probes one-token steps and rolls both caches back, leaving forward counts unchanged."""

    def step_time(context) -> float:
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            context.step([probe_token], 0)
            times.append(time.perf_counter() - t0)
            context.rollback(0)
        context.forwards -= repeats
        return sorted(times)[repeats // 2]

    return int(min(16, max(1, round(step_time(target_context) / step_time(draft_context)))))


@dataclass
class PreparedContexts:
    """Both models prefilled for one request: what every decoding algorithm starts from."""

    target_inputs: object  # PreparedInputs of the target
    target_context: object  # DecodeContext: the full video, the target's own prefill
    draft_context: object | None  # DecodeContext: the pruned draft context (None for AR)
    kept: torch.Tensor | None  # the kept grid indices (None: every visual token)


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


def generate(
    target: VideoLLMAdapter,
    draft: VideoLLMAdapter | None,
    request: GenerationRequest,
    gamma_auto: bool = False,
    clip=None,
) -> GenerationResult:
    """Run `request`. The target always reads the full video; `request.prune` shapes the draft only.
    `clip` (a VideoClip of request.video, already loaded) skips loading the video again."""
    start = time.perf_counter()
    config = request.config
    if not config.eos_token_ids:
        config = DecodeConfig(**{**config.__dict__, "eos_token_ids": target.eos_token_ids})
    if clip is None:
        clip = load_video(request.video, request.frames)
    prepared = prepare_contexts(target, draft, request, clip)
    target_context, draft_context, kept = prepared.target_context, prepared.draft_context, prepared.kept
    if gamma_auto and draft_context is not None:
        gamma = measured_gamma(target_context, draft_context, int(target_context.last_logits.argmax()))
        config = DecodeConfig(**{**config.__dict__, "gamma": gamma})
    prefill_s = time.perf_counter() - start
    if request.decoding == "ar":
        result = decode_autoregressive(target_context, config)
    elif request.decoding == "sd":
        result = decode_speculative(target_context, draft_context, config)
    else:
        result = decode_parallel(target_context, draft_context, config)
    grid = prepared.target_inputs.grid
    stats = RequestStats(
        decode=result.stats,
        total_s=time.perf_counter() - start,
        prefill_s=prefill_s,
        visual_tokens=grid.total_tokens,
        kept_visual_tokens=grid.total_tokens if kept is None else int(kept.numel()) + grid.extra_tokens,
    )
    text = target.tokenizer.decode(result.tokens, skip_special_tokens=True)
    return GenerationResult(result.tokens, text, stats, kept)
