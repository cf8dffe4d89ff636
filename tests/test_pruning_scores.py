"""HIPPO's scores: s_attn by KV reconstruction equals the eager attention of the same checkpoint, the
observed prefill is the plain prefill bit for bit, and s_temp / s_spat / fusion follow their definitions."""

from __future__ import annotations

import pytest
import torch

from hippo.adapters.base import PreparedInputs, VideoGrid
from hippo.errors import ConfigError
from hippo.video import load_video
from hippo_ref.pruning.methods import PruneParams
from hippo_ref.pruning.scores import (
    TextQueryCapture,
    TokenScores,
    fused_score,
    minmax_per_frame,
    query_rows,
    scored_prefill,
    spatial_complexity,
    temporal_novelty,
)

PROMPT = "what color is the ball and where does it move"


@pytest.fixture(scope="module")
def scored(pair, real_video):
    """8 frames: Qwen2.5-VL merges 2 frames per temporal group, so its grid has 4 temporal groups."""
    inputs = pair.target.prepare(load_video(real_video, 8), PROMPT)
    return inputs


@pytest.fixture(scope="module")
def eager_attentions(pair, scored):
    """The same checkpoint on eager attention, stock forward on the stock inputs, output_attentions=True."""
    from transformers import AutoModelForImageTextToText

    model = AutoModelForImageTextToText.from_pretrained(
        pair.target_dir, attn_implementation="eager", local_files_only=True
    ).eval()
    with torch.no_grad():
        out = model(**pair.target.hf_generate_inputs(scored), output_attentions=True)
    assert len(out.attentions) == len(pair.target.attention_modules())
    return [a[0] for a in out.attentions]  # each (heads, L, L)


def eager_s_attn(attentions, inputs, layers, rows):
    """Rows of the text queries, columns of the video (grid) keys, renormalised; mean over layers,
    heads and queries."""
    video = slice(inputs.video_start, inputs.video_start + inputs.grid.grid_tokens)
    per_layer = []
    for layer in layers:
        weights = attentions[layer][:, rows, video].double()
        weights = weights / weights.sum(-1, keepdim=True)
        per_layer.append(weights.mean(dim=(0, 1)))
    return torch.stack(per_layer).mean(0)


@pytest.mark.parametrize(
    "params, layers, last",
    [
        (PruneParams(), None, None),
        (PruneParams(attn_layers=(-1,)), [1], None),
        (PruneParams(attn_layers=(0,), text_tokens=3), [0], 3),
        (PruneParams(text_tokens=1), None, 1),
    ],
    ids=["all", "last-layer", "layer0-last3", "last-token"],
)
def test_s_attn_equals_eager_attention(pair, scored, eager_attentions, params, layers, last):
    inputs = scored
    if pair.family.startswith("qwen"):
        assert inputs.grid.frames >= 3, "the Qwen case must span several temporal groups"
    _, scores = scored_prefill(pair.target, inputs, params)
    layers = layers if layers is not None else list(range(len(eager_attentions)))
    rows = list(range(inputs.video_end, inputs.num_tokens))
    rows = rows if last is None else rows[-last:]
    expected = eager_s_attn(eager_attentions, inputs, layers, rows)
    diff = (scores.attn.double() - expected).abs().max().item()
    assert diff < 1e-5, f"{pair.family}: max |s_attn - eager| = {diff:.3g}"
    assert abs(float(scores.attn.sum()) - 1) < 1e-5
    assert scores.attn.std() > 0, "s_attn must not be flat, or the comparison proves nothing"


def test_scored_prefill_is_the_plain_prefill_bit_for_bit(pair, scored):
    plain = pair.target.prefill(scored)
    observed, _ = scored_prefill(pair.target, scored, PruneParams())
    assert torch.equal(plain.last_logits, observed.last_logits)
    assert plain.prefill_len == observed.prefill_len and plain.next_position == observed.next_position
    for a, b in zip(plain.cache.layers, observed.cache.layers, strict=True):
        assert torch.equal(a.keys, b.keys) and torch.equal(a.values, b.values)
    assert all(not m._forward_pre_hooks for m in pair.target.attention_modules()), "hooks must be removed"


def test_capture_is_for_one_full_prefill(pair, scored):
    capture = TextQueryCapture(pair.target, scored)
    kept = torch.arange(0, scored.grid.grid_tokens, 2)
    with pytest.raises(RuntimeError, match="full-video prefill"):
        pair.target.prefill(scored, kept_grid_indices=kept, observe=capture)
    assert all(not m._forward_pre_hooks for m in pair.target.attention_modules())


def test_attn_layers_out_of_range_says_how_many(pair, scored):
    with pytest.raises(ConfigError, match=r"--attn-layers 7 out of range: the target has 2 layers"):
        scored_prefill(pair.target, scored, PruneParams(attn_layers=(0, 7)))


def test_no_text_after_the_video_is_a_config_error():
    grid = VideoGrid(2, 2, 2)
    inputs = PreparedInputs(torch.zeros(11, dtype=torch.long), 3, grid, {})
    with pytest.raises(ConfigError, match="no text after the video"):
        query_rows(inputs)
    assert query_rows(PreparedInputs(torch.zeros(14, dtype=torch.long), 3, grid, {}), 2).tolist() == [12, 13]


# ---- s_temp, s_spat, fusion on hand-made embeddings -----------------------------------------------------
def test_temporal_novelty_definition():
    grid = VideoGrid(frames=3, height=1, width=2)
    e = torch.tensor([[1.0, 0], [0, 1], [1, 0], [0, 2], [0, 1], [3, 3]])  # frame 1 repeats frame 0 (scaled)
    s = temporal_novelty(e, grid, first_frame=0.7)
    expected = [0.7, 0.7, 0.0, 0.0, 1.0, 1 - 2**-0.5]
    assert torch.allclose(s, torch.tensor(expected), atol=1e-6)
    single = VideoGrid(frames=1, height=1, width=2)
    assert temporal_novelty(e[:2], single).tolist() == [1.0, 1.0]


def brute_force_spatial(embeds, grid, window):
    v = torch.nn.functional.normalize(embeds.double(), dim=-1).reshape(grid.frames, grid.height, grid.width, -1)
    r = window // 2
    out = torch.zeros(grid.frames, grid.height, grid.width, dtype=torch.double)
    for f in range(grid.frames):
        for i in range(grid.height):
            for j in range(grid.width):
                sims = [float(v[f, i, j] @ v[f, y, x])
                        for y in range(max(0, i - r), min(grid.height, i + r + 1))
                        for x in range(max(0, j - r), min(grid.width, j + r + 1)) if (y, x) != (i, j)]
                out[f, i, j] = torch.tensor(sims).var(unbiased=False) if sims else 0.0
    return out.flatten()


@pytest.mark.parametrize("window", [3, 5])
@pytest.mark.parametrize("shape", [(2, 4, 5), (1, 1, 3), (3, 1, 1)])
def test_spatial_complexity_matches_brute_force(window, shape):
    grid = VideoGrid(*shape)
    embeds = torch.randn(grid.grid_tokens, 6, generator=torch.Generator().manual_seed(3))
    got = spatial_complexity(embeds, grid, window)
    assert torch.allclose(got.double(), brute_force_spatial(embeds, grid, window), atol=1e-6)


def test_spatial_complexity_of_a_flat_frame_is_zero():
    grid = VideoGrid(1, 3, 3)
    assert torch.equal(spatial_complexity(torch.ones(9, 4), grid), torch.zeros(9))


def test_minmax_per_frame_and_the_constant_rule():
    grid = VideoGrid(frames=3, height=1, width=3)
    x = torch.tensor([1.0, 3, 2, 5, 5, 5, -2, -2, -2])
    assert minmax_per_frame(x, grid).tolist() == [0.0, 1.0, 0.5, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0]


def test_fused_score_weights():
    grid = VideoGrid(frames=2, height=1, width=3)
    scores = TokenScores(attn=torch.tensor([0.1, 0.3, 0.2, 0.1, 0.2, 0.1]),
                         temp=torch.tensor([1.0, 1, 1, 0.5, 0.0, 1.0]),
                         spat=torch.tensor([0.0, 0.5, 1.0, 0.2, 0.1, 0.0]))
    assert torch.allclose(fused_score(scores, grid, (1, 0, 0)), minmax_per_frame(scores.attn, grid))
    assert torch.allclose(fused_score(scores, grid, (0, 2, 0)), minmax_per_frame(scores.temp, grid))
    mean = sum(minmax_per_frame(getattr(scores, n), grid) for n in ("attn", "temp", "spat")) / 3
    assert torch.allclose(fused_score(scores, grid, (1, 1, 1)), mean)
    with pytest.raises(ConfigError, match="no s_spat was computed"):
        fused_score(TokenScores(attn=scores.attn), grid, (1, 0, 1))
