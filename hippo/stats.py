"""Every measure of a decode, each defined once."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass
class DecodeStats:
    """What one decode did. Rounds are the decode-phase target forwards: the prefill's forward,
    which commits the first generated token in every algorithm, is not a round."""

    accepted_per_round: list[int] = field(default_factory=list)  # tokens committed by each round
    rejected_per_round: list[bool] = field(default_factory=list)  # did the round end in a rejection
    target_forwards: int = 0  # every target forward, the prefill included
    draft_forwards: int = 0  # every draft forward, the draft's prefill included (0 for AR)
    gamma: int = 0  # draft length used (0 for AR)
    decode_s: float = 0.0  # wall time after both prefills until the last token

    @property
    def mat(self) -> float:
        """Mean accepted tokens: tokens committed per target verification forward (round), counting
        the correction / bonus token. Autoregressive decoding gives exactly 1.0. 0.0 if no round ran."""
        if not self.accepted_per_round:
            return 0.0
        return sum(self.accepted_per_round) / len(self.accepted_per_round)

    @property
    def runs(self) -> int:
        """Runs of committed tokens: one per rejection, plus the last run if it ended without one."""
        runs = sum(self.rejected_per_round)
        if self.rejected_per_round and not self.rejected_per_round[-1]:
            runs += 1
        return runs

    @property
    def mean_run_length(self) -> float:
        """PEARL's reported measure: tokens committed between two rejections (a run that ends without a
        rejection, at the end of the decode, counts as a run). Can exceed gamma under PEARL."""
        return sum(self.accepted_per_round) / self.runs if self.runs else 0.0

    def record_round(self, committed: int, rejected: bool) -> None:
        self.accepted_per_round.append(committed)
        self.rejected_per_round.append(rejected)


@dataclass
class RequestStats:
    """A whole request: the decode plus what came before it."""

    decode: DecodeStats
    total_s: float = 0.0  # end to end: video load, preprocessing, encoders, scoring, pruning, prefills, decode
    prefill_s: float = 0.0  # video encoders, scoring, pruning and both prefills
    visual_tokens: int = 0  # visual tokens of the full video (what the target reads)
    kept_visual_tokens: int = 0  # visual tokens in the draft's context (after pruning)
    # Where the request ran: one hippo.placement.describe() per process (role, pid, cores, threads,
    # interop_threads), as measured in that process while it served the request.
    placement: list | None = None
    # The draft worker's start-up (spawn, imports, the draft's load, the process group; or a new draft's
    # load), counted in neither prefill_s nor total_s, like model loading on the serial path: the seconds
    # of it that no earlier request reported (the first request of a worker: all of it; later: 0.0), and
    # how many of them this process waited for (the rest ran while it did other work, e.g. loaded the
    # target). None: no worker.
    worker_start_s: float | None = None
    worker_start_waited_s: float | None = None

    def as_json(self) -> dict:
        d = asdict(self.decode)
        d.update(
            mat=self.decode.mat,
            mean_run_length=self.decode.mean_run_length,
            total_s=self.total_s,
            prefill_s=self.prefill_s,
            visual_tokens=self.visual_tokens,
            kept_visual_tokens=self.kept_visual_tokens,
            placement=self.placement,
            worker_start_s=self.worker_start_s,
            worker_start_waited_s=self.worker_start_waited_s,
        )
        return d


def pooled_mat(per_example: list[tuple[int, int]]) -> float:
    """MAT pooled over decodes: total committed tokens / total rounds, from (committed, rounds) per decode
    (every round of every decode weighs the same; a mean of per-decode MATs would not)."""
    rounds = sum(r for _, r in per_example)
    return sum(c for c, _ in per_example) / rounds if rounds else float("nan")


def pooled_run_length(per_example: list[tuple[int, int]]) -> float:
    """PEARL's mean run length pooled over decodes, from (committed, runs) per decode (DecodeStats.runs):
    total committed tokens / total runs (the pooled form of DecodeStats.mean_run_length)."""
    runs = sum(r for _, r in per_example)
    return sum(c for c, _ in per_example) / runs if runs else float("nan")


def paired_mat_difference(base: list[tuple[int, int]], other: list[tuple[int, int]], resamples: int = 2000,
                          seed: int = 0, confidence: float = 0.95) -> tuple[float, float, float]:
    """pooled_mat(other) - pooled_mat(base) over the same decodes (same videos and prompts), with a
    paired percentile-bootstrap confidence interval: decodes are resampled with replacement, the same
    draw for both sides, from an explicitly seeded generator. Returns (difference, low, high)."""
    import numpy as np

    if len(base) != len(other) or not base:
        raise ValueError(f"need the same non-zero number of decodes on both sides, got {len(base)} and {len(other)}")
    b, o = np.asarray(base, dtype=float), np.asarray(other, dtype=float)
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(b), size=(resamples, len(b)))
    differences = o[picks, 0].sum(1) / o[picks, 1].sum(1) - b[picks, 0].sum(1) / b[picks, 1].sum(1)
    tail = (1 - confidence) / 2
    low, high = np.quantile(differences, [tail, 1 - tail])
    return pooled_mat(other) - pooled_mat(base), float(low), float(high)


@dataclass
class Timeline:
    """When each lane (the target, the draft) was busy, per round: (lane, round, start_s, end_s) with
    time.perf_counter (CLOCK_MONOTONIC on Linux: one clock for every process of a machine, so the two
    processes' intervals line up). What the figures draw as a Gantt chart."""

    spans: list[tuple[str, int, float, float]] = field(default_factory=list)

    def busy(self, lane: str, round_index: int):
        """Context manager: the span of `lane`'s work in one round."""
        import contextlib
        import time

        @contextlib.contextmanager
        def span():
            start = time.perf_counter()
            try:
                yield
            finally:
                self.spans.append((lane, round_index, start, time.perf_counter()))

        return span()

    def busy_s(self, lane: str) -> float:
        """Seconds `lane` was busy."""
        return sum(end - start for name, _, start, end in self.spans if name == lane)

    def overlap_s(self, a: str = "target", b: str = "draft") -> float:
        """Seconds during which lanes a and b were busy at the same time (the overlap PEARL buys)."""
        spans_b = [(s, e) for name, _, s, e in self.spans if name == b]
        return sum(max(0.0, min(e, eb) - max(s, sb)) for name, _, s, e in self.spans if name == a
                   for sb, eb in spans_b)

    def as_json(self) -> list[dict]:
        origin = min((s for _, _, s, _ in self.spans), default=0.0)
        return [{"lane": lane, "round": r, "start_s": s - origin, "end_s": e - origin} for lane, r, s, e in self.spans]


def pooled_speedup(base_s: list[float], method_s: list[float]) -> float:
    """Speedup of a method over a base on the same inputs (../shared/hippo-method.md, "Measures"): the
    base's total wall time over the method's, pooled over the inputs (a long request weighs more, as in a
    served workload). Decode-only or end to end, depending on which seconds are passed."""
    if len(base_s) != len(method_s) or not base_s:
        raise ValueError(f"need the same non-zero number of inputs on both sides, got {len(base_s)} and {len(method_s)}")
    return sum(base_s) / sum(method_s)


def paired_ratio_interval(numerator: list[float], denominator: list[float], resamples: int = 2000, seed: int = 0,
                          confidence: float = 0.95) -> tuple[float, float]:
    """Percentile-bootstrap interval of sum(numerator) / sum(denominator) over paired inputs (resampled
    with replacement, the same draw for both, from an explicitly seeded generator): the interval of a
    pooled MAT (committed tokens / rounds) or of a pooled_speedup (base seconds / method seconds)."""
    import numpy as np

    if len(numerator) != len(denominator) or not numerator:
        raise ValueError(f"need the same non-zero number of inputs, got {len(numerator)} and {len(denominator)}")
    a, b = np.asarray(numerator, dtype=float), np.asarray(denominator, dtype=float)
    picks = np.random.default_rng(seed).integers(0, len(a), size=(resamples, len(a)))
    tail = (1 - confidence) / 2
    low, high = np.quantile(a[picks].sum(1) / b[picks].sum(1), [tail, 1 - tail])
    return float(low), float(high)
