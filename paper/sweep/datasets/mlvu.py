"""MLVU, in either of its two published layouts (layout="auto" takes the one the root holds).

"original" (the MLVU repository's files)::

    json/<N>_<task>.json                a JSON list per task (TASK_FILES): video (with extension),
                                        duration, question, candidates, answer (a candidate's TEXT),
                                        question_type; the generation tasks sub_scene and summary have
                                        no candidates (open-ended, `answer` the reference)
    video/<N>_<task>/<video>            the videos, one folder per task

"dev" (lmms-eval's copy, sy1998/MLVU_dev, split test)::

    mlvu/test-*.parquet                 video_name (with extension), duration, question (its options
                                        already inline as "(A) ...\\n(B) ..."), candidates, answer (a
                                        LETTER), task_type, question_id
    <video_name>                        the videos unzipped flat into the root (video_dir= to change)

Prompt (lmms-eval mlvu_doc_to_text, default post_prompt): question + POST_PROMPT, where
POST_PROMPT = "\\nOnly give the best option.\\nBest option: (". The original layout's questions carry no
options, so its multiple-choice prompt inlines them as the dev copy does, question + "\\n(A) c0\\n(B)
c1..." before POST_PROMPT; its generation tasks' prompt is the question alone (lmms-eval runs only the
multiple-choice dev set). Speed mode: DETAIL_DESCRIPTION_PROMPT (SpecVLM replaces MLVU's question).
Task names are the file names without their number ("plotQA"), in both layouts' `task` field as given
(dev: `task_type`).
"""

from __future__ import annotations

from hippo.errors import ConfigError
from paper.sweep.datasets import _common
from paper.sweep.datasets._common import (
    check_prompt_mode,
    check_root,
    glob_one_split,
    keep_rows,
    letter_field,
    letter_of,
    options_block,
    read_json_list,
    read_parquet,
    resolve_media,
    select_tasks,
    unique_ids,
)
from paper.sweep.datasets.sample import DETAIL_DESCRIPTION_PROMPT, LETTERS, BenchmarkSample

NAME = "mlvu"
# task -> its file stem (json/<stem>.json, video/<stem>/): multiple choice, then generation.
TASK_FILES = {
    "plotQA": "1_plotQA", "needle": "2_needle", "ego": "3_ego", "count": "4_count", "order": "5_order",
    "anomaly_reco": "6_anomaly_reco", "topic_reasoning": "7_topic_reasoning",
    "sub_scene": "8_sub_scene", "summary": "9_summary",
}
GENERATION_TASKS = ("sub_scene", "summary")
DEV_ANNOTATIONS = "mlvu/test-*.parquet"
POST_PROMPT = "\nOnly give the best option.\nBest option: ("
ORIGINAL_FIELDS = ("video", "question", "candidates", "answer")
GENERATION_FIELDS = ("video", "question", "answer")
DEV_FIELDS = ("video_name", "question", "candidates", "answer", "task_type", "question_id")
DOC = "paper/sweep/datasets/mlvu.py"
HINT = ("point --root at the folder the MLVU download unpacks to: json/ and video/ (the MLVU repository) "
        "or mlvu/test-*.parquet (lmms-eval's MLVU_dev)")


def build_question(question: str, candidates=()) -> str:
    """MLVU's prompt (module docstring): options inlined when given (original layout), then POST_PROMPT."""
    return question + ("\n" + options_block(candidates, "paren") if candidates else "") + POST_PROMPT


def samples(root, prompt_mode: str = "benchmark", tasks=None, check_videos: bool = True, layout: str = "auto",
            video_dir: str | None = None):
    """Yield MLVU's samples. layout: auto | original | dev; video_dir: the folder under the root that
    holds the videos (default: "video" for original, where each task has its folder; the root for dev)."""
    check_prompt_mode(prompt_mode)
    root = check_root(NAME, root)
    if layout == "auto":
        layout = _common.detect_layout(NAME, root, [
            ("original", (root / "json").is_dir(), "json/<N>_<task>.json (the MLVU repository's layout)"),
            ("dev", bool(list(root.glob(DEV_ANNOTATIONS))), f"{DEV_ANNOTATIONS} (lmms-eval's MLVU_dev)")], HINT)
    if layout == "original":
        yield from _original(root, prompt_mode, tasks, check_videos, "video" if video_dir is None else video_dir)
    elif layout == "dev":
        yield from _dev(root, prompt_mode, tasks, check_videos, video_dir or "")
    else:
        raise ConfigError(f"mlvu: unknown layout {layout!r}; choose auto, original or dev")


def _original(root, prompt_mode, tasks, check_videos, video_dir):
    for task in select_tasks(NAME, tasks, tuple(TASK_FILES)) or tuple(TASK_FILES):
        stem = TASK_FILES[task]
        generation = task in GENERATION_TASKS
        table = read_json_list(NAME, root, f"json/{stem}.json", GENERATION_FIELDS if generation else ORIGINAL_FIELDS,
                               DOC, HINT)
        for i in range(len(table.rows)):
            name = table.field(i, "video")
            question = table.field(i, "question")
            answer = table.field(i, "answer")
            candidates, letter = (), None
            if not generation:
                candidates = tuple(table.field(i, "candidates", "options"))
                letter = letter_of(table, i, answer, candidates)
            video = resolve_media(table, i, [root / video_dir / stem / name], check_videos)
            text = build_question(question, candidates) if candidates else question
            prompt = DETAIL_DESCRIPTION_PROMPT if prompt_mode == "speed" else text
            yield BenchmarkSample(NAME, f"{task}/{i}", task, video, None, prompt, text, answer, candidates, letter)


def _dev(root, prompt_mode, tasks, check_videos, video_dir):
    tasks = select_tasks(NAME, tasks, None)
    table = read_parquet(NAME, root, glob_one_split(NAME, root, DEV_ANNOTATIONS, HINT), DEV_FIELDS, DOC, HINT)
    n = len(table.rows)
    task_of = [table.field(i, "task_type", optional=True) for i in range(n)]
    ids = unique_ids([table.field(i, "question_id", optional=True) or f"{task_of[i]}/{i}" for i in range(n)])
    for i in keep_rows(table, tasks, [[t] if t else [] for t in task_of], "task_type"):
        name = table.field(i, "video_name")
        question = table.field(i, "question")
        candidates = tuple(table.field(i, "candidates", "options"))
        letter = letter_field(table, i, table.field(i, "answer"), len(candidates))
        video = resolve_media(table, i, [root / video_dir / name], check_videos)
        text = build_question(question)
        prompt = DETAIL_DESCRIPTION_PROMPT if prompt_mode == "speed" else text
        yield BenchmarkSample(NAME, ids[i], task_of[i], video, None, prompt, text,
                              candidates[LETTERS.index(letter)], candidates, letter)
