"""Speedup vs gamma (the draft length) for HIPPO with the draft in its own process, on the pair in the
paper's regime (a draft step about a fifth of the target's), and where `--gamma auto` (PEARL's
round(target step / draft step), measured in the placement used) lands. AR, serial SD + SpecVLM and
every gamma run in one sweep, interleaved, so every speedup divides rows of that sweep."""

from __future__ import annotations

from paper.reproduce.plots import style
from paper.reproduce.plots.job import FigureJob, Outcome
from paper.reproduce.plots.rows import lossless_gate, select, speedup, summarize

RATIO = 0.9


def gamma_sweep(job: FigureJob) -> list[dict]:
    p = job.profile
    return lossless_gate(job.sweep(
        "gamma", pairs=[p.overlap_pair], decodings=["pearl"], prune=["hippo"], ratios=[RATIO],
        gammas=[*p.gammas, "auto"], impls=["fast-processes"],
        also=({"pairs": [p.overlap_pair], "decodings": ["ar", "sd"], "prune": ["specvlm"], "ratios": [RATIO],
               "impls": ["fast"]},)))


def measure(job: FigureJob, rows: list[dict]) -> dict:
    p = job.profile
    pair = p.overlap_pair
    ar = select(rows, pair=pair, decoding="ar")
    out: dict = {"pair": pair, "gammas": {}}
    for gamma in [*p.gammas, "auto"]:
        picked = select(rows, pair=pair, decoding="pearl", gamma=gamma)
        if not picked:
            continue
        e = summarize(picked, p.bootstrap, p.seed).as_json()
        e["speedup_decode"], e["speedup_decode_ci"] = speedup(ar, picked, "decode_s", p.bootstrap, p.seed)
        e["speedup_e2e"], e["speedup_e2e_ci"] = speedup(ar, picked, "total_s", p.bootstrap, p.seed)
        if gamma == "auto":  # the rows record the gamma that was measured and used
            used = sorted({r["gamma"] for r in picked})
            e["measured_gamma"] = used
        out["gammas"][str(gamma)] = e
    sd = select(rows, pair=pair, decoding="sd", prune="specvlm")
    if sd:
        out["sd_specvlm_speedup_decode"] = speedup(ar, sd, "decode_s", p.bootstrap, p.seed)[0]
        out["sd_specvlm_speedup_e2e"] = speedup(ar, sd, "total_s", p.bootstrap, p.seed)[0]
    fixed = {g: e for g, e in out["gammas"].items() if g != "auto"}
    if fixed:
        out["best_fixed_gamma"] = max(fixed, key=lambda g: fixed[g]["speedup_decode"])
    return out


def plot(numbers: dict, job: FigureJob):
    fig, axes = style.subplots(1, 2, 11, 4.2)
    fixed = sorted((int(g), e) for g, e in numbers["gammas"].items() if g != "auto")
    auto = numbers["gammas"].get("auto")
    for ax, key, label in ((axes[0], "speedup_decode", "decode only"), (axes[1], "speedup_e2e", "end to end")):
        x = [g for g, _ in fixed]
        ax.errorbar(x, [e[key] for _, e in fixed], yerr=[[e[key] - e[key + "_ci"][0] for _, e in fixed],
                                                         [e[key + "_ci"][1] - e[key] for _, e in fixed]],
                    marker="o", capsize=3, color=style.DECODING_COLORS["hippo"], label="HIPPO, fixed gamma")
        if auto is not None:
            g = auto["measured_gamma"]
            ax.scatter([sum(g) / len(g)], [auto[key]], marker="D", s=70, color="red", zorder=5,
                       label=f"gamma auto (measured {', '.join(map(str, g))})")
        sd_key = "sd_specvlm_" + key
        if sd_key in numbers:
            ax.axhline(numbers[sd_key], color=style.DECODING_COLORS["sd-specvlm"], ls="--",
                       label="serial SD + SpecVLM, gamma 5")
        ax.axhline(1.0, color="black", lw=0.8)
        ax.set_xlabel("gamma (draft tokens per round)")
        ax.set_ylabel(f"speedup over AR, {label} (x)")
        ax.set_title(f"zoo {numbers['pair']}: HIPPO (ratio {RATIO}), draft in its own process")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"Speedup vs gamma, {job.profile.n} zoo test videos; bars: 95% bootstrap")
    fig.tight_layout()
    return fig


def build(job: FigureJob) -> Outcome:
    numbers = measure(job, gamma_sweep(job))
    return Outcome(figures=[job.save(plot(numbers, job), "gamma")], numbers=numbers)
