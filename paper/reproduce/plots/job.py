"""What every figure module gets (FigureJob) and gives back (Outcome).

A figure module is `build(job) -> Outcome`. It asks the job for data: `job.sweep(name, **grid)` runs a
`hippo bench sweep` grid into results/<name>.jsonl (resumable; rows of other code are refused by the
sweep) and returns its rows; `job.measurement(name, compute)` caches any other measurement's JSON in
results/<name>.json under the code's source hash (recomputed when the code changed). It draws with
`job.save(fig, name)` (paper/figures/<name>.png) and `job.table(name, markdown)` (paper/tables/<name>.md),
and returns the numbers the claims in paper/REPRODUCTION.md are judged on.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path


def paper_hash() -> str:
    """sha256 over paper/'s sources (the figure code: a measurement made by other figure code is redone)."""
    import hashlib

    root = Path(__file__).resolve().parents[2]
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        digest.update(str(path.relative_to(root)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


@dataclass(frozen=True)
class FigureProfile:
    """How much each figure measures. `default` is the embedded default's run (the zoo's test split,
    within 30 minutes on 2 CPU cores after `nox -s verify`); `smoke` is the test suite's (one sample,
    short outputs: it checks that every module runs, not what it shows)."""

    name: str
    pairs: tuple[str, ...]  # zoo pairs of the main table and the ratio sweep
    overlap_pair: str  # the pair in the paper's regime (draft step ~ a fifth of the target's): gamma, Gantt
    n: int  # zoo test samples per configuration
    max_new_tokens: int
    frames: int
    ratios: tuple[float, ...]
    gammas: tuple[int, ...]
    methods: tuple[str, ...] = ("random", "uniform", "attn", "specvlm", "hippo")
    mc_sample_counts: tuple[int, ...] = (250, 500, 1000, 2000, 4000, 8000)
    bootstrap: int = 2000  # bootstrap resamples of the samples for intervals
    ratio_n: int | None = None  # the ratio sweep's samples (its MAT differences are small: more power); None = n
    seed: int = 0


PROFILES = {
    "default": FigureProfile("default", pairs=("qwen", "llava"), overlap_pair="qwen-large", n=12,
                             max_new_tokens=128, frames=8, ratios=(0.5, 0.75, 0.9, 0.95), gammas=(1, 2, 3, 4, 5, 6, 8),
                             ratio_n=48),
    "smoke": FigureProfile("smoke", pairs=("qwen",), overlap_pair="qwen", n=1, max_new_tokens=12, frames=4,
                           ratios=(0.9,), gammas=(2,), methods=("random", "specvlm", "hippo"), mc_sample_counts=(100, 200),
                           bootstrap=50),
}


@dataclass
class Outcome:
    """What one figure module made, and the numbers its claims are judged on."""

    figures: list[Path] = field(default_factory=list)
    tables: list[Path] = field(default_factory=list)
    numbers: dict = field(default_factory=dict)  # JSON-able; paper/REPRODUCTION.md reads them
    notes: list[str] = field(default_factory=list)  # what this figure cannot show here, and why


@dataclass
class FigureJob:
    results: Path  # sweep rows and measurements (resumable)
    figures: Path  # paper/figures
    tables: Path  # paper/tables
    profile: FigureProfile
    report: dict | None = None  # the verification report (report.json) next to the passing certificate
    certificate: dict | None = None
    log: Callable[[str], None] = print
    progress: bool = True

    def __post_init__(self):
        for folder in (self.results, self.figures, self.tables):
            Path(folder).mkdir(parents=True, exist_ok=True)

    def sweep(self, name: str, also: tuple[dict, ...] = (), **grid) -> list[dict]:
        """The rows of one `hippo bench sweep` (paper.sweep.grid.Grid fields; samples default to the
        profile's; `also`: more grids' fields, run interleaved in the same sweep), run into
        results/<name>.jsonl; finished rows are kept, missing ones run. Rows of other code or of another
        sweep (a changed grid) are moved aside, so that every row returned shares one sweep id."""
        from paper.sweep.grid import Grid
        from paper.sweep.runner import grid_sweep_id, read_rows, run_sweep
        from verification.report import source_hash

        p = self.profile
        defaults = {"n": p.n, "max_new_tokens": p.max_new_tokens, "frames": p.frames, "seed": p.seed}
        first = Grid.from_mapping({**defaults, **grid}, source=f"figure sweep {name}")
        others = tuple(Grid.from_mapping({**defaults, **g}, source=f"figure sweep {name}") for g in also)
        path = self.results / f"{name}.jsonl"
        if path.exists():  # rows of other code or another grid are kept aside, not mixed in and not lost
            current = (source_hash(), grid_sweep_id(first, path, others))
            other = sorted({(str(r.get("source_sha256")), str((r.get("sweep") or {}).get("id")))
                            for r in read_rows(path)} - {current})
            if other:
                kept = path.with_name(f"{name}.{other[0][0][:12]}-{other[0][1]}.jsonl")
                path.replace(kept)
                self.log(f"figures: {path} held rows of other code or another sweep (source {other[0][0][:12]}, "
                         f"sweep {other[0][1]}); moved to {kept.name}")
        self.log(f"figures: sweep {name} -> {path}")
        run_sweep(first, path, progress=self.progress, also=others)
        return read_rows(path)

    def _key(self) -> dict:
        from verification.report import source_hash

        return {"source_sha256": source_hash(), "paper_sha256": paper_hash(), "profile": self.profile.name}

    def store_outcome(self, name: str, outcome: Outcome, seconds: float) -> None:
        """A module's Outcome in results/outcomes/<name>.json, so that a later `--only` run still writes
        the whole of paper/REPRODUCTION.md."""
        folder = self.results / "outcomes"
        folder.mkdir(exist_ok=True)
        record = {"key": self._key(), "seconds": seconds, "figures": [str(f) for f in outcome.figures],
                  "tables": [str(t) for t in outcome.tables], "numbers": outcome.numbers, "notes": outcome.notes}
        tmp = folder / f"{name}.json.tmp"
        tmp.write_text(json.dumps(record, indent=1) + "\n")
        tmp.replace(folder / f"{name}.json")

    def stored_outcome(self, name: str) -> tuple[Outcome, float] | None:
        """The Outcome `store_outcome` kept for this code and profile, with its seconds; None otherwise."""
        path = self.results / "outcomes" / f"{name}.json"
        try:
            record = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            return None
        if record.get("key") != self._key():
            return None
        return Outcome([Path(f) for f in record["figures"]], [Path(t) for t in record["tables"]], record["numbers"],
                       record["notes"]), record["seconds"]

    def measurement(self, name: str, compute: Callable[[], dict]) -> dict:
        """`compute()`'s JSON, cached in results/<name>.json for this code (the audited packages' source
        hash and paper/'s own) and profile."""
        path = self.results / f"{name}.json"
        key = self._key()
        if path.exists():
            try:
                cached = json.loads(path.read_text())
                if cached.get("key") == key:
                    return cached["value"]
            except (json.JSONDecodeError, KeyError, TypeError):
                pass  # a cut-short or foreign file: measured again
        self.log(f"figures: measuring {name} -> {path}")
        value = compute()
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps({"key": key, "value": value}, indent=1) + "\n")
        tmp.replace(path)  # never a half-written cache
        return value

    def save(self, fig, name: str, dpi: int = 130) -> Path:
        """fig as figures/<name>.png (closed afterwards); photographs take a lower dpi (they stay in git)."""
        import matplotlib.pyplot as plt

        path = self.figures / f"{name}.png"
        fig.savefig(path, dpi=dpi, bbox_inches="tight")
        plt.close(fig)
        return path

    def table(self, name: str, markdown: str) -> Path:
        path = self.tables / f"{name}.md"
        path.write_text(markdown if markdown.endswith("\n") else markdown + "\n")
        return path
