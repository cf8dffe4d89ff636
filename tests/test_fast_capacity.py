"""The fast path's static caches are bounded by what a request can use (issue 25): they start small and
grow in steps up to the request's bound, so a generous --max-new-tokens costs nothing until a decode
gets there; a request past the model's positions, or whose caches would not fit in memory, is refused
before any cache exists, in one line that says what to lower. Nothing here is timed."""

from __future__ import annotations

import pytest

from hippo.cli import main
from hippo.errors import ConfigError
from hippo.generation import generate, implementation
from hippo.request import DecodeConfig, GenerationRequest, PruneSpec, SamplingParams
from hippo_fast import cache, pipeline
from hippo_fast.overlap import processes


def request(video, tokens, decoding="pearl", sampling=None, gamma=3):
    config = DecodeConfig(max_new_tokens=tokens, gamma=gamma, sampling=sampling or SamplingParams(), seed=5)
    return GenerationRequest(video, "what moves", 4, decoding, PruneSpec("uniform", 0.5), config=config)


def cache_rows_of(context) -> int:
    return context.cache.layers[0].keys.shape[2]


def test_a_generous_bound_allocates_what_a_default_request_does(pair, synthetic_video):
    """max_new_tokens 3000 (within the model's positions): both caches hold as many rows as a request
    bounded by FIRST_CAPACITY (so every step attends over as many rows), and may grow to the bound."""
    impl = implementation("fast")
    big = impl.prepare_contexts(pair.target, pair.draft, request(synthetic_video, 3000), _clip(synthetic_video))
    first = cache.FIRST_CAPACITY - pipeline.request_capacity(request(synthetic_video, 1).config, "pearl") + 1
    small = impl.prepare_contexts(pair.target, pair.draft, request(synthetic_video, first), _clip(synthetic_video))
    for b, s in ((big.target_context, small.target_context), (big.draft_context, small.draft_context)):
        assert cache_rows_of(b) == cache_rows_of(s)
        assert b.limit == pipeline.request_capacity(request(synthetic_video, 3000).config, "pearl")


@pytest.mark.parametrize("decoding", ["sd", "pearl"])
@pytest.mark.parametrize("sampling", [SamplingParams(), SamplingParams(1.0, top_k=5)], ids=["greedy", "sampled"])
def test_growing_caches_commit_the_reference_tokens(pair, synthetic_video, monkeypatch, decoding, sampling):
    """Caches that start with rows for 4 generated tokens and grow (4 -> ... -> the bound) in the middle
    of the decode: the reference's tokens and acceptances, and the caches did grow."""
    req = request(synthetic_video, 40, decoding, sampling)
    ref = generate(implementation("ref"), pair.target, pair.draft, req)
    monkeypatch.setattr(cache, "FIRST_CAPACITY", 4)
    monkeypatch.setattr(cache, "CACHE_ROWS_MULTIPLE", 1)
    impl = implementation("fast")
    prepared = impl.prepare_contexts(pair.target, pair.draft, req, _clip(synthetic_video))
    assert prepared.target_context.capacity == 4
    result = impl.decode(decoding, prepared.target_context, prepared.draft_context, req.config)
    assert result.tokens == ref.tokens
    assert result.stats.accepted_per_round == ref.stats.decode.accepted_per_round
    assert prepared.target_context.capacity >= len(ref.tokens) > 4
    assert prepared.draft_context.capacity > 4


def test_past_the_models_positions_is_refused_before_any_cache(capsys, pair, synthetic_video, monkeypatch):
    """--max-new-tokens 100000000 (or 1,000,000; the tiny and zoo models have 4096 positions): exit 2,
    one line that says how many fit, no cache allocated, in one process and with the draft's worker."""
    def no_cache(*args, **kwargs):
        raise AssertionError("a static cache was allocated")

    monkeypatch.setattr(pipeline, "static_prefill", no_cache)
    monkeypatch.setattr(processes, "start_video_job", no_cache)
    base = ["generate", "--target", pair.target_dir, "--draft", pair.draft_dir, "--video", synthetic_video,
            "--prompt", "x", "--frames", "4", "--impl", "fast"]
    for extra in ([], ["--overlap", "processes"]):
        for tokens in ("100000000", "1000000"):
            assert main([*base, "--max-new-tokens", tokens, *extra]) == 2
            err = capsys.readouterr().err.strip().splitlines()
            assert len(err) == 1 and err[0].startswith(f"hippo: error: --max-new-tokens {tokens}:"), err
            assert "4096 positions" in err[0] and "lower --max-new-tokens to at most" in err[0]
    fits = int(err[0].split("at most ")[-1])
    assert fits > 0


def test_caches_that_do_not_fit_in_memory_are_refused(pair, synthetic_video, monkeypatch):
    """With 1 MiB available: refused with what the caches need and the most new tokens that fit; that
    many then run (memory checked at the bound, growth's copy included)."""
    monkeypatch.setattr(cache, "available_bytes", lambda device: 1 << 20)
    impl = implementation("fast")
    with pytest.raises(ConfigError, match="KV caches would need .* GiB on cpu") as caught:
        impl.prepare_contexts(pair.target, pair.draft, request(synthetic_video, 3000), _clip(synthetic_video))
    message = str(caught.value)
    assert "lower --max-new-tokens to at most" in message
    fits = int(message.rsplit("at most ", 1)[1])
    assert 0 < fits < 3000
    prepared = impl.prepare_contexts(pair.target, pair.draft, request(synthetic_video, fits), _clip(synthetic_video))
    assert prepared.target_context.limit >= fits
    with pytest.raises(ConfigError, match="KV caches would need"):
        impl.prepare_contexts(pair.target, pair.draft, request(synthetic_video, fits + 64), _clip(synthetic_video))


def test_peak_rows_counts_the_copy_of_a_growth():
    assert cache.peak_rows(10, 100) == cache.cache_rows(10, 100)  # within the first allocation: one cache
    assert cache.peak_rows(10, 1000) == cache.cache_rows(10, 1000) + cache.cache_rows(10, 512)


_CLIPS: dict = {}


def _clip(video):
    from hippo.video import load_video

    if video not in _CLIPS:
        _CLIPS[video] = load_video(video, 4)
    return _CLIPS[video]
