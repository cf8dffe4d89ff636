"""Target fidelity notes: the stock Qwen-VL M-RoPE positions against the Qwen reference scheme.

Numbers below are worked out by hand from the tiny Qwen geometry: 112x112 max pixels, patch 14,
merge 2, temporal patch 2, tokens_per_second 2. A 96x128 video becomes a 6x10 patch grid, i.e. 3x5
LLM tokens per temporal group, and the chat template puts the video at sequence index 6. So the
spatial ids run 6..8 (h) and 6..10 (w), and the stock text after the video starts at 6 + max(3, 5) = 11.
"""

from __future__ import annotations

import copy
import json

import pytest
from videos import write_test_video

from hippo.checkpoint import load_adapter
from hippo.tiny import write_tiny_pair
from hippo.video import load_video
from verification.fidelity import fidelity_notes, qwen_reference_positions, qwen_rope_fidelity
from verification.models import ModelPair

PROMPT = "what color is the ball"


@pytest.fixture(scope="module")
def qwen_target(tmp_path_factory):
    target_dir, draft_dir = write_tiny_pair(tmp_path_factory.mktemp("fidelity") / "qwen2_5_vl", "qwen2_5_vl")
    return str(target_dir), str(draft_dir), load_adapter(target_dir)


@pytest.fixture(scope="module")
def long_video(tmp_path_factory):
    """6 s at 10 fps: 4 sampled frames are 2 temporal groups 3 s apart, temporal ids 6 and 6 + 3 * 2 = 12."""
    path = tmp_path_factory.mktemp("fidelity_videos") / "long.mp4"
    return str(write_test_video(path, num_frames=60, height=96, width=128, fps=10, seed=3))


def test_reference_positions_by_hand():
    # 2 text tokens, a 2x2x3 video (groups 1.5 s apart at 2 tokens/s: temporal ids +0, +3), 2 text tokens.
    pos = qwen_reference_positions(2 + 12 + 2, 2, (2, 2, 3), seconds_per_group=1.5, tokens_per_second=2.0)
    assert pos[:, :2].tolist() == [[0, 1]] * 3
    assert pos[0, 2:14].tolist() == [2] * 6 + [5] * 6
    assert pos[1, 2:14].tolist() == [2, 2, 2, 3, 3, 3] * 2
    assert pos[2, 2:14].tolist() == [2, 3, 4] * 4
    # largest video id is the temporal 5, so the text resumes at 6 (stock 5.x: 2 + max(2, 3) = 5)
    assert pos[:, 14:].tolist() == [[6, 7]] * 3


def test_qwen_note_reports_the_offset(qwen_target, long_video):
    _, _, adapter = qwen_target
    inputs = adapter.prepare(load_video(long_video, 4), PROMPT)
    note = qwen_rope_fidelity(adapter, inputs)
    assert note["family"] == "qwen2_5_vl"
    assert note["grid"] == [2, 3, 5] and note["video_grid_thw"] == [2, 6, 10] and note["spatial_merge_size"] == 2
    assert note["video_start"] == 6 and note["video_tokens"] == 2 * 3 * 5
    assert note["temporal_step"] == pytest.approx(2 * 3.0)  # tokens_per_second * 2 frames / (4/60 * 10 fps)
    assert note["video_max_position"] == 12  # second temporal group: 6 + 6
    assert note["stock_text_start"] == 6 + 5
    assert note["reference_text_start"] == 12 + 1
    assert note["offset"] == 2
    assert note["video_positions_agree"] is True
    after = inputs.num_tokens - inputs.video_end
    assert note["positions_differ"] is True and note["differing_tokens"] == after
    assert note["stock_next_position"] == 11 + after and note["reference_next_position"] == 13 + after
    assert "11" in note["note"] and "13" in note["note"]
    json.dumps(note)
    # the stock positions really are what the note says: text resumes at 11 right after the video
    stock = adapter.prompt_positions(inputs)
    assert stock[:, inputs.video_end].tolist() == [11, 11, 11]
    assert int(stock[0, inputs.video_start:inputs.video_end].max()) == 12


def test_qwen_note_when_the_schemes_coincide(qwen_target, synthetic_video):
    # 3 s at 10 fps: the 2 groups are 1.5 s apart, temporal ids 6 and 9 < the width's 10, so both give 11
    _, _, adapter = qwen_target
    note = qwen_rope_fidelity(adapter, adapter.prepare(load_video(synthetic_video, 4), PROMPT))
    assert note["grid"] == [2, 3, 5] and note["temporal_step"] == pytest.approx(3.0)
    assert note["video_max_position"] == 10
    assert note["stock_text_start"] == note["reference_text_start"] == 11
    assert note["offset"] == 0 and note["differing_tokens"] == 0 and note["positions_differ"] is False
    assert note["video_positions_agree"] is True


def test_disagreement_inside_the_video_is_reported(qwen_target, long_video):
    _, _, adapter = qwen_target
    inputs = adapter.prepare(load_video(long_video, 4), PROMPT)
    shifted = copy.copy(adapter)

    def wrong_temporal_ids(inp):
        pos = adapter.prompt_positions(inp).clone()
        pos[0, inp.video_start + 15 : inp.video_end] += 1  # second temporal group one step off
        return pos

    shifted.prompt_positions = wrong_temporal_ids
    note = qwen_rope_fidelity(shifted, inputs)
    assert note["video_positions_agree"] is False
    assert note["differing_tokens"] == 15 + inputs.num_tokens - inputs.video_end
    assert "inside the video differ" in note["note"]


def test_llava_has_no_note(tmp_path, synthetic_video):
    target_dir, _ = write_tiny_pair(tmp_path / "llava_onevision", "llava_onevision")
    adapter = load_adapter(target_dir)
    assert qwen_rope_fidelity(adapter, adapter.prepare(load_video(synthetic_video, 4), PROMPT)) is None


def test_fidelity_notes_per_pair_and_video(qwen_target, long_video, synthetic_video):
    target_dir, draft_dir, adapter = qwen_target
    llava = ModelPair("tiny-llava", target_dir, draft_dir, target=copy.copy(adapter))
    llava.target.family = "llava_onevision"  # only the family decides whether a note is made
    qwen = ModelPair("tiny-qwen", target_dir, draft_dir, target=adapter)
    notes = fidelity_notes([llava, qwen], [long_video, synthetic_video], 4, PROMPT)
    assert [(n["pair"], n["video"]) for n in notes] == [("tiny-qwen", long_video), ("tiny-qwen", synthetic_video)]
    assert [n["offset"] for n in notes] == [2, 0]
    json.dumps(notes)
    with pytest.raises(ValueError, match="not loaded"):
        fidelity_notes([ModelPair("cold", target_dir, draft_dir)], [long_video], 4, PROMPT)
