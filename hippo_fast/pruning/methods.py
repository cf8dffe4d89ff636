"""Pruning methods as batched tensor ops: the twin of hippo_ref.pruning.methods, same names and results.

Every ranking works on a (parts, tokens) view of the grid, one row per frame under the per-frame
budget and a single row under the global one: one stable descending sort for all rows at once
(among equal scores the lower grid index wins, as in the reference), then a per-row selection. The
kept indices come back sorted and unique, on the device of the scores; `none`, `random` and
`uniform` read no scores and are the reference's own functions (random stays bit-identical: the
same torch.Generator seeded with params.seed, the same randperm calls), on the CPU.
Missing scores raise the reference's ConfigError (the reference method is called for them).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from hippo.adapters.base import VideoGrid
from hippo_fast.pruning.scores import fused_score
from hippo_ref.pruning import methods as ref
from hippo_ref.pruning.methods import PruneParams, PruneSpec, budget_of, evenly_spaced, per_frame_budget  # noqa: F401

prune_none = ref.prune_none
prune_random = ref.prune_random
prune_uniform = ref.prune_uniform


def top_k(values: torch.Tensor, k: int) -> torch.Tensor:
    """Per row of `values` (parts, n): the column indices of its k largest values, ascending; among
    equal values the lower index wins."""
    order = torch.sort(values, dim=1, descending=True, stable=True).indices
    return order[:, :k].sort(dim=1).values


def specvlm_pick(attn: torch.Tensor, k: int, mass: float) -> torch.Tensor:
    """SpecVLM's two stages on every row of `attn` (parts, n) at once: (parts, k) sorted column indices.

    Stage I per row: the smallest number of top tokens whose mass reaches `mass` of the row's total
    (capped at k); stage II: the rest of k evenly spaced (hippo_ref's evenly_spaced formula) over the
    row's tokens not kept, in index order."""
    parts, n = attn.shape
    device = attn.device
    order = torch.sort(attn, dim=1, descending=True, stable=True).indices
    cumulative = torch.cumsum(torch.gather(attn, 1, order).double(), dim=1)
    reach = torch.searchsorted(cumulative, mass * cumulative[:, -1:]) + 1  # (parts, 1)
    stage1 = reach.clamp(max=min(k, n))  # tokens kept by stage I in each row
    rank = torch.arange(n, device=device)
    kept = torch.zeros((parts, n), dtype=torch.bool, device=device)
    kept.scatter_(1, order, rank < stage1)  # the first stage1 of the descending order
    # stage II: the i-th of (k - s) picks is the ((2i + 1) * (n - s) // (2 (k - s)))-th token not kept
    rest = torch.sort(kept.to(torch.uint8), dim=1, stable=True).indices  # unkept tokens first, ascending
    fill = k - stage1  # (parts, 1)
    i = torch.arange(k, device=device)
    position = (2 * i + 1) * (n - stage1) // (2 * fill.clamp(min=1))
    picked = torch.gather(rest, 1, position.clamp(max=n - 1))
    kept.scatter_(1, torch.where(i < fill, picked, order[:, :1]), True)  # order[:, 0] is kept already
    return torch.sort((~kept).to(torch.uint8), dim=1, stable=True).indices[:, :k]  # kept ones, ascending


def per_budget(grid: VideoGrid, ratio: float, budget: str, pick: Callable[[torch.Tensor, int], torch.Tensor],
               values: torch.Tensor) -> torch.Tensor:
    """`pick(rows, k) -> (parts, k) sorted column indices` on one row per frame (k = b) or on the
    whole grid as one row (k = frames * b); flat grid indices, sorted."""
    b = per_frame_budget(grid, ratio)
    if budget == "global":
        return pick(values.reshape(1, -1), grid.frames * b).flatten()
    n = grid.tokens_per_frame
    offsets = torch.arange(grid.frames, device=values.device)[:, None] * n
    return (pick(values.reshape(grid.frames, n), b) + offsets).flatten()


def _all(grid: VideoGrid, device) -> torch.Tensor:
    return torch.arange(grid.grid_tokens, device=device)


def prune_attn(grid: VideoGrid, ratio: float, scores=None, params=None) -> torch.Tensor:
    """FastV-like: the tokens with the highest s_attn (global budget by default)."""
    if scores is None or scores.attn is None:
        return ref.prune_attn(grid, ratio, scores, params)  # the reference's message
    if ratio == 0:
        return _all(grid, scores.attn.device)
    return per_budget(grid, ratio, budget_of("attn", params), top_k, scores.attn)


def prune_specvlm(grid: VideoGrid, ratio: float, scores=None, params=None) -> torch.Tensor:
    """SpecVLM two-stage: attention-mass stage I, evenly spaced stage II (global budget by default)."""
    params = params or PruneParams()
    if scores is None or scores.attn is None:
        return ref.prune_specvlm(grid, ratio, scores, params)
    if ratio == 0:
        return _all(grid, scores.attn.device)

    def pick(values, k):
        return specvlm_pick(values, k, params.specvlm_mass)

    return per_budget(grid, ratio, budget_of("specvlm", params), pick, scores.attn)


def prune_hippo(grid: VideoGrid, ratio: float, scores=None, params=None) -> torch.Tensor:
    """HIPPO: the tokens with the highest fused score (per-frame budget by default)."""
    params = params or PruneParams()
    if scores is None:
        return ref.prune_hippo(grid, ratio, scores, params)
    if ratio == 0:
        device = next((s.device for s in (scores.attn, scores.temp, scores.spat) if s is not None), None)
        return _all(grid, device)
    return per_budget(grid, ratio, budget_of("hippo", params), top_k, fused_score(scores, grid, params.weights))


# hippo_ref's methods, name for name and in its order.
PRUNING_METHODS: dict[str, ref.PruneMethod] = dict(zip(
    ref.PRUNING_METHODS, (prune_none, prune_random, prune_uniform, prune_attn, prune_specvlm, prune_hippo), strict=True))


def kept_indices(spec: PruneSpec, grid: VideoGrid, scores=None) -> torch.Tensor | None:
    """Apply `spec` to `grid`: the sorted unique kept grid indices (as hippo_ref's), or None for all."""
    return PRUNING_METHODS[spec.method](grid, spec.ratio, scores, spec.params)
