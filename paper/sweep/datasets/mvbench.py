"""MVBench (OpenGVLab/MVBench): 20 multiple-choice tasks of 200 questions each.

Layout under the root (the Hub repository as downloaded, its video zips unpacked in place)::

    json/<task>.json                         a JSON list per task: video, question, candidates, answer
                                             (+ start, end in seconds for the SEGMENT_TASKS)
    video/<prefix>/<video>                   revision "main": the original videos; PREFIXES[task] is
                                             the folder, `video` the file name WITH its extension
    <prefix>/<video>                         revision "video" (lmms-eval's copy): the clips pre-cut to
                                             [start, end], VIDEO_PREFIXES[task] the folder

`answer` is the TEXT of one candidate; the gold letter is its index among `candidates`. On the main
branch the SEGMENT_TASKS ask about [start, end] of the video (`segment`), and episodic_reasoning's
`video` names a folder of frames 00001.jpg, ... at FRAME_FOLDER_FPS (`frame_folder`); the "video"
revision ships those as pre-cut clips, so `segment` and `frame_folder` are None there.

Prompt (lmms-eval mvbench_doc_to_text with the tasks' post_prompt)::

    "Question:" + question + "\nOption:\n" + "(A) c0\n(B) c1\n..." + "Only give the best option.\n"

(no space after "Question:", as lmms-eval writes it). Speed mode: DETAIL_DESCRIPTION_PROMPT (SpecVLM
replaces MVBench's question; its code runs SPECVLM_TASKS only, pass tasks=SPECVLM_TASKS for that).
"""

from __future__ import annotations

from hippo.errors import ConfigError
from paper.sweep.datasets._common import (
    check_prompt_mode,
    check_root,
    letter_of,
    read_json_list,
    resolve_media,
    select_tasks,
)
from paper.sweep.datasets.sample import DETAIL_DESCRIPTION_PROMPT, LETTERS, BenchmarkSample

NAME = "mvbench"
TASKS = (
    "action_sequence", "moving_count", "action_prediction", "episodic_reasoning", "action_antonym",
    "action_count", "scene_transition", "object_shuffle", "object_existence", "fine_grained_pose",
    "unexpected_action", "moving_direction", "state_change", "object_interaction", "character_order",
    "action_localization", "counterfactual_inference", "fine_grained_action", "moving_attribute",
    "egocentric_navigation",
)
# The folder of each task's videos under video/ on the main branch: the table of MVBench's own
# evaluation notebook (OpenGVLab/Ask-Anything, video_chat2/mvbench.ipynb, `data_list`).
PREFIXES = {
    "action_sequence": "star/Charades_v1_480",
    "action_prediction": "star/Charades_v1_480",
    "action_antonym": "ssv2_video",
    "fine_grained_action": "Moments_in_Time_Raw/videos",
    "unexpected_action": "FunQA_test/test",
    "object_existence": "clevrer/video_validation",
    "object_interaction": "star/Charades_v1_480",
    "object_shuffle": "perception/videos",
    "moving_direction": "clevrer/video_validation",
    "action_localization": "sta/sta_video",
    "scene_transition": "scene_qa/video",
    "action_count": "perception/videos",
    "moving_count": "clevrer/video_validation",
    "moving_attribute": "clevrer/video_validation",
    "state_change": "perception/videos",
    "fine_grained_pose": "nturgbd",
    "character_order": "perception/videos",
    "egocentric_navigation": "vlnqa",
    "episodic_reasoning": "tvqa/frames_fps3_hq",
    "counterfactual_inference": "clevrer/video_validation",
}
# The folders of the "video" revision (pre-cut clips) under the root: lmms-eval's mvbench DATA_LIST.
VIDEO_PREFIXES = {
    "object_interaction": "star/Charades_segment",
    "action_sequence": "star/Charades_segment",
    "action_prediction": "star/Charades_segment",
    "action_localization": "sta/sta_video_segment",
    "moving_count": "clevrer/video_validation",
    "fine_grained_pose": "nturgbd_convert",
    "character_order": "perception/videos",
    "object_shuffle": "perception/videos",
    "egocentric_navigation": "vlnqa",
    "moving_direction": "clevrer/video_validation",
    "episodic_reasoning": "tvqa/video_fps3_hq_segment",
    "fine_grained_action": "Moments_in_Time_Raw/videos",
    "scene_transition": "scene_qa/video",
    "state_change": "perception/videos",
    "moving_attribute": "clevrer/video_validation",
    "action_antonym": "ssv2_video_mp4",
    "unexpected_action": "FunQA_test/test",
    "counterfactual_inference": "clevrer/video_validation",
    "object_existence": "clevrer/video_validation",
    "action_count": "perception/videos",
}
REVISIONS = {"main": ("video", PREFIXES), "video": ("", VIDEO_PREFIXES)}  # revision -> (video dir, prefixes)
SEGMENT_TASKS = ("action_sequence", "action_prediction", "object_interaction", "action_localization",
                 "episodic_reasoning")
FRAME_TASKS = ("episodic_reasoning",)  # main branch: `video` is a folder of JPEG frames
FRAME_FOLDER_FPS = 3
SPECVLM_TASKS = ("action_sequence", "action_prediction")  # the two tasks SpecVLM's load_data concatenates
POST_PROMPT = "Only give the best option.\n"
FIELDS = ("video", "question", "candidates", "answer")
DOC = "paper/sweep/datasets/mvbench.py"
HINT = "point --root at the folder the MVBench download unpacks to (it holds json/ and the video folders)"


def build_question(question: str, candidates) -> str:
    """MVBench's prompt as lmms-eval builds it (module docstring)."""
    options = "".join(f"({LETTERS[i]}) {c}\n" for i, c in enumerate(candidates))
    return "Question:" + question + "\nOption:\n" + options + POST_PROMPT


def samples(root, prompt_mode: str = "benchmark", tasks=None, check_videos: bool = True, revision: str = "main",
            prefixes: dict | None = None, video_dir: str | None = None):
    """Yield MVBench's samples, task by task in TASKS order, rows in file order.

    revision: "main" (original videos, trimmed to `segment`) or "video" (lmms-eval's pre-cut clips).
    prefixes: task -> folder overrides, merged over the revision's table (for a copy laid out otherwise).
    video_dir: the folder under the root that holds the prefixes (default: "video" for main, the root
        itself for the video revision).
    """
    check_prompt_mode(prompt_mode)
    if revision not in REVISIONS:
        raise ConfigError(f"mvbench: unknown revision {revision!r}; choose main (original videos, start/end "
                          "segments) or video (lmms-eval's pre-cut clips)")
    root = check_root(NAME, root)
    default_dir, table_prefixes = REVISIONS[revision]
    unknown = sorted(set(prefixes or {}) - set(TASKS))
    if unknown:
        raise ConfigError(f"mvbench: prefixes for unknown task(s) {', '.join(unknown)}; known: {', '.join(TASKS)}")
    folders = {**table_prefixes, **(prefixes or {})}
    base = root / (default_dir if video_dir is None else video_dir)
    main = revision == "main"
    for task in select_tasks(NAME, tasks, TASKS) or TASKS:
        bounded = main and task in SEGMENT_TASKS
        expected = FIELDS + (("start", "end") if bounded else ())
        table = read_json_list(NAME, root, f"json/{task}.json", expected, DOC, HINT)
        for i in range(len(table.rows)):
            name = table.field(i, "video")
            question = table.field(i, "question")
            candidates = table.field(i, "candidates", "options")
            answer = table.field(i, "answer")
            letter = letter_of(table, i, answer, candidates)
            segment = None
            if bounded:
                segment = (float(table.field(i, "start", "number")), float(table.field(i, "end", "number")))
            frames = main and task in FRAME_TASKS
            path = resolve_media(table, i, [base / folders[task] / name], check_videos, folder=frames)
            text = build_question(question, candidates)
            prompt = DETAIL_DESCRIPTION_PROMPT if prompt_mode == "speed" else text
            yield BenchmarkSample(NAME, f"{task}/{i}", task, path, segment, prompt, text, answer,
                                  tuple(candidates), letter, path if frames else None)
