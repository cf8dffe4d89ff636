"""LVBench (THUDM/LVBench; lmms-eval's copy), in either layout (layout="auto" takes the one the root holds).

"original" (THUDM's annotation file; the videos are not distributed, they are downloaded by id)::

    video_info.meta.jsonl        one line per video: key (the YouTube id), type, video_info, qa: a list
                                 of {uid, question (its four options inline, "(A) ..." to "(D) ..."),
                                 answer (a letter), question_type (a list of categories), time_reference}
    videos/<key>.mp4             the videos, named by `key` (video_dir= to change the folder)

"lmms-eval" (the parquet copy, one row per question)::

    data/train-*.parquet         video_path (relative to the root), question, answer (a letter),
                                 optional options (a list: then appended as "(A) ..." lines)

Prompt (lmms-eval lvbench_doc_to_text, default post_prompt): question [+ "\\n(A) o1\\n(B) o2..."] +
"\\nAnswer the question with the option letter". `choices` are the options, or the "(A) ..." lines read
back from the question. `task` is the question_type categories joined by ", "; a task filter keeps a
question having any of them. Speed mode keeps this question: SpecVLM's code has no LVBench loader
(its tasks are VideoDetailCaption, MVBench, MLVU, LongVideoBench), so nothing says it was replaced.
"""

from __future__ import annotations

import re

from hippo.errors import ConfigError
from paper.sweep.datasets import _common
from paper.sweep.datasets._common import (
    check_prompt_mode,
    check_root,
    glob_one_split,
    keep_rows,
    letter_field,
    options_block,
    read_jsonl,
    read_parquet,
    resolve_media,
    select_tasks,
    unique_ids,
)
from paper.sweep.datasets.sample import LETTERS, BenchmarkSample

NAME = "lvbench"
ANNOTATIONS = "video_info.meta.jsonl"
PARQUET = "data/train-*.parquet"
VIDEO_DIR = "videos"
POST_PROMPT = "\nAnswer the question with the option letter"
LINE_FIELDS = ("key", "qa: a list of {uid, question, answer, question_type}")
PARQUET_FIELDS = ("video_path", "question", "answer", "options (optional)")
DOC = "paper/sweep/datasets/lvbench.py"
HINT = ("point --root at the folder that holds video_info.meta.jsonl (THUDM/LVBench) or data/train-*.parquet "
        "(lmms-eval's LVBench)")
_OPTION_LINE = re.compile(r"^\(([A-Z])\)\s?(.*)$")


def build_question(question: str, options=()) -> str:
    return question + ("\n" + options_block(options, "paren") if options else "") + POST_PROMPT


def inline_options(question: str) -> tuple[str, ...]:
    """The option texts of the "(A) ..." lines of a question, A first and in order (else ())."""
    out = []
    for line in question.splitlines():
        match = _OPTION_LINE.match(line.strip())
        if match and match.group(1) == LETTERS[len(out)]:
            out.append(match.group(2).strip())
    return tuple(out)


def samples(root, prompt_mode: str = "benchmark", tasks=None, check_videos: bool = True, layout: str = "auto",
            video_dir: str = VIDEO_DIR):
    """Yield LVBench's questions (original: video by video, each video's qa in order)."""
    check_prompt_mode(prompt_mode)
    root = check_root(NAME, root)
    tasks = select_tasks(NAME, tasks, None)
    if layout == "auto":
        layout = _common.detect_layout(NAME, root, [
            ("original", (root / ANNOTATIONS).is_file(), f"{ANNOTATIONS} (THUDM/LVBench)"),
            ("lmms-eval", bool(list(root.glob(PARQUET))), f"{PARQUET} (lmms-eval's copy)")], HINT)
    if layout == "original":
        yield from _original(root, tasks, check_videos, video_dir)
    elif layout == "lmms-eval":
        yield from _parquet(root, tasks, check_videos)
    else:
        raise ConfigError(f"lvbench: unknown layout {layout!r}; choose auto, original or lmms-eval")


def _sample(table, i, sid, task, video, question, options, answer):
    text = build_question(question, options)
    choices = tuple(options) or inline_options(question)
    letter = letter_field(table, i, answer, len(choices) or None)
    reference = choices[LETTERS.index(letter)] if choices else letter
    return BenchmarkSample(NAME, sid, task, video, None, text, text, reference, choices, letter)


def _original(root, tasks, check_videos, video_dir):
    table = read_jsonl(NAME, root, ANNOTATIONS, LINE_FIELDS, DOC, HINT)
    entries = []  # (line index, qa index, qa record)
    for i in range(len(table.rows)):
        qa = table.field(i, "qa", "any")
        if not isinstance(qa, list):
            raise table.error(i, f"field 'qa' is {qa!r:.80}, expected a list of questions")
        entries.extend((i, j, q) for j, q in enumerate(qa))
    keys = [table.field(i, "key") for i in range(len(table.rows))]
    ids = []
    task_sets = []
    for i, j, q in entries:
        uid = table.field(i, "uid", "any", row=q, optional=True, at=f"qa[{j}]")
        ids.append(str(uid) if uid is not None else f"{keys[i]}/{j}")
        kinds = table.field(i, "question_type", "any", row=q, optional=True, at=f"qa[{j}]")
        task_sets.append([kinds] if isinstance(kinds, str) else list(kinds or []))
    ids = unique_ids(ids)
    for n in keep_rows(table, tasks, task_sets, "question_type"):
        i, j, q = entries[n]
        question = table.field(i, "question", row=q, at=f"qa[{j}]")
        answer = table.field(i, "answer", row=q, at=f"qa[{j}]")
        video = resolve_media(table, i, [root / video_dir / f"{keys[i]}.mp4"], check_videos)
        yield _sample(table, i, ids[n], ", ".join(task_sets[n]) or None, video, question, (), answer)


def _parquet(root, tasks, check_videos):
    table = read_parquet(NAME, root, glob_one_split(NAME, root, PARQUET, HINT), PARQUET_FIELDS, DOC, HINT)
    n = len(table.rows)
    task_sets = []
    for i in range(n):
        kinds = table.field(i, "question_type", "any", optional=True)
        task_sets.append([kinds] if isinstance(kinds, str) else list(kinds or []))
    uids = [table.field(i, "uid", "any", optional=True) for i in range(n)]
    ids = unique_ids([f"row{i}" if uid is None else str(uid) for i, uid in enumerate(uids)])
    for i in keep_rows(table, tasks, task_sets, "question_type"):
        video = resolve_media(table, i, [root / table.field(i, "video_path")], check_videos)
        options = table.field(i, "options", "str-list", optional=True) or ()
        yield _sample(table, i, ids[i], ", ".join(task_sets[i]) or None, video, table.field(i, "question"),
                      options, table.field(i, "answer"))
