"""LongVideoBench (longvideobench/LongVideoBench; lmms-eval task longvideobench_{val,test}_v).

Layout under the root (the JSON files or their parquet twins; JSON is read when both are there)::

    lvb_val.json / validation-00000-of-00001.parquet      split "val": 1,337 questions
    lvb_test_wo_gt.json / test-00000-of-00001.parquet     split "test": 5,341, without correct_choice
    videos/<video_path>                                   from videos.tar.part.*
    subtitles/<subtitle_path>                             (not read: the video-only task)

Row: video_id, id, question, candidates (4 to 5 texts; parquet: option0..option4, padded "N/A"),
correct_choice (0-based; absent in test), question_category, duration, video_path (a bare file
name), ... Prompt (lmms-eval longvideobench_doc_to_text, default post_prompt)::

    question + "\\nA. o0\\nB. o1..." + "\\n" + "Answer with the option's letter from the given choices directly.\\n"

`task` is question_category. The test split has no ground truth: `reference` and `answer_letter` are
None there (score_choice gives None). Speed mode: DETAIL_DESCRIPTION_PROMPT (SpecVLM replaces it).
"""

from __future__ import annotations

from hippo.errors import ConfigError, DatasetError
from paper.sweep.datasets import _common
from paper.sweep.datasets.sample import DETAIL_DESCRIPTION_PROMPT, LETTERS, BenchmarkSample

NAME = "longvideobench"
SPLITS = {"val": ("lvb_val.json", "validation-00000-of-00001.parquet"),
          "test": ("lvb_test_wo_gt.json", "test-00000-of-00001.parquet")}
VIDEO_DIR = "videos"
PAD = "N/A"  # the parquet twins pad option0..option4 with it
POST_PROMPT = "Answer with the option's letter from the given choices directly.\n"
FIELDS = ("id", "question", "candidates (parquet: option0..option4)", "correct_choice (val)", "video_path")
DOC = "paper/sweep/datasets/longvideobench.py"
HINT = ("point --root at the folder the LongVideoBench download unpacks to (it holds lvb_val.json or "
        "validation-00000-of-00001.parquet, and videos/)")


def build_question(question: str, candidates) -> str:
    return question + "\n" + _common.options_block(candidates, "dot") + "\n" + POST_PROMPT


def samples(root, prompt_mode: str = "benchmark", tasks=None, check_videos: bool = True, split: str = "val"):
    """Yield LongVideoBench's questions of `split` (val | test) in file order; a task filter matches
    question_category."""
    _common.check_prompt_mode(prompt_mode)
    if split not in SPLITS:
        raise ConfigError(f"longvideobench: unknown split {split!r}; choose val or test")
    root = _common.check_root(NAME, root)
    tasks = _common.select_tasks(NAME, tasks, None)
    json_name, parquet_name = SPLITS[split]
    if (root / json_name).is_file():
        table = _common.read_json_list(NAME, root, json_name, FIELDS, DOC, HINT)
    elif (root / parquet_name).is_file():
        table = _common.read_parquet(NAME, root, [parquet_name], FIELDS, DOC, HINT)
    else:
        raise DatasetError(f"longvideobench: neither {json_name} nor {parquet_name} found under {root}: {HINT}")
    n = len(table.rows)
    task_of = [table.field(i, "question_category", optional=True) for i in range(n)]
    ids = _common.unique_ids([str(table.field(i, "id", "any")) for i in range(n)])
    for i in _common.keep_rows(table, tasks, [[t] if t else [] for t in task_of], "question_category"):
        candidates = _candidates(table, i)
        correct = table.field(i, "correct_choice", "int", optional=True)
        if split == "val" and correct is None:
            raise table.error(i, "has no field 'correct_choice' (the val split's gold answer)")
        if correct is not None and not 0 <= correct < len(candidates):
            raise table.error(i, f"field 'correct_choice' is {correct}, expected 0..{len(candidates) - 1} "
                                 f"(an index into its {len(candidates)} candidates)")
        letter = None if correct is None else LETTERS[correct]
        video = _common.resolve_media(table, i, [root / VIDEO_DIR / table.field(i, "video_path")], check_videos)
        text = build_question(table.field(i, "question"), candidates)
        prompt = DETAIL_DESCRIPTION_PROMPT if prompt_mode == "speed" else text
        yield BenchmarkSample(NAME, ids[i], task_of[i], video, None, prompt, text,
                              None if correct is None else candidates[correct], candidates, letter)


def _candidates(table, i) -> tuple[str, ...]:
    """`candidates` (JSON), or option0..option4 without the "N/A" padding (parquet), as lmms-eval reads them."""
    row = table.rows[i]
    if isinstance(row, dict) and "candidates" not in row and "option0" in row:
        options = [table.field(i, f"option{k}", optional=True) for k in range(5)]
        candidates = tuple(o for o in options if o is not None and o != PAD)
        if not candidates:
            raise table.error(i, "has only 'N/A' in option0..option4, expected 4 to 5 options")
        return candidates
    return tuple(table.field(i, "candidates", "options"))
