"""Families beyond the two required ones, checked with the same core claims on a small budget."""

from __future__ import annotations

import pytest

from hippo.checkpoint import load_adapter
from hippo.tiny import write_tiny_pair
from hippo.video import load_video
from hippo_ref.decoding.autoregressive import decode_autoregressive
from hippo_ref.decoding.common import DecodeConfig
from hippo_ref.decoding.parallel import decode_parallel
from hippo_ref.decoding.speculative import decode_speculative
from hippo_ref.pruning.methods import prune_uniform


@pytest.mark.parametrize("family", ["qwen2_vl", "llava_next_video"])
def test_optional_family_ar_generate_and_speculative(family, tmp_path, real_video):
    target_dir, draft_dir = write_tiny_pair(tmp_path, family)
    target, draft = load_adapter(target_dir), load_adapter(draft_dir)
    inputs = target.prepare(load_video(real_video, 6), "what moves")
    cfg = DecodeConfig(max_new_tokens=48, gamma=3)
    ar = decode_autoregressive(target.prefill(inputs), cfg).tokens
    out = target.model.generate(**target.hf_generate_inputs(inputs), do_sample=False, max_new_tokens=48,
                                eos_token_id=None, pad_token_id=0)
    assert out[0, inputs.num_tokens :].tolist() == ar
    kept = prune_uniform(inputs.grid, 0.75)
    for decoder in (decode_speculative, decode_parallel):
        for drafter in (target, draft):
            context = drafter.prefill(inputs, kept_grid_indices=kept)
            assert decoder(target.prefill(inputs), context, cfg).tokens == ar
