"""Greedy equivalence (fp32, exact): hippo_ref's AR == the stock model's generate(), and SD / PEARL ==
AR under every acceptance pattern, with and without pruning of the draft."""

from __future__ import annotations

import pytest
import torch

from hippo.video import load_video
from hippo_ref.decoding.autoregressive import decode_autoregressive
from hippo_ref.decoding.common import DecodeConfig
from hippo_ref.decoding.parallel import decode_parallel
from hippo_ref.decoding.speculative import decode_speculative
from hippo_ref.pruning.methods import prune_uniform

PROMPT = "what color is the ball and where does it move"
NEW_TOKENS = 64
DECODERS = {"sd": decode_speculative, "pearl": decode_parallel}


@pytest.fixture(scope="module")
def prompt_inputs(pair, real_video):
    clip = load_video(real_video, 8)
    return pair.target.prepare(clip, PROMPT), clip


@pytest.fixture(scope="module")
def ar_tokens(pair, prompt_inputs):
    inputs, _ = prompt_inputs
    return decode_autoregressive(pair.target.prefill(inputs), DecodeConfig(max_new_tokens=NEW_TOKENS)).tokens


def run(decoder, target, draft, inputs, draft_inputs=None, kept=None, positions="keep", **cfg):
    cfg.setdefault("max_new_tokens", NEW_TOKENS)
    context = draft.prefill(draft_inputs or inputs, kept_grid_indices=kept, positions=positions)
    return DECODERS[decoder](target.prefill(inputs), context, DecodeConfig(**cfg))


def test_ar_equals_stock_generate(pair, prompt_inputs, ar_tokens):
    inputs, _ = prompt_inputs
    model = pair.target.model
    out = model.generate(
        **pair.target.hf_generate_inputs(inputs), do_sample=False, max_new_tokens=NEW_TOKENS,
        eos_token_id=None, pad_token_id=0,
    )
    assert out[0, inputs.num_tokens :].tolist() == ar_tokens
    assert len(set(ar_tokens)) > 10, "a degenerate (repeating) target would make every check trivial"


def test_qwen_positions_are_3d(pair, prompt_inputs):
    if not pair.family.startswith("qwen"):
        pytest.skip("M-RoPE is Qwen-only")
    inputs, _ = prompt_inputs
    pos = pair.target.prompt_positions(inputs)
    video = pos[:, inputs.video_start : inputs.video_end]
    assert not torch.equal(video[0], video[1]), "video tokens must carry distinct (t, h, w) rows"
    assert int(pos.max()) + 1 < inputs.num_tokens, "M-RoPE compresses the video's position span"


@pytest.mark.parametrize("decoder", ["sd", "pearl"])
@pytest.mark.parametrize("gamma", [1, 4])
def test_self_draft_accepts_everything(pair, prompt_inputs, ar_tokens, decoder, gamma):
    inputs, _ = prompt_inputs
    result = run(decoder, pair.target, pair.target, inputs, gamma=gamma)
    assert result.tokens == ar_tokens
    assert not any(result.stats.rejected_per_round)
    full = gamma + 1 if decoder == "sd" else gamma
    assert max(result.stats.accepted_per_round) == full


@pytest.mark.parametrize("decoder", ["sd", "pearl"])
@pytest.mark.parametrize("gamma", [1, 3])
def test_unrelated_draft_rejects_and_output_is_unchanged(pair, prompt_inputs, ar_tokens, decoder, gamma):
    inputs, _ = prompt_inputs
    result = run(decoder, pair.target, pair.draft, inputs, gamma=gamma)
    assert result.tokens == ar_tokens
    assert result.stats.mat < 1.2


@pytest.mark.parametrize("decoder", ["sd", "pearl"])
def test_partial_drafts_reject_at_every_offset(pair, prompt_inputs, ar_tokens, decoder):
    """Drafts that are the target plus noise: rejections must occur at every offset of a block."""
    inputs, _ = prompt_inputs
    gamma = 4
    # SD: a rejection at offset j commits j + 1 tokens; a full block commits gamma + 1 (bonus).
    # PEARL: a rejection at offset j of the checked tokens commits j + 1; a full post-verify commits gamma.
    full = (gamma + 1, False) if decoder == "sd" else (gamma, False)
    expected = {(j + 1, True) for j in range(gamma)} | {full}
    seen = set()
    for seed in range(4):
        for scale in (0.03, 0.1, 0.2):
            result = run(decoder, pair.target, pair.perturbed(scale, seed), inputs, gamma=gamma)
            assert result.tokens == ar_tokens, f"noise {scale} seed {seed}"
            seen |= set(zip(result.stats.accepted_per_round, result.stats.rejected_per_round, strict=True))
        if expected <= seen:
            break
    assert expected <= seen, f"missing acceptance patterns {sorted(expected - seen)}"


@pytest.mark.parametrize("decoder", ["sd", "pearl"])
def test_eos_inside_a_draft_block(pair, prompt_inputs, ar_tokens, decoder):
    inputs, _ = prompt_inputs
    eos = ar_tokens[9]
    stop = ar_tokens.index(eos) + 1
    ar = decode_autoregressive(pair.target.prefill(inputs), DecodeConfig(max_new_tokens=NEW_TOKENS, eos_token_ids=(eos,)))
    assert ar.tokens == ar_tokens[:stop]
    result = run(decoder, pair.target, pair.target, inputs, gamma=4, eos_token_ids=(eos,))
    assert result.tokens == ar_tokens[:stop]
    result = run(decoder, pair.target, pair.perturbed(0.1), inputs, gamma=4, eos_token_ids=(eos,))
    assert result.tokens == ar_tokens[:stop]


@pytest.mark.parametrize("decoder", ["sd", "pearl"])
@pytest.mark.parametrize("max_new", [1, 2, 7, 13])
def test_max_new_tokens_ends_mid_block(pair, prompt_inputs, ar_tokens, decoder, max_new):
    inputs, _ = prompt_inputs
    result = run(decoder, pair.target, pair.target, inputs, gamma=4, max_new_tokens=max_new)
    assert result.tokens == ar_tokens[:max_new]
    assert sum(result.stats.accepted_per_round) == max_new - 1


@pytest.mark.parametrize("decoder", ["sd", "pearl"])
@pytest.mark.parametrize("ratio", [0.5, 0.9])
@pytest.mark.parametrize("positions", ["keep", "compact"])
def test_uniform_pruning_changes_acceptance_not_output(pair, prompt_inputs, ar_tokens, decoder, ratio, positions):
    inputs, _ = prompt_inputs
    kept = prune_uniform(inputs.grid, ratio)
    assert kept.numel() < inputs.grid.grid_tokens
    full = run(decoder, pair.target, pair.target, inputs, gamma=4)
    pruned = run(decoder, pair.target, pair.target, inputs, kept=kept, positions=positions, gamma=4)
    assert pruned.tokens == ar_tokens
    assert pruned.stats.accepted_per_round != full.stats.accepted_per_round


def test_target_context_is_bit_identical_with_pruning(pair, prompt_inputs):
    """The target's prefill logits and prompt KV rows are the same bits with the draft pruned or not,
    and stay untouched through a whole decode."""
    inputs, _ = prompt_inputs
    contexts = []
    for kept in (None, prune_uniform(inputs.grid, 0.9)):
        target_context = pair.target.prefill(inputs)
        draft_context = pair.target.prefill(inputs, kept_grid_indices=kept)
        decode_parallel(target_context, draft_context, DecodeConfig(max_new_tokens=24, gamma=3))
        contexts.append(target_context)
    a, b = contexts
    assert torch.equal(a.last_logits, b.last_logits)
    assert a.prefill_len == b.prefill_len == inputs.num_tokens
    n = inputs.num_tokens
    for layer_a, layer_b in zip(a.cache.layers, b.cache.layers, strict=True):
        assert torch.equal(layer_a.keys[..., :n, :], layer_b.keys[..., :n, :])
        assert torch.equal(layer_a.values[..., :n, :], layer_b.values[..., :n, :])


def test_pruned_draft_has_fewer_rows(pair, prompt_inputs):
    inputs, _ = prompt_inputs
    kept = prune_uniform(inputs.grid, 0.75)
    context = pair.draft.prefill(inputs, kept_grid_indices=kept)
    assert context.prefill_len == inputs.num_tokens - inputs.grid.grid_tokens + kept.numel()
    keep_next = pair.draft.prefill(inputs, kept_grid_indices=kept, positions="keep").next_position
    compact_next = pair.draft.prefill(inputs, kept_grid_indices=kept, positions="compact").next_position
    assert compact_next == context.prefill_len
    assert keep_next == int(pair.target.prompt_positions(inputs).max()) + 1


@pytest.mark.parametrize("decoder", ["ar", "sd", "pearl"])
def test_seeded_sampling_is_reproducible(pair, prompt_inputs, decoder):
    """Sampling reads only keyed uniforms: the same seed gives the same tokens, another seed others."""
    from hippo_ref.sampling import SamplingParams

    inputs, _ = prompt_inputs
    params = SamplingParams(temperature=1.0, top_k=40, top_p=0.95)

    def sample_tokens(seed):
        cfg = DecodeConfig(max_new_tokens=24, gamma=3, sampling=params, seed=seed)
        if decoder == "ar":
            return decode_autoregressive(pair.target.prefill(inputs), cfg).tokens
        return DECODERS[decoder](pair.target.prefill(inputs), pair.perturbed(0.1).prefill(inputs), cfg).tokens

    torch.manual_seed(0)
    first = sample_tokens(11)
    torch.manual_seed(123)  # the global RNG must not matter
    assert sample_tokens(11) == first
    assert sample_tokens(12) != first
