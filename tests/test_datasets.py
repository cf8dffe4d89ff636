"""Tests for paper.sweep.datasets: each benchmark's loader on small fixture files written here in the published
formats (field names, folders; shared/benchmark-formats.md, checked against lmms-eval's task code), the
prompts character for character, the gold letters, the error messages, the speed protocol, score_choice."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

sys.path.insert(0, os.path.dirname(__file__))

from videos import write_test_video  # noqa: E402

from hippo.errors import ConfigError, DatasetError  # noqa: E402
from paper.sweep.datasets import (  # noqa: E402
    BENCHMARKS,
    DETAIL_DESCRIPTION_PROMPT,
    SPEED_MAX_NEW_TOKENS,
    BenchmarkSample,
    load_benchmark,
    read_choice,
    score_choice,
    zoo_samples,
)


@pytest.fixture(scope="module")
def mp4(tmp_path_factory) -> Path:
    """A real 4-frame 32x32 H.264 video, copied wherever a fixture needs a video file."""
    return write_test_video(tmp_path_factory.mktemp("dsvideo") / "tiny.mp4", num_frames=4, height=32, width=32, fps=4)


def put(src: Path, dst: Path) -> Path:
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dst)
    return dst


def write_json(path: Path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))


def write_parquet(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), path)


def message(excinfo) -> str:
    return str(excinfo.value)


# ---------------------------------------------------------------------------------------------- VDC

VDC_Q = "Please provide a detailed description of the video."


@pytest.fixture()
def vdc_root(tmp_path, mp4):
    rows = [{"video_name": "v_abc", "question": VDC_Q, "answer": "A man rides a bike."},
            {"video_name": "v_kite", "question": VDC_Q, "answer": "A kite flies."}]
    write_parquet(tmp_path / "data/test-00000-of-00001.parquet", rows)
    put(mp4, tmp_path / "Test_Videos/v_abc.mp4")
    put(mp4, tmp_path / "Test_Videos/v_kite.mkv")  # lmms-eval's fallbacks: .mp4, .MP4, .mkv
    return tmp_path


def test_vdc_loader(vdc_root):
    first, second = load_benchmark("vdc", vdc_root)
    assert first == BenchmarkSample("vdc", "v_abc", None, vdc_root / "Test_Videos/v_abc.mp4", None, VDC_Q, VDC_Q,
                                    "A man rides a bike.")
    assert second.video == vdc_root / "Test_Videos/v_kite.mkv"
    assert first.choices == () and first.answer_letter is None and score_choice("B", first) is None
    record = first.as_record()
    assert record["video"] == str(vdc_root / "Test_Videos/v_abc.mp4") and json.loads(json.dumps(record)) == record


def test_vdc_repeated_video_names_get_unique_ids(vdc_root):
    rows = [{"video_name": "v_abc", "question": VDC_Q, "answer": f"caption {k}"} for k in range(3)]
    write_parquet(vdc_root / "data/test-00000-of-00001.parquet", rows)
    assert [s.sample_id for s in load_benchmark("vdc", vdc_root)] == ["v_abc", "v_abc#2", "v_abc#3"]


def test_vdc_video_is_decodable(vdc_root):
    from hippo.video import load_video

    sample = load_benchmark("vdc", vdc_root, limit=1)[0]
    assert load_video(sample.video, 2).frames.shape == (2, 32, 32, 3)


def test_vdc_missing_file_field_and_video(vdc_root):
    (vdc_root / "Test_Videos/v_kite.mkv").unlink()
    with pytest.raises(DatasetError) as err:
        load_benchmark("vdc", vdc_root)
    text = message(err)
    assert "vdc: data/test-00000-of-00001.parquet row 1" in text
    for ext in (".mp4", ".MP4", ".mkv"):
        assert str(vdc_root / f"Test_Videos/v_kite{ext}") in text
    assert load_benchmark("vdc", vdc_root, check_videos=False)[1].video == vdc_root / "Test_Videos/v_kite.mp4"

    write_parquet(vdc_root / "data/test-00000-of-00001.parquet", [{"video_name": "v_abc", "question": VDC_Q}])
    with pytest.raises(DatasetError) as err:
        load_benchmark("vdc", vdc_root)
    assert "vdc: data/test-00000-of-00001.parquet row 0 has no field 'answer'" in message(err)
    assert "video_name, question, answer" in message(err)

    (vdc_root / "data/test-00000-of-00001.parquet").unlink()
    with pytest.raises(DatasetError) as err:
        load_benchmark("vdc", vdc_root)
    assert message(err).startswith(f"vdc: data/test-00000-of-00001.parquet not found under {vdc_root}: point --root")


# ------------------------------------------------------------------------------------------ MVBench

def mvbench_rows():
    return {
        "action_sequence": [{"video": "3MSZA.mp4", "question": "What did the person do first?",
                             "candidates": ["Opened the door.", "Sat on the sofa.", "Took a book."],
                             "answer": "Sat on the sofa.", "start": 1.5, "end": 7}],
        "action_antonym": [{"video": "1234.webm", "question": "What is the action?",
                            "candidates": ["pushing", "pulling", "not sure"], "answer": "not sure"}],
        "episodic_reasoning": [{"video": "castle_s01_clip_1", "question": "Why does he leave?",
                                "candidates": ["tired", "angry", "late", "bored", "hungry"], "answer": "tired",
                                "start": 2.0, "end": 9.0}],
    }


@pytest.fixture()
def mvbench_root(tmp_path, mp4):
    for task, rows in mvbench_rows().items():
        write_json(tmp_path / f"json/{task}.json", rows)
    put(mp4, tmp_path / "video/star/Charades_v1_480/3MSZA.mp4")
    put(mp4, tmp_path / "video/ssv2_video/1234.webm")
    put(mp4, tmp_path / "video/tvqa/frames_fps3_hq/castle_s01_clip_1/00001.jpg")  # a frame folder
    return tmp_path


MV_TASKS = ["action_sequence", "action_antonym", "episodic_reasoning"]


def test_mvbench_loader_main_branch(mvbench_root):
    seq, antonym, episodic = load_benchmark("mvbench", mvbench_root, tasks=MV_TASKS)
    assert [s.sample_id for s in (seq, antonym, episodic)] == ["action_sequence/0", "action_antonym/0",
                                                               "episodic_reasoning/0"]
    assert seq.question == ("Question:What did the person do first?\nOption:\n(A) Opened the door.\n"
                            "(B) Sat on the sofa.\n(C) Took a book.\nOnly give the best option.\n")
    assert seq.prompt == seq.question
    assert (seq.answer_letter, seq.reference, seq.task) == ("B", "Sat on the sofa.", "action_sequence")
    assert seq.choices == ("Opened the door.", "Sat on the sofa.", "Took a book.")
    assert seq.segment == (1.5, 7.0) and seq.video == mvbench_root / "video/star/Charades_v1_480/3MSZA.mp4"
    assert seq.frame_folder is None
    assert antonym.segment is None and antonym.answer_letter == "C"
    assert antonym.video == mvbench_root / "video/ssv2_video/1234.webm"
    folder = mvbench_root / "video/tvqa/frames_fps3_hq/castle_s01_clip_1"
    assert episodic.frame_folder == folder and episodic.video == folder and episodic.segment == (2.0, 9.0)
    assert episodic.answer_letter == "A"


def test_mvbench_video_revision_and_prefix_override(mvbench_root, mp4):
    put(mp4, mvbench_root / "star/Charades_segment/3MSZA.mp4")
    put(mp4, mvbench_root / "my_ssv2/1234.webm")
    put(mp4, mvbench_root / "tvqa/video_fps3_hq_segment/castle_s01_clip_1")
    seq, antonym, episodic = load_benchmark("mvbench", mvbench_root, tasks=MV_TASKS, revision="video",
                                            prefixes={"action_antonym": "my_ssv2"})
    assert seq.video == mvbench_root / "star/Charades_segment/3MSZA.mp4" and seq.segment is None
    assert antonym.video == mvbench_root / "my_ssv2/1234.webm"
    assert episodic.frame_folder is None and episodic.segment is None
    with pytest.raises(ConfigError, match="unknown task.*no_such_task"):
        load_benchmark("mvbench", mvbench_root, tasks=MV_TASKS, prefixes={"no_such_task": "x"})


def test_mvbench_errors(mvbench_root):
    with pytest.raises(DatasetError) as err:
        load_benchmark("mvbench", mvbench_root, tasks=["moving_count"])
    assert f"mvbench: json/moving_count.json not found under {mvbench_root}" in message(err)

    rows = mvbench_rows()["action_sequence"] * 2
    rows[1] = {k: v for k, v in rows[1].items() if k != "candidates"}
    write_json(mvbench_root / "json/action_sequence.json", rows)
    with pytest.raises(DatasetError) as err:
        load_benchmark("mvbench", mvbench_root, tasks=["action_sequence"])
    assert "mvbench: json/action_sequence.json row 1 has no field 'candidates'" in message(err)
    assert "video, question, candidates, answer, start, end" in message(err)

    rows[1] = {k: v for k, v in mvbench_rows()["action_sequence"][0].items() if k != "start"}
    write_json(mvbench_root / "json/action_sequence.json", rows)
    with pytest.raises(DatasetError, match="row 1 has no field 'start'"):
        load_benchmark("mvbench", mvbench_root, tasks=["action_sequence"])
    assert load_benchmark("mvbench", mvbench_root, tasks=["action_sequence"], revision="video",
                          check_videos=False)[1].segment is None  # pre-cut clips need no bounds

    rows[1] = dict(mvbench_rows()["action_sequence"][0], answer="Danced.")
    write_json(mvbench_root / "json/action_sequence.json", rows)
    with pytest.raises(DatasetError, match="row 1 field 'answer' is 'Danced.', which is not one of its candidates"):
        load_benchmark("mvbench", mvbench_root, tasks=["action_sequence"])

    (mvbench_root / "video/ssv2_video/1234.webm").unlink()
    with pytest.raises(DatasetError) as err:
        load_benchmark("mvbench", mvbench_root, tasks=["action_antonym"])
    assert str(mvbench_root / "video/ssv2_video/1234.webm") in message(err)
    with pytest.raises(ConfigError, match="unknown task"):
        load_benchmark("mvbench", mvbench_root, tasks=["action_seq"])


# --------------------------------------------------------------------------------------------- MLVU

@pytest.fixture()
def mlvu_original(tmp_path, mp4):
    write_json(tmp_path / "json/1_plotQA.json", [
        {"video": "movie101_66.mp4", "duration": 246.0, "question": "What color is the main character's car?",
         "candidates": ["Red", "Blue", "Green", "Black"], "answer": "Green", "question_type": "plotQA"}])
    write_json(tmp_path / "json/9_summary.json", [
        {"video": "summ_1.mp4", "duration": 600.5, "question": "Please summarize this video.",
         "answer": "A story about a dog.", "question_type": "summary"}])
    put(mp4, tmp_path / "video/1_plotQA/movie101_66.mp4")
    put(mp4, tmp_path / "video/9_summary/summ_1.mp4")
    return tmp_path


DEV_Q = "What color is the main character's car?\n(A) Red\n(B) Blue\n(C) Green\n(D) Black"


@pytest.fixture()
def mlvu_dev(tmp_path, mp4):
    write_parquet(tmp_path / "mlvu/test-00000-of-00001.parquet", [
        {"video_name": "movie101_66.mp4", "duration": 246.0, "question": DEV_Q,
         "candidates": ["Red", "Blue", "Green", "Black"], "answer": "C", "task_type": "plotQA",
         "question_id": "plotQA_0"},
        {"video_name": "count_3.mp4", "duration": 100.0, "question": "How many?\n(A) 1\n(B) 2",
         "candidates": ["1", "2"], "answer": "B", "task_type": "count", "question_id": "count_0"}])
    put(mp4, tmp_path / "movie101_66.mp4")
    put(mp4, tmp_path / "count_3.mp4")
    return tmp_path


def test_mlvu_original_layout(mlvu_original):
    plot, summary = load_benchmark("mlvu", mlvu_original, tasks=["plotQA", "summary"])
    assert plot.question == DEV_Q + "\nOnly give the best option.\nBest option: ("
    assert (plot.answer_letter, plot.reference, plot.task, plot.sample_id) == ("C", "Green", "plotQA", "plotQA/0")
    assert plot.video == mlvu_original / "video/1_plotQA/movie101_66.mp4"
    assert summary.prompt == summary.question == "Please summarize this video."
    assert summary.choices == () and summary.answer_letter is None and summary.reference == "A story about a dog."


def test_mlvu_dev_layout(mlvu_dev):
    plot, count = load_benchmark("mlvu", mlvu_dev)
    assert plot.question == plot.prompt == DEV_Q + "\nOnly give the best option.\nBest option: ("
    assert (plot.sample_id, plot.task, plot.answer_letter, plot.reference) == ("plotQA_0", "plotQA", "C", "Green")
    assert plot.video == mlvu_dev / "movie101_66.mp4"
    assert [s.sample_id for s in load_benchmark("mlvu", mlvu_dev, tasks="count")] == ["count_0"]
    with pytest.raises(DatasetError, match="no row of mlvu/test-00000-of-00001.parquet has task_type in ego; "
                                           "present: count, plotQA"):
        load_benchmark("mlvu", mlvu_dev, tasks=["ego"])


def test_mlvu_errors(tmp_path, mlvu_dev):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DatasetError) as err:
        load_benchmark("mlvu", empty)
    assert "json/<N>_<task>.json" in message(err) and "mlvu/test-*.parquet" in message(err)
    write_parquet(mlvu_dev / "mlvu/test-00000-of-00001.parquet",
                  [{"video_name": "count_3.mp4", "question": "How many?", "answer": "B"}])
    with pytest.raises(DatasetError, match=r"mlvu: mlvu/test-00000-of-00001.parquet row 0 has no field 'candidates'"):
        load_benchmark("mlvu", mlvu_dev)
    write_parquet(mlvu_dev / "mlvu/test-00000-of-00001.parquet",
                  [{"video_name": "count_3.mp4", "question": "How many?", "candidates": ["1", "2"], "answer": "D"}])
    with pytest.raises(DatasetError, match=r"field 'answer' is 'D', expected an option letter A\.\.B"):
        load_benchmark("mlvu", mlvu_dev)


def test_mlvu_original_missing_task_file(mlvu_original):
    with pytest.raises(DatasetError, match=r"mlvu: json/2_needle.json not found under"):
        load_benchmark("mlvu", mlvu_original, tasks=["needle"])


# ------------------------------------------------------------------------------------------ LVBench

LV_Q = "What year appears in the opening caption?\n(A) 1636\n(B) 1366\n(C) 1363\n(D) 1633"


@pytest.fixture()
def lvbench_root(tmp_path, mp4):
    lines = [
        {"key": "yt_abc", "type": "documentary", "video_info": {"duration_minutes": 62.5},
         "qa": [{"uid": 101, "question": LV_Q, "answer": "B", "question_type": ["key information retrieval"],
                 "time_reference": "00:15-00:19"},
                {"uid": 102, "question": "Who speaks?\n(A) a\n(B) b\n(C) c\n(D) d", "answer": "D",
                 "question_type": ["entity recognition", "reasoning"], "time_reference": ""}]},
        {"key": "yt_def", "type": "sports", "video_info": {"duration_minutes": 80.0},
         "qa": [{"uid": 201, "question": "Which team wins?\n(A) x\n(B) y\n(C) z\n(D) w", "answer": "A",
                 "question_type": ["event understanding"], "time_reference": ""}]},
    ]
    (tmp_path / "video_info.meta.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    put(mp4, tmp_path / "videos/yt_abc.mp4")
    put(mp4, tmp_path / "videos/yt_def.mp4")
    return tmp_path


def test_lvbench_original_layout(lvbench_root):
    first, second, third = load_benchmark("lvbench", lvbench_root)
    assert first.question == first.prompt == LV_Q + "\nAnswer the question with the option letter"
    assert first.choices == ("1636", "1366", "1363", "1633")
    assert (first.sample_id, first.answer_letter, first.reference) == ("101", "B", "1366")
    assert first.task == "key information retrieval" and first.video == lvbench_root / "videos/yt_abc.mp4"
    assert second.task == "entity recognition, reasoning" and third.video == lvbench_root / "videos/yt_def.mp4"
    assert [s.sample_id for s in load_benchmark("lvbench", lvbench_root, tasks=["reasoning"])] == ["102"]


def test_lvbench_parquet_layout(tmp_path, mp4):
    write_parquet(tmp_path / "data/train-00000-of-00001.parquet", [
        {"video_path": "lvbench/yt_abc.mp4", "question": "What year appears?", "options": ["1636", "1366"],
         "answer": "B"},
        {"video_path": "lvbench/yt_abc.mp4", "question": LV_Q, "options": [], "answer": "(C)"}])
    put(mp4, tmp_path / "lvbench/yt_abc.mp4")
    first, second = load_benchmark("lvbench", tmp_path)
    assert first.question == "What year appears?\n(A) 1636\n(B) 1366\nAnswer the question with the option letter"
    assert (first.sample_id, first.answer_letter, first.reference) == ("row0", "B", "1366")
    assert second.question == LV_Q + "\nAnswer the question with the option letter" and second.answer_letter == "C"
    assert first.video == tmp_path / "lvbench/yt_abc.mp4"


def test_lvbench_errors(tmp_path, lvbench_root):
    lines = (lvbench_root / "video_info.meta.jsonl").read_text().splitlines()
    broken = json.loads(lines[1])
    del broken["qa"][0]["answer"]
    (lvbench_root / "video_info.meta.jsonl").write_text(lines[0] + "\n" + json.dumps(broken) + "\n")
    with pytest.raises(DatasetError) as err:
        load_benchmark("lvbench", lvbench_root)
    assert "lvbench: video_info.meta.jsonl line 2 qa[0] has no field 'answer'" in message(err)
    (lvbench_root / "video_info.meta.jsonl").write_text(lines[0] + "\n" + json.dumps({"key": "yt_x"}) + "\n")
    with pytest.raises(DatasetError, match="line 2 has no field 'qa'"):
        load_benchmark("lvbench", lvbench_root)
    empty = tmp_path / "nothing"
    empty.mkdir()
    with pytest.raises(DatasetError) as err:
        load_benchmark("lvbench", empty)
    assert "video_info.meta.jsonl" in message(err) and "data/train-*.parquet" in message(err)


# ---------------------------------------------------------------------------------------- Video-MME

MME_ROW = {"video_id": "001", "duration": "short", "domain": "Knowledge", "sub_category": "Humanity & History",
           "url": "https://www.youtube.com/watch?v=fFjv93ACGo8", "videoID": "fFjv93ACGo8", "question_id": "001-1",
           "task_type": "Counting Problem", "question": "How many red socks are there?",
           "options": ["A. 1.", "B. 2.", "C. 3.", "D. 4."], "answer": "C"}


def test_videomme_loader(tmp_path, mp4):
    write_parquet(tmp_path / "videomme/test-00000-of-00001.parquet", [MME_ROW])
    put(mp4, tmp_path / "data/fFjv93ACGo8.mp4")
    (sample,) = load_benchmark("videomme", tmp_path)
    assert sample.question == sample.prompt == (
        "Select the best answer to the following multiple-choice question based on the video and the subtitles. "
        "Respond with only the letter (A, B, C, or D) of the correct option.\n"
        "How many red socks are there?\nA. 1.\nB. 2.\nC. 3.\nD. 4.\n"
        "\nAnswer with the option's letter from the given choices directly.")
    assert (sample.sample_id, sample.task, sample.answer_letter, sample.reference) == ("001-1", "Counting Problem",
                                                                                        "C", "3.")
    assert sample.choices == ("1.", "2.", "3.", "4.") and sample.video == tmp_path / "data/fFjv93ACGo8.mp4"


def test_videomme_errors(tmp_path):
    with pytest.raises(DatasetError) as err:
        load_benchmark("videomme", tmp_path)
    assert message(err) == (f"videomme: videomme/test-00000-of-00001.parquet not found under {tmp_path}: point --root "
                            "at the folder the Video-MME download unpacks to (it holds videomme/ and data/)")
    write_parquet(tmp_path / "videomme/test-00000-of-00001.parquet",
                  [MME_ROW, {k: v for k, v in MME_ROW.items() if k != "options"}])
    with pytest.raises(DatasetError) as err:
        load_benchmark("videomme", tmp_path, check_videos=False)
    assert "videomme: videomme/test-00000-of-00001.parquet row 1 has no field 'options'" in message(err)
    write_parquet(tmp_path / "videomme/test-00000-of-00001.parquet", [MME_ROW])
    with pytest.raises(DatasetError, match="row 0: video not found: tried .*fFjv93ACGo8.mp4"):
        load_benchmark("videomme", tmp_path)


# ----------------------------------------------------------------------------------- LongVideoBench

def lvb_row(**changes):
    row = {"video_id": "86CxyhFV9MI", "id": "86CxyhFV9MI_0", "question": "What is the man holding?",
           "question_wo_referring_query": "What is he holding?", "candidates": ["a cup", "a phone", "a pen", "a key"],
           "correct_choice": 1, "position": [1, 2], "topic_category": "NP-News-Programs",
           "question_category": "S2E", "level": "L1-Perception", "duration": 61.2, "duration_group": 60,
           "video_path": "86CxyhFV9MI.mp4", "subtitle_path": "86CxyhFV9MI_en.json",
           "starting_timestamp_for_subtitles": 0}
    row.update(changes)
    return row


def as_parquet_row(row: dict) -> dict:
    out = {k: v for k, v in row.items() if k not in ("candidates", "position")}
    options = row["candidates"] + ["N/A"] * (5 - len(row["candidates"]))
    out.update({f"option{k}": options[k] for k in range(5)})
    return out


LVB_Q = ("What is the man holding?\nA. a cup\nB. a phone\nC. a pen\nD. a key\n"
         "Answer with the option's letter from the given choices directly.\n")


def test_longvideobench_json_and_parquet_twins(tmp_path, mp4):
    json_root, parquet_root = tmp_path / "json", tmp_path / "parquet"
    rows = [lvb_row(), lvb_row(id="86CxyhFV9MI_1", candidates=["1", "2", "3", "4", "5"], correct_choice=4,
                               question_category="T3O")]
    write_json(json_root / "lvb_val.json", rows)
    write_parquet(parquet_root / "validation-00000-of-00001.parquet", [as_parquet_row(r) for r in rows])
    for root in (json_root, parquet_root):
        put(mp4, root / "videos/86CxyhFV9MI.mp4")
    first, second = load_benchmark("longvideobench", json_root)
    assert first.question == first.prompt == LVB_Q
    assert (first.sample_id, first.task, first.answer_letter, first.reference) == ("86CxyhFV9MI_0", "S2E", "B",
                                                                                    "a phone")
    assert second.choices == ("1", "2", "3", "4", "5") and second.answer_letter == "E"
    assert first.video == json_root / "videos/86CxyhFV9MI.mp4"
    twins = load_benchmark("longvideobench", parquet_root)
    strip = [{k: v for k, v in s.as_record().items() if k != "video"} for s in (first, second)]
    assert [{k: v for k, v in s.as_record().items() if k != "video"} for s in twins] == strip
    assert twins[0].choices == ("a cup", "a phone", "a pen", "a key")  # the "N/A" padding dropped


def test_longvideobench_test_split_has_no_ground_truth(tmp_path, mp4):
    row = {k: v for k, v in lvb_row().items() if k != "correct_choice"}
    write_json(tmp_path / "lvb_test_wo_gt.json", [row])
    put(mp4, tmp_path / "videos/86CxyhFV9MI.mp4")
    (sample,) = load_benchmark("longvideobench", tmp_path, split="test")
    assert sample.reference is None and sample.answer_letter is None and sample.choices
    assert score_choice("B", sample) is None


def test_longvideobench_errors(tmp_path):
    with pytest.raises(DatasetError) as err:
        load_benchmark("longvideobench", tmp_path)
    assert "lvb_val.json" in message(err) and "validation-00000-of-00001.parquet" in message(err)
    write_json(tmp_path / "lvb_val.json", [lvb_row(), {k: v for k, v in lvb_row().items() if k != "correct_choice"}])
    with pytest.raises(DatasetError, match="longvideobench: lvb_val.json row 1 has no field 'correct_choice'"):
        load_benchmark("longvideobench", tmp_path, check_videos=False)
    write_json(tmp_path / "lvb_val.json", [{k: v for k, v in lvb_row().items() if k != "candidates"}])
    with pytest.raises(DatasetError, match=r"row 0 has no field 'candidates' \(expected fields: .*option0\.\.option4"):
        load_benchmark("longvideobench", tmp_path, check_videos=False)
    write_json(tmp_path / "lvb_val.json", [lvb_row(correct_choice=4)])
    with pytest.raises(DatasetError, match="field 'correct_choice' is 4, expected 0..3"):
        load_benchmark("longvideobench", tmp_path, check_videos=False)


# ---------------------------------------------------------------------- speed mode, registry, zoo

def test_speed_mode_replaces_exactly_mvbench_mlvu_longvideobench(tmp_path, mp4, vdc_root):
    roots = {"vdc": vdc_root}
    mv = tmp_path / "mv"
    write_json(mv / "json/action_antonym.json", mvbench_rows()["action_antonym"])
    put(mp4, mv / "video/ssv2_video/1234.webm")
    roots["mvbench"] = mv
    ml = tmp_path / "ml"
    write_json(ml / "json/1_plotQA.json", [{"video": "a.mp4", "question": "Q?", "candidates": ["x", "y"],
                                             "answer": "y"}])
    put(mp4, ml / "video/1_plotQA/a.mp4")
    roots["mlvu"] = ml
    lv = tmp_path / "lv"
    (lv / "videos").mkdir(parents=True)
    (lv / "video_info.meta.jsonl").write_text(json.dumps({"key": "k", "qa": [{"uid": 1, "question": LV_Q,
                                                                               "answer": "A"}]}) + "\n")
    put(mp4, lv / "videos/k.mp4")
    roots["lvbench"] = lv
    mme = tmp_path / "mme"
    write_parquet(mme / "videomme/test-00000-of-00001.parquet", [MME_ROW])
    put(mp4, mme / "data/fFjv93ACGo8.mp4")
    roots["videomme"] = mme
    lvb = tmp_path / "lvb"
    write_json(lvb / "lvb_val.json", [lvb_row()])
    put(mp4, lvb / "videos/86CxyhFV9MI.mp4")
    roots["longvideobench"] = lvb
    tasks = {"mvbench": ["action_antonym"], "mlvu": ["plotQA"]}
    assert set(roots) == set(BENCHMARKS)
    for name, root in roots.items():
        (bench,) = load_benchmark(name, root, tasks=tasks.get(name), limit=1)
        (speed,) = load_benchmark(name, root, prompt_mode="speed", tasks=tasks.get(name), limit=1)
        assert speed.question == bench.question == bench.prompt, name
        replaced = name in ("mvbench", "mlvu", "longvideobench")
        assert speed.prompt == (DETAIL_DESCRIPTION_PROMPT if replaced else bench.question), name
        assert speed.answer_letter == bench.answer_letter and speed.sample_id == bench.sample_id
    assert SPEED_MAX_NEW_TOKENS == 256
    assert DETAIL_DESCRIPTION_PROMPT.startswith("Please provide a detailed description of the video")


def test_registry_checks_its_arguments(vdc_root):
    assert tuple(BENCHMARKS) == ("vdc", "mvbench", "mlvu", "lvbench", "videomme", "longvideobench")
    with pytest.raises(ConfigError, match="unknown benchmark 'mmbench'"):
        load_benchmark("mmbench", vdc_root)
    with pytest.raises(ConfigError, match="unknown prompt mode"):
        load_benchmark("vdc", vdc_root, prompt_mode="fast")
    with pytest.raises(ConfigError, match="unknown option.*revision"):
        load_benchmark("vdc", vdc_root, revision="video")
    with pytest.raises(ConfigError, match="limit must be >= 1"):
        load_benchmark("vdc", vdc_root, limit=0)
    with pytest.raises(DatasetError, match="root folder .* does not exist"):
        load_benchmark("vdc", vdc_root / "nope")
    assert [s.sample_id for s in load_benchmark("vdc", vdc_root, limit=1)] == ["v_abc"]


def test_zoo_samples_keep_their_clip():
    from hippo.zoo.dataset import DETAIL_PROMPT, example

    samples = zoo_samples("test", count=2)
    assert [s.sample_id for s in samples] == ["test/0", "test/1"]
    assert all(s.prompt == s.question == DETAIL_PROMPT and s.video is None for s in samples)
    assert samples[1].clip.frames.shape == (8, 112, 112, 3) and samples[1].reference == example("test", 1, "detail").answer
    assert samples[0].as_record()["clip"] == "test/0"


# ------------------------------------------------------------------------------------ score_choice

@pytest.mark.parametrize("text, letter", [
    ("B", "B"), ("(B)", "B"), ("B.", "B"), ("B. Sat on the sofa.", "B"), ("B) Sat on the sofa", "B"),
    ("Best option: (B", "B"), ("Best option: (B) Sat on the sofa.", "B"), ("(B", "B"), ("Answer: C", "C"),
    ("The answer is (D).", "D"), ("The best answer is: A", "A"), ("**B**", "B"), ("  c  ", None),
    ("I think the answer is B.", "B"), ("A man sits on a sofa.", None), ("The answer is A man", None),
    ("none of them", None), ("", None),
])
def test_read_choice(text, letter):
    assert read_choice(text) == letter


def test_score_choice():
    sample = BenchmarkSample("mvbench", "t/0", "t", Path("v.mp4"), None, "p", "q", "y", ("x", "y", "z"), "B")
    assert score_choice("B", sample) is True
    assert score_choice("Best option: (B", sample) is True
    assert score_choice("(A) x", sample) is False
    assert score_choice("no idea", sample) is False
    assert score_choice("D", sample) is False  # past the three options
    assert read_choice("D", 3) is None and read_choice("C", 3) == "C"
    open_ended = BenchmarkSample("vdc", "v", None, Path("v.mp4"), None, "p", "q", "a caption")
    assert score_choice("B", open_ended) is None
