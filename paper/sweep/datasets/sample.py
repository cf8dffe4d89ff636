"""One benchmark question about one video (`BenchmarkSample`), the constants of the speed protocol, and
THE multiple-choice metric (`score_choice`)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

# The speed protocol SpecVLM's code runs (zju-jiyicheng/SpecVLM, utils/utils.py `clip_input_video` and
# run.py): MVBench, MLVU and LongVideoBench questions are replaced by this detailed-description request,
# VDC keeps its own question (already a detailed-description request), and every request generates up
# to `max_new_tokens` (run.py's default, 256) new tokens.
DETAIL_DESCRIPTION_PROMPT = ("Please provide a detailed description of the video, focusing on the main subjects, "
                             "their actions, and the background scenes.")
SPEED_MAX_NEW_TOKENS = 256
PROMPT_MODES = ("benchmark", "speed")
LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


@dataclass(frozen=True)
class BenchmarkSample:
    """One question about one video, as a benchmark publishes it.

    Attributes:
        benchmark: the benchmark's name in paper.sweep.datasets.BENCHMARKS (or "zoo").
        sample_id: stable and unique within the benchmark (the sweep's row key): the benchmark's own id
            where it has one (uid, question_id, id), else built from the task and the row index.
        task: the benchmark's sub-task or category, or None.
        video: the video file; for MVBench episodic_reasoning (main branch) the frame folder (then also
            `frame_folder`); None for a zoo sample, whose frames are in `clip`.
        segment: (start_s, end_s) of the video the question is about (MVBench main branch), or None.
        prompt: the text given to the model in the chosen prompt mode.
        question: the benchmark's own prompt as lmms-eval builds it (kept in both modes).
        reference: the reference answer text (the caption, the gold option's text), or None where the
            benchmark publishes none (LongVideoBench test).
        choices: the option texts (without their letters), or () for an open-ended question.
        answer_letter: the gold option's letter ("A", "B", ...), or None (open-ended, or no ground truth).
        frame_folder: the folder of JPEG frames (00001.jpg, ... at 3 fps) of MVBench episodic_reasoning
            on the main branch, or None.
        clip: an in-memory hippo.video.VideoClip (the zoo's rendered videos, which have no file), or None.
    """

    benchmark: str
    sample_id: str
    task: str | None
    video: Path | None
    segment: tuple[float, float] | None
    prompt: str
    question: str
    reference: str | None
    choices: tuple[str, ...] = ()
    answer_letter: str | None = None
    frame_folder: Path | None = None
    clip: object | None = None

    @property
    def multiple_choice(self) -> bool:
        return bool(self.choices)

    def as_record(self) -> dict:
        """The sample's fields of a JSONL row (paths as strings; a zoo clip by its name)."""
        return {
            "benchmark": self.benchmark,
            "sample_id": self.sample_id,
            "task": self.task,
            "video": None if self.video is None else str(self.video),
            "segment": None if self.segment is None else list(self.segment),
            "prompt": self.prompt,
            "question": self.question,
            "reference": self.reference,
            "choices": list(self.choices),
            "answer_letter": self.answer_letter,
            "frame_folder": None if self.frame_folder is None else str(self.frame_folder),
            "clip": None if self.clip is None else getattr(self.clip, "path", "clip"),
        }


# Lead-ins a model puts before its letter ("Answer:", "The best answer is", "Best option:").
_LEAD = re.compile(r"^\s*(?:the\s+)?(?:best\s+|correct\s+)?(?:answer|option)(?:\s+is)?\s*[:：]?\s*", re.IGNORECASE)
_PAREN = re.compile(r"^\(([A-Z])(?:\)|\s|$)")  # "(B)", "(B text", "(B" (MLVU's prompt ends with "(")
_BARE = re.compile(r"^([A-Z])(?:[.):,]|\s*$)")  # "B", "B.", "B) text", "B: text"
# Anywhere: "(B)", or "answer is B" / "option B" (not "answer is A man": a capital before a lowercase word).
_INNER = re.compile(r"\(([A-Z])\)|(?i:answer|option)\s+(?:(?i:is)\s+)?\(?([A-Z])\b(?!\s+[a-z])")


def read_choice(text: str, num_choices: int | None = None) -> str | None:
    """The option letter a model answered, or None when it named none.

    Read, after stripping quotes, markdown stars and a lead-in ("Answer:", "The best answer is",
    "Best option:"): a leading "(B" / "(B)" / "(B text", or a leading capital "B" alone or followed by
    one of . ) : , ; else the first "(B)" anywhere, or "answer is B" / "option B" anywhere. Capital
    letters only (a sentence opening with the article "A" names no option), and with `num_choices`
    only the first `num_choices` letters count.
    """
    s = text.strip().strip("*\"'`").strip()
    s = _LEAD.sub("", s, count=1).strip().strip("*").strip()
    found = None
    for pattern in (_PAREN, _BARE):
        match = pattern.match(s)
        if match:
            found = match.group(1)
            break
    if found is None:
        match = _INNER.search(text)
        if match:
            found = match.group(1) or match.group(2)
    if found is None or (num_choices is not None and LETTERS.index(found) >= num_choices):
        return None
    return found


def score_choice(text: str, sample: BenchmarkSample) -> bool | None:
    """THE multiple-choice accuracy of one answer: True iff the letter `read_choice` reads in the model's
    `text` is the sample's gold letter (a text that names no letter, or a letter past the sample's
    options, is wrong); None when the sample has no gold letter (open-ended, or no ground truth), so
    that it counts in no accuracy. Accuracy over a benchmark = mean over the samples where it is not None.
    """
    if sample.answer_letter is None:
        return None
    letter = read_choice(text, len(sample.choices) or None)
    return letter == sample.answer_letter
