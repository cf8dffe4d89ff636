"""MAT and speedup vs pruning ratio, one line per pruning method, with bootstrap intervals (serial SD,
so that the draft's context is the only thing that changes). AR runs in the same sweep: every speedup
and every paired difference divides rows of this one sweep."""

from __future__ import annotations

from paper.reproduce.plots import style
from paper.reproduce.plots.job import FigureJob, Outcome
from paper.reproduce.plots.main_table import method_rows
from paper.reproduce.plots.rows import lossless_gate, mat_difference, select, speedup, summarize


def ratio_sweep(job: FigureJob) -> list[dict]:
    return lossless_gate(job.sweep("ratio", pairs=list(job.profile.pairs), decodings=["ar", "sd"],
                                   prune=["none", *job.profile.methods], ratios=list(job.profile.ratios), impls=["fast"],
                                   n=job.profile.ratio_n or job.profile.n))


# HIPPO's pruning against these, paired by video at every ratio: MAT difference and decode speed ratio
BASELINES = ("specvlm", "random")


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
                if unpruned:  # paired against the same serial SD with the draft reading every visual token
                    e["mat_minus_unpruned"] = list(mat_difference(unpruned, picked, p.bootstrap, p.seed))
                    e["speedup_over_unpruned"], e["speedup_over_unpruned_ci"] = speedup(
                        unpruned, picked, "decode_s", p.bootstrap, p.seed)
                entry[method][str(ratio)] = e
        for other in BASELINES:  # the paper's claims: HIPPO's pruning keeps more than SpecVLM's, than chance
            if "hippo" in entry and other in entry:
                entry[f"hippo_minus_{other}"], entry[f"hippo_over_{other}_speed"] = {}, {}
                for r in p.ratios:
                    a, b = select(rows, pair=pair, prune=other, ratio=float(r)), select(rows, pair=pair, prune="hippo",
                                                                                       ratio=float(r))
                    if a and b:
                        entry[f"hippo_minus_{other}"][str(r)] = list(mat_difference(a, b, p.bootstrap, p.seed))
                        value, interval = speedup(a, b, "decode_s", p.bootstrap, p.seed)
                        entry[f"hippo_over_{other}_speed"][str(r)] = [value, *interval]
        out[pair] = entry
    return out


def _offsets(methods) -> dict[str, float]:
    """A small x shift per method so that points and bars at one ratio do not hide each other."""
    return {m: (i - (len(methods) - 1) / 2) * 0.008 for i, m in enumerate(methods)}


def plot(numbers: dict, job: FigureJob):
    pairs = list(numbers)
    fig, axes = style.subplots(2, len(pairs), 5.6 * len(pairs), 8, squeeze=False)
    shift = _offsets(job.profile.methods)
    for j, pair in enumerate(pairs):
        entry = numbers[pair]
        for method in job.profile.methods:
            points = sorted((float(r), e) for r, e in entry.get(method, {}).items() if "mat_minus_unpruned" in e)
            if not points:
                continue
            x = [r + shift[method] for r, _ in points]
            color = style.METHOD_COLORS.get(method)
            d = [e["mat_minus_unpruned"] for _, e in points]
            axes[0, j].errorbar(x, [v[0] for v in d], yerr=[[v[0] - v[1] for v in d], [v[2] - v[0] for v in d]],
                                marker="o", capsize=3, color=color, label=method)
            s = [e["speedup_over_unpruned"] for _, e in points]
            ci = [e["speedup_over_unpruned_ci"] for _, e in points]
            axes[1, j].errorbar(x, s, yerr=[[v - c[0] for v, c in zip(s, ci, strict=True)],
                                            [c[1] - v for v, c in zip(s, ci, strict=True)]],
                                marker="o", capsize=3, color=color, label=method)
        none = entry.get("none")
        axes[0, j].axhline(0.0, color="black", ls="--", lw=1,
                           label="no pruning" + (f" (MAT {none['mat']:.2f})" if none else ""))
        axes[1, j].axhline(1.0, color="black", ls="--", lw=1, label="no pruning")
        axes[0, j].set_title(f"zoo {pair}: MAT minus no pruning, paired by video (serial SD, gamma 5)")
        axes[1, j].set_title(f"zoo {pair}: decode speed over no pruning, paired by video")
        axes[0, j].set_ylabel("MAT difference (tokens per target forward)")
        axes[1, j].set_ylabel("decode time of no pruning / the method's (x)")
        for i in range(2):
            axes[i, j].set_xticks(list(job.profile.ratios))
            axes[i, j].set_xlabel("pruning ratio (fraction of the draft's visual tokens removed)")
            axes[i, j].grid(alpha=0.3)
            axes[i, j].legend(fontsize=7)
    n = job.profile.ratio_n or job.profile.n
    fig.suptitle(f"{n} zoo test videos per point, AR, no pruning and every method in one sweep;\nbars: 95% paired "
                 "bootstrap over videos (methods shifted a little along x to stay apart; speedups over AR in the table)")
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
    lines += ["", "Paired by video against no pruning (the same sweep's serial SD, every visual token): MAT difference "
              "[95%]; decode time of no pruning / the method's [95%]; speedup over AR, decode only.", "",
              "| pair | method | ratio | MAT - no pruning | decode speed over no pruning | over AR |", "|---|---|---|---|---|---|"]
    for pair, entry in numbers.items():
        for method in job.profile.methods:
            for r in job.profile.ratios:
                e = entry.get(method, {}).get(str(r))
                if e is None or "mat_minus_unpruned" not in e:
                    continue
                d, s = e["mat_minus_unpruned"], e["speedup_over_unpruned_ci"]
                lines.append(f"| {pair} | {method} | {r} | {d[0]:+.2f} [{d[1]:+.2f}, {d[2]:+.2f}] | "
                             f"{e['speedup_over_unpruned']:.2f}x [{s[0]:.2f}, {s[1]:.2f}] | {e['speedup_decode']:.2f}x |")
    return "\n".join(lines)


def build(job: FigureJob) -> Outcome:
    rows = ratio_sweep(job)
    numbers = measure(job, rows)
    return Outcome(figures=[job.save(plot(numbers, job), "ratio")], tables=[job.table("ratio", markdown(numbers, job))],
                   numbers=numbers)
