"""The verification figures (paper/reproduce/plots/verification_plots.py) on the smoke profile."""

from __future__ import annotations

import json

import numpy as np

from paper.reproduce.plots import verification_plots
from paper.reproduce.plots.job import PROFILES, FigureJob

# Calibration p-values as report.json holds them: 40 evenly spread tests, none below alpha.
REPORT = {"calibration": {"runs": 10, "samples_per_check": 1000, "false_alarms": 0, "false_alarm_rate": 0.0,
                          "declared_alpha": 0.01, "verdict": "pass",
                          "p_values": [round(float(v), 6) for v in np.linspace(0.0125, 0.9875, 40)]}}


def job_in(tmp_path, report):
    return FigureJob(tmp_path / "results", tmp_path / "figures", tmp_path / "tables", PROFILES["smoke"],
                     report=report, log=lambda line: None, progress=False)


def test_tv_and_calibration_figures(tmp_path):
    outcome = verification_plots.build(job_in(tmp_path, REPORT))
    names = sorted(path.name for path in outcome.figures)
    assert names == ["verification_calibration.png", "verification_tv.png"]
    assert all(path.stat().st_size > 10_000 for path in outcome.figures)
    numbers = json.loads(json.dumps(outcome.numbers))  # JSON-able as it is
    largest = str(max(PROFILES["smoke"].mc_sample_counts))
    tv = numbers["tv"]
    assert set(tv) == set(verification_plots.CORRECT) | set(verification_plots.MUTANTS)
    # the correct reference is closer to the exact law than a bug the Monte Carlo check catches
    assert tv["ref-sd"][largest] < tv["bonus_from_q"][largest]
    assert all(0 < v < 1 for v in numbers["min_detectable_tv"].values())
    calibration = numbers["calibration"]
    assert calibration["runs"] == 10 and calibration["tests"] == 40 and calibration["ks_uniform_p"] > 0.5
    assert not outcome.notes


def test_report_without_p_values_gives_a_note_and_no_histogram(tmp_path):
    old = {"calibration": {k: v for k, v in REPORT["calibration"].items() if k != "p_values"}}
    outcome = verification_plots.build(job_in(tmp_path, old))
    assert [path.name for path in outcome.figures] == ["verification_tv.png"]
    assert not (tmp_path / "figures" / "verification_calibration.png").exists()
    assert any("hippo verify" in note for note in outcome.notes)
    assert outcome.numbers["calibration"]["ks_uniform_p"] is None
    assert verification_plots.build(job_in(tmp_path / "none", None)).numbers["calibration"] is None
