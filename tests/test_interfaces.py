"""Every registered implementation conforms to hippo/interfaces.py: the Implementation protocol, contexts
of the protocol its loops read, `--gamma auto`'s probes that leave the forward counters alone, and one
decode per algorithm. The two-process variant (its draft context held by the worker) is tested as well."""

from __future__ import annotations

import pytest

from hippo.generation import IMPLEMENTATIONS, PreparedContexts, implementation
from hippo.interfaces import FastContext, Implementation, PreparedContext, StepContext, TimedContext
from hippo.request import DecodeConfig, DecodeResult, GenerationRequest, PruneSpec
from hippo.video import load_video

VARIANTS = [("ref", {}), ("fast", {}), ("fast", {"overlap": "processes"})]
CONTEXT_OF = {"ref": StepContext, "fast": FastContext}


def ids(variant) -> str:
    name, options = variant
    return "-".join([name, *options.values()])


@pytest.fixture(scope="module")
def clip(synthetic_video):
    return load_video(synthetic_video, 4)


def test_every_registered_implementation_is_named_and_conforms():
    for name in IMPLEMENTATIONS:
        impl = implementation(name)
        assert isinstance(impl, Implementation) and impl.name == name


@pytest.mark.parametrize("variant", VARIANTS, ids=ids)
@pytest.mark.parametrize("decoding", ["ar", "sd", "pearl"])
def test_contexts_probes_and_decode_conform(pair, clip, synthetic_video, variant, decoding):
    name, options = variant
    if options.get("overlap") == "processes" and decoding != "pearl":
        pytest.skip("the draft's own process runs PEARL only")
    impl = implementation(name, **options)
    draft = pair.draft
    if options.get("overlap") == "processes":
        from hippo_fast.overlap.processes import RemoteDraft

        draft = RemoteDraft(pair.draft_dir)
    config = DecodeConfig(max_new_tokens=8, gamma=3, eos_token_ids=tuple(pair.target.eos_token_ids))
    request = GenerationRequest(synthetic_video, "what moves", 4, decoding, PruneSpec("hippo", 0.5), config)
    prepared = impl.prepare_contexts(pair.target, None if decoding == "ar" else draft, request, clip)
    assert isinstance(prepared, PreparedContexts)
    target_context, draft_context = prepared.target_context, prepared.draft_context
    assert isinstance(target_context, PreparedContext) and isinstance(target_context, CONTEXT_OF[name])
    if decoding == "ar":
        assert draft_context is None
    elif options.get("overlap") == "processes":
        assert isinstance(draft_context, TimedContext)
    else:
        assert isinstance(draft_context, CONTEXT_OF[name])
    if draft_context is not None:
        before = target_context.forwards, getattr(draft_context, "forwards", None)
        gamma = impl.measured_gamma(target_context, draft_context, 0)
        assert 1 <= gamma <= 16 and isinstance(gamma, int)
        assert (target_context.forwards, getattr(draft_context, "forwards", None)) == before  # probes: not counted
    result = impl.decode(decoding, target_context, draft_context, config)
    assert isinstance(result, DecodeResult) and 1 <= len(result.tokens) <= config.max_new_tokens
    if options.get("overlap") == "processes":
        impl.close()
