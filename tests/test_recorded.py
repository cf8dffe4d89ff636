"""`hippo verify --recorded`: outputs recorded elsewhere, audited against the target's own decoding.
Rows are written exactly as `hippo generate --json` writes them."""

from __future__ import annotations

import json

import pytest

from hippo.checkpoint import load_adapter
from hippo.cli import main
from hippo.generation import generate
from hippo.request import DecodeConfig, GenerationRequest, SamplingParams
from hippo.tiny import write_tiny_pair
from verification.mutants import catalogue
from verification.recorded import OTHER, audit_recorded, exact_law_cells, read_rows

SAMPLED = 240


@pytest.fixture(scope="module")
def recorded_pair(tmp_path_factory):
    target, draft = write_tiny_pair(tmp_path_factory.mktemp("recorded") / "qwen", "qwen2_5_vl")
    return str(target), str(draft), load_adapter(target), load_adapter(draft)


@pytest.fixture(scope="module")
def greedy_rows(recorded_pair, synthetic_video):
    """Two rows from `hippo generate --json` itself (SD and PEARL with pruning), as printed."""
    import contextlib
    import io

    target, draft = recorded_pair[:2]
    rows = []
    for extra in (["--decoding", "sd"], ["--decoding", "pearl", "--prune", "hippo", "--ratio", "0.5"]):
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            assert main(["generate", "--target", target, "--draft", draft, "--video", synthetic_video,
                         "--prompt", "what moves", "--frames", "4", "--max-new-tokens", "16", "--json", *extra]) == 0
        rows.append(out.getvalue().strip())
    return rows


def sampled_rows(recorded_pair, video, count=SAMPLED, seed0=0):
    _, _, target, draft = recorded_pair
    rows = []
    for seed in range(seed0, seed0 + count):
        config = DecodeConfig(max_new_tokens=2, gamma=2, sampling=SamplingParams(1.0, top_k=3), seed=seed)
        request = GenerationRequest(video, "what moves", 4, "sd", config=config)
        rows.append(json.dumps(generate("ref", target, draft, request).as_json()))
    return rows


def _audit(tmp_path, recorded_pair, lines, name="rows.jsonl"):
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n")
    return audit_recorded(path, recorded_pair[2], recorded_pair[0], log=lambda m: None)


def test_correct_greedy_rows_pass(tmp_path, recorded_pair, greedy_rows):
    results = _audit(tmp_path, recorded_pair, greedy_rows)
    assert [r.check for r in results] == ["recorded_greedy"] * 2 + ["recorded_metrics"] * 2
    assert all(r.verdict == "pass" for r in results)
    assert all(r.numbers["first_mismatch"] is None and r.numbers["reported_mat"] >= 1.0  # the row's stats are carried
               for r in results if r.check == "recorded_greedy")


def test_one_changed_token_fails_and_names_the_row_and_step(tmp_path, recorded_pair, greedy_rows):
    row = json.loads(greedy_rows[1])
    row["tokens"][6] = (row["tokens"][6] + 1) % 100
    results = [r for r in _audit(tmp_path, recorded_pair, [greedy_rows[0], json.dumps(row)])
               if r.check == "recorded_greedy"]
    assert [r.verdict for r in results] == ["pass", "fail"]
    bad = results[1]
    assert bad.name == "recorded_greedy|line 2" and bad.numbers["first_mismatch"] == 6
    assert bad.numbers["diagnosis"]["classification"] == "algorithmic"
    assert "line 2: step 6" in bad.numbers["message"]


def test_a_malformed_line_is_reported_by_number_and_the_rest_is_audited(tmp_path, recorded_pair, greedy_rows):
    lines = [greedy_rows[0], "{not json", json.dumps({"video": "a.mp4", "prompt": "x"}), greedy_rows[1]]
    results = _audit(tmp_path, recorded_pair, lines)
    errors = {r.name: r.numbers["error"] for r in results if r.verdict == "error"}
    assert set(errors) == {"recorded_row|line 2", "recorded_row|line 3"}
    assert "rows.jsonl:2: not valid JSON" in errors["recorded_row|line 2"]
    assert "missing field(s) tokens" in errors["recorded_row|line 3"]
    assert [r.verdict for r in results if r.check == "recorded_greedy"] == ["pass", "pass"]


def test_sampled_rows_pool_against_the_exact_law(tmp_path, recorded_pair, synthetic_video):
    results = _audit(tmp_path, recorded_pair, sampled_rows(recorded_pair, synthetic_video))
    (pooled,) = [r for r in results if r.check == "recorded_sampled"]
    assert all(r.verdict == "pass" for r in results if r.check == "recorded_metrics")
    assert pooled.check == "recorded_sampled" and pooled.inputs["rows"] == SAMPLED
    assert pooled.inputs["tokens_compared"] == 2
    assert pooled.verdict == "pass", pooled.numbers
    assert 0 < pooled.numbers["min_detectable_tv"] < 0.25


def test_rows_from_a_lossy_decoder_fail_the_pooled_test(tmp_path, recorded_pair, synthetic_video):
    mutant = next(m for m in catalogue() if m.name == "accept_q_over_p")
    with mutant.active():
        lines = sampled_rows(recorded_pair, synthetic_video)
    (pooled,) = [r for r in _audit(tmp_path, recorded_pair, lines) if r.check == "recorded_sampled"]
    assert pooled.verdict == "fail", pooled.numbers


def test_rows_with_one_shared_seed_fail_the_pooled_test(tmp_path, recorded_pair, synthetic_video):
    """vLLM #6038 / #9441 planted: every request draws the engine's one stream, so rows with different
    seeds repeat one sample; the recorded-output check sees it, though each row alone is a possible output."""
    mutant = next(m for m in catalogue() if m.name == "seed_shared_across_requests")
    with mutant.active():
        lines = sampled_rows(recorded_pair, synthetic_video, count=60)
    assert len({tuple(json.loads(line)["tokens"]) for line in lines}) == 1
    (pooled,) = [r for r in _audit(tmp_path, recorded_pair, lines) if r.check == "recorded_sampled"]
    assert pooled.verdict == "fail" and pooled.numbers["impossible"] == 0, pooled.numbers


def test_stated_metrics_are_recomputed_from_the_rounds(tmp_path, recorded_pair, greedy_rows):
    """A row whose stated MAT or run length is not hippo.stats' value of its own per-round counts, or whose
    rounds do not commit its tokens, is a metric finding; its tokens still pass the greedy check."""
    row = json.loads(greedy_rows[0])
    row["stats"]["mat"] += 0.5
    inflated = dict(json.loads(greedy_rows[1]))
    inflated["stats"] = dict(inflated["stats"], accepted_per_round=[c + 1 for c in inflated["stats"]["accepted_per_round"]])
    results = _audit(tmp_path, recorded_pair, [json.dumps(row), json.dumps(inflated)])
    assert all(r.verdict == "pass" for r in results if r.check == "recorded_greedy")
    metrics = {r.name: r for r in results if r.check == "recorded_metrics"}
    assert [m.verdict for m in metrics.values()] == ["fail", "fail"]
    assert "stated mat" in metrics["recorded_metrics|line 1"].numbers["message"]
    assert "its rounds commit" in metrics["recorded_metrics|line 2"].numbers["message"]
    assert metrics["recorded_metrics|line 2"].inputs["kind"] == "metric"


def test_rows_of_a_decoder_that_counts_the_bonus_twice_fail_the_metric_audit_only(tmp_path, recorded_pair,
                                                                                  synthetic_video):
    """DART #2 planted in hippo_ref's SD: the tokens are the target's, the reported MAT is inflated (the
    target drafts for itself, so every round ends with a bonus)."""
    mutant = next(m for m in catalogue() if m.name == "bonus_counted_twice")
    target = recorded_pair[2]
    request = GenerationRequest(synthetic_video, "what moves", 4, "sd", config=DecodeConfig(max_new_tokens=16, gamma=3))
    with mutant.active():
        row = json.dumps(generate("ref", target, target, request).as_json())
    results = _audit(tmp_path, recorded_pair, [row])
    assert {r.check: r.verdict for r in results} == {"recorded_greedy": "pass", "recorded_metrics": "fail"}


def test_the_negative_controls_recorded_stage_writes_rows_the_audit_reads(tmp_path, recorded_pair, synthetic_video):
    """verification.recorded.record_rows (the suite's recorded stage) writes `hippo generate --json`-shaped
    rows from a candidate; correct rows pass both recorded checks."""
    from hippo.video import load_video
    from verification import recorded
    from verification.candidates import VideoCase, builtin_candidates

    _, _, target, draft = recorded_pair
    case = VideoCase("tiny", target, draft, synthetic_video, load_video(synthetic_video, 4), "what moves")
    path = recorded.record_rows(builtin_candidates()["ref-pearl"], case, SamplingParams(1.0, top_k=3), 60, 5,
                                tmp_path / "rows.jsonl")
    rows, problems = recorded.read_rows(path)
    assert len(rows) == 60 and not problems and all(r.rounds is not None for r in rows)
    results = recorded.check_recorded_sampled(target, rows, 2, 0.01) + recorded.check_recorded_metrics(rows)
    assert all(r.verdict == "pass" for r in results), [r.numbers for r in results if r.verdict != "pass"]


def test_exact_law_cells_keep_the_whole_mass_and_stop_at_eos():
    import torch

    p = {(): torch.tensor([0.5, 0.3, 0.15, 0.05], dtype=torch.float64),
         (0,): torch.tensor([0.6, 0.4, 0.0, 0.0], dtype=torch.float64),
         (1,): torch.tensor([0.25, 0.25, 0.25, 0.25], dtype=torch.float64),
         (3,): torch.tensor([0.9, 0.1, 0.0, 0.0], dtype=torch.float64)}
    cells = exact_law_cells(lambda prefix: p[prefix], samples=100, k=2, eos=(2,))
    # (2,) stops at EOS; the (1, t) cells expect 7.5 each; prefix (3,) expects 5 and is expanded, but
    # (3, 0) and (3, 1) expect 4.5 and 0.5, under 5: their mass is OTHER's
    assert cells[(2,)] == pytest.approx(0.15) and cells[(0, 0)] == pytest.approx(0.3)
    assert cells[(1, 3)] == pytest.approx(0.075)
    assert cells[OTHER] == pytest.approx(0.05) and (3, 0) not in cells
    assert sum(cells.values()) == pytest.approx(1.0)


def test_cli_recorded_writes_a_report(capsys, tmp_path, recorded_pair, greedy_rows):
    path = tmp_path / "rows.jsonl"
    path.write_text("\n".join(greedy_rows) + "\n")
    out = tmp_path / "report"
    code = main(["verify", "--recorded", str(path), "--target", recorded_pair[0], "--draft", recorded_pair[1],
                 "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    cert = json.loads((out / "certificate.json").read_text())
    assert cert["verdict"] == "PASS" and cert["profile"] == "recorded"
    assert "recorded_greedy | 2 | 0" in (out / "summary.md").read_text()
    read, problems = read_rows(path)
    assert len(read) == 2 and not problems


def test_sweep_rows_on_zoo_videos_are_audited_without_a_draft(tmp_path, capsys):
    """`hippo bench sweep` rows name zoo videos by label (zoo:test/0, rendered in memory): the audit renders
    the same frames; --recorded needs only the target; a changed token still fails."""
    rows = tmp_path / "rows.jsonl"
    assert main(["bench", "sweep", "--pairs", "qwen", "--decodings", "sd", "--prune", "hippo", "-n", "1",
                 "--max-new-tokens", "8", "--no-progress", "--out", str(rows)]) == 0
    (row,) = [json.loads(line) for line in rows.read_text().splitlines()]
    assert row["video"] == "zoo:test/0"
    assert main(["verify", "--recorded", str(rows), "--target", "zoo:qwen-target", "--out", str(tmp_path / "ok")]) == 0
    row["tokens"][3] = (row["tokens"][3] + 1) % 100
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(row) + "\n")
    assert main(["verify", "--recorded", str(bad), "--target", "zoo:qwen-target", "--out", str(tmp_path / "bad")]) == 1


def test_a_label_that_names_no_zoo_video_is_refused():
    from hippo.errors import VideoError
    from hippo.video import sample_frame_indices
    from hippo.zoo.dataset import labelled_clip

    assert labelled_clip("zoo:test/2", 4).frame_indices == tuple(sample_frame_indices(8, 4))  # load_video's formula
    assert labelled_clip("zoo:test/2", None, indices=[1, 5]).frames.shape[0] == 2
    with pytest.raises(VideoError, match="zoo:<split>/<index>"):
        labelled_clip("zoo:nosuch/1")
    with pytest.raises(VideoError, match="zoo:<split>/<index>"):
        labelled_clip("zoo:test/99999")
