"""hippo_fast against hippo_ref, its specification: the device uniforms bit for bit, the batched
distributions / draws / accept-residual rule, and whole decodes (AR, SD, PEARL; greedy and seeded
sampling; every pruning method) token for token with the same per-round acceptance."""

from __future__ import annotations

import pytest
import torch

from hippo.generation import generate, implementation
from hippo.request import DecodeConfig, GenerationRequest, PruneSpec, SamplingParams
from hippo.video import load_video
from hippo_fast import sampling as fast
from hippo_fast.cache import static_prefill
from hippo_fast.decoding.autoregressive import decode_autoregressive as fast_ar
from hippo_ref import sampling as ref
from hippo_ref.decoding.autoregressive import decode_autoregressive as ref_ar

PROMPT = "what color is the ball and where does it move"
WARPS = [SamplingParams(1.0), SamplingParams(0.7, top_k=5), SamplingParams(1.3, top_p=0.8),
         SamplingParams(0.9, top_k=20, top_p=0.95), SamplingParams()]


@pytest.mark.parametrize("seed", [0, 1, 2**40 + 7, 2**64 - 1, -3])
@pytest.mark.parametrize("purpose", [ref.TARGET, ref.DRAFT, ref.ACCEPT, ref.RESIDUAL])
def test_device_uniforms_are_the_reference_bits(seed, purpose):
    indices = torch.tensor([0, 1, 2, 5, 63, 1000, 2**31, 2**62 + 11])
    got = fast.keyed_uniforms(seed, purpose, indices)
    want = torch.tensor([ref.keyed_uniform(seed, purpose, int(i)) for i in indices], dtype=torch.float64)
    assert torch.equal(got, want)


@pytest.mark.parametrize("params", WARPS, ids=str)
def test_batched_distributions_and_draws_equal_the_reference(params):
    generator = torch.Generator().manual_seed(3)
    logits = torch.randn(6, 50, generator=generator) * 3
    logits[2, 7] = logits[2, 9] = logits[2].max() + 1  # a tie: the first maximum wins
    probs = fast.distributions(logits, params)
    u = fast.keyed_uniforms(5, ref.TARGET, torch.arange(6))
    tokens = fast.sample_rows(probs, u)
    for row in range(6):
        want = ref.distribution(logits[row], params)
        assert torch.equal(probs[row], want)
        assert int(tokens[row]) == ref.sample(want, float(u[row]))


@pytest.mark.parametrize("params", WARPS[:4], ids=str)
@pytest.mark.parametrize("bonus", [True, False])
def test_batched_verification_equals_verify_in_order(params, bonus):
    """Every prefix length accepted, on random p / q, against hippo_ref's step by step rule."""
    generator = torch.Generator().manual_seed(11)
    for trial in range(40):
        c = 1 + trial % 4
        target_logits = torch.randn(c + 1, 12, generator=generator)
        draft_logits = target_logits + torch.randn(c + 1, 12, generator=generator) * (trial % 3) * 0.7
        qs = torch.stack([ref.distribution(draft_logits[i], params) for i in range(c)])
        candidates = torch.tensor([ref.sample(qs[i], ref.keyed_uniform(trial, ref.DRAFT, 9 + i)) for i in range(c)])
        table = fast.UniformTable(trial, 32, "cpu")
        accepted, after = fast.verify(target_logits, candidates, qs, params, table, 9, bonus)
        out, ok_count = [], 0
        for i in range(c):
            p = ref.distribution(target_logits[i], params)
            token, ok = ref.speculative_step(p, qs[i], int(candidates[i]), trial, 9 + i)
            out.append(token)
            if not ok:
                break
            ok_count += 1
        if ok_count == c and bonus:
            out.append(ref.sample(ref.distribution(target_logits[c], params), ref.keyed_uniform(trial, ref.TARGET, 9 + c)))
        assert int(accepted) == ok_count
        committed = candidates[: int(accepted)].tolist() + ([int(after)] if int(after) >= 0 else [])
        assert committed == out


@pytest.fixture(scope="module")
def clip(real_video):
    return load_video(real_video, 8)


GREEDY, NO_PRUNING = SamplingParams(), PruneSpec()


def _request(decoding, prune=NO_PRUNING, sampling=GREEDY, seed=0, tokens=40, gamma=4):
    return GenerationRequest("unused", PROMPT, 8, decoding, prune,
                             DecodeConfig(max_new_tokens=tokens, gamma=gamma, sampling=sampling, seed=seed))


def _differences(a, b) -> list[str]:
    """What differs between two GenerationResults: tokens, tokens committed per round, rejections."""
    out = []
    if a.tokens != b.tokens:
        out.append(f"tokens {a.tokens} != {b.tokens}")
    for field in ("accepted_per_round", "rejected_per_round"):
        if getattr(a.stats.decode, field) != getattr(b.stats.decode, field):
            out.append(f"{field} {getattr(a.stats.decode, field)} != {getattr(b.stats.decode, field)}")
    return out


def test_fast_ar_equals_stock_generate(pair, clip):
    inputs = pair.target.prepare(clip, PROMPT)
    context = static_prefill(pair.target, inputs, capacity=66)
    tokens = fast_ar(context, DecodeConfig(max_new_tokens=64)).tokens
    out = pair.target.model.generate(**pair.target.hf_generate_inputs(inputs), do_sample=False, max_new_tokens=64,
                                     eos_token_id=None, pad_token_id=0)
    assert tokens == out[0, inputs.num_tokens :].tolist()
    assert len(set(tokens)) > 10


@pytest.mark.parametrize("decoding", ["sd", "pearl"])
@pytest.mark.parametrize("scale", [0.0, 0.05, 0.3])
def test_fast_equals_ref_greedy_under_every_acceptance_pattern(pair, clip, decoding, scale):
    """The target as its own draft (all accepted), perturbed copies (rejections at many offsets)."""
    draft = pair.perturbed(scale) if scale else pair.target
    request = _request(decoding, tokens=48)
    a = generate(implementation("ref"), pair.target, draft, request, clip=clip)
    b = generate(implementation("fast"), pair.target, draft, request, clip=clip)
    assert not _differences(a, b)
    if scale == 0.05:
        assert any(a.stats.decode.rejected_per_round) and not all(a.stats.decode.rejected_per_round)


@pytest.mark.parametrize("decoding", ["ar", "sd", "pearl"])
@pytest.mark.parametrize("params", WARPS[:4], ids=str)
def test_fast_equals_ref_seeded_sampling(pair, clip, decoding, params):
    draft = pair.perturbed(0.05)
    for seed in (0, 1, 2):
        request = _request(decoding, sampling=params, seed=seed, tokens=24, gamma=3)
        ref_result = generate(implementation("ref"), pair.target, draft, request, clip=clip)
        fast_result = generate(implementation("fast"), pair.target, draft, request, clip=clip)
        assert not _differences(ref_result, fast_result), (seed, params)


@pytest.mark.parametrize("method", ["random", "uniform", "attn", "specvlm", "hippo"])
@pytest.mark.parametrize("positions", ["keep", "compact"])
def test_fast_equals_ref_with_pruning(pair, clip, method, positions):
    prune = PruneSpec(method, 0.75, positions)
    for decoding in ("sd", "pearl"):
        a = generate(implementation("ref"), pair.target, pair.perturbed(0.05), _request(decoding, prune), clip=clip)
        b = generate(implementation("fast"), pair.target, pair.perturbed(0.05), _request(decoding, prune), clip=clip)
        assert not _differences(a, b)
        assert torch.equal(a.kept_grid_indices, b.kept_grid_indices)


@pytest.mark.parametrize("decoding", ["sd", "pearl"])
def test_eos_inside_a_block_and_max_tokens_mid_block(pair, clip, decoding):
    full = generate(implementation("ref"), pair.target, pair.target, _request(decoding, tokens=30), clip=clip)
    eos = full.tokens[7]
    for tokens in (30, 9, 1):
        request = GenerationRequest("unused", PROMPT, 8, decoding, PruneSpec(),
                                    DecodeConfig(max_new_tokens=tokens, gamma=5, eos_token_ids=(eos,)))
        a = generate(implementation("ref"), pair.target, pair.target, request, clip=clip)
        b = generate(implementation("fast"), pair.target, pair.target, request, clip=clip)
        assert not _differences(a, b)
        assert b.tokens[-1] == eos or len(b.tokens) == tokens


def test_a_rejected_row_is_hidden_after_rollback(pair, clip):
    """Implicit rollback: rows of refused tokens stay in the static cache but are masked, so decoding
    after a rollback equals decoding into a fresh cache."""
    inputs = pair.target.prepare(clip, PROMPT)
    context = static_prefill(pair.target, inputs, capacity=16)
    first = int(torch.argmax(context.last_logits))
    context.forward(torch.tensor([first, 5, 6, 7]), 0)  # three tokens that will be refused
    after_rollback = context.forward(torch.tensor([first, 9]), 0)
    fresh = static_prefill(pair.target, inputs, capacity=16).forward(torch.tensor([first, 9]), 0)
    assert torch.allclose(after_rollback, fresh, rtol=0, atol=1e-5)
    assert torch.equal(after_rollback.argmax(-1), fresh.argmax(-1))


def test_fast_loops_run_on_reference_contexts(pair, clip):
    """HostContext: the fast loops accept any DecodeContext (here the reference's dynamic cache)."""
    inputs = pair.target.prepare(clip, PROMPT)
    cfg = DecodeConfig(max_new_tokens=20)
    assert fast_ar(pair.target.prefill(inputs), cfg).tokens == ref_ar(pair.target.prefill(inputs), cfg).tokens


def test_capacity_error_says_what_to_do(pair, clip):
    from hippo_fast.cache import CACHE_ROWS_MULTIPLE

    inputs = pair.target.prepare(clip, PROMPT)
    context = static_prefill(pair.target, inputs, capacity=2)
    assert (inputs.num_tokens + context.capacity) % CACHE_ROWS_MULTIPLE == 0 and context.capacity >= 2
    with pytest.raises(Exception, match=f"static cache holds {context.capacity} generated tokens"):
        context.forward(torch.tensor([1, 2, 3]), context.capacity - 2)


def test_ar_with_an_eos_check_every_8_tokens_is_unchanged(pair, clip):
    """The accelerator setting (sync_every=8), run on the CPU: tokens computed past an EOS are dropped."""
    inputs = pair.target.prepare(clip, PROMPT)
    full = ref_ar(pair.target.prefill(inputs), DecodeConfig(max_new_tokens=30)).tokens
    for eos in (full[3], full[8], full[21]):
        cfg = DecodeConfig(max_new_tokens=30, eos_token_ids=(eos,))
        want = ref_ar(pair.target.prefill(inputs), cfg)
        got = fast_ar(static_prefill(pair.target, inputs, capacity=40), cfg, sync_every=8)
        assert got.tokens == want.tokens and got.stats.accepted_per_round == want.stats.accepted_per_round


@pytest.mark.slow
@pytest.mark.parametrize("decoding", ["ar", "sd", "pearl"])
def test_compiled_decode_steps_equal_ref(pair, clip, decoding):
    """torch.compile of the stock forward (CPU inductor): the same tokens as the reference."""
    draft = pair.perturbed(0.05)
    request = _request(decoding, tokens=32)
    ref_result = generate(implementation("ref"), pair.target, draft, request, clip=clip)
    compiled = generate(implementation("fast", compile=True), pair.target, draft, request, clip=clip)
    assert not _differences(ref_result, compiled)


def test_warm_captures_each_shape_once_and_keeps_the_output(pair, clip):
    """StaticContext.warm (what compile=True runs before a decode) writes rows the decode overwrites."""
    inputs = pair.target.prepare(clip, PROMPT)
    cfg = DecodeConfig(max_new_tokens=20)
    context = static_prefill(pair.target, inputs, capacity=24)
    seen = set()
    context.warm((1, 5), seen)
    assert len(seen) == 2 and context.forwards == 1
    context.warm((1, 5), seen)
    assert len(seen) == 2
    assert fast_ar(context, cfg).tokens == ref_ar(pair.target.prefill(inputs), cfg).tokens
