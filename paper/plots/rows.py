"""Sweep rows (paper/sweep.py) -> the measures the figures draw, each from its one definition in
hippo.stats: pooled MAT and run length, pooled speedups over AR with paired bootstrap intervals."""

from __future__ import annotations

from dataclasses import dataclass

from hippo.stats import DecodeStats, paired_ratio_interval, pooled_mat, pooled_run_length, pooled_speedup

# The paper's methods as sweep configurations: (decoding, pruning method, implementation).
# PEARL and HIPPO run draft and target at the same time (the draft in its own process); their serial
# one-thread schedule is `fast` (the ablation "without parallel decoding").
METHODS = {
    "AR": ("ar", "none", "fast"),
    "SD": ("sd", "none", "fast"),
    "SD + SpecVLM": ("sd", "specvlm", "fast"),
    "PEARL": ("pearl", "none", "fast-processes"),
    "HIPPO": ("pearl", "hippo", "fast-processes"),
}


def label_of(row: dict) -> str | None:
    c = row["config"]
    for label, (decoding, prune, impl) in METHODS.items():
        if (c["decoding"], c["prune"], c["impl"]) == (decoding, prune, impl):
            return label
    return None


def select(rows: list[dict], **config) -> list[dict]:
    """Rows whose configuration has these values (e.g. pair="qwen", decoding="sd", prune="hippo"),
    ordered by sample so that two selections pair up input for input."""
    picked = [r for r in rows if all(_value(r["config"], k) == v for k, v in config.items())]
    return sorted(picked, key=lambda r: (r["sample"].get("index", 0), str(r["sample"]["sample_id"])))


def _value(config: dict, key: str):
    value = config.get(key)
    return tuple(value) if isinstance(value, list) else value


@dataclass(frozen=True)
class Summary:
    """One configuration over its samples."""

    n: int
    tokens: int  # generated, all samples
    mat: float
    mat_interval: tuple[float, float]
    run_length: float
    decode_s: float
    total_s: float

    def as_json(self) -> dict:
        return {"n": self.n, "tokens": self.tokens, "mat": self.mat, "mat_ci": list(self.mat_interval),
                "run_length": self.run_length, "decode_s": self.decode_s, "total_s": self.total_s}


def summarize(rows: list[dict], resamples: int = 2000, seed: int = 0) -> Summary:
    committed = [sum(r["stats"]["accepted_per_round"]) for r in rows]
    rounds = [len(r["stats"]["accepted_per_round"]) for r in rows]
    runs = [DecodeStats(rejected_per_round=r["stats"]["rejected_per_round"]).runs for r in rows]
    return Summary(
        n=len(rows),
        tokens=sum(len(r["tokens"]) for r in rows),
        mat=pooled_mat(list(zip(committed, rounds, strict=True))),
        mat_interval=paired_ratio_interval(committed, [max(x, 1) for x in rounds], resamples, seed),
        run_length=pooled_run_length(list(zip(committed, runs, strict=True))),
        decode_s=sum(r["stats"]["decode_s"] for r in rows),
        total_s=sum(r["stats"]["total_s"] for r in rows),
    )


def speedup(base: list[dict], method: list[dict], phase: str = "decode_s", resamples: int = 2000,
            seed: int = 0) -> tuple[float, tuple[float, float]]:
    """pooled_speedup of `method` over `base` (same samples, paired by sample) in `phase` (decode_s or
    total_s), with its paired bootstrap interval. The rows must have produced the same tokens (greedy,
    lossless): a speedup over different outputs would compare different amounts of work."""
    if [r["sample"]["sample_id"] for r in base] != [r["sample"]["sample_id"] for r in method]:
        raise ValueError("speedup needs the same samples on both sides")
    for b, m in zip(base, method, strict=True):
        if b["config"]["temperature"] == 0 and b["tokens"] != m["tokens"]:
            raise ValueError(f"{m['key']}: its tokens differ from {b['key']}'s: not lossless, no speedup is reported")
    base_s = [r["stats"][phase] for r in base]
    method_s = [r["stats"][phase] for r in method]
    return pooled_speedup(base_s, method_s), paired_ratio_interval(base_s, method_s, resamples, seed)
