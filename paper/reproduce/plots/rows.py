"""Sweep rows (paper/sweep/runner.py) -> the measures the figures draw, each from its one definition in
hippo.stats: pooled MAT and run length, pooled speedups over AR and paired MAT differences with paired
bootstrap intervals, each from rows of one sweep (paper/reproduce/plots/same_run.py), and the lossless gate every
figure passes its rows through before drawing them."""

from __future__ import annotations

from dataclasses import dataclass

from hippo.stats import (
    DecodeStats,
    paired_mat_difference,
    paired_ratio_interval,
    pooled_mat,
    pooled_run_length,
    pooled_speedup,
)
from paper.reproduce.plots.same_run import check_same_sweep

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
    run_length_interval: tuple[float, float]  # paired bootstrap over samples (committed / runs)
    decode_s: float
    total_s: float
    target_decode_forwards: int  # the target's forwards after its prefill, all samples
    visual_tokens: float | None  # per sample, mean: what the target reads (None: not recorded)
    kept_visual_tokens: float | None  # per sample, mean: what the draft reads after pruning

    def as_json(self) -> dict:
        return {"n": self.n, "tokens": self.tokens, "mat": self.mat, "mat_ci": list(self.mat_interval),
                "run_length": self.run_length,
                "run_length_ci": list(self.run_length_interval), "decode_s": self.decode_s, "total_s": self.total_s,
                "target_decode_forwards": self.target_decode_forwards, "visual_tokens": self.visual_tokens,
                "kept_visual_tokens": self.kept_visual_tokens}


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
        run_length_interval=paired_ratio_interval(committed, [max(x, 1) for x in runs], resamples, seed),
        decode_s=sum(r["stats"]["decode_s"] for r in rows),
        total_s=sum(r["stats"]["total_s"] for r in rows),
        target_decode_forwards=sum(max(r["stats"].get("target_forwards", 0) - 1, 0) for r in rows),
        visual_tokens=_mean([r["stats"].get("visual_tokens") for r in rows]),
        kept_visual_tokens=_mean([r["stats"].get("kept_visual_tokens") for r in rows]),
    )


def _mean(values: list) -> float | None:
    known = [v for v in values if v is not None]
    return sum(known) / len(known) if known else None


def _same_samples(base: list[dict], method: list[dict], what: str) -> None:
    if [r["sample"]["sample_id"] for r in base] != [r["sample"]["sample_id"] for r in method]:
        raise ValueError(f"{what} needs the same samples on both sides, in the same order (select() orders them)")


def speedup(base: list[dict], method: list[dict], phase: str = "decode_s", resamples: int = 2000,
            seed: int = 0) -> tuple[float, tuple[float, float]]:
    """pooled_speedup of `method` over `base` (same samples, paired by sample, rows of one sweep) in
    `phase` (decode_s or total_s), with its paired bootstrap interval. The rows must have produced the
    same tokens (greedy, lossless): a speedup over different outputs would compare different amounts of
    work."""
    _same_samples(base, method, "speedup")
    check_same_sweep(base, method)
    for b, m in zip(base, method, strict=True):
        if b["config"]["temperature"] == 0 and b["tokens"] != m["tokens"]:
            raise ValueError(f"{m['key']}: its tokens differ from {b['key']}'s: not lossless, no speedup is reported")
    base_s = [r["stats"][phase] for r in base]
    method_s = [r["stats"][phase] for r in method]
    return pooled_speedup(base_s, method_s), paired_ratio_interval(base_s, method_s, resamples, seed)


def committed_and_rounds(rows: list[dict]) -> list[tuple[int, int]]:
    """(tokens committed, verification rounds) per row: what pooled MAT is computed from."""
    return [(sum(r["stats"]["accepted_per_round"]), len(r["stats"]["accepted_per_round"])) for r in rows]


def mat_difference(base: list[dict], other: list[dict], resamples: int = 2000,
                   seed: int = 0) -> tuple[float, float, float]:
    """hippo.stats.paired_mat_difference (pooled MAT of `other` minus `base`, paired by sample) over rows
    of one sweep: (difference, low, high)."""
    _same_samples(base, other, "a paired MAT difference")
    check_same_sweep(base, other)
    return paired_mat_difference(committed_and_rounds(base), committed_and_rounds(other), resamples, seed)


class NotLosslessError(ValueError):
    """A greedy row's tokens differ from AR's on the same input: no figure draws it."""


def lossless_gate(rows: list[dict]) -> list[dict]:
    """`rows`, after checking that every greedy row has the tokens of its sweep's AR row for the same
    pair, sample and length (the paper's claim, and what makes a speedup compare equal work). Raises
    NotLosslessError naming the first row that differs or that has no AR row in its sweep to check."""
    from paper.reproduce.plots.same_run import sweep_of

    def input_of(row: dict) -> tuple:
        c = row["config"]
        return (sweep_of(row), c["pair"], str(row["sample"]["sample_id"]), c["max_new_tokens"], c["frames"],
                c["dtype"])

    ar = {input_of(r): r for r in rows if r["config"]["decoding"] == "ar" and r["config"]["temperature"] == 0}
    for row in rows:
        if row["config"]["temperature"] != 0 or row["config"]["decoding"] == "ar":
            continue
        base = ar.get(input_of(row))
        if base is None:
            raise NotLosslessError(f"{row['key']}: its sweep has no greedy AR row for the same input, so its tokens "
                                   "cannot be checked against the target's own output; add decoding ar to the sweep")
        if base["tokens"] != row["tokens"]:
            first = next((i for i, (a, b) in enumerate(zip(base["tokens"], row["tokens"], strict=False)) if a != b),
                         min(len(base["tokens"]), len(row["tokens"])))
            raise NotLosslessError(f"{row['key']}: its greedy tokens differ from AR's ({base['key']}) from token "
                                   f"{first} on: not lossless, no figure draws it; run `hippo verify` on this code "
                                   "and fix the decode before drawing")
    return rows
