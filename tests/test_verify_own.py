"""`hippo verify` on a user's own checkpoint folders: the audit runs on them (and can fail), and a pair
that cannot be audited is refused with the reason before any check."""

from __future__ import annotations

import json

import pytest

from hippo.cli import main
from hippo.tiny import write_tiny_pair
from verification import suite
from verification.mutants import catalogue

# A small profile: the same checks in the same order, fewer samples (the quick profile takes minutes).
SMALL = suite.Profile("quick", exact_step_cases=5, mc_table_samples=200, mc_video_samples=60, greedy_new_tokens=8,
                      frames=4, ratios=(0.5,), calibration_runs=2, calibration_samples=100, mutant_mc_samples=100,
                      stop_mutant_at_first_catch=True, seeded_table_samples=4, seeded_video_samples=2)


@pytest.fixture(scope="module")
def own_pair(tmp_path_factory):
    target, draft = write_tiny_pair(tmp_path_factory.mktemp("own") / "qwen", "qwen2_5_vl")
    return str(target), str(draft)


@pytest.fixture
def small_profile(monkeypatch):
    monkeypatch.setitem(suite.PROFILES, "quick", SMALL)
    one = [m for m in catalogue() if m.name == "accept_q_over_p"]
    monkeypatch.setattr(suite, "catalogue", lambda: one)


def _verify(capsys, out, own_pair, video, *extra):
    target, draft = own_pair
    code = main(["verify", "--target", target, "--draft", draft, "--video", video, "--prompt", "what moves",
                 "--candidate", "ref-sd", "--candidate", "fast-pearl-processes", "--out", str(out), *extra])
    return code, capsys.readouterr()


def test_audits_a_checkpoint_folder_given_on_the_command_line(capsys, tmp_path, own_pair, synthetic_video,
                                                              small_profile):
    code, captured = _verify(capsys, tmp_path, own_pair, synthetic_video)
    assert code == 0, captured.err[-2000:]
    report = json.loads((tmp_path / "report.json").read_text())
    cert = report["certificate"]
    assert cert["verdict"] == "PASS"
    assert cert["subject"]["own_pair"] and cert["subject"]["target"] == own_pair[0]
    # the checkpoints' weight hashes, and the video's
    (model,) = cert["models"]
    assert model["target"] == own_pair[0] and len(next(iter(model["target_sha256"].values()))) == 64
    assert synthetic_video in cert["videos"]
    greedy = [c for c in report["checks"] if c["check"] == "greedy_video"]
    # 2 candidates x (none + 5 methods at one ratio), all on the own pair and its video and prompt
    assert len(greedy) == 12 and all(c["verdict"] == "pass" for c in greedy)
    assert all(c["inputs"]["case"].startswith("own:") and "shapes.mp4" in c["inputs"]["case"] for c in greedy)
    # the two-process candidate takes every check a context-level candidate takes (table models, bf16)
    names = {c["name"] for c in report["checks"]}
    for check in ("greedy_table", "self_draft_table", "seeded_equivalence"):
        assert f"{check}|fast-pearl-processes" in names, check
    assert any(n.startswith("reduced_precision|fast-pearl-processes|") for n in names)
    # a Qwen target gets its rope fidelity note; the summary says where the other checks ran
    assert report["notes"] and report["notes"][0]["family"] == "qwen2_5_vl"
    summary = (tmp_path / "summary.md").read_text()
    assert "Your pair" in summary and "package's own models" in summary


def test_the_own_pair_audit_fails_on_a_lossy_candidate(capsys, tmp_path, own_pair, synthetic_video, small_profile):
    """The same command with a planted bug in the candidates under audit: FAIL, exit status 1."""
    mutant = next(m for m in catalogue() if m.name == "target_positions_shifted")
    with mutant.active():
        code, _ = _verify(capsys, tmp_path, own_pair, synthetic_video)
    assert code == 1
    assert json.loads((tmp_path / "certificate.json").read_text())["verdict"] == "FAIL"


def test_refuses_a_pair_of_two_families(capsys, tmp_path, own_pair, synthetic_video):
    _, llava_draft = write_tiny_pair(tmp_path / "llava", "llava_onevision")
    code = main(["verify", "--target", own_pair[0], "--draft", str(llava_draft), "--video", synthetic_video,
                 "--out", str(tmp_path / "report")])
    err = capsys.readouterr().err
    assert code == 2
    assert "cannot audit this pair" in err and "qwen2_5_vl" in err and "llava_onevision" in err
    assert not (tmp_path / "report").exists()  # refused before any work


def test_refuses_a_pair_whose_vocabularies_differ(capsys, tmp_path, own_pair, synthetic_video, small_profile):
    import shutil

    draft = tmp_path / "draft"
    shutil.copytree(own_pair[1], draft)
    tokenizer = json.loads((draft / "tokenizer.json").read_text())
    vocab = tokenizer["model"]["vocab"]
    first, second = sorted(vocab, key=vocab.get)[5:7]
    vocab[first], vocab[second] = vocab[second], vocab[first]  # two ids swapped: same size, different map
    (draft / "tokenizer.json").write_text(json.dumps(tokenizer))
    code = main(["verify", "--target", own_pair[0], "--draft", str(draft), "--video", synthetic_video,
                 "--out", str(tmp_path / "report")])
    err = capsys.readouterr().err
    assert code == 2 and "cannot audit this pair" in err and "vocabulary" in err
    assert not (tmp_path / "report").exists()


@pytest.mark.parametrize("argv, message", [
    (["--draft", "x"], "--draft needs --target"),
    (["--video", "x.mp4"], "applies to your own pair"),
    (["--target", "zoo:qwen-target"], "--target needs --draft"),
    (["--recorded", "x.jsonl"], "--recorded needs --target"),
])
def test_option_errors_are_one_line(capsys, argv, message):
    assert main(["verify", *argv]) == 2
    assert message in capsys.readouterr().err


def test_bf16_greedy_mismatches_are_diagnosed_not_tolerated(own_pair, synthetic_video):
    """In reduced precision a mismatch gets the near-tie diagnosis: a candidate that changes one token
    where the target has no near-tie fails as "algorithmic"; the reference passes."""
    import torch

    from hippo.checkpoint import load_adapter
    from hippo.video import load_video
    from verification import checks
    from verification.candidates import Candidate, VideoCase, builtin_candidates

    target, draft = (load_adapter(path, "bfloat16") for path in own_pair)
    clip = load_video(synthetic_video, 4)
    case = VideoCase("own", target, draft, synthetic_video, clip, "what moves", target_path=own_pair[0])
    reference = builtin_candidates()["ref-sd"]

    def one_token_off(target_context, draft_context, config):
        tokens = list(reference.decode(target_context, draft_context, config).tokens)
        tokens[3] = (tokens[3] + 1) % 50
        return tokens

    lossy = Candidate("one-token-off", "sd", one_token_off)
    results = checks.check_greedy_video([reference, lossy], [case], 4, 8, diagnose_dtype=torch.bfloat16)
    verdicts = {r.name.split("|")[1]: r for r in results if r.check == "greedy_video"}
    assert verdicts["ref-sd"].verdict == "pass"
    bad = verdicts["one-token-off"]
    assert bad.verdict == "fail" and bad.numbers["first_mismatch"] == 3
    assert bad.numbers["diagnosis"]["classification"] == "algorithmic"
    assert bad.inputs["dtype"] == "bfloat16"


def test_the_two_process_candidate_takes_the_table_checks_and_the_bf16_diagnosis():
    from verification.candidates import builtin_candidates

    candidates = builtin_candidates()
    assert candidates["fast-pearl-processes"].decodes_contexts  # so greedy_table, self_draft_table, bf16 run it
    assert not candidates["hf-assisted"].decodes_contexts
