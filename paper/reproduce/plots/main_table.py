"""The main table: MAT, mean run length and speedup over AR per pair x method (AR, SD, SD + SpecVLM
pruning, PEARL, HIPPO), decode-only and end to end, and a bar chart of the speedups with the paper's."""

from __future__ import annotations

from paper.reproduce.plots import published, style
from paper.reproduce.plots.job import FigureJob, Outcome
from paper.reproduce.plots.rows import METHODS, lossless_gate, select, speedup, summarize

RATIO = 0.9  # the paper's headline pruning ratio
# HIPPO over another method of the sweep, paired by video: the paper's comparison (parallel over serial
# SpecVLM) and what pruning buys PEARL (the same schedule, the draft reading every visual token)
VERSUS = {"HIPPO vs SD + SpecVLM": "SD + SpecVLM", "HIPPO vs PEARL": "PEARL"}


def main_sweep(job: FigureJob) -> list[dict]:
    """AR, SD and PEARL with no / SpecVLM / HIPPO pruning at 0.9, serial (`fast`) and with the draft in
    its own process (`fast-processes`, PEARL only): the main table."""
    return lossless_gate(job.sweep("main", pairs=list(job.profile.pairs), decodings=["ar", "sd", "pearl"],
                                   prune=["none", "specvlm", "hippo"], ratios=[RATIO], impls=["fast", "fast-processes"]))


def method_rows(rows: list[dict], pair: str, label: str) -> list[dict]:
    decoding, prune, impl = METHODS[label]
    return select(rows, pair=pair, decoding=decoding, prune=prune, impl=impl)


def measure(job: FigureJob, rows: list[dict]) -> dict:
    """{pair: {method: {mat, mat_ci, run_length, speedup_decode, speedup_decode_ci, speedup_e2e, ...}}}"""
    p = job.profile
    out: dict = {}
    for pair in p.pairs:
        base = method_rows(rows, pair, "AR")
        out[pair] = {}
        for label in METHODS:
            picked = method_rows(rows, pair, label)
            if not picked:
                continue
            entry = summarize(picked, p.bootstrap, p.seed).as_json()
            for phase, name in (("decode_s", "decode"), ("total_s", "e2e")):
                value, interval = speedup(base, picked, phase, p.bootstrap, p.seed)
                entry[f"speedup_{name}"], entry[f"speedup_{name}_ci"] = value, list(interval)
            entry["tokens_per_s_e2e"] = entry["tokens"] / entry["total_s"]
            out[pair][label] = entry
        hippo = method_rows(rows, pair, "HIPPO")
        for label, other in VERSUS.items():  # paired video for video: the paper's comparison, and what pruning buys
            base = method_rows(rows, pair, other)
            if hippo and base:
                out[pair][label] = {"n": len(hippo), **{f"speedup_{name}": speedup(base, hippo, phase, p.bootstrap, p.seed)
                                                        for phase, name in (("decode_s", "decode"), ("total_s", "e2e"))}}
    return out


def markdown(numbers: dict, job: FigureJob) -> str:
    p = job.profile
    lines = [f"# Main table: zoo pairs, {p.n} zoo test videos (detailed captions), {p.frames} frames, "
             f"up to {p.max_new_tokens} new tokens, greedy, gamma 5, pruning ratio {RATIO}",
             "",
             "Speedup = AR's wall time / the method's, pooled over the videos (hippo.stats.pooled_speedup); "
             "[95% paired bootstrap]. PEARL and HIPPO: the draft in its own process (fast-processes); "
             "the others: hippo_fast in one process (eager). Every row's tokens equal AR's (checked).",
             "",
             "| pair | method | MAT [95%] | run length | speedup decode [95%] | speedup e2e [95%] | tok/s e2e |",
             "|---|---|---|---:|---|---|---:|"]
    for pair, methods in numbers.items():
        for label, e in methods.items():
            if label not in METHODS:
                continue
            lines.append(f"| {pair} | {label} | {e['mat']:.2f} [{e['mat_ci'][0]:.2f}, {e['mat_ci'][1]:.2f}] | "
                         f"{'-' if label == 'AR' else format(e['run_length'], '.1f')} | {e['speedup_decode']:.2f}x [{e['speedup_decode_ci'][0]:.2f}, "
                         f"{e['speedup_decode_ci'][1]:.2f}] | {e['speedup_e2e']:.2f}x [{e['speedup_e2e_ci'][0]:.2f}, "
                         f"{e['speedup_e2e_ci'][1]:.2f}] | {e['tokens_per_s_e2e']:.0f} |")
    for pair, methods in numbers.items():
        for label, other in VERSUS.items():
            versus = methods.get(label)
            if versus:
                (d, dci), (e, eci) = versus["speedup_decode"], versus["speedup_e2e"]
                lines.append(f"\n{pair}: HIPPO over {other}, paired by video: {d:.2f}x decode [{dci[0]:.2f}, "
                             f"{dci[1]:.2f}], {e:.2f}x end to end [{eci[0]:.2f}, {eci[1]:.2f}].")
    return "\n".join(lines + ["", *published_lines()])


def published_lines() -> list[str]:
    """The paper's numbers beside the table, each under the quantity it measures (paper/published.json),
    and the one ratio of the paper's that the table measures too."""
    lines = ["The paper (its video-LLMs on GPUs; pairs, frames and hardware unpublished), by quantity:"]
    for quantity, column in (("speedup_over_ar", "speedup columns"), ("run_length", "run length column"),
                             ("tokens_per_round", "MAT column of the serial methods")):
        values = "; ".join(f"{p.method} {p.setting} {p.value:g}" for p in published.of_quantity(quantity))
        lines.append(f"- {quantity} ({published.definition(quantity)}; compare with the {column}): {values}")
    _, formed = published.ratio("HIPPO", "SpecVLM", "speedup_over_ar", "VideoMME")
    lines.append(f"- HIPPO over SpecVLM, the paper's own ratio: {formed}; ours: 'HIPPO over serial SD + SpecVLM' above")
    return lines


def plot(numbers: dict, job: FigureJob):
    import numpy as np

    pairs = list(numbers)
    fig, axes = style.subplots(1, 3, 15, 4.2, gridspec_kw={"width_ratios": [2, 2, 1]})
    width = 0.8 / max(len(pairs), 1)
    for ax, phase, title in zip(axes[:2], ("decode", "e2e"), ("decode only", "end to end"), strict=True):
        labels = list(METHODS)
        for i, pair in enumerate(pairs):
            x = np.arange(len(labels)) + (i - (len(pairs) - 1) / 2) * width
            values = [numbers[pair].get(m, {}).get(f"speedup_{phase}", np.nan) for m in labels]
            low = [v - numbers[pair].get(m, {}).get(f"speedup_{phase}_ci", [v, v])[0] for m, v in zip(labels, values, strict=True)]
            high = [numbers[pair].get(m, {}).get(f"speedup_{phase}_ci", [v, v])[1] - v for m, v in zip(labels, values, strict=True)]
            ax.bar(x, values, width, yerr=[low, high], capsize=3, label=f"zoo {pair}")
        ax.axhline(1.0, color="black", lw=0.8)
        ax.set_xticks(range(len(labels)), labels, rotation=15)
        ax.set_title(f"speedup over AR, {title}")
        ax.set_xlabel("method")
    axes[0].set_ylabel("speedup over autoregressive (x)")
    axes[1].legend(loc="upper left", fontsize=8)
    # the paper's comparison as a ratio of two speedups, beside its own ratio (same quantity, same form)
    ax = axes[2]
    for i, pair in enumerate(pairs):
        versus = numbers[pair].get("HIPPO vs SD + SpecVLM", {})
        for j, phase in enumerate(("decode", "e2e")):
            if f"speedup_{phase}" not in versus:
                continue
            value, (lo, hi) = versus[f"speedup_{phase}"]
            x = j + (i - (len(pairs) - 1) / 2) * width
            ax.bar(x, value, width, yerr=[[value - lo], [hi - value]], capsize=3, color=f"C{i}")
    paper_ratio, formed = published.ratio("HIPPO", "SpecVLM", "speedup_over_ar", "VideoMME")
    ax.axhline(paper_ratio, color="gold", ls="--", label=f"the paper: {formed.split(' (')[0]}")
    ax.axhline(1.0, color="black", lw=0.8)
    ax.set_xticks([0, 1], ["decode", "end to end"])
    ax.set_title("HIPPO / serial SD + SpecVLM")
    ax.legend(loc="lower center", fontsize=7)
    fig.suptitle(f"Zoo pairs on a CPU, {job.profile.n} test videos, ratio {RATIO} (bars: 95% paired bootstrap; one "
                 "sweep). PEARL and HIPPO: the draft in its own process (two cores); the others one process")
    fig.tight_layout()
    return fig


def build(job: FigureJob) -> Outcome:
    rows = main_sweep(job)
    numbers = measure(job, rows)
    return Outcome(figures=[job.save(plot(numbers, job), "main_speedup")],
                   tables=[job.table("main", markdown(numbers, job))], numbers=numbers)
