"""Pruning methods as pure functions of (grid, ratio, scores, params): property tests with hypothesis,
the tie rule, SpecVLM's two stages, and the messages of bad parameters."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from hippo.adapters.base import VideoGrid
from hippo.errors import ConfigError
from hippo_ref.pruning.methods import (
    DEFAULT_BUDGET,
    PRUNING_METHODS,
    PruneParams,
    PruneSpec,
    kept_indices,
    per_frame_budget,
    prune_attn,
    prune_hippo,
    prune_random,
    prune_specvlm,
    specvlm_pick,
)
from hippo_ref.pruning.scores import TokenScores

METHODS = ("random", "uniform", "attn", "specvlm", "hippo")


def make_scores(grid: VideoGrid, seed: int, levels: int) -> TokenScores:
    """Random scores quantised to `levels` values, so that ties are common."""
    g = torch.Generator().manual_seed(seed)

    def part():
        return torch.randint(0, levels, (grid.grid_tokens,), generator=g).float() / levels

    attn = part() + 1e-3
    return TokenScores(attn=attn / attn.sum(), temp=part(), spat=part())


grids = st.builds(VideoGrid, frames=st.integers(1, 7), height=st.integers(1, 6), width=st.integers(1, 6),
                  extra_tokens=st.integers(0, 1))
ratios = st.one_of(st.just(0.0), st.just(0.9), st.just(0.999), st.floats(0.0, 0.999))


@settings(max_examples=300, deadline=None)
@given(grid=grids, ratio=ratios, method=st.sampled_from(METHODS), budget=st.sampled_from([None, "per-frame", "global"]),
       seed=st.integers(0, 2**31), levels=st.sampled_from([1, 2, 3, 1000]))
def test_kept_indices_properties(grid, ratio, method, budget, seed, levels):
    params = PruneParams(budget=budget, seed=seed)
    scores = make_scores(grid, seed, levels)
    kept = kept_indices(PruneSpec(method, ratio, params=params), grid, scores)
    b = per_frame_budget(grid, ratio)
    assert kept.dtype == torch.long and kept.ndim == 1
    assert kept.numel() == grid.frames * b, "every method keeps the same count: frames x per-frame budget"
    assert bool((kept[1:] > kept[:-1]).all()), "sorted and unique"
    assert int(kept.min()) >= 0 and int(kept.max()) < grid.grid_tokens, "grid indices only (extra tokens excluded)"
    if ratio == 0:
        assert torch.equal(kept, torch.arange(grid.grid_tokens))
    per_frame = torch.bincount(kept // grid.tokens_per_frame, minlength=grid.frames)
    if method == "uniform" or (budget or DEFAULT_BUDGET[method]) == "per-frame":
        assert per_frame.tolist() == [b] * grid.frames, "per-frame budget: b >= 1 tokens in every frame"
    again = kept_indices(PruneSpec(method, ratio, params=params), grid, make_scores(grid, seed, levels))
    assert torch.equal(kept, again), "deterministic for a seed"


def test_ratio_just_below_one_keeps_one_token_per_frame():
    grid = VideoGrid(frames=5, height=3, width=3)
    scores = make_scores(grid, 0, 1000)
    for method in METHODS:
        kept = kept_indices(PruneSpec(method, 0.9999, params=PruneParams(budget="per-frame")), grid, scores)
        assert (kept // 9).tolist() == [0, 1, 2, 3, 4], method


def test_ties_lower_index_wins():
    grid = VideoGrid(frames=3, height=2, width=2)
    flat = TokenScores(attn=torch.full((12,), 1 / 12), temp=torch.ones(12), spat=torch.zeros(12))
    per_frame = PruneParams(budget="per-frame")
    assert prune_attn(grid, 0.5, flat, per_frame).tolist() == [0, 1, 4, 5, 8, 9]
    assert prune_attn(grid, 0.5, flat, PruneParams(budget="global")).tolist() == [0, 1, 2, 3, 4, 5]
    assert prune_hippo(grid, 0.5, flat, per_frame).tolist() == [0, 1, 4, 5, 8, 9]
    # a partial tie: token 2 and 3 share the second-best score in frame 0; 2 wins
    attn = torch.tensor([0.1, 0.5, 0.3, 0.3] + [0.0] * 8)
    assert prune_attn(grid, 0.5, TokenScores(attn=attn), per_frame)[:2].tolist() == [1, 2]


def test_random_uses_its_own_generator_and_seed():
    grid = VideoGrid(frames=4, height=4, width=4)
    torch.manual_seed(0)
    a = prune_random(grid, 0.75, None, PruneParams(seed=5))
    torch.manual_seed(99)
    assert torch.equal(a, prune_random(grid, 0.75, None, PruneParams(seed=5))), "global RNG must not matter"
    others = [prune_random(grid, 0.75, None, PruneParams(seed=s)) for s in range(6, 10)]
    assert any(not torch.equal(a, o) for o in others), "the seed must matter"


def test_specvlm_stage_one_then_evenly_spaced_stage_two():
    attn = torch.tensor([0.02, 0.30, 0.02, 0.15, 0.02, 0.02, 0.02, 0.02, 0.02, 0.41])
    # stage I at 40%: token 9 (0.41) alone holds it; stage II: 3 tokens evenly spaced over the other 9
    assert specvlm_pick(attn, 4, 0.4).tolist() == [1, 4, 7, 9]
    # at 70%: 9, 1 (0.71); stage II: 2 over [0, 2, 3, 4, 5, 6, 7, 8] -> positions 2 and 6 -> 3 and 7
    assert specvlm_pick(attn, 4, 0.7).tolist() == [1, 3, 7, 9]
    # stage I capped at the budget
    assert specvlm_pick(attn, 2, 0.95).tolist() == [1, 9]
    grid = VideoGrid(frames=1, height=2, width=5)
    assert prune_specvlm(grid, 0.6, TokenScores(attn=attn), PruneParams()).tolist() == [1, 4, 7, 9]


def test_hippo_weights_pick_the_score():
    grid = VideoGrid(frames=2, height=1, width=4)
    scores = TokenScores(attn=torch.tensor([0.4, 0.1, 0.0, 0.0, 0.0, 0.0, 0.1, 0.4]),
                         temp=torch.tensor([0.0, 0.0, 1.0, 0.5, 0.9, 0.0, 0.0, 0.0]),
                         spat=torch.tensor([0.0, 1.0, 0.0, 0.0, 0.0, 0.8, 0.0, 0.0]))
    assert prune_hippo(grid, 0.75, scores, PruneParams(weights=(1, 0, 0))).tolist() == [0, 7]
    assert prune_hippo(grid, 0.75, scores, PruneParams(weights=(0, 1, 0))).tolist() == [2, 4]
    assert prune_hippo(grid, 0.75, scores, PruneParams(weights=(0, 0, 1))).tolist() == [1, 5]


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: PruneSpec("uniform", 1.0), "pruning ratio must be in [0, 1)"),
        (lambda: PruneSpec("hippo", -0.2), "pruning ratio must be in [0, 1)"),
        (lambda: PruneSpec("fastv", 0.5), "unknown pruning method 'fastv'; choose one of attn, hippo, none, random"),
        (lambda: PruneParams(weights=(-1, 1, 1)), "pruning weights must be finite and >= 0"),
        (lambda: PruneParams(weights=(1, float("nan"), 1)), "use 0 to switch a score off"),
        (lambda: PruneParams(weights=(0, 0, 0)), "pruning weights (w_g, w_t, w_s) are all zero"),
        (lambda: PruneParams(weights=(1, 1)), "pruning weights are three numbers (w_g, w_t, w_s), got 2"),
        (lambda: PruneParams(budget="per-video"), "unknown budget 'per-video'; choose per-frame or global"),
        (lambda: PruneParams(specvlm_mass=0), "specvlm mass must be in (0, 1]"),
        (lambda: PruneParams(spatial_window=4), "spatial window must be an odd number >= 3"),
        (lambda: PruneParams(text_tokens=0), "text tokens must be >= 1"),
        (lambda: PruneParams(attn_layers=()), "--attn-layers is empty"),
        (lambda: PruneSpec("hippo", 0.5, params={"weight": (1, 1, 1)}), "unknown pruning parameter(s) weight; known:"),
        (lambda: prune_hippo(VideoGrid(1, 2, 2), 0.5), "pruning method 'hippo' needs the target's s_attn"),
        (lambda: prune_specvlm(VideoGrid(1, 2, 2), 0.5), "pruning method 'specvlm' needs the target's s_attn"),
    ],
)
def test_bad_parameters_say_what_to_do(make, message):
    with pytest.raises(ConfigError) as err:
        make()
    assert message in str(err.value)


def test_every_method_is_registered():
    assert set(PRUNING_METHODS) == {"none", *METHODS}
    assert kept_indices(PruneSpec("none", 0.9), VideoGrid(2, 2, 2)) is None
