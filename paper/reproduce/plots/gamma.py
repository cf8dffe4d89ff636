"""Speedup vs gamma (the draft length) for HIPPO with the draft in its own process, on the pair in the
paper's regime (a draft step about a fifth of the target's), and where `--gamma auto` (PEARL's
round(target step / draft step), measured in the placement used) lands, with the spread of the values it
picked over the videos; serial SD + SpecVLM over the same gammas beside it. AR and every gamma of both run
in one sweep, interleaved, so every speedup divides rows of that sweep."""

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
               "gammas": list(p.gammas), "impls": ["fast"]},)))  # serial SD's own gamma sweep, AR once


def picked_gammas(rows: list[dict]) -> dict[str, int]:
    """How often `--gamma auto` picked each draft length over the rows (each row records the one it used)."""
    counts: dict[str, int] = {}
    for r in rows:
        counts[str(r["gamma"])] = counts.get(str(r["gamma"]), 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: int(kv[0])))


def _speedups(ar: list[dict], picked: list[dict], p) -> dict:
    e = summarize(picked, p.bootstrap, p.seed).as_json()
    e["speedup_decode"], e["speedup_decode_ci"] = speedup(ar, picked, "decode_s", p.bootstrap, p.seed)
    e["speedup_e2e"], e["speedup_e2e_ci"] = speedup(ar, picked, "total_s", p.bootstrap, p.seed)
    return e


def measure(job: FigureJob, rows: list[dict]) -> dict:
    p = job.profile
    pair = p.overlap_pair
    ar = select(rows, pair=pair, decoding="ar")
    out: dict = {"pair": pair, "gammas": {}, "sd_specvlm": {}}
    for gamma in [*p.gammas, "auto"]:
        picked = select(rows, pair=pair, decoding="pearl", gamma=gamma)
        if not picked:
            continue
        e = _speedups(ar, picked, p)
        if gamma == "auto":  # the rows record the gamma that was measured and used, per video
            e["picked_gammas"] = picked_gammas(picked)
            e["measured_gamma"] = [int(g) for g in e["picked_gammas"]]
        out["gammas"][str(gamma)] = e
        sd = select(rows, pair=pair, decoding="sd", prune="specvlm", gamma=gamma)
        if sd:
            out["sd_specvlm"][str(gamma)] = _speedups(ar, sd, p)
    fixed = {g: e for g, e in out["gammas"].items() if g != "auto"}
    if fixed:
        out["best_fixed_gamma"] = max(fixed, key=lambda g: fixed[g]["speedup_decode"])
    return out


def _errorbar(ax, points, key, **style_args):
    x = [g for g, _ in points]
    ax.errorbar(x, [e[key] for _, e in points], yerr=[[e[key] - e[key + "_ci"][0] for _, e in points],
                                                      [e[key + "_ci"][1] - e[key] for _, e in points]],
                marker="o", capsize=3, **style_args)


def plot(numbers: dict, job: FigureJob):
    fig, axes = style.subplots(1, 2, 11, 4.2)
    fixed = sorted((int(g), e) for g, e in numbers["gammas"].items() if g != "auto")
    serial = sorted((int(g), e) for g, e in numbers.get("sd_specvlm", {}).items())
    auto = numbers["gammas"].get("auto")
    for ax, key, label in ((axes[0], "speedup_decode", "decode only"), (axes[1], "speedup_e2e", "end to end")):
        _errorbar(ax, fixed, key, color=style.DECODING_COLORS["hippo"], label="HIPPO (PEARL, draft in its own process)")
        if serial:
            _errorbar(ax, serial, key, color=style.DECODING_COLORS["sd-specvlm"], ls="--",
                      label="serial SD + SpecVLM (one process)")
        if auto is not None:
            counts = auto["picked_gammas"]
            used = [int(g) for g in counts]
            mean = sum(int(g) * c for g, c in counts.items()) / sum(counts.values())
            ax.errorbar([mean], [auto[key]], xerr=[[mean - min(used)], [max(used) - mean]],
                        yerr=[[auto[key] - auto[key + "_ci"][0]], [auto[key + "_ci"][1] - auto[key]]], fmt="D",
                        ms=8, capsize=4, color="red", zorder=5,
                        label="gamma auto (picked " + ", ".join(f"{g} on {c}" for g, c in counts.items())
                              + " videos; x bar: its range)")
        ax.axhline(1.0, color="black", lw=0.8)
        ax.set_xlabel("gamma (draft tokens per round)")
        ax.set_ylabel(f"speedup over AR, {label} (x)")
        ax.set_title(f"zoo {numbers['pair']}, ratio {RATIO}: speedup over AR, {label}")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle(f"Speedup vs gamma, {job.profile.n} zoo test videos, AR and every gamma in one sweep; "
                 "bars: 95% paired bootstrap")
    fig.tight_layout()
    return fig


def build(job: FigureJob) -> Outcome:
    numbers = measure(job, gamma_sweep(job))
    return Outcome(figures=[job.save(plot(numbers, job), "gamma")], numbers=numbers)
