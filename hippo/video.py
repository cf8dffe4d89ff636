"""Load a fixed number of frames from a video file with decord.

Frame sampling (part of the spec)
---------------------------------
From a video with ``M`` decodable frames, ``load_video(path, N)`` takes the ``N`` frames at the centres
of ``N`` equal segments::

    idx_i = floor((i + 0.5) * M / N)        for i = 0 .. N-1

computed in exact integer arithmetic as ``((2 * i + 1) * M) // (2 * N)``. The indices are strictly
increasing whenever ``N <= M`` and always lie in ``[0, M - 1]``. Timestamps are ``idx_i / fps`` with
``fps`` the stream's average frame rate as decord reports it (``VideoReader.get_avg_fps()``).

Policy when ``N > M`` (more frames requested than the video has): raise :class:`VideoError` telling
the user to lower ``--frames`` to at most ``M``. Frames are never repeated or invented: the models see
real, distinct frames or nothing.

Every failure a user can cause (missing file, a directory, a file that is not a video, a truncated or
corrupt file, a file without a video stream or without frames, a stream that cannot be decoded) is
raised as :class:`hippo.errors.VideoError` with a message saying what is wrong and what to do; the
decoder's own exception is kept as ``__cause__``. A bad ``num_frames`` raises
:class:`hippo.errors.ConfigError`.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import numpy as np

from hippo.errors import ConfigError, VideoError

__all__ = ["VideoClip", "load_video", "sample_frame_indices"]


@dataclass(frozen=True)
class VideoClip:
    """Frames sampled from one video file.

    Attributes:
        frames: uint8 array of shape (T, H, W, 3), RGB.
        frame_indices: index of each frame in the original video (length T, strictly increasing).
        native_fps: the video's average frame rate (decord ``get_avg_fps``).
        timestamps_s: ``frame_indices[i] / native_fps`` for each frame, in seconds.
        num_source_frames: number of frames in the original video (``M``).
        path: the file the frames came from.
    """

    frames: np.ndarray
    frame_indices: tuple[int, ...]
    native_fps: float
    timestamps_s: tuple[float, ...]
    num_source_frames: int
    path: str

    @property
    def num_frames(self) -> int:
        """Number of sampled frames (``T``)."""
        return len(self.frame_indices)


def _check_num_frames(num_frames: object) -> int:
    """Return `num_frames` as an int, or raise ConfigError if it is not a positive integer."""
    if isinstance(num_frames, bool) or not isinstance(num_frames, (int, np.integer)) or num_frames <= 0:
        raise ConfigError(
            f"num_frames must be a positive integer, got {num_frames!r}: pass --frames 1 or more (e.g. --frames 8)"
        )
    return int(num_frames)


def sample_frame_indices(num_source_frames: int, num_frames: int) -> tuple[int, ...]:
    """Segment-centre indices ``floor((i + 0.5) * M / N)`` for i in 0..N-1 (exact integer arithmetic).

    Requires ``1 <= num_frames <= num_source_frames``; raises ConfigError otherwise (load_video turns
    the ``N > M`` case into a VideoError that names the file).
    """
    n = _check_num_frames(num_frames)
    m = int(num_source_frames)
    if m < n:
        raise ConfigError(f"cannot sample {n} distinct frames from {m} frames: ask for at most {m}")
    return tuple(((2 * i + 1) * m) // (2 * n) for i in range(n))


def _open_reader(path: str):
    """Open `path` with decord (CPU, one thread); turn decoder failures into VideoError."""
    import decord  # imported here so that `import hippo.video` stays cheap

    try:
        return decord.VideoReader(path, ctx=decord.cpu(0), num_threads=1)
    except Exception as err:  # decord raises DECORDError or RuntimeError with C++ log text
        detail = str(err).strip().splitlines()
        reason = detail[-1][:200] if detail else type(err).__name__
        if "cannot find video stream" in str(err):
            raise VideoError(
                f"{path} has no video stream (an audio-only file, or a container with no video frames): "
                "pass a file that contains video"
            ) from err
        raise VideoError(
            f"cannot open {path} as a video: the file is not a video, or it is truncated or corrupt "
            f"(decoder said: {reason}). Check that the file plays in a video player, or re-export it "
            "(e.g. as H.264 .mp4)"
        ) from err


def _check_indices(indices, num_source: int, path: str) -> tuple[int, ...]:
    """Explicit frame indices as a tuple of ints, strictly increasing, inside the video."""
    try:
        out = tuple(int(i) for i in indices)
    except (TypeError, ValueError):
        raise ConfigError(f"frame indices must be integers, got {indices!r}") from None
    if not out:
        raise ConfigError("frame indices are empty: give at least one frame index")
    if any(b <= a for a, b in zip(out, out[1:], strict=False)):
        raise ConfigError(f"frame indices must be strictly increasing, got {list(out)}")
    if out[0] < 0 or out[-1] >= num_source:
        raise VideoError(f"frame indices {list(out)} fall outside {path}, which has frames 0..{num_source - 1}")
    return out


def load_video(path: str | os.PathLike, num_frames: int | None, indices=None) -> VideoClip:
    """Decode ``num_frames`` uniformly sampled frames (segment centres, see module docstring) of `path`,
    or, with `indices`, exactly those frames (an output recorded elsewhere names the frames it read;
    `num_frames` must then be None or their count).

    Raises:
        ConfigError: `num_frames` is not a positive integer, or the indices are not increasing integers.
        VideoError: the file is missing, is a directory, is not a (readable) video, has no frames,
            has fewer than `num_frames` frames, or a sampled frame cannot be decoded.
    """
    if indices is not None:
        if num_frames is not None and int(num_frames) != len(indices):
            raise ConfigError(f"{num_frames} frames requested but {len(indices)} frame indices given: "
                              "give one or the other, or make them agree")
        num_frames = len(indices)
    n = _check_num_frames(num_frames)
    path = os.fspath(path)
    if not os.path.exists(path):
        raise VideoError(f"no such file: {path}: check the path (relative paths start at {os.getcwd()})")
    if os.path.isdir(path):
        raise VideoError(f"{path} is a directory, not a video file: pass the path of a video file inside it")
    if os.path.getsize(path) == 0:
        raise VideoError(f"{path} is an empty file (0 bytes): re-copy or re-export the video")

    reader = _open_reader(path)
    num_source = len(reader)
    if num_source == 0:
        raise VideoError(f"{path} has a video stream with 0 frames: pass a video that contains frames")
    if num_source < n:
        raise VideoError(
            f"video {path} has {num_source} frames, {n} requested: lower --frames to at most {num_source}"
        )
    fps = float(reader.get_avg_fps())
    if not math.isfinite(fps) or fps <= 0:
        raise VideoError(
            f"{path} reports a frame rate of {fps}, so frame timestamps are unknown: re-export the video "
            "with a constant frame rate"
        )

    indices = sample_frame_indices(num_source, n) if indices is None else _check_indices(indices, num_source, path)
    try:
        frames = reader.get_batch(list(indices)).asnumpy()
    except Exception as err:
        if "DECORDArrayCopyFromTo" in str(err):
            # decord 0.6.0 pads some narrow frame widths (seen: 16, 24, 48, 72 px) and then fails to copy
            raise VideoError(
                f"decord cannot convert the frames of {path} to RGB arrays: a known decord 0.6.0 limitation "
                "for some narrow frame widths (seen: 16, 24, 48, 72 px). Re-encode the video at a width that "
                "is a multiple of 32 px (e.g. 64 or 320)"
            ) from err
        detail = str(err).strip().splitlines()
        reason = detail[-1][:200] if detail else type(err).__name__
        raise VideoError(
            f"cannot decode frames {list(indices)} of {path}: the video stream is damaged "
            f"(decoder said: {reason}). Re-export the video, or try a different file"
        ) from err

    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[0] != n or frames.shape[-1] != 3:
        raise VideoError(
            f"decoding {path} gave frames of shape {frames.shape} and dtype {frames.dtype}, expected "
            f"({n}, H, W, 3) uint8: re-export the video as 8-bit RGB/YUV (e.g. H.264 .mp4)"
        )
    frames = np.ascontiguousarray(frames)
    return VideoClip(
        frames=frames,
        frame_indices=indices,
        native_fps=fps,
        timestamps_s=tuple(i / fps for i in indices),
        num_source_frames=num_source,
        path=path,
    )


def write_video(path, frames: np.ndarray, fps: float, crf: int = 18, codec: str = "libx264"):
    """Write uint8 RGB frames (T, H, W, 3) as a video with PyAV (an optional dependency: pip install av).
    libx264, yuv420p (H and W even), no B-frames, constant quality `crf`; deterministic output."""
    from fractions import Fraction

    try:
        import av
    except ImportError:
        raise ConfigError("writing videos needs PyAV: pip install av") from None
    height, width = frames.shape[1:3]
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=Fraction(fps).limit_denominator(1001))
        stream.width, stream.height = width, height
        stream.pix_fmt = "yuv420p"
        if codec == "libx264":
            stream.options = {"crf": str(crf), "bf": "0", "preset": "veryfast", "threads": "1"}
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path
