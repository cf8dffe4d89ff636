"""Per-family video preprocessing, written out without torchvision.

torchvision cannot be installed beside the CPU torch this project pins, so the Hugging Face *video
processors* (which need it) are unavailable. This module redoes, step by step, what the HF fast video
processors of transformers 5.24.0 do to one clip of decoded frames on a CPU, using the same torch
operations in the same order so that the results are bit-identical (see docs/preprocess-parity.md and
tests/test_preprocess_parity.py, which compare against the real processors).

Families
--------
``qwen2_5_vl``
    ``Qwen2VLVideoProcessor`` + ``Qwen2_5_VLProcessor``: smart_resize, bicubic resize, fused
    rescale+normalize, temporal padding, patchify; returns ``pixel_values_videos``,
    ``video_grid_thw`` and ``second_per_grid_ts``.
``qwen2_vl``
    Same video processor; ``Qwen2VLProcessor`` returns no ``second_per_grid_ts``, so neither do we.
``llava_onevision``
    ``LlavaOnevisionVideoProcessor``: resize to ``size`` (height, width), rescale, normalize;
    returns ``pixel_values_videos`` of shape (1, T, 3, H, W).
``llava_next_video``
    ``LlavaNextVideoVideoProcessor``: resize the shortest edge to ``size["shortest_edge"]``, center
    crop to ``crop_size``, rescale, normalize; same output layout as LLaVA-OneVision.

second_per_grid_ts (Qwen2.5-VL)
-------------------------------
HF passes ``VideoMetadata(total_num_frames=M, fps=native_fps, frames_indices=indices, ...)`` through
the video processor (``do_sample_frames=False`` keeps it untouched) and ``Qwen2_5_VLProcessor`` then
computes, per video::

    sampled_fps        = len(frames_indices) / total_num_frames * fps        # VideoMetadata.sampled_fps
    second_per_grid_ts = temporal_patch_size / sampled_fps

i.e. ``temporal_patch_size * M / (N * native_fps)`` for N frames out of M. ``duration`` is not used.
(Without metadata HF falls back to ``fps = 24``.) With ``return_tensors="pt"`` the list becomes a
float32 tensor of shape (num_videos,), which is what we return.

Resize
------
HF calls ``torchvision.transforms.v2.functional.resize(uint8_video, (h, w), BICUBIC, antialias=True)``.
On CPU, torchvision passes uint8 straight to ``torch.nn.functional.interpolate(..., mode="bicubic",
align_corners=False, antialias=True)`` (torch's native uint8 antialiased kernel) and returns uint8;
a resize to the current size is a no-op. BILINEAR takes the native uint8 path only on AVX2/AVX512/ARM
CPUs, else it goes through float32, clamp-free round and cast; NEAREST uses ``nearest-exact`` on uint8.
We mirror exactly that (CPU behaviour; on a GPU torchvision would go through float32 + clamp + round).

Configuration files
-------------------
`load_processor_config` follows ``BaseVideoProcessor.get_video_processor_dict``: the
``"video_processor"`` entry of ``processor_config.json`` wins, then ``video_preprocessor_config.json``
(HF's file name; ``video_processor_config.json`` is accepted as an alias), then
``preprocessor_config.json``. As a last resort (where HF would fail) the ``"image_processor"`` entry of
``processor_config.json`` is used. Fields absent from the file take the HF class defaults of the family,
except the fields that fix the number of visual tokens (Qwen: patch_size, merge_size,
temporal_patch_size, min/max pixels; LLaVA: size, and crop_size when center-cropping), which must be
present: a missing one raises CheckpointError instead of silently using a default.
"""

from __future__ import annotations

import json
import math
import os
import platform
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from hippo.errors import CheckpointError
from hippo.video import VideoClip

__all__ = [
    "FAMILIES",
    "OPENAI_CLIP_MEAN",
    "OPENAI_CLIP_STD",
    "ProcessorConfig",
    "load_processor_config",
    "preprocess_llava_onevision_video",
    "preprocess_llava_next_video",
    "preprocess_qwen_video",
    "preprocess_video",
    "smart_resize",
]

FAMILIES = ("qwen2_5_vl", "qwen2_vl", "llava_onevision", "llava_next_video")

# transformers.image_utils.OPENAI_CLIP_MEAN / OPENAI_CLIP_STD
OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

# PILImageResampling codes HF stores in configs -> torch interpolate mode (as torchvision maps them:
# transformers.image_utils.pil_torch_interpolation_mapping, NEAREST -> NEAREST_EXACT).
_RESAMPLE_MODES = {0: "nearest-exact", 2: "bilinear", 3: "bicubic"}
_RESAMPLE_NAMES = {0: "NEAREST", 1: "LANCZOS", 2: "BILINEAR", 3: "BICUBIC", 4: "BOX", 5: "HAMMING"}

PROCESSOR_FILE = "processor_config.json"
VIDEO_PROCESSOR_FILES = ("video_preprocessor_config.json", "video_processor_config.json")
IMAGE_PROCESSOR_FILE = "preprocessor_config.json"


# ---------------------------------------------------------------------------------------- config


@dataclass(frozen=True)
class ProcessorConfig:
    """Video-processor settings as written in a checkpoint (None = absent: the family default applies).

    Attributes:
        source: where the settings came from, e.g. ``ckpt/processor_config.json["video_processor"]``.
        processor_type: ``video_processor_type`` or ``image_processor_type`` from the file, if any.
        patch_size, merge_size, temporal_patch_size: Qwen vision-encoder geometry.
        min_pixels, max_pixels: Qwen pixel bounds as top-level keys (they override ``size``).
        size: the ``size`` entry as written (dict, or int / [h, w] in old configs).
        crop_size, do_center_crop: center crop (LLaVA-NeXT-Video).
        image_mean, image_std: per-channel normalisation (tuple of 3 floats, or one float).
        rescale_factor, do_resize, do_rescale, do_normalize, resample: as in HF.
        default_to_square: how an int ``size`` is read (HF ``get_size_dict``).
        cap_pixels_per_frame, max_video_tokens: Qwen's optional total-pixel cap.
        raw: the whole dict read from the file.
    """

    source: str
    processor_type: str | None = None
    patch_size: int | None = None
    merge_size: int | None = None
    temporal_patch_size: int | None = None
    min_pixels: int | None = None
    max_pixels: int | None = None
    size: Any = None
    crop_size: Any = None
    do_center_crop: bool | None = None
    image_mean: tuple[float, ...] | float | None = None
    image_std: tuple[float, ...] | float | None = None
    rescale_factor: float | None = None
    do_resize: bool | None = None
    do_rescale: bool | None = None
    do_normalize: bool | None = None
    resample: int | None = None
    default_to_square: bool | None = None
    cap_pixels_per_frame: bool | None = None
    max_video_tokens: int | None = None
    raw: dict = field(default_factory=dict, repr=False)


def _read_json(path: str) -> dict:
    """Read a JSON object from `path`, raising CheckpointError if it is not valid JSON or not an object."""
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError(
            f"cannot read {path} as JSON ({err}): restore the file from the checkpoint"
        ) from err
    if not isinstance(data, dict):
        raise CheckpointError(
            f"{path} must hold a JSON object, found {type(data).__name__}: restore the file"
        )
    return data


def _find_video_processor_dict(checkpoint_dir: str) -> tuple[dict, str]:
    """Pick the video-processor dict like ``BaseVideoProcessor.get_video_processor_dict`` (see module doc)."""
    if not os.path.isdir(checkpoint_dir):
        raise CheckpointError(
            f"checkpoint folder {checkpoint_dir} does not exist or is not a folder: check the path"
        )
    processor_path = os.path.join(checkpoint_dir, PROCESSOR_FILE)
    processor_dict = _read_json(processor_path) if os.path.isfile(processor_path) else None
    if processor_dict is not None and isinstance(processor_dict.get("video_processor"), dict):
        return processor_dict["video_processor"], f'{processor_path}["video_processor"]'
    for name in (*VIDEO_PROCESSOR_FILES, IMAGE_PROCESSOR_FILE):
        path = os.path.join(checkpoint_dir, name)
        if os.path.isfile(path):
            return _read_json(path), path
    if processor_dict is not None and isinstance(processor_dict.get("image_processor"), dict):
        return processor_dict["image_processor"], f'{processor_path}["image_processor"]'
    looked_for = [
        f'{PROCESSOR_FILE} (with a "video_processor" or "image_processor" entry)',
        *VIDEO_PROCESSOR_FILES,
        IMAGE_PROCESSOR_FILE,
    ]
    raise CheckpointError(
        f"no video processor settings in {checkpoint_dir}: looked for {', '.join(looked_for)}. "
        "Copy the processor files of the original model into the checkpoint folder"
    )


def _field_error(name: str, value: Any, source: str, expected: str) -> CheckpointError:
    return CheckpointError(
        f"field {name!r} in {source} is {value!r}, expected {expected}: fix the value or restore the file"
    )


def _get_int(d: dict, name: str, source: str) -> int | None:
    value = d.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise _field_error(name, value, source, "a positive integer")
    return value


def _get_bool(d: dict, name: str, source: str) -> bool | None:
    value = d.get(name)
    if value is None:
        return None
    if not isinstance(value, bool):
        raise _field_error(name, value, source, "true or false")
    return value


def _get_float(d: dict, name: str, source: str) -> float | None:
    value = d.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise _field_error(name, value, source, "a positive number")
    return value


def _get_channels(d: dict, name: str, source: str) -> tuple[float, ...] | float | None:
    value = d.get(name)
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value
    if (
        isinstance(value, list)
        and len(value) == 3
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
    ):
        return tuple(value)
    raise _field_error(name, value, source, "a list of 3 numbers (one per RGB channel)")


def _get_size(d: dict, name: str, source: str) -> Any:
    value = d.get(name)
    if value is None:
        return None
    if isinstance(value, dict):
        for key, v in value.items():
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v <= 0):
                raise _field_error(f"{name}.{key}", v, source, "a positive integer")
        return {k: v for k, v in value.items() if v is not None}
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    if isinstance(value, list) and len(value) in (1, 2) and all(isinstance(v, int) and v > 0 for v in value):
        return list(value)
    raise _field_error(name, value, source, 'a dict such as {"height": 384, "width": 384}')


def load_processor_config(checkpoint_dir: str | os.PathLike) -> ProcessorConfig:
    """Read the video-processor settings of a checkpoint folder (see the module docstring for file order).

    Raises CheckpointError if no settings file is found (the message lists the files looked for), if a
    file is not valid JSON, or if a field has a value of the wrong type.
    """
    raw, source = _find_video_processor_dict(os.fspath(checkpoint_dir))
    resample = raw.get("resample")
    if resample is not None and (isinstance(resample, bool) or not isinstance(resample, int)):
        raise _field_error("resample", resample, source, "an integer PIL resampling code (3 = BICUBIC)")
    return ProcessorConfig(
        source=source,
        processor_type=raw.get("video_processor_type") or raw.get("image_processor_type"),
        patch_size=_get_int(raw, "patch_size", source),
        merge_size=_get_int(raw, "merge_size", source),
        temporal_patch_size=_get_int(raw, "temporal_patch_size", source),
        min_pixels=_get_int(raw, "min_pixels", source),
        max_pixels=_get_int(raw, "max_pixels", source),
        size=_get_size(raw, "size", source),
        crop_size=_get_size(raw, "crop_size", source),
        do_center_crop=_get_bool(raw, "do_center_crop", source),
        image_mean=_get_channels(raw, "image_mean", source),
        image_std=_get_channels(raw, "image_std", source),
        rescale_factor=_get_float(raw, "rescale_factor", source),
        do_resize=_get_bool(raw, "do_resize", source),
        do_rescale=_get_bool(raw, "do_rescale", source),
        do_normalize=_get_bool(raw, "do_normalize", source),
        resample=resample,
        default_to_square=_get_bool(raw, "default_to_square", source),
        cap_pixels_per_frame=_get_bool(raw, "cap_pixels_per_frame", source),
        max_video_tokens=_get_int(raw, "max_video_tokens", source),
        raw=dict(raw),
    )


def _pick(value, default):
    """HF ``_set_attributes``: a value absent from the config (None) takes the class default."""
    return default if value is None else value


@dataclass(frozen=True)
class _Normalisation:
    """Settings shared by every family (HF class attributes as defaults)."""

    do_resize: bool
    resample: int
    do_rescale: bool
    rescale_factor: float
    do_normalize: bool
    image_mean: tuple[float, ...] | float
    image_std: tuple[float, ...] | float


def _resolve_normalisation(cfg: ProcessorConfig) -> _Normalisation:
    """Fill the shared settings with the defaults all four HF video processors use (BICUBIC, CLIP, 1/255)."""
    resample = _pick(cfg.resample, 3)
    if resample not in _RESAMPLE_MODES:
        name = _RESAMPLE_NAMES.get(resample, "unknown")
        raise CheckpointError(
            f"field 'resample' in {cfg.source} is {resample} ({name}): only 0 (NEAREST), 2 (BILINEAR) and "
            "3 (BICUBIC) are implemented; use 3, the value every supported model ships with"
        )
    return _Normalisation(
        do_resize=_pick(cfg.do_resize, True),
        resample=resample,
        do_rescale=_pick(cfg.do_rescale, True),
        rescale_factor=_pick(cfg.rescale_factor, 1 / 255),
        do_normalize=_pick(cfg.do_normalize, True),
        image_mean=_pick(cfg.image_mean, OPENAI_CLIP_MEAN),
        image_std=_pick(cfg.image_std, OPENAI_CLIP_STD),
    )


def _require(value, name: str, cfg: ProcessorConfig, family: str):
    if value is None:
        raise CheckpointError(
            f"field {name!r} is missing from {cfg.source}; a {family} video processor config must state it "
            "(it fixes the number of visual tokens). Is this the processor config of the right model?"
        )
    return value


# ---------------------------------------------------------------------------------------- shared steps


def frames_to_tensor(frames) -> torch.Tensor:
    """(T, H, W, 3) uint8 numpy frames -> contiguous (T, 3, H, W) uint8 tensor.

    Mirrors ``BaseVideoProcessor._prepare_input_videos`` (``torch.from_numpy(...).contiguous()``, then
    ``permute(0, 3, 1, 2).contiguous()``); RGB conversion is a no-op for 3-channel frames.
    """
    video = torch.from_numpy(frames).contiguous()
    if video.ndim != 4 or video.shape[-1] != 3 or video.dtype != torch.uint8:
        raise ValueError(f"expected (T, H, W, 3) uint8 frames, got {tuple(video.shape)} {video.dtype}")
    return video.permute(0, 3, 1, 2).contiguous()


def _native_uint8_on_cpu(mode: str) -> bool:
    """torchvision ``_do_native_uint8_resize_on_cpu``: which modes interpolate uint8 without a float cast."""
    if mode == "bilinear":
        return torch.backends.cpu.get_cpu_capability() in ("AVX2", "AVX512") or platform.machine() in (
            "aarch64",
            "arm64",
        )
    return mode in ("bicubic", "nearest-exact")


def resize_video(video: torch.Tensor, height: int, width: int, resample: int) -> torch.Tensor:
    """Resize uint8 frames (..., C, H, W) to (height, width).

    Mirrors ``torchvision.transforms.v2.functional.resize_image`` (v0.29, CPU) as called by
    ``TorchvisionBackend.resize`` with ``antialias=True``.
    """
    mode = _RESAMPLE_MODES[resample]
    shape = video.shape
    channels, old_h, old_w = shape[-3:]
    if (height, width) == (old_h, old_w):
        return video
    antialias = mode in ("bilinear", "bicubic")
    align_corners = False if mode in ("bilinear", "bicubic") else None
    batch = video.reshape(-1, channels, old_h, old_w)
    need_cast = video.dtype != torch.uint8 or not _native_uint8_on_cpu(mode)
    need_cast = need_cast and video.dtype not in (torch.float32, torch.float64)
    if need_cast:
        batch = batch.to(torch.float32)
    out = F.interpolate(
        batch, size=[height, width], mode=mode, align_corners=align_corners, antialias=antialias
    )
    if need_cast:
        if mode == "bicubic" and video.dtype == torch.uint8:
            out = out.clamp_(min=0, max=255)
        out = out.round_().to(video.dtype)
    return out.reshape(shape[:-3] + (channels, height, width))


def rescale_and_normalize(video: torch.Tensor, norm: _Normalisation) -> torch.Tensor:
    """Mirrors ``TorchvisionBackend.rescale_and_normalize`` (fused rescale + normalize) and ``tvF.normalize``.

    With both steps on, HF folds the rescale into the statistics: ``mean' = tensor(mean) / rescale``,
    ``std' = tensor(std) / rescale`` (float32), then ``(x.float() - mean') / std'`` per channel.
    """
    mean, std, do_rescale = norm.image_mean, norm.image_std, norm.do_rescale
    if norm.do_rescale and norm.do_normalize:
        mean = torch.tensor(mean) * (1.0 / norm.rescale_factor)
        std = torch.tensor(std) * (1.0 / norm.rescale_factor)
        do_rescale = False
    if norm.do_normalize:
        video = video.to(torch.float32)
        mean_t = torch.as_tensor(mean, dtype=torch.float32)
        std_t = torch.as_tensor(std, dtype=torch.float32)
        if mean_t.ndim == 1:
            mean_t = mean_t.view(-1, 1, 1)
        if std_t.ndim == 1:
            std_t = std_t.view(-1, 1, 1)
        return video.sub(mean_t).div_(std_t)
    if do_rescale:
        return video * norm.rescale_factor
    return video


# ---------------------------------------------------------------------------------------- Qwen2-VL / 2.5-VL


def smart_resize(
    height: int, width: int, factor: int = 28, min_pixels: int = 56 * 56, max_pixels: int = 14 * 14 * 4 * 1280
) -> tuple[int, int]:
    """Qwen's target size: both sides multiples of `factor`, area within [min_pixels, max_pixels], aspect kept.

    Copy of ``transformers.models.qwen2_vl.video_processing_qwen2_vl.smart_resize``.
    """
    if max(height, width) / min(height, width) > 200:
        raise ValueError(
            f"absolute aspect ratio must be smaller than 200, got {max(height, width) / min(height, width)}"
        )
    h_bar = round(height / factor) * factor
    w_bar = round(width / factor) * factor
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt((height * width) / max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


@dataclass(frozen=True)
class QwenVideoSettings:
    """Resolved ``Qwen2VLVideoProcessor`` settings (config values, or the class defaults)."""

    patch_size: int
    merge_size: int
    temporal_patch_size: int
    min_pixels: int  # size["shortest_edge"]
    max_pixels: int  # size["longest_edge"]
    cap_pixels_per_frame: bool
    max_video_tokens: int
    norm: _Normalisation


def resolve_qwen_settings(cfg: ProcessorConfig, family: str = "qwen2_5_vl") -> QwenVideoSettings:
    """Mirrors ``Qwen2VLVideoProcessor.__init__``: top-level min_pixels / max_pixels override ``size``."""
    size = cfg.size
    if size is not None and not isinstance(size, dict):
        raise _field_error(
            "size", size, cfg.source, 'a dict {"shortest_edge": min_pixels, "longest_edge": max_pixels}'
        )
    size = dict(size or {})
    if cfg.min_pixels is not None:
        size["shortest_edge"] = cfg.min_pixels
        size.pop("min_pixels", None)
    if cfg.max_pixels is not None:
        size["longest_edge"] = cfg.max_pixels
        size.pop("max_pixels", None)
    min_pixels = _require(size.get("shortest_edge"), "min_pixels (or size.shortest_edge)", cfg, family)
    max_pixels = _require(size.get("longest_edge"), "max_pixels (or size.longest_edge)", cfg, family)
    if min_pixels > max_pixels:
        raise CheckpointError(
            f"{cfg.source}: min_pixels {min_pixels} is larger than max_pixels {max_pixels}: fix the config"
        )
    return QwenVideoSettings(
        patch_size=_require(cfg.patch_size, "patch_size", cfg, family),
        merge_size=_require(cfg.merge_size, "merge_size", cfg, family),
        temporal_patch_size=_require(cfg.temporal_patch_size, "temporal_patch_size", cfg, family),
        min_pixels=min_pixels,
        max_pixels=max_pixels,
        # None -> False: HF warns and keeps the uncapped behaviour (transformers 5.24.0)
        cap_pixels_per_frame=bool(cfg.cap_pixels_per_frame),
        max_video_tokens=_pick(cfg.max_video_tokens, 128000),
        norm=_resolve_normalisation(cfg),
    )


def qwen_target_size(height: int, width: int, num_frames: int, s: QwenVideoSettings) -> tuple[int, int]:
    """Mirrors the size computation of ``Qwen2VLVideoProcessor.resize`` (with ``cap_pixels_per_frame``)."""
    factor = s.patch_size * s.merge_size
    max_pixels = s.max_pixels
    if s.cap_pixels_per_frame:
        total_pixels = int(s.max_video_tokens * factor * factor * 0.9)
        max_pixels = max(
            min(max_pixels, total_pixels * s.temporal_patch_size // num_frames), int(s.min_pixels * 1.05)
        )
    return smart_resize(height, width, factor=factor, min_pixels=s.min_pixels, max_pixels=max_pixels)


def qwen_patchify(
    video: torch.Tensor, patch_size: int, merge_size: int, temporal_patch_size: int
) -> tuple[torch.Tensor, int, int, int]:
    """(T, C, H, W) float frames -> (grid_t*grid_h*grid_w, C*tp*p*p) patches, plus the grid.

    Mirrors ``Qwen2VLVideoProcessor.patchify`` for one video: repeats the last frame until T is a
    multiple of `temporal_patch_size`, then orders patches as (t, h-block, w-block, h-in-merge,
    w-in-merge) and flattens each patch as (channel, time, row, column).
    """
    num_frames, channels, height, width = video.shape
    if pad := -num_frames % temporal_patch_size:
        video = torch.cat((video, video[-1:].expand(pad, -1, -1, -1)), dim=0)
        num_frames += pad
    grid_t = num_frames // temporal_patch_size
    grid_h, grid_w = height // patch_size, width // patch_size
    patches = video.view(
        grid_t,
        temporal_patch_size,
        channels,
        grid_h // merge_size,
        merge_size,
        patch_size,
        grid_w // merge_size,
        merge_size,
        patch_size,
    )
    patches = patches.permute(0, 3, 6, 4, 7, 2, 1, 5, 8)
    flat = patches.reshape(grid_t * grid_h * grid_w, channels * temporal_patch_size * patch_size * patch_size)
    return flat, grid_t, grid_h, grid_w


def qwen_second_per_grid_ts(clip: VideoClip, temporal_patch_size: int) -> float:
    """``Qwen2_5_VLProcessor._process_videos`` with ``VideoMetadata.sampled_fps`` (see module docstring)."""
    sampled_fps = len(clip.frame_indices) / clip.num_source_frames * clip.native_fps
    return temporal_patch_size / sampled_fps


def preprocess_qwen_video(clip: VideoClip, cfg: ProcessorConfig, family: str = "qwen2_5_vl") -> dict:
    """One clip through ``Qwen2VLVideoProcessor`` + ``Qwen2_5_VLProcessor`` (``return_tensors="pt"``).

    Returns ``pixel_values_videos`` (float32, (grid_t*grid_h*grid_w, 3*tp*p*p)), ``video_grid_thw``
    (int64, (1, 3)) and ``second_per_grid_ts`` (float32, (1,)).
    """
    s = resolve_qwen_settings(cfg, family)
    video = frames_to_tensor(clip.frames)
    num_frames, _, height, width = video.shape
    if s.norm.do_resize:
        new_h, new_w = qwen_target_size(height, width, num_frames, s)
        video = resize_video(video, new_h, new_w, s.norm.resample)
    factor = s.patch_size * s.merge_size
    if video.shape[-2] % factor or video.shape[-1] % factor:
        raise CheckpointError(
            f"{cfg.source}: do_resize is false and the frames ({video.shape[-2]}x{video.shape[-1]}) are not "
            f"multiples of patch_size*merge_size = {factor}: set do_resize to true"
        )
    video = rescale_and_normalize(video, s.norm)
    if video.dtype != torch.float32:  # all-off normalisation leaves uint8; HF's BatchFeature keeps it
        video = video.to(torch.float32)
    patches, grid_t, grid_h, grid_w = qwen_patchify(video, s.patch_size, s.merge_size, s.temporal_patch_size)
    return {
        "pixel_values_videos": patches,
        "video_grid_thw": torch.tensor([[grid_t, grid_h, grid_w]], dtype=torch.long),
        "second_per_grid_ts": torch.tensor([qwen_second_per_grid_ts(clip, s.temporal_patch_size)]),
    }


# ---------------------------------------------------------------------------------------- LLaVA


@dataclass(frozen=True)
class LlavaVideoSettings:
    """Resolved ``LlavaOnevisionVideoProcessor`` / ``LlavaNextVideoVideoProcessor`` settings."""

    size: dict
    do_center_crop: bool
    crop_size: dict | None
    norm: _Normalisation


def _size_dict(size: Any, default_to_square: bool, name: str, cfg: ProcessorConfig) -> dict:
    """Mirrors ``transformers.image_processing_utils.get_size_dict`` (int / [h, w] / dict forms)."""
    if isinstance(size, dict):
        d = dict(size)
    elif isinstance(size, int):
        d = {"height": size, "width": size} if default_to_square else {"shortest_edge": size}
    elif isinstance(size, list) and len(size) == 2:
        d = {"height": size[0], "width": size[1]}
    else:
        raise _field_error(name, size, cfg.source, 'a dict such as {"height": 384, "width": 384}')
    if set(d) not in ({"height", "width"}, {"shortest_edge"}):
        raise _field_error(
            name,
            size,
            cfg.source,
            '{"height": H, "width": W} or {"shortest_edge": S} (other forms not implemented)',
        )
    return d


def resolve_llava_settings(cfg: ProcessorConfig, family: str) -> LlavaVideoSettings:
    """Class defaults of ``LlavaOnevisionVideoProcessor`` (no crop) / ``LlavaNextVideoVideoProcessor`` (crop)."""
    default_to_square = _pick(cfg.default_to_square, False)  # both classes set default_to_square = False
    size = _size_dict(_require(cfg.size, "size", cfg, family), default_to_square, "size", cfg)
    do_center_crop = _pick(cfg.do_center_crop, family == "llava_next_video")
    crop_size = None
    if do_center_crop:
        crop_size = _size_dict(_require(cfg.crop_size, "crop_size", cfg, family), True, "crop_size", cfg)
        if set(crop_size) != {"height", "width"}:
            raise _field_error("crop_size", cfg.crop_size, cfg.source, '{"height": H, "width": W}')
    return LlavaVideoSettings(
        size=size, do_center_crop=do_center_crop, crop_size=crop_size, norm=_resolve_normalisation(cfg)
    )


def llava_target_size(height: int, width: int, size: dict) -> tuple[int, int]:
    """Mirrors ``TorchvisionBackend.resize`` size selection for {"height","width"} and {"shortest_edge"}.

    The shortest-edge form is ``get_resize_output_image_size(default_to_square=False)``: the short side
    becomes ``shortest_edge`` and the long side ``int(shortest_edge * long / short)``.
    """
    if "shortest_edge" in size:
        short_target = size["shortest_edge"]
        short, long = (width, height) if width <= height else (height, width)
        new_short, new_long = short_target, int(short_target * long / short)
        return (new_long, new_short) if width <= height else (new_short, new_long)
    return size["height"], size["width"]


def center_crop(video: torch.Tensor, crop_height: int, crop_width: int) -> torch.Tensor:
    """Mirrors ``TorchvisionBackend.center_crop`` (zero-pads first when the crop is larger than the frame)."""
    height, width = video.shape[-2:]
    if crop_width > width or crop_height > height:
        left = (crop_width - width) // 2 if crop_width > width else 0
        top = (crop_height - height) // 2 if crop_height > height else 0
        right = (crop_width - width + 1) // 2 if crop_width > width else 0
        bottom = (crop_height - height + 1) // 2 if crop_height > height else 0
        video = F.pad(video, [left, right, top, bottom], mode="constant", value=0)
        height, width = video.shape[-2:]
        if crop_width == width and crop_height == height:
            return video
    top = int((height - crop_height) / 2.0)
    left = int((width - crop_width) / 2.0)
    return video[..., top : top + crop_height, left : left + crop_width]


def _preprocess_llava(clip: VideoClip, cfg: ProcessorConfig, family: str) -> dict:
    """Mirrors ``BaseVideoProcessor._preprocess``: resize, [center crop], rescale + normalize."""
    s = resolve_llava_settings(cfg, family)
    video = frames_to_tensor(clip.frames)
    if s.norm.do_resize:
        new_h, new_w = llava_target_size(video.shape[-2], video.shape[-1], s.size)
        video = resize_video(video, new_h, new_w, s.norm.resample)
    if s.do_center_crop:
        video = center_crop(video, s.crop_size["height"], s.crop_size["width"])
    video = rescale_and_normalize(video, s.norm)
    if video.dtype != torch.float32:
        video = video.to(torch.float32)
    return {"pixel_values_videos": video.contiguous().unsqueeze(0)}


def preprocess_llava_onevision_video(clip: VideoClip, cfg: ProcessorConfig) -> dict:
    """One clip through ``LlavaOnevisionVideoProcessor``: ``pixel_values_videos`` float32 (1, T, 3, H, W)."""
    return _preprocess_llava(clip, cfg, "llava_onevision")


def preprocess_llava_next_video(clip: VideoClip, cfg: ProcessorConfig) -> dict:
    """One clip through ``LlavaNextVideoVideoProcessor`` (shortest-edge resize + center crop)."""
    return _preprocess_llava(clip, cfg, "llava_next_video")


# ---------------------------------------------------------------------------------------- dispatch


def preprocess_video(clip: VideoClip, cfg: ProcessorConfig, family: str) -> dict:
    """Preprocess `clip` as the HF processor of `family` would (see FAMILIES and the module docstring)."""
    if family == "qwen2_5_vl":
        return preprocess_qwen_video(clip, cfg, family)
    if family == "qwen2_vl":
        out = preprocess_qwen_video(clip, cfg, family)
        del out["second_per_grid_ts"]  # Qwen2VLProcessor does not return it (Qwen2-VL has no time scaling)
        return out
    if family == "llava_onevision":
        return preprocess_llava_onevision_video(clip, cfg)
    if family == "llava_next_video":
        return preprocess_llava_next_video(clip, cfg)
    raise CheckpointError(
        f"unknown model family {family!r} for video preprocessing: supported are {', '.join(FAMILIES)}"
    )
