"""VideoDetailCaption (VDC; lmms-lab/VideoDetailCaption, lmms-eval task video_dc499).

Layout under the root::

    data/test-00000-of-00001.parquet     499 rows: video_name (no extension), question, answer
    Test_Videos/<video_name>.mp4         from videos.zip (lmms-eval also tries .MP4 and .mkv)

Open-ended: `question` is a fixed request for a detailed description, `answer` the reference caption.
lmms-eval's prompt is the question alone (pre_prompt and post_prompt are empty), and SpecVLM's speed
protocol keeps it too, so both prompt modes give the question. Not AuroraCap's "VDC" (field `caption`).
"""

from __future__ import annotations

from pathlib import Path

from hippo.errors import ConfigError
from paper.sweep.datasets._common import (
    check_prompt_mode,
    check_root,
    read_parquet,
    resolve_media,
    unique_ids,
)
from paper.sweep.datasets.sample import BenchmarkSample

NAME = "vdc"
ANNOTATIONS = "data/test-00000-of-00001.parquet"
VIDEO_DIR = "Test_Videos"
EXTENSIONS = (".mp4", ".MP4", ".mkv")  # tried in this order, as lmms-eval does
FIELDS = ("video_name", "question", "answer")
DOC = "paper/sweep/datasets/vdc.py"
HINT = "point --root at the folder the VideoDetailCaption download unpacks to (it holds data/ and Test_Videos/)"


def samples(root, prompt_mode: str = "benchmark", tasks=None, check_videos: bool = True):
    """Yield VDC's samples in file order (VDC has no tasks: a task filter is refused)."""
    check_prompt_mode(prompt_mode)
    root = check_root(NAME, root)
    if tasks is not None:
        raise ConfigError("vdc has no tasks: drop the task filter")
    table = read_parquet(NAME, root, [ANNOTATIONS], FIELDS, DOC, HINT)
    names = [table.field(i, "video_name") for i in range(len(table.rows))]
    for i, (name, sid) in enumerate(zip(names, unique_ids(names), strict=True)):
        question = table.field(i, "question")
        answer = table.field(i, "answer")
        tried = [root / VIDEO_DIR / f"{name}{ext}" for ext in EXTENSIONS]
        video = resolve_media(table, i, tried, check_videos)
        yield BenchmarkSample(NAME, sid, None, Path(video), None, question, question, answer)
