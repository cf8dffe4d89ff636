"""hippo_fast.pruning against hippo_ref.pruning: the same kept indices for every method, budget and
ratio on both families, the same scores (tolerance below), and the vectorised selections against
the reference's per-frame loop on random scores full of ties.

Tolerance of the scores: each score agrees with the reference's to 1e-6 relative (plus 1e-9
absolute, for scores at zero such as s_spat of a flat window), and its ranking (stable descending
sort, the order every method reads) is identical. The fast path batches the matrix products and
reductions over layers and window offsets; on CPU it keeps the reference's reduction shapes and
gives the same bits, other backends may differ in the last bits of fp32, which this bound allows.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers import StaticCache

import hippo_fast.pruning.methods as fast_methods
import hippo_fast.pruning.scores as fast
import hippo_ref.pruning.methods as ref_methods
import hippo_ref.pruning.scores as ref
from hippo.adapters.base import DecodeContext, VideoGrid
from hippo.errors import ConfigError
from hippo.video import load_video
from hippo_ref.pruning.methods import PruneParams, PruneSpec

PROMPT = "what color is the ball and where does it move"
METHODS = ("none", "random", "uniform", "attn", "specvlm", "hippo")
RATIOS = (0.0, 0.5, 0.75, 0.9)
RTOL, ATOL = 1e-6, 1e-9
PARAMS = {
    "all": PruneParams(),
    "layer-subset": PruneParams(attn_layers=(-1,)),
    "last-3-text": PruneParams(text_tokens=3),
    "layer0-last1-window5": PruneParams(attn_layers=(0,), text_tokens=1, spatial_window=5),
}


def assert_same_scores(got, expected, what):
    assert got.dtype == expected.dtype and got.shape == expected.shape, what
    torch.testing.assert_close(got, expected, rtol=RTOL, atol=ATOL, msg=lambda m: f"{what}: {m}")
    ranking = torch.sort(expected, descending=True, stable=True).indices
    assert torch.equal(torch.sort(got, descending=True, stable=True).indices, ranking), f"{what}: ranking differs"


@pytest.fixture(scope="module")
def inputs(pair, real_video):
    """8 frames: Qwen2.5-VL merges 2 frames per temporal group, so its grid has 4 temporal groups."""
    prepared = pair.target.prepare(load_video(real_video, 8), PROMPT)
    if pair.family.startswith("qwen"):
        assert prepared.grid.frames >= 3, "the Qwen case must span several temporal groups"
    return prepared


@pytest.fixture(scope="module")
def scored(pair, inputs):
    """{case: (reference TokenScores, fast TokenScores)} on the same video embeddings."""
    embeds = pair.target.encode_video(inputs)
    return {name: (ref.scored_prefill(pair.target, inputs, params, video_embeds=embeds)[1],
                   fast.scored_prefill(pair.target, inputs, params, video_embeds=embeds)[1])
            for name, params in PARAMS.items()}


@pytest.mark.parametrize("case", PARAMS)
def test_scores_equal_the_reference(pair, scored, case):
    expected, got = scored[case]
    for name in ("attn", "temp", "spat"):
        assert_same_scores(getattr(got, name), getattr(expected, name), f"{pair.family} {case} s_{name}")
    assert expected.attn.std() > 0 and expected.spat.std() > 0, "flat scores would prove nothing"


@pytest.mark.parametrize("budget", ["per-frame", "global"])
@pytest.mark.parametrize("method", METHODS)
def test_kept_indices_equal_the_reference(pair, inputs, scored, method, budget):
    """Each implementation end to end: its own scores, its own selection."""
    expected_scores, got_scores = scored["all"]
    for ratio in RATIOS:
        spec = PruneSpec(method, ratio, params=PruneParams(budget=budget, seed=3))
        expected = ref_methods.kept_indices(spec, inputs.grid, expected_scores)
        got = fast_methods.kept_indices(spec, inputs.grid, got_scores)
        if expected is None:
            assert got is None
            continue
        assert torch.equal(got, expected), f"{pair.family} {method} {budget} ratio {ratio}"
        assert (expected.numel() < inputs.grid.grid_tokens) == (ratio > 0), "the case must prune"


def static_prefill(adapter, spare: int = 7):
    """A prefill into a transformers StaticCache preallocated beyond the prompt (rows after it stay 0)."""

    def prefill(inputs, video_embeds, observe):
        cache = StaticCache(config=adapter.model.config, max_cache_len=inputs.num_tokens + spare)
        embeds = adapter.input_embeddings(inputs, video_embeds)
        pos = adapter.prompt_positions(inputs)
        with torch.no_grad(), observe:
            out = adapter.model(inputs_embeds=embeds[None], position_ids=adapter.batch_positions(pos.to(adapter.device)),
                                cache=cache, use_cache=True, logits_to_keep=1)
        return DecodeContext(adapter, cache, inputs.num_tokens, int(pos.max()) + 1, out.logits[0, -1].float())

    return prefill


def test_static_cache_prefill_and_layer_chunks(pair, inputs, scored):
    params = PARAMS["all"]
    context, got = fast.scored_prefill(pair.target, inputs, params, prefill=static_prefill(pair.target))
    assert context.cache.layers[0].keys.shape[2] == inputs.num_tokens + 7, "the full preallocated buffer"
    expected = scored["all"][0]
    for name in ("attn", "temp", "spat"):
        assert_same_scores(getattr(got, name), getattr(expected, name), f"{pair.family} static s_{name}")
    capture = ref.TextQueryCapture(pair.target, inputs)
    plain = pair.target.prefill(inputs, observe=capture)
    for max_elements in (1, 2 * len(pair.target.attention_modules()) * 10**9):  # one layer a chunk / all at once
        assert_same_scores(fast.attention_scores(capture, plain, max_elements=max_elements), expected.attn,
                           f"{pair.family} s_attn max_elements={max_elements}")
    assert all(not m._forward_pre_hooks for m in pair.target.attention_modules()), "hooks must be removed"


def test_scored_prefill_is_the_plain_prefill(pair, inputs):
    plain = pair.target.prefill(inputs)
    observed, _ = fast.scored_prefill(pair.target, inputs, PruneParams())
    assert torch.equal(plain.last_logits, observed.last_logits)
    for a, b in zip(plain.cache.layers, observed.cache.layers, strict=True):
        assert torch.equal(a.keys, b.keys) and torch.equal(a.values, b.values)


# ---- s_spat, s_temp, fusion on random embeddings -------------------------------------------------------
@pytest.mark.parametrize("window", [3, 5])
@pytest.mark.parametrize("shape", [(2, 4, 5), (1, 1, 3), (3, 1, 1), (5, 3, 7)])
def test_local_scores_equal_the_reference(window, shape):
    grid = VideoGrid(*shape, extra_tokens=1)
    embeds = torch.randn(grid.total_tokens, 6, generator=torch.Generator().manual_seed(3))
    expected = ref.spatial_complexity(embeds, grid, window)
    for max_elements in (1, fast.MAX_ELEMENTS):  # one frame a chunk / every frame at once
        assert_same_scores(fast.spatial_complexity(embeds, grid, window, max_elements), expected, f"s_spat {shape}")
    assert_same_scores(fast.temporal_novelty(embeds, grid, 0.3), ref.temporal_novelty(embeds, grid, 0.3), "s_temp")


def test_fusion_is_the_reference_definition():
    """hippo_fast fuses with hippo_ref's own functions (device-agnostic), so the fused score cannot differ."""
    assert fast.fused_score is ref.fused_score and fast.minmax_per_frame is ref.minmax_per_frame
    grid = VideoGrid(frames=3, height=2, width=3)
    g = torch.Generator().manual_seed(1)
    scores = ref.TokenScores(*(torch.randint(0, 3, (18,), generator=g).float() / 2 for _ in range(3)))
    expected = sum(w / 1.0 * ref.minmax_per_frame(getattr(scores, n), grid)
                   for n, w in zip(("attn", "temp", "spat"), (0.3, 0.5, 0.2), strict=True))
    assert torch.allclose(ref.fused_score(scores, grid, (0.3, 0.5, 0.2)), expected, rtol=0, atol=1e-6)
    with pytest.raises(ConfigError, match="no s_spat was computed"):
        fast.fused_score(ref.TokenScores(attn=scores.attn), grid, (1, 0, 1))


# ---- the vectorised selections against the reference, on random scores with many ties ------------------
grids = st.builds(VideoGrid, frames=st.integers(1, 7), height=st.integers(1, 6), width=st.integers(1, 6),
                  extra_tokens=st.integers(0, 1))
ratios = st.one_of(st.sampled_from(RATIOS + (0.999,)), st.floats(0.0, 0.999))


def tied_scores(grid: VideoGrid, seed: int, levels: int) -> ref.TokenScores:
    """Scores quantised to `levels` values, so that ties are common (levels 1: all equal)."""
    g = torch.Generator().manual_seed(seed)

    def part():
        return torch.randint(0, levels, (grid.grid_tokens,), generator=g).float() / levels

    attn = part() + 1e-3
    return ref.TokenScores(attn=attn / attn.sum(), temp=part(), spat=part())


@settings(max_examples=300, deadline=None)
@given(grid=grids, ratio=ratios, seed=st.integers(0, 2**31), levels=st.sampled_from([1, 2, 3, 1000]))
def test_per_frame_top_k_equals_the_reference_loop(grid, ratio, seed, levels):
    values = tied_scores(grid, seed, levels).temp
    expected = ref_methods.per_budget(grid, ratio, "per-frame", ref_methods.top_k, values)
    assert torch.equal(fast_methods.per_budget(grid, ratio, "per-frame", fast_methods.top_k, values), expected)


@settings(max_examples=300, deadline=None)
@given(grid=grids, ratio=ratios, method=st.sampled_from(METHODS), budget=st.sampled_from([None, "per-frame", "global"]),
       seed=st.integers(0, 2**31), levels=st.sampled_from([1, 2, 3, 1000]),
       mass=st.sampled_from([0.4, 0.05, 0.7, 1.0]))
def test_kept_indices_equal_the_reference_on_ties(grid, ratio, method, budget, seed, levels, mass):
    scores = tied_scores(grid, seed, levels)
    spec = PruneSpec(method, ratio, params=PruneParams(budget=budget, seed=seed, specvlm_mass=mass))
    expected = ref_methods.kept_indices(spec, grid, scores)
    got = fast_methods.kept_indices(spec, grid, scores)
    assert (got is None) if expected is None else torch.equal(got, expected)


@settings(max_examples=200, deadline=None)
@given(rows=st.integers(1, 5), n=st.integers(1, 40), data=st.data(), seed=st.integers(0, 2**31),
       levels=st.sampled_from([1, 2, 5, 1000]), mass=st.floats(0.01, 1.0))
def test_specvlm_pick_rows_equal_the_reference(rows, n, data, seed, levels, mass):
    k = data.draw(st.integers(1, n))
    g = torch.Generator().manual_seed(seed)
    attn = torch.randint(0, levels, (rows, n), generator=g).float() + 0.5
    expected = torch.stack([ref_methods.specvlm_pick(row, k, mass) for row in attn])
    assert torch.equal(fast_methods.specvlm_pick(attn, k, mass), expected)


@pytest.mark.parametrize("method", ["attn", "specvlm", "hippo"])
def test_missing_scores_raise_the_reference_message(method):
    grid = VideoGrid(1, 2, 2)
    with pytest.raises(ConfigError) as expected:
        ref_methods.kept_indices(PruneSpec(method, 0.5), grid)
    with pytest.raises(ConfigError) as got:
        fast_methods.kept_indices(PruneSpec(method, 0.5), grid)
    assert str(got.value) == str(expected.value)
    assert set(fast_methods.PRUNING_METHODS) == set(ref_methods.PRUNING_METHODS)
