"""Ablation: HIPPO without s_attn, s_temp or s_spat (score weight 0), and HIPPO without parallel
decoding (the same pruning and PEARL schedule in one thread, and serial SD). AR, the score-weight
variants and PEARL in one thread run in one sweep, interleaved; serial SD with HIPPO's pruning is the
main sweep's, over that sweep's own AR."""

from __future__ import annotations

from paper.reproduce.plots import style
from paper.reproduce.plots.job import FigureJob, Outcome
from paper.reproduce.plots.main_table import RATIO, main_sweep, method_rows
from paper.reproduce.plots.rows import lossless_gate, select, speedup, summarize

# (label, (w_g, w_t, w_s)): the fused score with one component switched off
VARIANTS = (("HIPPO", (1.0, 1.0, 1.0)), ("w/o s_attn", (0.0, 1.0, 1.0)), ("w/o s_temp", (1.0, 0.0, 1.0)),
            ("w/o s_spat", (1.0, 1.0, 0.0)))


def ablation_sweep(job: FigureJob) -> list[dict]:
    pairs = list(job.profile.pairs)
    return lossless_gate(job.sweep(
        "ablation", pairs=pairs, decodings=["pearl"], prune=["hippo"], ratios=[RATIO],
        weights=[list(w) for _, w in VARIANTS], impls=["fast-processes"],
        also=({"pairs": pairs, "decodings": ["ar"], "impls": ["fast"]},  # the baseline, in this sweep
              {"pairs": pairs, "decodings": ["pearl"], "prune": ["hippo"], "ratios": [RATIO], "impls": ["fast"]})))


def measure(job: FigureJob, rows: list[dict], main: list[dict]) -> dict:
    p = job.profile
    out: dict = {}
    for pair in p.pairs:
        ar = method_rows(rows, pair, "AR")
        entry: dict = {}
        picks = {label: select(rows, pair=pair, decoding="pearl", impl="fast-processes", weights=weights)
                 for label, weights in VARIANTS}
        picks["HIPPO, PEARL in one thread"] = select(rows, pair=pair, decoding="pearl", impl="fast")
        for label, picked in picks.items():
            if picked:
                e = summarize(picked, p.bootstrap, p.seed).as_json()
                e["speedup_decode"], e["speedup_decode_ci"] = speedup(ar, picked, "decode_s", p.bootstrap, p.seed)
                entry[label] = e
        serial = select(main, pair=pair, decoding="sd", prune="hippo", impl="fast")
        if serial:  # over the main sweep's own AR
            e = summarize(serial, p.bootstrap, p.seed).as_json()
            e["speedup_decode"], e["speedup_decode_ci"] = speedup(method_rows(main, pair, "AR"), serial, "decode_s",
                                                                  p.bootstrap, p.seed)
            entry["HIPPO pruning, serial SD (main sweep)"] = e
        out[pair] = entry
    return out


def plot(numbers: dict, job: FigureJob):
    import numpy as np

    pairs = list(numbers)
    fig, axes = style.subplots(1, 2, 12, 4.6)
    labels = [lab for lab, _ in VARIANTS] + ["HIPPO, PEARL in one thread", "HIPPO pruning, serial SD (main sweep)"]
    width = 0.8 / max(len(pairs), 1)
    for ax, key, title in ((axes[0], "run_length", "mean run length (tokens between rejections)"),
                           (axes[1], "speedup_decode", "speedup over AR, decode only (x)")):
        for i, pair in enumerate(pairs):
            x = np.arange(len(labels)) + (i - (len(pairs) - 1) / 2) * width
            ax.bar(x, [numbers[pair].get(lab, {}).get(key, np.nan) for lab in labels], width, label=f"zoo {pair}")
        ax.set_xticks(range(len(labels)), labels, rotation=25, ha="right")
        ax.set_ylabel(title)
        ax.grid(axis="y", alpha=0.3)
    axes[0].set_title("acceptance: which score components matter")
    axes[1].set_title("speed: the parallel schedule's share")
    axes[1].axhline(1.0, color="black", lw=0.8)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"Ablation at ratio {RATIO}, {job.profile.n} zoo test videos (PEARL rows: draft in its own process "
                 "unless marked)")
    fig.tight_layout()
    return fig


def markdown(numbers: dict) -> str:
    lines = ["# Ablation (ratio 0.9, gamma 5, greedy)", "",
             "| pair | variant | MAT [95%] | run length | speedup decode [95%] |", "|---|---|---|---:|---|"]
    for pair, entry in numbers.items():
        for label, e in entry.items():
            lines.append(f"| {pair} | {label} | {e['mat']:.2f} [{e['mat_ci'][0]:.2f}, {e['mat_ci'][1]:.2f}] | "
                         f"{e['run_length']:.1f} | {e['speedup_decode']:.2f}x [{e['speedup_decode_ci'][0]:.2f}, "
                         f"{e['speedup_decode_ci'][1]:.2f}] |")
    return "\n".join(lines)


def build(job: FigureJob) -> Outcome:
    numbers = measure(job, ablation_sweep(job), main_sweep(job))
    return Outcome(figures=[job.save(plot(numbers, job), "ablation")], tables=[job.table("ablation", markdown(numbers))],
                   numbers=numbers)
