"""A measured timeline (Gantt chart) of one real request: when the draft and the target worked, round by
round, in serial SD and in HIPPO (PEARL with hippo pruning, the draft in its own process), on the pair
in the paper's regime. Both decodes read the same pruned draft context (hippo at RATIO), so the two
panels differ in the schedule alone, at the same gamma, in one sweep with AR (whose tokens both must
have). The spans are the decodes' own hippo.stats.Timeline (`fast-timed` records the serial one; the
two-process decode always records its lanes)."""

from __future__ import annotations

from hippo.stats import Timeline
from paper.reproduce.plots import style
from paper.reproduce.plots.job import FigureJob, Outcome
from paper.reproduce.plots.rows import lossless_gate, select

RATIO = 0.9
GAMMA = 5  # both panels: the schedule is the only difference
ROUNDS_SHOWN = 12  # the window drawn: the first rounds, long enough to see the pattern repeat
# panel label -> (decoding, implementation)
DECODES = {
    "serial SD": ("sd", "fast-timed"),
    "HIPPO (draft in its own process)": ("pearl", "fast-processes"),
}
LANES = ("draft", "target")  # rows of a panel; the target's row also holds its verification


def gantt_rows(job: FigureJob) -> dict[str, dict]:
    """The one-sample row of each decode, from one sweep with AR's row (the lossless gate's reference)."""
    p = job.profile
    pair = [p.overlap_pair]
    rows = lossless_gate(job.sweep(
        "gantt", pairs=pair, decodings=["sd"], prune=["hippo"], ratios=[RATIO], gammas=[GAMMA], impls=["fast-timed"],
        n=1, also=({"pairs": pair, "decodings": ["pearl"], "prune": ["hippo"], "ratios": [RATIO], "gammas": [GAMMA],
                    "impls": ["fast-processes"], "n": 1},
                   {"pairs": pair, "decodings": ["ar"], "impls": ["fast"], "n": 1})))
    return {label: select(rows, decoding=decoding, impl=impl)[0] for label, (decoding, impl) in DECODES.items()}


def timeline_of(row: dict) -> Timeline:
    """A sweep row's recorded spans as a Timeline (seconds from the first span)."""
    return Timeline([(s["lane"], s["round"], s["start_s"], s["end_s"]) for s in row["timeline"]])


def decode_summary(row: dict) -> dict:
    """One decode's whole-request numbers: wall time, busy time per lane, how much of the draft's work
    ran while the target worked."""
    timeline = timeline_of(row)
    decode_s = row["stats"]["decode_s"]
    target_s, verify_s, draft_s = (timeline.busy_s(lane) for lane in ("target", "verify", "draft"))
    overlap_s = timeline.overlap_s("target", "draft")
    return {
        "decode_s": decode_s,
        "generated": len(row["tokens"]),
        "tokens_per_s": len(row["tokens"]) / decode_s,
        "rounds": len(row["stats"]["accepted_per_round"]),
        "gamma": row["gamma"],
        "mat": row["stats"]["mat"],
        "target_forward_s": target_s,
        "verify_s": verify_s,
        "target_busy_s": target_s + verify_s,  # the target's process: its forwards and the verification
        "draft_busy_s": draft_s,
        "overlap_s": overlap_s,
        "draft_overlapped_fraction": overlap_s / draft_s if draft_s else 0.0,
        "target_busy_share": (target_s + verify_s) / decode_s,
        "draft_busy_share": draft_s / decode_s,
    }


def window_s(timeline: Timeline, rounds: int = ROUNDS_SHOWN) -> float:
    """End of the first `rounds` rounds (seconds from the first span)."""
    origin = min(s for _, _, s, _ in timeline.spans)
    return max(e for _, r, _, e in timeline.spans if r < rounds) - origin


def draw_panel(ax, row: dict, label: str, summary: dict, window_ms: float) -> None:
    timeline = timeline_of(row)
    origin = min(s for _, _, s, _ in timeline.spans)
    bars = {lane: [] for lane in ("draft", "target", "verify")}
    for lane, _, start, end in timeline.spans:
        bars[lane].append(((start - origin) * 1e3, (end - start) * 1e3))
    for y, lanes in enumerate(reversed(LANES)):
        for lane in (lanes, "verify") if lanes == "target" else (lanes,):
            ax.broken_barh(bars[lane], (y - 0.35, 0.7), facecolors=style.LANE_COLORS[lane], edgecolor="white",
                           linewidth=0.4, label=("target verify forward" if lane == "target" else
                                                 "verification + commit" if lane == "verify" else "draft block"))
    committed = row["stats"]["accepted_per_round"]
    for lane, r, _, end in timeline.spans:  # tokens each round committed, above its verification
        if lane == "verify" and (end - origin) * 1e3 < 0.99 * window_ms:
            ax.text((end - origin) * 1e3, 0.42, f"+{committed[r]}", fontsize=7, ha="center", va="bottom")
    ax.set_yticks(range(len(LANES)), list(reversed(LANES)))
    ax.set_ylim(-0.6, len(LANES) - 0.3)
    ax.set_xlim(0, window_ms)
    ax.grid(axis="x", alpha=0.3)
    ax.set_title(f"{label}, gamma {summary['gamma']}: the whole decode {summary['decode_s']:.2f} s, "
                 f"{summary['generated']} tokens ({summary['tokens_per_s']:.0f}/s), {summary['rounds']} rounds, "
                 f"MAT {summary['mat']:.2f}\nbusy: target {summary['target_busy_share']:.0%}, draft "
                 f"{summary['draft_busy_share']:.0%} of it; draft and target at the same time "
                 f"{summary['overlap_s']:.2f} s ({summary['draft_overlapped_fraction']:.0%} of the draft's work)",
                 fontsize=9, loc="left")


def plot(rows: dict[str, dict], numbers: dict, job: FigureJob):
    window_ms = 1e3 * max(window_s(timeline_of(row)) for row in rows.values())
    fig, axes = style.subplots(len(rows), 1, 11, 2.2 * len(rows) + 0.8, sharex=True)
    for ax, (label, row) in zip(axes, rows.items(), strict=True):
        draw_panel(ax, row, label, numbers["decodes"][label], window_ms)
    axes[-1].set_xlabel("time since the first round's first span (ms); +k: tokens the round committed")
    handles, names = axes[0].get_legend_handles_labels()
    fig.legend(handles, names, loc="lower center", ncol=len(names), fontsize=8, frameon=False)
    p = job.profile
    fig.suptitle(f"Measured timeline of one request: zoo {numbers['pair']}, {numbers['sample']}, {p.frames} frames, "
                 f"hippo pruning {RATIO}; the first {ROUNDS_SHOWN} rounds of the slower decode", fontsize=10)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    return fig


def build(job: FigureJob) -> Outcome:
    rows = gantt_rows(job)
    first = next(iter(rows.values()))
    numbers = {"pair": job.profile.overlap_pair, "sample": first["sample"]["sample_id"], "ratio": RATIO,
               "decodes": {label: decode_summary(row) for label, row in rows.items()}}
    tokens = {label: row["tokens"] for label, row in rows.items()}
    numbers["same_tokens"] = len({tuple(t) for t in tokens.values()}) == 1  # greedy and lossless: one output
    return Outcome(figures=[job.save(plot(rows, numbers, job), "gantt")], numbers=numbers)
