"""Pruning methods: (video token grid, ratio, scores) -> the grid indices the draft keeps.

Every method returns a sorted, unique 1-D LongTensor of frame-major grid indices
(index = frame * tokens_per_frame + row * width + col), or None for "keep everything".
The budget is per frame by default: ceil((1 - ratio) * tokens_per_frame) tokens in every frame,
which keeps at least one token per frame at any ratio < 1. Pruning only ever builds the DRAFT's
context; nothing here can reach the target.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from hippo.adapters.base import VideoGrid
from hippo.errors import ConfigError


@dataclass(frozen=True)
class PruneSpec:
    """Which pruning method, how much to prune, how the kept tokens are positioned in the draft."""

    method: str = "none"
    ratio: float = 0.0
    positions: str = "keep"
    params: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.method not in PRUNING_METHODS:
            raise ConfigError(
                f"unknown pruning method {self.method!r}; choose one of {', '.join(sorted(PRUNING_METHODS))}"
            )
        if not 0 <= self.ratio < 1:
            raise ConfigError(
                f"pruning ratio must be in [0, 1) (the fraction of visual tokens removed), got {self.ratio}"
            )
        if self.positions not in ("keep", "compact"):
            raise ConfigError(f"unknown position policy {self.positions!r}; choose keep or compact")


def per_frame_budget(grid: VideoGrid, ratio: float) -> int:
    """Tokens kept in every frame: ceil((1 - ratio) * tokens_per_frame), at least 1."""
    return max(1, math.ceil((1 - ratio) * grid.tokens_per_frame - 1e-9))


def evenly_spaced(count: int, budget: int) -> torch.Tensor:
    """`budget` indices evenly spaced over range(count): floor((i + 0.5) * count / budget)."""
    return torch.tensor([(2 * i + 1) * count // (2 * budget) for i in range(budget)], dtype=torch.long)


def prune_none(grid: VideoGrid, ratio: float, scores=None, params=None) -> None:
    """Keep every visual token (plain SD / plain PEARL)."""
    return None


def prune_uniform(grid: VideoGrid, ratio: float, scores=None, params=None) -> torch.Tensor:
    """Keep frames x budget tokens evenly spaced over the grid in frame-major order."""
    if ratio == 0:
        return torch.arange(grid.grid_tokens)
    return evenly_spaced(grid.grid_tokens, grid.frames * per_frame_budget(grid, ratio))


PruneMethod = Callable[..., "torch.Tensor | None"]
PRUNING_METHODS: dict[str, PruneMethod] = {"none": prune_none, "uniform": prune_uniform}
# Methods that need the target's scores (s_attn, s_temp, s_spat) register here with needs_scores=True.
NEEDS_SCORES: set[str] = set()


def kept_indices(spec: PruneSpec, grid: VideoGrid, scores=None) -> torch.Tensor | None:
    """Apply `spec` to `grid`: the sorted unique kept grid indices, or None for all."""
    return PRUNING_METHODS[spec.method](grid, spec.ratio, scores, spec.params)
