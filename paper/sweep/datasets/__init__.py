"""Loaders for a user's local copies of the six benchmarks the HIPPO paper uses, and the zoo's default set.

    from paper.sweep.datasets import load_benchmark, zoo_samples, score_choice
    samples = load_benchmark("mvbench", "/data/MVBench", prompt_mode="speed", tasks=["action_sequence"])
    correct = [score_choice(text, s) for s, text in zip(samples, answers)]   # None: open-ended

Each benchmark reads a root folder laid out as its download unpacks (the module of each says which
files, fields and folders; shared/benchmark-formats.md has the published formats):

    vdc              data/test-00000-of-00001.parquet; Test_Videos/<video_name>.mp4 (.MP4, .mkv)
    mvbench          json/<task>.json; video/<prefix>/<video> (revision "main", start/end segments,
                     episodic_reasoning as frame folders) or <prefix>/<video> (revision="video", pre-cut)
    mlvu             json/<N>_<task>.json + video/<N>_<task>/ (original) or mlvu/test-*.parquet (lmms-eval dev)
    lvbench          video_info.meta.jsonl + videos/<key>.mp4 (original) or data/train-*.parquet (lmms-eval)
    videomme         videomme/test-00000-of-00001.parquet; data/<videoID>.mp4
    longvideobench   lvb_val.json / lvb_test_wo_gt.json or their parquet twins; videos/<video_path>

Every sample is a BenchmarkSample (paper/sweep/datasets/sample.py) whose `question` is the benchmark's own
prompt exactly as lmms-eval builds it and whose `prompt` is what the model is given:
    prompt_mode="benchmark"  the question itself.
    prompt_mode="speed"      the speed protocol SpecVLM's code runs: MVBench, MLVU and LongVideoBench get
                             DETAIL_DESCRIPTION_PROMPT, VDC keeps its question (already a request for a
                             detailed description), LVBench and Video-MME keep theirs (SpecVLM's code has
                             no loader for them); generate up to SPEED_MAX_NEW_TOKENS (256) tokens.
Gold answers are letters ("A", ...) whatever the benchmark stores (an answer text, an index, a letter);
score_choice(text, sample) is THE multiple-choice accuracy of one answer.

Errors: a missing root, file, field or video, or a field of the wrong form, raises
hippo.errors.DatasetError (a ConfigError: the CLIs print one line and exit 2) naming the benchmark, the
file, the row (JSON lists and parquet rows counted from 0, JSONL lines from 1), and what was expected.
check_videos=False lists the samples without looking for their videos (a sweep that resolves them later).

`zoo_samples()` is the default dataset: the zoo's test split with its detailed-caption prompt; its
videos are rendered in memory, so each sample carries its hippo.video.VideoClip in `clip` (video None).
"""

from __future__ import annotations

import inspect
import itertools

from hippo.errors import ConfigError, DatasetError
from paper.sweep.datasets import longvideobench, lvbench, mlvu, mvbench, vdc, videomme
from paper.sweep.datasets.sample import (
    DETAIL_DESCRIPTION_PROMPT,
    PROMPT_MODES,
    SPEED_MAX_NEW_TOKENS,
    BenchmarkSample,
    read_choice,
    score_choice,
)

__all__ = ["BENCHMARKS", "BenchmarkSample", "DETAIL_DESCRIPTION_PROMPT", "PROMPT_MODES", "SPEED_MAX_NEW_TOKENS",
           "load_benchmark", "read_choice", "score_choice", "zoo_samples"]

# name -> module; each module's samples(root, prompt_mode, tasks, check_videos, **options) yields them.
BENCHMARKS = {
    "vdc": vdc,
    "mvbench": mvbench,
    "mlvu": mlvu,
    "lvbench": lvbench,
    "videomme": videomme,
    "longvideobench": longvideobench,
}
_COMMON = ("root", "prompt_mode", "tasks", "check_videos")


def load_benchmark(name: str, root, prompt_mode: str = "benchmark", tasks=None, limit: int | None = None,
                   check_videos: bool = True, **options) -> list[BenchmarkSample]:
    """The samples of benchmark `name` read from `root`, in file order.

    tasks: a task name or names to keep (None: all); limit: at most this many samples (the first ones);
    check_videos: raise DatasetError for a sample whose video is missing (False: take the first path
    tried). options: the benchmark's own (mvbench: revision, prefixes, video_dir; mlvu: layout,
    video_dir; lvbench: layout, video_dir; longvideobench: split).
    """
    if name not in BENCHMARKS:
        raise ConfigError(f"unknown benchmark {name!r}; choose one of {', '.join(BENCHMARKS)}")
    if limit is not None and limit < 1:
        raise ConfigError(f"limit must be >= 1 (the number of samples to keep), got {limit}; omit it for all")
    module = BENCHMARKS[name]
    own = [p for p in inspect.signature(module.samples).parameters if p not in _COMMON]
    unknown = sorted(set(options) - set(own))
    if unknown:
        raise ConfigError(f"{name}: unknown option(s) {', '.join(unknown)}; its options: {', '.join(own) or 'none'}")
    stream = module.samples(root, prompt_mode, tasks, check_videos, **options)
    samples = list(itertools.islice(stream, limit))
    seen: dict[str, int] = {}
    for n, sample in enumerate(samples):
        if sample.sample_id in seen:  # the loaders make ids unique; this guards the sweep's row key
            raise DatasetError(f"{name}: samples {seen[sample.sample_id]} and {n} share the id {sample.sample_id!r}")
        seen[sample.sample_id] = n
    return samples


def zoo_samples(split: str = "test", count: int | None = None) -> list[BenchmarkSample]:
    """The zoo's detailed-caption requests (hippo.zoo.dataset.detail_requests) as samples: benchmark "zoo",
    sample_id "<split>/<index>", the rendered VideoClip in `clip`, prompt and question DETAIL_PROMPT, the
    reference the templated caption (its facts: hippo.zoo.dataset.example(split, i, "detail").facts)."""
    from hippo.zoo import dataset as zoo

    out = []
    for i, (clip, prompt) in enumerate(zoo.detail_requests(split, count)):
        reference = zoo.example(split, i, zoo.DETAIL).answer
        out.append(BenchmarkSample("zoo", f"{split}/{i}", zoo.DETAIL, None, None, prompt, prompt, reference,
                                   clip=clip))
    return out
