"""Every pruning method, both position policies: greedy SD / PEARL output == AR (pruning changes
acceptance only), and the target's prefill (observed by the scores) stays bit-identical to its plain
prefill through a whole decode."""

from __future__ import annotations

import pytest
import torch

from hippo.video import load_video
from hippo_ref.decoding.autoregressive import decode_autoregressive
from hippo_ref.decoding.common import DecodeConfig
from hippo_ref.decoding.parallel import decode_parallel
from hippo_ref.decoding.speculative import decode_speculative
from hippo_ref.pipeline import GenerationRequest, generate
from hippo_ref.pruning.methods import PRUNING_METHODS, PruneParams, PruneSpec, kept_indices
from hippo_ref.pruning.scores import scored_prefill

PROMPT = "what color is the ball and where does it move"
NEW_TOKENS = 32
RATIO = 0.75
DECODERS = {"sd": decode_speculative, "pearl": decode_parallel}


@pytest.fixture(scope="module")
def case(pair, real_video):
    clip = load_video(real_video, 8)
    inputs = pair.target.prepare(clip, PROMPT)
    plain = pair.target.prefill(inputs)
    reference = (plain.last_logits.clone(), [(la.keys.clone(), la.values.clone()) for la in plain.cache.layers])
    ar = decode_autoregressive(plain, DecodeConfig(max_new_tokens=NEW_TOKENS)).tokens
    return clip, inputs, ar, reference


@pytest.fixture(scope="module")
def unpruned_acceptance(pair, case):
    _, inputs, _, _ = case
    return {name: fn(pair.target.prefill(inputs), pair.target.prefill(inputs),
                     DecodeConfig(max_new_tokens=NEW_TOKENS, gamma=4)).stats.accepted_per_round
            for name, fn in DECODERS.items()}


@pytest.mark.parametrize("decoder", ["sd", "pearl"])
@pytest.mark.parametrize("positions", ["keep", "compact"])
@pytest.mark.parametrize("method", sorted(PRUNING_METHODS))
def test_pruning_changes_acceptance_not_output(pair, case, unpruned_acceptance, method, positions, decoder):
    _, inputs, ar, (logits, kv) = case
    target_context, scores = scored_prefill(pair.target, inputs, PruneParams())
    kept = kept_indices(PruneSpec(method, RATIO, positions), inputs.grid, scores)
    # The target itself as the draft: unpruned it accepts everything, so any change is pruning's doing.
    draft_context = pair.target.prefill(inputs, kept_grid_indices=kept, positions=positions)
    result = DECODERS[decoder](target_context, draft_context, DecodeConfig(max_new_tokens=NEW_TOKENS, gamma=4))
    assert result.tokens == ar
    if method != "none":
        assert draft_context.prefill_len < inputs.num_tokens
        assert result.stats.accepted_per_round != unpruned_acceptance[decoder]
    assert torch.equal(target_context.last_logits, logits)
    n = inputs.num_tokens
    for layer, (keys, values) in zip(target_context.cache.layers, kv, strict=True):
        assert torch.equal(layer.keys[..., :n, :], keys) and torch.equal(layer.values[..., :n, :], values)


@pytest.mark.parametrize("method", sorted(PRUNING_METHODS))
def test_pipeline_runs_every_method(pair, case, real_video, method):
    """End to end through hippo_ref.pipeline.generate with the unrelated tiny draft."""
    clip, inputs, ar, _ = case
    request = GenerationRequest(real_video, PROMPT, frames=8, decoding="pearl",
                                prune=PruneSpec(method, 0.9, "compact" if method == "hippo" else "keep"),
                                config=DecodeConfig(max_new_tokens=NEW_TOKENS, gamma=3))
    result = generate(pair.target, pair.draft, request, clip=clip)
    assert result.tokens == ar
    grid = inputs.grid
    expected = grid.total_tokens if method == "none" else grid.frames * 1 * -(-grid.tokens_per_frame // 10)
    if method != "none":
        expected += grid.extra_tokens
    assert result.stats.kept_visual_tokens == expected


@pytest.mark.parametrize("frames", [1, 5])
@pytest.mark.parametrize("method", ["hippo", "specvlm", "attn"])
def test_single_and_odd_frame_videos(pair, real_video, frames, method):
    """One frame (Qwen pads it to one temporal group) and an odd count (5 frames: 3 groups for Qwen)."""
    inputs = pair.target.prepare(load_video(real_video, frames), PROMPT)
    ar = decode_autoregressive(pair.target.prefill(inputs), DecodeConfig(max_new_tokens=16)).tokens
    target_context, scores = scored_prefill(pair.target, inputs, PruneParams())
    assert scores.attn.numel() == scores.temp.numel() == scores.spat.numel() == inputs.grid.grid_tokens
    kept = kept_indices(PruneSpec(method, 0.9, params=PruneParams(budget="per-frame")), inputs.grid, scores)
    assert torch.bincount(kept // inputs.grid.tokens_per_frame).tolist() == [1 + (inputs.grid.tokens_per_frame - 1) // 10] * inputs.grid.frames
    draft_context = pair.target.prefill(inputs, kept_grid_indices=kept, positions="compact")
    assert decode_parallel(target_context, draft_context, DecodeConfig(max_new_tokens=16, gamma=3)).tokens == ar
