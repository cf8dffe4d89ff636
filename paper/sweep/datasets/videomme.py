"""Video-MME (lmms-lab/Video-MME, split test; lmms-eval task videomme, without subtitles).

Layout under the root::

    videomme/test-00000-of-00001.parquet    2,700 rows: video_id, duration (short | medium | long),
                                            domain, sub_category, url, videoID, question_id, task_type,
                                            question, options (a list, each "A. ..."), answer (a letter)
    data/<videoID>.mp4                      the videos (lmms-eval also tries .MP4 and .mkv)
    subtitle/<videoID>.srt                  subtitles (not read: this is the no-subtitle task)

Prompt (lmms-eval videomme_doc_to_text with the default post_prompt, character for character)::

    OPTION_PROMPT + "\\n" + question + "\\n" + "\\n".join(options) + "\\n" + POST_PROMPT

where POST_PROMPT itself starts with "\\n", so a blank line separates the options from it. `task` is
`task_type`; `choices` are the options without their "A. " letters. Speed mode keeps this question:
SpecVLM's code has no Video-MME loader, so nothing says it was replaced.
"""

from __future__ import annotations

import re

from paper.sweep.datasets._common import (
    check_prompt_mode,
    check_root,
    keep_rows,
    letter_field,
    read_parquet,
    resolve_media,
    select_tasks,
    unique_ids,
)
from paper.sweep.datasets.sample import LETTERS, BenchmarkSample

NAME = "videomme"
ANNOTATIONS = "videomme/test-00000-of-00001.parquet"
VIDEO_DIR = "data"
EXTENSIONS = (".mp4", ".MP4", ".mkv")
OPTION_PROMPT = ("Select the best answer to the following multiple-choice question based on the video and the "
                 "subtitles. Respond with only the letter (A, B, C, or D) of the correct option.")
POST_PROMPT = "\nAnswer with the option's letter from the given choices directly."
FIELDS = ("videoID", "question_id", "task_type", "question", "options", "answer")
DOC = "paper/sweep/datasets/videomme.py"
HINT = "point --root at the folder the Video-MME download unpacks to (it holds videomme/ and data/)"
_LETTER = re.compile(r"^\(?[A-Z][.)]\s*")


def build_question(question: str, options) -> str:
    return OPTION_PROMPT + "\n" + question + "\n" + "\n".join(options) + "\n" + POST_PROMPT


def samples(root, prompt_mode: str = "benchmark", tasks=None, check_videos: bool = True):
    """Yield Video-MME's questions in file order; a task filter matches `task_type`."""
    check_prompt_mode(prompt_mode)
    root = check_root(NAME, root)
    tasks = select_tasks(NAME, tasks, None)
    table = read_parquet(NAME, root, [ANNOTATIONS], FIELDS, DOC, HINT)
    n = len(table.rows)
    task_of = [table.field(i, "task_type", optional=True) for i in range(n)]
    ids = unique_ids([table.field(i, "question_id") for i in range(n)])
    for i in keep_rows(table, tasks, [[t] if t else [] for t in task_of], "task_type"):
        video_id = table.field(i, "videoID")
        options = table.field(i, "options", "options")
        letter = letter_field(table, i, table.field(i, "answer"), len(options))
        choices = tuple(_LETTER.sub("", o, count=1) for o in options)
        video = resolve_media(table, i, [root / VIDEO_DIR / f"{video_id}{ext}" for ext in EXTENSIONS], check_videos)
        text = build_question(table.field(i, "question"), options)
        yield BenchmarkSample(NAME, ids[i], task_of[i], video, None, text, text, choices[LETTERS.index(letter)],
                              choices, letter)
