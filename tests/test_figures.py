"""`hippo figures` (paper/reproduce/figures.py): the certificate gate, the sweep-derived figures and tables of the
smoke profile, paper/REPRODUCTION.md's claims table, and the sweep's hippo score-weight axis."""

from __future__ import annotations

import json

import pytest

from hippo.cli import main
from paper.reproduce import figures
from paper.reproduce.plots import rows as plot_rows
from paper.sweep.grid import Grid, plan
from verification.report import source_hash


def write_certificate(folder, **fields):
    folder.mkdir(parents=True, exist_ok=True)
    certificate = {"verdict": "PASS", "profile": "quick", "source_sha256": source_hash(),
                   "revision": {"commit": "test", "dirty": True}, **fields}
    (folder / "certificate.json").write_text(json.dumps(certificate))
    return folder / "certificate.json"


def figures_argv(tmp_path, certificate, *extra):
    return ["figures", "--certificate", str(certificate), "--profile", "smoke", "--no-progress",
            "--results", str(tmp_path / "results"), "--figures", str(tmp_path / "figures"),
            "--tables", str(tmp_path / "tables"), "--reproduction", str(tmp_path / "REPRODUCTION.md"), *extra]


@pytest.mark.parametrize("case, expected", [
    ("missing", "no verification certificate"),
    ("failed", "not PASS"),
    ("other code", "certifies other code"),
    ("unreadable", "not a readable certificate"),
])
def test_figures_refuse_without_a_passing_certificate_of_this_code(tmp_path, capsys, case, expected):
    folder = tmp_path / "verify"
    if case == "missing":
        certificate = folder / "certificate.json"
    elif case == "failed":
        certificate = write_certificate(folder, verdict="FAIL")
    elif case == "other code":
        certificate = write_certificate(folder, source_sha256="0" * 64)
    else:
        folder.mkdir()
        certificate = folder / "certificate.json"
        certificate.write_text("{not json")
    assert main(figures_argv(tmp_path, certificate)) == figures.EXIT_NO_CERTIFICATE
    err = capsys.readouterr().err
    assert expected in err and "nox -s verify" in err
    assert not (tmp_path / "figures").exists() and not (tmp_path / "REPRODUCTION.md").exists()  # nothing ran


def test_the_sweep_figures_and_reproduction_table_of_the_smoke_profile(tmp_path, capsys):
    certificate = write_certificate(tmp_path / "verify")
    modules = "main_table,ratio,gamma,ablation,systems"
    assert main(figures_argv(tmp_path, certificate, "--only", modules)) == 0
    for name in ("main_speedup", "ratio", "gamma", "ablation"):
        png = tmp_path / "figures" / f"{name}.png"
        assert png.stat().st_size > 10_000, name  # a drawn figure, not an empty canvas
    main_table = (tmp_path / "tables" / "main.md").read_text()
    for label in plot_rows.METHODS:
        assert f"| qwen | {label} |" in main_table
    assert "| qwen | AR | 1.00 [1.00, 1.00] |" in main_table  # AR commits one token per round, exactly
    reproduction = (tmp_path / "REPRODUCTION.md").read_text()
    for title, _ in __import__("paper.reproduce.reproduction", fromlist=["CLAIMS"]).CLAIMS:
        assert title in reproduction
    assert "**reproduced**" in reproduction  # the lossless claim, from the certificate
    assert "no GPU systems benchmark result" in reproduction
    # a rerun resumes every sweep: no row is run twice
    lines = {p.name: len(p.read_text().splitlines()) for p in (tmp_path / "results").glob("*.jsonl")}
    assert main(figures_argv(tmp_path, certificate, "--only", modules)) == 0
    assert lines == {p.name: len(p.read_text().splitlines()) for p in (tmp_path / "results").glob("*.jsonl")}
    # one module again: the report keeps the others' latest outcomes of this code
    assert main(figures_argv(tmp_path, certificate, "--only", "systems")) == 0
    again = (tmp_path / "REPRODUCTION.md").read_text()
    assert "### main_table" in again and "### ratio" in again and again.count("**") == reproduction.count("**")


def test_a_failing_figure_does_not_stop_the_others(tmp_path, monkeypatch):
    certificate = write_certificate(tmp_path / "verify")

    def broken(job):
        raise RuntimeError("planted")

    monkeypatch.setattr("paper.reproduce.plots.gamma.build", broken)
    assert main(figures_argv(tmp_path, certificate, "--only", "gamma,systems")) == 1
    reproduction = (tmp_path / "REPRODUCTION.md").read_text()
    assert "gamma: FAILED" in reproduction and "RuntimeError: planted" in reproduction
    assert "### systems" in reproduction


def test_unknown_module_is_named(tmp_path, capsys):
    certificate = write_certificate(tmp_path / "verify")
    assert main(figures_argv(tmp_path, certificate, "--only", "main_table,nope")) == 2
    assert "unknown figure module(s) nope" in capsys.readouterr().err


def test_weights_axis_applies_to_hippo_only_and_keys_stay_stable():
    grid = Grid.from_mapping({"decodings": "sd", "prune": "hippo,specvlm", "weights": "1:1:1,0:1:1"})
    configs = plan(grid)
    assert [(c.prune, c.weights) for c in configs] == [("hippo", (1.0, 1.0, 1.0)), ("hippo", (0.0, 1.0, 1.0)),
                                                       ("specvlm", (1.0, 1.0, 1.0))]
    keys = [c.key("test/0") for c in configs]
    assert not keys[0].endswith("weights=1:1:1") and keys[1].endswith("weights=0:1:1")  # default keys unchanged


def test_speedup_refuses_rows_whose_tokens_differ():
    def row(tokens, seconds):
        return {"key": "k", "sample": {"sample_id": "test/0"}, "config": {"temperature": 0.0}, "tokens": tokens,
                "stats": {"decode_s": seconds}, "sweep": {"id": "s1"}}

    assert plot_rows.speedup([row([1, 2], 2.0)], [row([1, 2], 1.0)], resamples=10)[0] == 2.0
    with pytest.raises(ValueError, match="not lossless"):
        plot_rows.speedup([row([1, 2], 2.0)], [row([1, 3], 1.0)], resamples=10)


def test_rows_of_other_code_are_moved_aside_not_mixed(tmp_path):
    from paper.reproduce.plots.job import PROFILES, FigureJob

    job = FigureJob(tmp_path / "results", tmp_path / "figures", tmp_path / "tables", PROFILES["smoke"], progress=False,
                    log=lambda m: None)
    stale = {"key": "old", "source_sha256": "f" * 64, "config": {}}
    (job.results / "main.jsonl").write_text(json.dumps(stale) + "\n")
    rows = job.sweep("main", pairs=["qwen"], decodings=["ar"], impls=["fast"])
    assert [r["source_sha256"] for r in rows] == [source_hash()]
    assert json.loads((job.results / f"main.{'f' * 12}-None.jsonl").read_text()) == stale  # no sweep id either
