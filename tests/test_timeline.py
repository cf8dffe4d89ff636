"""The serial decodes' opt-in timeline (hippo_fast/decoding/spans.py): the same tokens with it on and off,
one draft, one target and one verify span per round, one after the other."""

from __future__ import annotations

import pytest

from hippo.errors import ConfigError
from hippo.generation import generate, implementation, variant
from hippo.request import DecodeConfig, GenerationRequest, PruneSpec, SamplingParams

SAMPLINGS = [SamplingParams(), SamplingParams(1.0, top_k=5)]


def request(video, decoding: str, sampling: SamplingParams) -> GenerationRequest:
    config = DecodeConfig(max_new_tokens=20, gamma=3, sampling=sampling, seed=11)
    return GenerationRequest(video, "what moves", 4, decoding, PruneSpec("uniform", 0.5), config=config)


def check_spans(timeline, rounds: int) -> None:
    """Per round a draft, a target and a verify span, in that order for SD (target, draft, verify for
    PEARL's one-thread schedule), none overlapping another."""
    lanes = [lane for lane, _, _, _ in timeline.spans]
    assert sorted(lanes) == sorted(["draft", "target", "verify"] * rounds)
    for r in range(rounds):
        assert sorted(lane for lane, i, _, _ in timeline.spans if i == r) == ["draft", "target", "verify"]
    ordered = sorted(timeline.spans, key=lambda span: span[2])
    assert ordered == timeline.spans  # recorded as they ran
    for (_, _, start, end), (_, _, next_start, _) in zip(ordered, ordered[1:], strict=False):
        assert start <= end <= next_start
    assert timeline.overlap_s("target", "draft") == 0.0


@pytest.mark.parametrize("sampling", SAMPLINGS, ids=["greedy", "sampled"])
@pytest.mark.parametrize("decoding", ["sd", "pearl"])
def test_the_timeline_changes_no_token_and_its_spans_are_well_formed(pair, synthetic_video, decoding, sampling):
    req = request(synthetic_video, decoding, sampling)
    off = generate(implementation("fast"), pair.target, pair.draft, req)
    on = generate(implementation("fast", timeline=True), pair.target, pair.draft, req)
    assert on.tokens == off.tokens
    assert on.stats.decode.accepted_per_round == off.stats.decode.accepted_per_round
    assert off.timeline is None
    check_spans(on.timeline, len(on.stats.decode.accepted_per_round))


def test_a_timeline_on_two_streams_is_refused_and_the_sweep_names_it():
    with pytest.raises(ConfigError, match="serialises the two streams"):
        implementation("fast", overlap="streams", timeline=True)
    assert variant("fast-timed").timeline
