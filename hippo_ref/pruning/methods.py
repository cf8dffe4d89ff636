"""Pruning methods: (video token grid, ratio, scores, params) -> the grid indices the draft keeps.

Every method returns a sorted, unique 1-D LongTensor of frame-major grid indices
(index = frame * tokens_per_frame + row * width + col), or None for "keep everything" (`none`).
Pruning only ever builds the DRAFT's context; nothing here can reach the target.

Budget: b = ceil((1 - ratio) * tokens_per_frame) (at least 1) per frame, frames * b in all, the same
count for every method, so comparisons are at an equal number of kept tokens. "per-frame" picks b in
every frame (so every frame keeps >= 1 token); "global" picks frames * b anywhere in the grid. Each
method has its own default (`DEFAULT_BUDGET`): HIPPO and random per frame (the paper's choice),
attn (FastV) and specvlm global (as those methods define it); `PruneParams.budget` overrides it.
Ratio 0 keeps every grid token.

Ties: every ranking is a stable descending sort, so among equal scores the LOWER grid index wins.

Methods:
- none: every visual token (plain SD / plain PEARL).
- random: b tokens per frame (or frames * b overall) drawn by torch.randperm from a torch.Generator
  seeded with `params.seed`; never the global RNG.
- uniform: frames * b tokens evenly spaced over the grid in frame-major order.
- attn: top by s_attn alone (FastV-like).
- specvlm: stage I keeps the highest-s_attn tokens until they hold `specvlm_mass` (0.4) of the
  attention mass (the smallest such count, capped at the budget); stage II fills the rest of the
  budget with tokens evenly spaced over those not yet kept (in frame-major order).
- hippo: top by the fused score (hippo_ref.pruning.scores.fused_score).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from hippo.adapters.base import VideoGrid
from hippo.errors import ConfigError

# The spec a request carries is plain data shared by every implementation (hippo/request.py).
from hippo.request import (  # noqa: F401  (re-exported)
    BUDGETS,
    DEFAULT_BUDGET,
    NEEDS_SCORES,
    PRUNING_METHOD_NAMES,
    PruneParams,
    PruneSpec,
)
from hippo_ref.pruning.scores import fused_score


def per_frame_budget(grid: VideoGrid, ratio: float) -> int:
    """Tokens kept in every frame: ceil((1 - ratio) * tokens_per_frame), at least 1."""
    return max(1, math.ceil((1 - ratio) * grid.tokens_per_frame - 1e-9))


def evenly_spaced(count: int, budget: int) -> torch.Tensor:
    """`budget` indices evenly spaced over range(count): floor((i + 0.5) * count / budget)."""
    return torch.tensor([(2 * i + 1) * count // (2 * budget) for i in range(budget)], dtype=torch.long)


def top_k(values: torch.Tensor, k: int) -> torch.Tensor:
    """Indices of the k largest values, ascending; among equal values the lower index wins."""
    order = torch.sort(values, descending=True, stable=True).indices
    return order[:k].sort().values


def budget_of(method: str, params: PruneParams | None) -> str:
    chosen = params.budget if params is not None else None
    return chosen or DEFAULT_BUDGET.get(method, "per-frame")


def per_budget(grid: VideoGrid, ratio: float, budget: str, pick: Callable[[torch.Tensor, int], torch.Tensor],
               values: torch.Tensor) -> torch.Tensor:
    """Apply `pick(values_of_a_part, k) -> sorted local indices` per frame (k = b) or to the whole grid."""
    b = per_frame_budget(grid, ratio)
    if budget == "global":
        return pick(values, grid.frames * b)
    n = grid.tokens_per_frame
    return torch.cat([pick(values[f * n : (f + 1) * n], b) + f * n for f in range(grid.frames)])


def _needs(scores, name: str, method: str) -> torch.Tensor:
    part = getattr(scores, name, None) if scores is not None else None
    if part is None:
        raise ConfigError(f"pruning method {method!r} needs the target's s_{name}: compute the scores with "
                          "hippo_ref.pruning.scores.scored_prefill (the pipeline does this for NEEDS_SCORES)")
    return part


def prune_none(grid: VideoGrid, ratio: float, scores=None, params=None) -> None:
    """Keep every visual token (plain SD / plain PEARL)."""
    return None


def prune_uniform(grid: VideoGrid, ratio: float, scores=None, params=None) -> torch.Tensor:
    """Keep frames x budget tokens evenly spaced over the grid in frame-major order."""
    if ratio == 0:
        return torch.arange(grid.grid_tokens)
    return evenly_spaced(grid.grid_tokens, grid.frames * per_frame_budget(grid, ratio))


def prune_random(grid: VideoGrid, ratio: float, scores=None, params=None) -> torch.Tensor:
    """A seeded random subset (per frame by default), from an explicit torch.Generator."""
    params = params or PruneParams()
    if ratio == 0:
        return torch.arange(grid.grid_tokens)
    generator = torch.Generator().manual_seed(params.seed)

    def pick(values, k):
        return torch.randperm(values.numel(), generator=generator)[:k].sort().values

    return per_budget(grid, ratio, budget_of("random", params), pick, torch.zeros(grid.grid_tokens))


def prune_attn(grid: VideoGrid, ratio: float, scores=None, params=None) -> torch.Tensor:
    """FastV-like: the tokens with the highest s_attn (global budget by default)."""
    attn = _needs(scores, "attn", "attn")
    if ratio == 0:
        return torch.arange(grid.grid_tokens)
    return per_budget(grid, ratio, budget_of("attn", params), top_k, attn)


def specvlm_pick(attn: torch.Tensor, k: int, mass: float) -> torch.Tensor:
    """SpecVLM's two stages on one part of the grid: k sorted local indices."""
    order = torch.sort(attn, descending=True, stable=True).indices
    cumulative = torch.cumsum(attn[order].double(), 0)
    reach = int(torch.searchsorted(cumulative, mass * cumulative[-1])) + 1  # smallest count holding `mass`
    stage1 = order[: min(reach, k, attn.numel())]
    rest = torch.ones(attn.numel(), dtype=torch.bool)
    rest[stage1] = False
    rest = torch.nonzero(rest).flatten()
    stage2 = rest[evenly_spaced(rest.numel(), k - stage1.numel())] if k > stage1.numel() else rest[:0]
    return torch.cat([stage1, stage2]).sort().values


def prune_specvlm(grid: VideoGrid, ratio: float, scores=None, params=None) -> torch.Tensor:
    """SpecVLM two-stage: attention-mass stage I, evenly spaced stage II (global budget by default)."""
    params = params or PruneParams()
    attn = _needs(scores, "attn", "specvlm")
    if ratio == 0:
        return torch.arange(grid.grid_tokens)

    def pick(values, k):
        return specvlm_pick(values, k, params.specvlm_mass)

    return per_budget(grid, ratio, budget_of("specvlm", params), pick, attn)


def prune_hippo(grid: VideoGrid, ratio: float, scores=None, params=None) -> torch.Tensor:
    """HIPPO: the tokens with the highest fused score (per-frame budget by default)."""
    params = params or PruneParams()
    if scores is None:
        _needs(scores, "attn", "hippo")
    if ratio == 0:
        return torch.arange(grid.grid_tokens)
    return per_budget(grid, ratio, budget_of("hippo", params), top_k, fused_score(scores, grid, params.weights))


PruneMethod = Callable[..., "torch.Tensor | None"]
PRUNING_METHODS: dict[str, PruneMethod] = {
    "none": prune_none,
    "random": prune_random,
    "uniform": prune_uniform,
    "attn": prune_attn,
    "specvlm": prune_specvlm,
    "hippo": prune_hippo,
}
assert tuple(PRUNING_METHODS) == PRUNING_METHOD_NAMES, "hippo.request.PRUNING_METHOD_NAMES lists these methods"


def kept_indices(spec: PruneSpec, grid: VideoGrid, scores=None) -> torch.Tensor | None:
    """Apply `spec` to `grid`: the sorted unique kept grid indices, or None for all."""
    return PRUNING_METHODS[spec.method](grid, spec.ratio, scores, spec.params)
