"""Ablation: HIPPO without s_attn, s_temp or s_spat (score weight 0), HIPPO without parallel decoding
(the same pruning and PEARL schedule in one thread, and serial SD) and without pruning (PEARL, the draft
reading every visual token). AR and every variant run in one sweep, interleaved, on the ratio sweep's
video set (the profile's ratio_n: the variants' differences are small); every bar has its 95% paired
bootstrap interval."""

from __future__ import annotations

from paper.reproduce.plots import style
from paper.reproduce.plots.job import FigureJob, Outcome
from paper.reproduce.plots.main_table import RATIO, method_rows
from paper.reproduce.plots.rows import lossless_gate, select, speedup, summarize

# (label, (w_g, w_t, w_s)): the fused score with one component switched off
VARIANTS = (("HIPPO", (1.0, 1.0, 1.0)), ("w/o s_attn", (0.0, 1.0, 1.0)), ("w/o s_temp", (1.0, 0.0, 1.0)),
            ("w/o s_spat", (1.0, 1.0, 0.0)))


# the rows beside the score-weight variants: (label, grid fields of their one configuration)
OTHERS = (("HIPPO, PEARL in one thread", {"decodings": ["pearl"], "prune": ["hippo"], "impls": ["fast"]}),
          ("HIPPO pruning, serial SD", {"decodings": ["sd"], "prune": ["hippo"], "impls": ["fast"]}),
          ("PEARL, no pruning", {"decodings": ["pearl"], "prune": ["none"], "impls": ["fast-processes"]}))
LABELS = tuple(label for label, _ in VARIANTS) + tuple(label for label, _ in OTHERS)


def ablation_sweep(job: FigureJob) -> list[dict]:
    pairs, n = list(job.profile.pairs), job.profile.ratio_n or job.profile.n
    return lossless_gate(job.sweep(
        "ablation", pairs=pairs, decodings=["pearl"], prune=["hippo"], ratios=[RATIO],
        weights=[list(w) for _, w in VARIANTS], impls=["fast-processes"], n=n,
        also=({"pairs": pairs, "decodings": ["ar"], "impls": ["fast"], "n": n},  # the baseline, in this sweep
              *({"pairs": pairs, "ratios": [RATIO], "n": n, **fields} for _, fields in OTHERS))))


def measure(job: FigureJob, rows: list[dict]) -> dict:
    p = job.profile
    out: dict = {}
    for pair in p.pairs:
        ar = method_rows(rows, pair, "AR")
        entry: dict = {}
        picks = {label: select(rows, pair=pair, decoding="pearl", prune="hippo", impl="fast-processes", weights=weights)
                 for label, weights in VARIANTS}
        for label, fields in OTHERS:
            picks[label] = select(rows, pair=pair, decoding=fields["decodings"][0], prune=fields["prune"][0],
                                  impl=fields["impls"][0])
        for label, picked in picks.items():
            if picked:
                e = summarize(picked, p.bootstrap, p.seed).as_json()
                e["speedup_decode"], e["speedup_decode_ci"] = speedup(ar, picked, "decode_s", p.bootstrap, p.seed)
                entry[label] = e
        out[pair] = entry
    return out


def plot(numbers: dict, job: FigureJob):
    import numpy as np

    pairs = list(numbers)
    fig, axes = style.subplots(1, 2, 13, 4.8)
    labels = list(LABELS)
    width = 0.8 / max(len(pairs), 1)
    for ax, key, title in ((axes[0], "run_length", "mean run length (tokens between rejections)"),
                           (axes[1], "speedup_decode", "speedup over AR, decode only (x)")):
        for i, pair in enumerate(pairs):
            x = np.arange(len(labels)) + (i - (len(pairs) - 1) / 2) * width
            got = [numbers[pair].get(lab) for lab in labels]
            values = [np.nan if e is None else e[key] for e in got]
            low = [0 if e is None else e[key] - e[f"{key}_ci"][0] for e in got]
            high = [0 if e is None else e[f"{key}_ci"][1] - e[key] for e in got]
            ax.bar(x, values, width, yerr=[low, high], capsize=3, label=f"zoo {pair}")
        ax.set_xticks(range(len(labels)), labels, rotation=25, ha="right")
        ax.set_ylabel(title)
        ax.grid(axis="y", alpha=0.3)
    axes[0].set_title("acceptance: which score components matter")
    axes[1].set_title("speed: the parallel schedule's and pruning's shares")
    axes[1].axhline(1.0, color="black", lw=0.8)
    axes[0].legend(fontsize=8)
    n = next((e["n"] for entry in numbers.values() for e in entry.values()), 0)
    fig.suptitle(f"Ablation at ratio {RATIO}, {n} zoo test videos, AR and every row in one sweep (bars: 95% paired "
                 "bootstrap; PEARL rows: the draft in its own process unless marked)")
    fig.tight_layout()
    return fig


def markdown(numbers: dict) -> str:
    n = next((e["n"] for entry in numbers.values() for e in entry.values()), 0)
    lines = [f"# Ablation (ratio {RATIO}, gamma 5, greedy, {n} zoo test videos, one sweep)", "",
             "| pair | variant | MAT [95%] | run length [95%] | speedup decode [95%] |", "|---|---|---|---|---|"]
    for pair, entry in numbers.items():
        for label, e in entry.items():
            lines.append(f"| {pair} | {label} | {e['mat']:.2f} [{e['mat_ci'][0]:.2f}, {e['mat_ci'][1]:.2f}] | "
                         f"{e['run_length']:.1f} [{e['run_length_ci'][0]:.1f}, {e['run_length_ci'][1]:.1f}] | "
                         f"{e['speedup_decode']:.2f}x [{e['speedup_decode_ci'][0]:.2f}, "
                         f"{e['speedup_decode_ci'][1]:.2f}] |")
    return "\n".join(lines)


def build(job: FigureJob) -> Outcome:
    numbers = measure(job, ablation_sweep(job))
    return Outcome(figures=[job.save(plot(numbers, job), "ablation")], tables=[job.table("ablation", markdown(numbers))],
                   numbers=numbers)
