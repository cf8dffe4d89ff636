"""The one measurement protocol of paper/measure/: every benchmark's rows (paper/measure/rows.py's RowSpec)
run in ONE process on the same inputs, warm-up excluded and reported, outputs checked for equality before
any time is reported. A source of rows (perf.py: zoo pairs and checkpoints; systems.py: real-size
random-weight presets) says what one run of a row on one input is and what its tokens must equal.

Protocol (`measure`):
1. Warm-up: every row runs once on the first input, untimed (torch.compile compiles there); its wall
   time is reported as "warm-up s". A row that raises (other than a HippoError, the user's to fix) is
   reported as not measured, with the reason; the others go on.
2. Equality gate on the warm-up runs.
3. Timing: for each repeat and input, every row runs once, the order of the rows rotated by one per
   input, so that noise of the machine falls on all rows alike. After each input, a few samples of
   every per-forward cost (`cost_timers`), so that they see the same machine as the timed runs.
4. Equality gate on every timed run, before anything is reported: a difference names the row, the
   input and the first differing token (GateFailure), and the source prints no time.

Definitions (one each):
- generated tokens: the tokens a request returns (an end-of-turn token included, as generate()).
- tokens/s (e2e): generated tokens / end-to-end seconds, pooled over the timed runs (sums of both).
  End-to-end: the request's wall time from the decoded frames: preprocessing, video encoders, scoring,
  pruning, both prefills, decode (hippo.stats.RequestStats.total_s; HF rows: adapter.prepare +
  generate()).
- tokens/s (decode): generated tokens / decode-only seconds (hippo.stats.DecodeStats.decode_s: after
  both prefills). HF rows: generate() does not separate them; their decode-only time is end-to-end
  minus the preprocessing and one stock forward of the prompt by each model it prefills (target; and
  the assistant for hf-assisted), timed right after the run.
- x HF: tokens/s of the row / tokens/s of hf-generate (e2e and decode-only separately).
- x fast AR: tokens/s of the row / tokens/s of fast-ar with the same compile setting (HF and ref rows
  are eager: fast-ar/eager).
- MAT: tokens committed per target round (DecodeStats.mat), pooled: total committed / total rounds.
- run length: PEARL's mean run length (DecodeStats.mean_run_length), pooled: committed / runs.
- per-forward cost: median wall time of one StaticContext.forward on the fast path's static context of
  the first input (compile setting of the row), at generated offset 0, in steady state (a burst of
  calls of that one forward; instruments.ForwardTimer), over samples taken after every input of the
  timed phase: the target's one-token step (t_target, on fast AR's context), the row's target verify
  (t_verify: gamma + 1 tokens for SD; gamma for PEARL's post-verify forward), the draft's one-token
  step on the row's (pruned) context (t_draft).
- bandwidth floor: (decode parameter bytes + KV bytes) / measured read bandwidth. Parameter bytes:
  every parameter except the vision encoder / projector and an untied input embedding
  (instruments.decode_parameter_bytes). KV bytes: layers x 2 x kv_heads x head_dim x rows x dtype
  size, rows = the context's prompt rows + the forward's tokens. Read bandwidth: torch.sum over a
  tensor far larger than the last-level cache (DRAM), timed in the same run; "at size": the same over
  a tensor of the target's decode parameter bytes (cache-resident when it fits: then a forward can
  beat the DRAM floor).
- peak memory: instruments.PeakMemory (CPU: the process's peak RSS per run, reset before each run;
  CUDA: max_memory_allocated); the largest over the timed runs, and its increment over the run's start.
- ideal (serial): MAT x t_target / (gamma x t_draft + t_verify), the decode speedup over AR that the
  measured acceptance and per-forward costs imply when draft and target run one after the other, with
  nothing else costing time. Computed over the row's measured rounds: committed tokens x t_target /
  sum over rounds of (gamma x t_draft + t_round), t_round = t_verify, except PEARL's pre-verify rounds
  (its first round and every round after a rejection), whose target forward is one token: t_target.
  With every round a verify round this is exactly the formula above.
- ideal (overlap), PEARL rows: MAT x t_target / max(gamma x t_draft, t_verify): the same with the
  round's draft block and target forward at the same time (part 2's schedule); over the measured
  rounds: committed x t_target / sum of max(gamma x t_draft, t_round).
- achieved: the row's decode-only x fast AR.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from hippo.errors import HippoError


@dataclass
class RowState:
    """A row under measurement: its RowSpec, warm-up time, why it was not measured, and its timed runs
    [(input index, repeat, Run)] (report.summarize's input)."""

    spec: object
    warmup_s: float | None = None
    skipped: str | None = None
    runs: list = field(default_factory=list)


class GateFailure(Exception):
    """Some run's tokens differ from its reference: no time may be reported. One line per mismatch."""


def reason(err: BaseException) -> str:
    """One line: the exception's type and first line, and its cause's (torch.compile wraps its reasons)."""

    def line(e):
        text = str(e).strip().splitlines()
        return f"{type(e).__name__}: {text[0] if text else ''}".strip()

    out = line(err)
    if err.__cause__ is not None:
        out += f" (cause: {line(err.__cause__)})"
    return out[:400]


def first_divergence(got: list[int], want: list[int]) -> str:
    for i, (a, b) in enumerate(zip(got, want, strict=False)):
        if a != b:
            return f"first divergence at generated token {i}: got {a}, expected {b}"
    return f"same first {min(len(got), len(want))} tokens, then lengths differ: got {len(got)}, expected {len(want)}"


def check(reference: Callable, checks, names: list[str]) -> None:
    """The equality gate over (RowState, input index, tokens): GateFailure naming every mismatch."""
    mismatches = []
    for row, i, tokens in checks:
        ref = reference(row.spec, i)
        if ref is not None and tokens != ref[1]:
            mismatches.append(f"  row {row.spec.id}, input {names[i]}: differs from {ref[0]}: "
                              f"{first_divergence(tokens, ref[1])}")
    if mismatches:
        raise GateFailure("\n".join(mismatches))


def measure(rows: list[RowState], names: list[str], run: Callable, reference: Callable, *, repeats: int, memory,
            make_timers: Callable[[list], dict], cost_samples: int, label: str, seen: Callable | None = None
            ) -> tuple[dict, float | None]:
    """The protocol above over `rows` and the inputs `names`: `run(spec, i) -> Run` runs a row once on input
    i; `reference(spec, i)`: what its tokens must equal, (what it is, tokens), or None (not compared);
    `seen(spec, i, run)`, if given, is told of every run in order (a reference may be a row's own run);
    `make_timers(active specs)`: the cost timers, made after the warm-up's gate. Fills each row's warm-up
    time, runs or reason; raises GateFailure before any time could be reported. Returns the sampled
    timers ({setting: ForwardTimer}) and the share of the CPUs other processes took while it timed."""
    from paper.measure import instruments

    def timed(row: RowState, i: int):
        memory.start()
        graphs = instruments.compiled_graphs()
        result = run(row.spec, i)
        result.peak_bytes, result.increment_bytes = memory.stop()
        result.compiles = instruments.compiled_graphs() - graphs
        if seen is not None:
            seen(row.spec, i, result)
        return result

    progress = instruments.Progress(len(rows) * (1 + len(names) * repeats), label)
    warm = {}
    for row in rows:
        progress.update(f"warm-up {row.spec.id}")
        t0 = time.perf_counter()
        try:
            warm[row.spec.id] = timed(row, 0)
        except HippoError:  # the user's to fix (a parameter, a checkpoint): one line, exit 2
            raise
        except Exception as err:  # a row that cannot run is reported with the reason, not fatal
            row.skipped = f"failed in the warm-up on {names[0]}: {reason(err)}"
            print(f"{label}: row {row.spec.id} {row.skipped}", file=sys.stderr)
            continue
        row.warmup_s = time.perf_counter() - t0
    active = [r for r in rows if r.skipped is None]
    progress.total = len(rows) + len(active) * len(names) * repeats
    try:
        check(reference, [(r, 0, warm[r.spec.id].tokens) for r in active], names)
    except GateFailure:
        progress.finish()
        raise

    timers = make_timers([r.spec for r in active])
    samples = max(1, -(-cost_samples // (len(names) * repeats)))
    other_load = instruments.OtherLoad()
    for repeat in range(repeats):
        for i in range(len(names)):
            shift = (repeat * len(names) + i) % max(1, len(active))
            for row in active[shift:] + active[:shift]:
                progress.update(f"{row.spec.id} {names[i]}")
                if row.skipped:
                    continue
                try:
                    result = timed(row, i)
                except HippoError:
                    raise
                except Exception as err:  # the row is reported as failed, without any of its times
                    row.skipped = f"failed in a timed run on {names[i]}: {reason(err)}"
                    row.runs.clear()
                    print(f"\n{label}: row {row.spec.id} {row.skipped}", file=sys.stderr)
                    continue
                row.runs.append((i, repeat, result))
            for setting, timer in list(timers.items()):
                try:
                    timer.sample(samples)
                except Exception as err:
                    print(f"\n{label}: per-forward costs ({setting}) dropped: {reason(err)}", file=sys.stderr)
                    del timers[setting]
    share = other_load.share()
    progress.finish()
    check(reference, [(r, i, run_.tokens) for r in rows if r.skipped is None for i, _, run_ in r.runs], names)
    return timers, share


def cost_timers(specs, prepare: Callable, gamma: int, label: str) -> dict:
    """Per compile setting of the fast rows, an instruments.ForwardTimer over: the target's one-token step
    on fast AR's context (t_target); per SD / PEARL fast row, its verify forward and its draft's one-token
    step, on the contexts of its own request. `prepare(spec, decoding, compiled)`: PreparedContexts of
    the first input."""
    from paper.measure.instruments import ForwardTimer

    timers: dict = {}
    fast = [s for s in specs if s.impl == "fast"]
    for compiled in sorted({bool(s.compile) for s in fast}):
        setting = "compiled" if compiled else "eager"
        measured = [("target step", prepare(fast[0], "ar", compiled).target_context, 1)]
        for spec in (s for s in fast if bool(s.compile) == compiled and s.decoding != "ar"):
            prepared = prepare(spec, spec.decoding, compiled)
            k = gamma + 1 if spec.decoding == "sd" else gamma
            measured += [(spec.id, prepared.target_context, k), (spec.id, prepared.draft_context, 1)]
        try:
            timers[setting] = ForwardTimer(measured)
        except Exception as err:  # e.g. a compiled forward that fails: the rows still run, without costs
            print(f"{label}: per-forward costs ({setting}) not measured: {reason(err)}", file=sys.stderr)
    return timers


def forward_cost_table(timers: dict, read_gbs: float) -> dict:
    """The timers' medians: {setting: {target_step, samples, rows: {row id: {verify, draft_step}}}}."""
    out = {}
    for setting, timer in timers.items():
        results = timer.results(read_gbs)
        rows = {}
        for j in range(1, len(results), 2):
            rows[results[j].model] = {"verify": results[j].as_json(), "draft_step": results[j + 1].as_json()}
        out[setting] = {"target_step": results[0].as_json(), "samples": len(timer.times[0]), "rows": rows}
    return out
