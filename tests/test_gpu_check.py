"""scripts/gpu_check.py (`nox -s gpu`) on a CPU with the tiny config: the device check's twin, so that
the script a GPU runs has run here on every commit. The default run leaves out the two checks whose
code paths have tests of their own (the draft's process: tests/test_overlap.py; the systems benchmark:
tests/test_bench_systems.py); the slow run takes every check."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "gpu_check.py"


def _script():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _report(folder: Path) -> tuple[dict, str]:
    return json.loads((folder / "gpu-check.json").read_text()), (folder / "gpu-check.md").read_text()


def test_the_device_check_runs_on_a_cpu_and_writes_its_report(tmp_path):
    rc = _script().main(["--device", "cpu", "--out", str(tmp_path), "--tokens", "10",
                         "--skip", "processes", "bench-systems"])
    report, markdown = _report(tmp_path)
    assert rc == 0 and report["passed"], report
    ran = {row["check"]: row["ok"] for row in report["checks"]}
    assert ran == {"fast-vs-ref": True, "compiled": None, "streams": True, "host-syncs eager": True,
                   "host-syncs compiled": None}
    assert set(report["checks"][0]["detail"]) == {f"{d} {s}" for d in ("ar", "sd", "pearl") for s in ("greedy", "seeded")}
    assert "| fast-vs-ref | ok |" in markdown and "every check passed" in markdown


def test_a_failed_check_is_reported_and_exits_1(tmp_path, monkeypatch):
    script = _script()

    def diverges(setup):
        raise AssertionError("pearl greedy: tokens differ from hippo_ref's at index 3 (of 10)")

    monkeypatch.setattr(script, "check_streams", diverges)
    rc = script.main(["--device", "cpu", "--out", str(tmp_path), "--tokens", "6", "--skip", "processes",
                      "bench-systems", "fast-vs-ref", "host-syncs"])
    report, markdown = _report(tmp_path)
    assert rc == 1 and not report["passed"]
    assert "| streams | FAILED |" in markdown and "at index 3" in markdown


def test_a_missing_device_is_one_line_and_exit_2(tmp_path, capsys):
    if torch.cuda.device_count() > 7:
        pytest.skip("this machine has a cuda:7")
    assert _script().cli(["--device", "cuda:7", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("gpu check: --device cuda:7") and err.count("\n") == 1
    assert not (tmp_path / "gpu-check.json").exists()


@pytest.mark.slow
def test_every_check_of_the_device_check_runs_on_a_cpu(tmp_path):
    rc = _script().main(["--device", "cpu", "--out", str(tmp_path), "--tokens", "10"])
    report, _ = _report(tmp_path)
    assert rc == 0 and report["passed"], report
    assert (tmp_path / "bench-systems.json").exists() and (tmp_path / "bench-systems.md").exists()
