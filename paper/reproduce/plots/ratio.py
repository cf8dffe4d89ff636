"""MAT and speedup vs pruning ratio, one line per pruning method, with bootstrap intervals (serial SD,
so that the draft's context is the only thing that changes). AR runs in the same sweep: every speedup
and every paired difference divides rows of this one sweep."""

from __future__ import annotations

from paper.reproduce.plots import published, style
from paper.reproduce.plots.job import FigureJob, Outcome
from paper.reproduce.plots.main_table import method_rows
from paper.reproduce.plots.rows import lossless_gate, mat_difference, select, speedup, summarize


def ratio_sweep(job: FigureJob) -> list[dict]:
    return lossless_gate(job.sweep("ratio", pairs=list(job.profile.pairs), decodings=["ar", "sd"],
                                   prune=["none", *job.profile.methods], ratios=list(job.profile.ratios), impls=["fast"],
                                   n=job.profile.ratio_n or job.profile.n))


def measure(job: FigureJob, rows: list[dict]) -> dict:
    p = job.profile
    out: dict = {}
    for pair in p.pairs:
        base = method_rows(rows, pair, "AR")
        unpruned = select(rows, pair=pair, decoding="sd", prune="none")  # AR has prune none too
        entry: dict = {"none": summarize(unpruned, p.bootstrap, p.seed).as_json()} if unpruned else {}
        for method in p.methods:
            entry[method] = {}
            for ratio in p.ratios:
                picked = select(rows, pair=pair, prune=method, ratio=float(ratio))
                if not picked:
                    continue
                e = summarize(picked, p.bootstrap, p.seed).as_json()
                e["speedup_decode"], e["speedup_decode_ci"] = speedup(base, picked, "decode_s", p.bootstrap, p.seed)
                if unpruned:
                    e["mat_minus_unpruned"] = list(mat_difference(unpruned, picked, p.bootstrap, p.seed))
                entry[method][str(ratio)] = e
        if "hippo" in entry and "specvlm" in entry:  # the paper's claim: HIPPO's pruning keeps more than SpecVLM's
            entry["hippo_minus_specvlm"] = {
                str(r): list(mat_difference(select(rows, pair=pair, prune="specvlm", ratio=float(r)),
                                            select(rows, pair=pair, prune="hippo", ratio=float(r)), p.bootstrap, p.seed))
                for r in p.ratios}
        out[pair] = entry
    return out


def plot(numbers: dict, job: FigureJob):
    pairs = list(numbers)
    fig, axes = style.subplots(2, len(pairs), 5.6 * len(pairs), 8, squeeze=False)
    for j, pair in enumerate(pairs):
        entry = numbers[pair]
        for method in job.profile.methods:
            points = sorted((float(r), e) for r, e in entry.get(method, {}).items())
            if not points:
                continue
            x = [r for r, _ in points]
            color = style.METHOD_COLORS.get(method)
            for i, (key, ci) in enumerate((("mat", "mat_ci"), ("speedup_decode", "speedup_decode_ci"))):
                y = [e[key] for _, e in points]
                axes[i, j].plot(x, y, marker="o", color=color, label=method)
                axes[i, j].fill_between(x, [e[ci][0] for _, e in points], [e[ci][1] for _, e in points],
                                        color=color, alpha=0.15)
        if "none" in entry:
            axes[0, j].axhline(entry["none"]["mat"], color="black", ls="--", lw=1, label="no pruning")
        for paper in published.of_quantity("tokens_per_round"):  # the MAT axis's own quantity, nothing else
            axes[0, j].axhline(paper.value, color=style.METHOD_COLORS.get(paper.method.lower(), "gray"), ls=":",
                               lw=1, label=f"paper: {paper.method}, {paper.setting} (its gamma and models unpublished)")
        axes[0, j].set_title(f"zoo {pair}: MAT vs pruning ratio (serial SD, gamma 5)")
        axes[1, j].set_title(f"zoo {pair}: decode speedup over AR vs pruning ratio")
        axes[0, j].set_ylabel("MAT (tokens per target forward)")
        axes[1, j].set_ylabel("speedup over AR, decode only (x)")
        for i in range(2):
            axes[i, j].set_xlabel("pruning ratio (fraction of the draft's visual tokens removed)")
            axes[i, j].grid(alpha=0.3)
        axes[0, j].legend(fontsize=7)
    n = job.profile.ratio_n or job.profile.n
    fig.suptitle(f"{n} zoo test videos per point, AR and every method in one sweep; bands: 95% bootstrap over videos "
                 "(published values drawn only where they measure tokens per serial round)")
    fig.tight_layout()
    return fig


def markdown(numbers: dict, job: FigureJob) -> str:
    lines = [f"# MAT vs pruning ratio ({job.profile.ratio_n or job.profile.n} zoo test videos, serial SD, gamma 5, "
             "greedy; [95% bootstrap over videos])", "",
             "| pair | method | " + " | ".join(f"ratio {r}" for r in job.profile.ratios) + " |",
             "|---|---|" + "---|" * len(job.profile.ratios)]
    for pair, entry in numbers.items():
        if "none" in entry:
            lines.append(f"| {pair} | none (ratio 0) | {entry['none']['mat']:.2f} |" + " |" * (len(job.profile.ratios) - 1))
        for method in job.profile.methods:
            cells = []
            for r in job.profile.ratios:
                e = entry.get(method, {}).get(str(r))
                cells.append("-" if e is None else f"{e['mat']:.2f} [{e['mat_ci'][0]:.2f}, {e['mat_ci'][1]:.2f}]")
            lines.append(f"| {pair} | {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def build(job: FigureJob) -> Outcome:
    rows = ratio_sweep(job)
    numbers = measure(job, rows)
    return Outcome(figures=[job.save(plot(numbers, job), "ratio")], tables=[job.table("ratio", markdown(numbers, job))],
                   numbers=numbers)
