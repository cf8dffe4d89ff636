"""Speedup vs frames at real model sizes, from the GPU systems benchmark's JSON (paper/measure/systems.py)
when one exists: random weights of the released architectures, controlled acceptance. Only results made
by the current code (their source_sha256 is verification.report.source_hash()) are drawn; the benchmark
writes a result only after its equality gate passed (every row's tokens are the target's greedy ones)."""

from __future__ import annotations

import json
from pathlib import Path

from paper.reproduce.plots import style
from paper.reproduce.plots.job import FigureJob, Outcome

REPO = Path(__file__).resolve().parents[3]
# Where paper/measure/systems.py's documented commands write (reports/, local) and where committed GPU
# results live (docs/bench-systems/).
SEARCHED = (REPO / "docs" / "bench-systems", REPO / "reports" / "bench-systems")


def reports(folders=SEARCHED) -> tuple[list[tuple[Path, dict]], list[str]]:
    """The systems results of the current code, and one note per result left out (other code, or no
    source hash: made before results recorded it)."""
    from verification.report import source_hash

    current = source_hash()
    found, skipped = [], []
    for folder in folders:
        for path in sorted(Path(folder).glob("*.json")):
            try:
                report = json.loads(path.read_text())
            except (OSError, json.JSONDecodeError):
                continue
            if "cases" not in report or "config" not in report:
                continue
            made_by = report.get("source_sha256")
            if made_by != current:
                skipped.append(f"{path.name} not drawn: made by "
                               + (f"other code (source {str(made_by)[:12]}, this code {current[:12]})" if made_by
                                  else "code that did not record its source hash")
                               + "; rerun its command (top of paper/measure/systems.py) on this code")
                continue
            found.append((path, report))
    return found, skipped


def measure(found: list[tuple[Path, dict]]) -> dict:
    """{"<preset>, <acceptance>": {row description: {frames: decode speedup over fast AR}}}, with each source file."""
    out: dict = {}
    for path, report in found:
        cfg = report["config"]
        key = f"{cfg['preset']}, acceptance {cfg['acceptance']}, {cfg.get('device', '?')} {cfg.get('dtype', '')}".strip()
        entry = out.setdefault(key, {"source": str(path.relative_to(REPO)), "rows": {}})
        for case in report["cases"]:
            for row in case["rows"]:
                value = row.get("summary", {}).get("speedup_fast_ar_decode")  # none: a row not measured
                if value is not None:
                    entry["rows"].setdefault(row["description"], {})[str(case["frames"])] = value
    return out


def plot(numbers: dict):
    fig, axes = style.subplots(1, len(numbers), 5.6 * len(numbers), 4.2, squeeze=False)
    for ax, (key, entry) in zip(axes[0], numbers.items(), strict=True):
        for label, by_frames in entry["rows"].items():
            points = sorted((int(f), v) for f, v in by_frames.items())
            ax.plot([f for f, _ in points], [v for _, v in points], marker="o", label=label)
        ax.axhline(1.0, color="black", lw=0.8)
        ax.set_title(key, fontsize=9)
        ax.set_xlabel("video frames")
        ax.set_ylabel("decode speedup over fast AR (x)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle("Real-size architectures, random weights, controlled acceptance (paper/measure/systems.py)")
    fig.tight_layout()
    return fig


def build(job: FigureJob) -> Outcome:
    found, skipped = reports()
    if not found:
        return Outcome(notes=["no GPU systems benchmark result of this code (docs/bench-systems/*.json or "
                              "reports/bench-systems/*.json): the commands that make one are at the top of "
                              "paper/measure/systems.py", *skipped])
    numbers = measure(found)
    return Outcome(figures=[job.save(plot(numbers), "systems")], numbers=numbers, notes=skipped)
