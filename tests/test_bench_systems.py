"""paper/measure/systems.py on the `tiny` preset (CPU, seconds): the tables, the equality gate, what the
controlled acceptance does to MAT, the one-line errors; and the real-size presets' configs, built on
the meta device (no memory, no weights) against the released models' parameter counts."""

from __future__ import annotations

import json

import pytest
import torch

from paper.measure import systems as bench_systems

GAMMA = 3
MAX_NEW = 1 + 3 * (GAMMA + 1)  # token 0 from the prefill, then three full SD rounds: MAT exactly gamma + 1


def bench(tmp_path, acceptance: str, *extra: str) -> list[str]:
    return ["--preset", "tiny", "--frames", "4", "--dtype", "float32", "--device", "cpu", "--acceptance", acceptance,
            "--gamma", str(GAMMA), "--max-new-tokens", str(MAX_NEW), "--repeats", "1", "--work-dir", str(tmp_path),
            "--json", str(tmp_path / "report.json"), *extra]


@pytest.fixture(scope="module")
def reports(tmp_path_factory):
    """rc, stdout and JSON report of one tiny run per acceptance."""
    import contextlib
    import io

    out = {}
    for acceptance in ("self", "planted:0.0", "planted:0.5"):
        folder = tmp_path_factory.mktemp(acceptance.replace(":", "-"))
        stdout = io.StringIO()
        with contextlib.redirect_stdout(stdout):
            rc = bench_systems.main(bench(folder, acceptance))
        out[acceptance] = (rc, stdout.getvalue(), json.loads((folder / "report.json").read_text()))
    return out


def rows_of(report) -> dict:
    """The rows of the one frame count, by base name (their ids end in /eager: no --compile)."""
    (case,) = report["cases"]
    return {row["name"]: row for row in case["rows"]}


def test_table_prints_with_every_row(reports):
    rc, stdout, report = reports["self"]
    assert rc == 0
    assert "| row | tok/s e2e | tok/s decode | x HF e2e | x HF decode | x fast AR e2e | x fast AR decode |" in stdout
    assert "| row | target step | target verify [tokens] | draft step | ideal serial | ideal overlap |" in stdout
    assert list(rows_of(report)) == ["hf-generate", "fast-ar", "fast-sd", "fast-pearl", "fast-pearl-streams"]
    ids = [row["id"] for row in rows_of(report).values()]
    assert ids == ["hf-generate", "fast-ar/eager", "fast-sd/eager", "fast-pearl/eager", "fast-pearl-streams/eager"]
    for row_id in ids:
        assert f"\n| {row_id} | " in stdout
    assert "fast-pearl-streams/eager = hippo_fast PEARL, CPU: no streams, the same calls in order" in stdout
    env = report["environment"]
    assert env["torch"] == torch.__version__ and env["transformers"] and env["device_name"]


@pytest.mark.parametrize("acceptance", ["self", "planted:0.0", "planted:0.5"])
def test_every_row_produces_the_target_greedy_tokens(reports, acceptance):
    rc, _, report = reports[acceptance]
    assert rc == 0
    (case,) = report["cases"]
    reference = case["reference"]
    assert len(reference) == MAX_NEW  # EOS disabled: exactly max_new_tokens
    for row in case["rows"]:
        (run,) = row["runs"]
        assert run["tokens"] == reference, row["id"]
        assert row["summary"]["decode_tokens_per_s"] > 0 and row["warmup_s"] > 0
    assert case["greedy_margin"] > 1.0  # the successor head: no near tie the schedule could flip


def test_self_acceptance_accepts_every_token(reports):
    """The target as its own draft: SD commits gamma + 1 tokens in every round (MAX_NEW fits whole rounds),
    and neither schedule ever rejects."""
    rows = rows_of(reports["self"][2])
    assert rows["fast-sd"]["summary"]["mat"] == GAMMA + 1
    for row_id in ("fast-sd", "fast-pearl", "fast-pearl-streams"):
        (run,) = rows[row_id]["runs"]
        assert run["rejected_rounds"] == 0, row_id
    assert rows["fast-ar"]["summary"]["mat"] == 1.0


def test_planted_rejections_lower_mat(reports):
    """planted:0.0 accepts every drafted token (SD: gamma + 1 per round); planted:0.5 plants rejections,
    which the target refuses, so MAT drops, while the real draft still runs every step."""
    full, half = rows_of(reports["planted:0.0"][2]), rows_of(reports["planted:0.5"][2])
    assert reports["planted:0.0"][2]["cases"][0]["planted_rejections"] == 0
    assert reports["planted:0.5"][2]["cases"][0]["planted_rejections"] > 0
    assert full["fast-sd"]["summary"]["mat"] == GAMMA + 1
    for row_id in ("fast-sd", "fast-pearl", "fast-pearl-streams"):
        assert full[row_id]["summary"]["mat"] > half[row_id]["summary"]["mat"], row_id
        (run,) = half[row_id]["runs"]
        assert run["rejected_rounds"] > 0 and run["draft_forwards"] > run["rounds"], row_id


def test_planted_proposals_are_keyed_not_random():
    """The rejections depend on (seed, index) alone: the same with the global RNG disturbed, none at rate 0,
    all at rate 1, and a rejected index proposes a token other than the reference's."""
    reference = list(range(5, 45))
    torch.manual_seed(1)
    a = bench_systems.planted_proposals(reference, 0.3, seed=7, vocab=50, length=48, device="cpu")
    torch.manual_seed(2)
    b = bench_systems.planted_proposals(reference, 0.3, seed=7, vocab=50, length=48, device="cpu")
    assert torch.equal(a, b) and a.shape == (48,)
    assert a[:40].tolist() != reference and 0 < sum(x != y for x, y in zip(a.tolist(), reference, strict=False)) < 40
    assert bench_systems.planted_proposals(reference, 0.0, 7, 50, 40, "cpu").tolist() == reference
    rejected = bench_systems.planted_proposals(reference, 1.0, 7, 50, 40, "cpu").tolist()
    assert all(x != y and x < 50 for x, y in zip(rejected, reference, strict=True))


def test_tiny_pair_shares_a_tokenizer_and_never_stops_early(tmp_path):
    """One tokenizer for both models (hippo.pairing's vocabulary check holds), no EOS on either (every row
    generates exactly max_new_tokens), and the target's successor head: token t's greedy successor wins by
    a wide margin right after the prompt."""
    pair = bench_systems.build_pair(bench_systems.PRESETS["tiny"], tmp_path, torch.device("cpu"), torch.float32,
                                    seed=0, needs_draft=True)
    assert pair.draft.tokenizer is pair.target.tokenizer
    assert pair.target.eos_token_ids == () and pair.draft.eos_token_ids == ()
    assert pair.shared_vocab == min(pair.target.vocab_size, pair.draft.vocab_size)
    model = pair.target.model
    ids = torch.tensor([[3, 17, 42]])
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0, -1]
    head = model.get_output_embeddings().weight
    direction = model.get_input_embeddings().weight[42]
    assert int(logits.argmax()) == int((head @ direction).argmax())  # the row holding token 42's direction
    top = logits.topk(2).values
    assert top[0] - top[1] > 3.0


def test_gate_refuses_a_row_with_different_tokens(tmp_path, capsys, monkeypatch):
    """An SD decode that drops its last token: exit 1, the row and the divergence named, no table."""
    original = bench_systems.decode_row

    def short_sd(row, target_context, draft_context, config):
        result = original(row, target_context, draft_context, config)
        if row.name == "fast-sd":
            result.tokens = result.tokens[:-1]
        return result

    monkeypatch.setattr(bench_systems, "decode_row", short_sd)
    assert bench_systems.main(bench(tmp_path, "self")) == 1
    captured = capsys.readouterr()
    assert "OUTPUT MISMATCH" in captured.err and "row fast-sd/eager, input 4 frames" in captured.err
    assert "| row |" not in captured.out and not (tmp_path / "report.json").exists()


def test_a_row_that_fails_is_reported_without_times(tmp_path, monkeypatch):
    """The shared protocol's rule (paper/measure/protocol.py): a row that raises is not measured, with its
    reason, and the other rows are still timed and gated."""
    original = bench_systems.decode_row

    def failing_pearl(row, target_context, draft_context, config):
        if row.name == "fast-pearl":
            raise RuntimeError("planted failure")
        return original(row, target_context, draft_context, config)

    monkeypatch.setattr(bench_systems, "decode_row", failing_pearl)
    assert bench_systems.main(bench(tmp_path, "self", "--markdown", str(tmp_path / "report.md"))) == 0
    rows = rows_of(json.loads((tmp_path / "report.json").read_text()))
    assert rows["fast-pearl"]["status"] == "skipped" and "RuntimeError: planted failure" in rows["fast-pearl"]["skip_reason"]
    assert all(rows[n]["status"] == "ok" for n in ("hf-generate", "fast-ar", "fast-sd", "fast-pearl-streams"))
    assert "| fast-pearl/eager | not measured: failed in the warm-up on 4 frames" in (tmp_path / "report.md").read_text()


@pytest.mark.parametrize("argv, message", [
    (["--preset", "llava-7b"], "unknown preset 'llava-7b'"),
    (["--acceptance", "planted:1.5"], "--acceptance 'planted:1.5'"),
    (["--acceptance", "planted:often"], "--acceptance 'planted:often'"),
    (["--acceptance", "mostly"], "--acceptance 'mostly'"),
    (["--gamma", "0"], "--gamma must be >= 1"),
])
def test_bad_arguments_are_one_line_errors(argv, message, tmp_path, capsys):
    assert bench_systems.main(["--device", "cpu", "--work-dir", str(tmp_path), *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err
    assert not any(tmp_path.iterdir())  # refused before anything was built


def test_video_without_pyav_is_the_same_frames_in_memory(tmp_path, monkeypatch):
    """write_video's one-line refusal (no PyAV) leaves the frames in memory, sampled as load_video would."""
    from hippo.errors import ConfigError
    from hippo.video import sample_frame_indices

    def no_pyav(*args, **kwargs):
        raise ConfigError("writing videos needs PyAV: pip install av")

    monkeypatch.setattr("hippo.video.write_video", no_pyav)
    clips, source = bench_systems.synthetic_clips(tmp_path, [3, 8], 56)
    assert "in memory" in source and not any(tmp_path.iterdir())
    frames = bench_systems.synthetic_frames(8, 56)
    assert clips[8].frames.shape == (8, 56, 56, 3) and (clips[8].frames == frames).all()
    assert clips[3].frame_indices == sample_frame_indices(8, 3)
    assert (clips[3].frames == frames[list(sample_frame_indices(8, 3))]).all()


# Parameter counts of the released checkpoints (the models' cards / config.json).
RELEASED = {("llava-ov-0.5b-7b", "draft"): 0.894e9, ("llava-ov-0.5b-7b", "target"): 8.03e9,
            ("qwen2.5-vl-3b-7b", "draft"): 3.75e9, ("qwen2.5-vl-3b-7b", "target"): 8.29e9}


@pytest.mark.parametrize("name, tokens_per_frame", [("llava-ov-0.5b-7b", 196), ("qwen2.5-vl-3b-7b", 128)])
def test_real_presets_match_the_released_models(name, tokens_per_frame, tmp_path):
    """Built on the meta device: the parameter counts of the released draft and target (0.5%), their
    vocabularies, and the visual tokens per frame the preset's processor config gives."""
    preset = bench_systems.PRESETS[name]
    layout, _ = bench_systems.write_layout(tmp_path / "layout", preset.family, preset.image_size, seed=0)
    clips, _ = bench_systems.synthetic_clips(tmp_path, [4], preset.image_size)
    for role, lm in (("draft", preset.draft), ("target", preset.target)):
        adapter = bench_systems.real_adapter(preset, lm, layout, torch.device("meta"), torch.bfloat16, 0, role)
        count = sum(p.numel() for p in adapter.model.parameters())
        assert abs(count / RELEASED[name, role] - 1) < 0.005, (role, count)
        assert adapter.vocab_size == lm.vocab
        grid = adapter.prepare(clips[4], bench_systems.PROMPT).grid
        assert grid.grid_tokens == 4 * tokens_per_frame, role
