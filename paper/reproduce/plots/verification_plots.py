"""The verification figures: how the Monte Carlo check separates planted bugs from the correct
implementation as samples grow, and whether its p-values are calibrated.

`verification_tv`: on one table setting of the audit (verification/checks.py TABLE_MC), decodes sampled
from the correct implementations and from planted sampling-law bugs (verification/mutants.py), their
empirical total variation distance to the exact AR law (verification/oracle_jax.py) at every sample
count of the profile, and the minimal TV the chi-square test detects there (verification/statistics.py).
The largest count is sampled once and the smaller ones are its prefixes (nested samples).

`verification_calibration`: the histogram of the p-values of the calibration reruns in the passing
certificate's report.json (uniform on [0, 1] when the test is calibrated).
"""

from __future__ import annotations

import time
from dataclasses import asdict

import numpy as np
from scipy import stats

from paper.reproduce.plots import style
from paper.reproduce.plots.job import FigureJob, Outcome

# gamma 1 over 4 tokens: rounds end in a rejection or a bonus token inside the tokens compared, so a
# bug of the accept test, of the residual or of the bonus changes the law there (at 2000 decodes:
# TV 0.43, 0.11, 0.08, each caught by mc_table; the correct reference's TV is 0.035, sampling noise).
TV_SETTING = "gamma1"
CORRECT = ("ref-sd", "fast-sd")
MUTANTS = ("bonus_from_q", "accept_q_over_p", "residual_not_normalised")
SEED_BLOCK = 1_000_000  # each implementation draws its own seeds: fast-sd on ref-sd's seeds is ref-sd's tokens
CORRECT_STYLE = {"ref-sd": {"color": "black", "marker": "o", "linewidth": 2.4},
                 "fast-sd": {"color": "#666666", "marker": "s", "linewidth": 1.6}}
MUTANT_COLORS = ("#d62728", "#ff7f0e", "#9467bd")


def table_setting(name: str):
    from verification.checks import TABLE_MC

    return next(s for s in TABLE_MC if s.name == name)


def tv_by_sample_count(outputs: list, exact: dict, counts) -> dict[str, float]:
    """Empirical TV to `exact` of each prefix outputs[:n]."""
    from verification.statistics import goodness_of_fit

    return {str(n): goodness_of_fit(outputs[:n], exact).tv for n in counts}


def min_detectable_by_sample_count(outputs: list, exact: dict, counts, alpha: float) -> dict[str, float]:
    """The check's minimal detectable TV (power 0.8) at each prefix outputs[:n], as mc_table states it."""
    from verification.statistics import goodness_of_fit, min_detectable_tv

    return {str(n): min_detectable_tv(n, goodness_of_fit(outputs[:n], exact).cells, alpha) for n in counts}


def measure_tv(counts, seed: int, log) -> dict:
    """TV to the exact law vs sample count, for the correct implementations and the planted bugs."""
    from verification.candidates import TableCase, builtin_candidates
    from verification.checks import sampled_table_outputs, table_exact_law
    from verification.mutants import catalogue
    from verification.suite import QUICK
    from verification.tables import TablePair

    started = time.perf_counter()
    setting = table_setting(TV_SETTING)
    pair = TablePair.make(setting.name, setting.vocab, setting.model_seed, setting.agreement)
    exact = table_exact_law(setting, pair)
    case = TableCase(pair)
    candidates = builtin_candidates()
    mutants = {m.name: m for m in catalogue()}
    largest = max(counts)
    tv, reference_outputs = {}, None
    for block, name in enumerate(CORRECT + MUTANTS, start=1):
        seed_base = seed + SEED_BLOCK * block
        log(f"figures: verification_tv: {largest} decodes of {name}")
        if name in mutants:
            with mutants[name].active():  # the bug patches hippo_ref: the reference runs it
                outputs = sampled_table_outputs(candidates["ref-sd"], case, setting, largest, seed_base)
        else:
            outputs = sampled_table_outputs(candidates[name], case, setting, largest, seed_base)
        if name == CORRECT[0]:
            reference_outputs = outputs  # the check's cells and power are stated on the reference's samples
        tv[name] = tv_by_sample_count(outputs, exact, counts)
    alpha = QUICK.alpha  # the audit's declared level (every profile's)
    return {"setting": asdict(setting),
            "outcomes": len(exact), "alpha": alpha, "power": 0.8, "tv": tv,
            "min_detectable_tv": min_detectable_by_sample_count(reference_outputs, exact, counts, alpha),
            "seconds": round(time.perf_counter() - started, 1)}


def separated_at(tv: dict, min_detectable: dict) -> dict[str, int | None]:
    """Per mutant: the smallest n where its TV exceeds the minimal detectable TV while no correct
    implementation's does (None: at no n measured)."""
    counts = sorted(min_detectable, key=int)
    out = {}
    for mutant in MUTANTS:
        out[mutant] = next((int(n) for n in counts if tv[mutant][n] > min_detectable[n]
                            and all(tv[c][n] <= min_detectable[n] for c in CORRECT)), None)
    return out


def plot_tv(measured: dict, separated: dict):
    from matplotlib.ticker import FixedLocator, NullLocator, StrMethodFormatter

    counts = sorted(measured["min_detectable_tv"], key=int)
    n = [int(c) for c in counts]
    s = measured["setting"]
    fig, ax = style.figure(7.0, 4.6)
    for name in CORRECT:
        ax.plot(n, [measured["tv"][name][c] for c in counts], label=f"{name} (correct)", zorder=4,
                **CORRECT_STYLE[name])
    for name, colour in zip(MUTANTS, MUTANT_COLORS, strict=True):
        caught = f"separated from n = {separated[name]}" if separated[name] else "not separated"
        ax.plot(n, [measured["tv"][name][c] for c in counts], color=colour, marker="^", linewidth=1.4,
                label=f"bug: {name}\n({caught})")
    ax.plot(n, [measured["min_detectable_tv"][c] for c in counts], color="#1f77b4", linestyle="--", linewidth=1.8,
            label=f"min detectable TV\n(power {measured['power']}, α = {measured['alpha']})")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xticks(n, [str(v) for v in n])
    ax.xaxis.set_minor_locator(NullLocator())
    # labelled ticks at 1-2-5 steps: a log axis over one decade otherwise labels only 0.1
    ax.yaxis.set_major_locator(FixedLocator([0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0]))
    ax.yaxis.set_major_formatter(StrMethodFormatter("{x:g}"))
    ax.yaxis.set_minor_locator(NullLocator())
    ax.set_xlabel("samples (decodes)")
    ax.set_ylabel("total variation distance")
    ax.set_title(f"Monte Carlo check: empirical TV to the exact output law\ntable setting {s['name']} "
                 f"(vocabulary {s['vocab']}, first {s['length']} tokens, γ = {s['gamma']}; "
                 f"{measured['outcomes']} outcomes)", fontsize=10)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8.5, frameon=False, labelspacing=0.9)
    return fig


def calibration_numbers(calibration: dict) -> dict:
    """The calibration's rates, and a KS test of its p-values against uniform (None without them)."""
    p_values = calibration.get("p_values")
    return {"runs": calibration.get("runs"), "tests": len(p_values) if p_values else None,
            "false_alarm_rate": calibration.get("false_alarm_rate"), "declared_alpha": calibration.get("declared_alpha"),
            "ks_uniform_p": float(stats.kstest(p_values, "uniform").pvalue) if p_values else None}


def plot_calibration(calibration: dict, numbers: dict):
    p_values = np.asarray(calibration["p_values"], dtype=float)
    bins = np.linspace(0.0, 1.0, 11)
    expected = len(p_values) / 10
    # 95% range of one bin's count under uniform p-values (Binomial(N, 1/10)), to judge the bars by
    low, high = stats.binom.ppf([0.025, 0.975], len(p_values), 0.1)
    alpha, rate, runs = numbers["declared_alpha"], numbers["false_alarm_rate"], numbers["runs"]
    fig, ax = style.figure(6.4, 4.2)
    ax.axhspan(low, high, color="#999999", alpha=0.25, zorder=0, label="95% range of one bin's count\n(uniform p-values)")
    ax.hist(p_values, bins=bins, color="#1f77b4", edgecolor="white", rwidth=0.9, zorder=2,
            label="chi-square p-values")
    ax.axhline(expected, color="black", linestyle="--", linewidth=1.4, zorder=3,
               label=f"uniform expectation ({expected:g} per bin)")
    ax.axvline(alpha, color="#d62728", linewidth=2.0, zorder=4, label=f"declared α = {alpha}")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.12 * max(high, np.histogram(p_values, bins)[0].max()))
    ax.set_xticks(bins)
    ax.set_xlabel("p-value of one Monte Carlo test on the correct reference")
    ax.set_ylabel("tests (count)")
    ax.set_title(f"Calibration: {numbers['tests']} tests in {runs} reruns of the table family\n"
                 f"false-alarm rate {rate:.3f} ({round(rate * runs)} of {runs} reruns; declared α = {alpha}); "
                 f"KS vs uniform p = {numbers['ks_uniform_p']:.2f}", fontsize=10)
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8.5, frameon=False)
    return fig


def build(job: FigureJob) -> Outcome:
    counts = tuple(sorted(job.profile.mc_sample_counts))
    measured = job.measurement("verification_tv", lambda: measure_tv(counts, job.profile.seed, job.log))
    outcome = Outcome()
    separated = separated_at(measured["tv"], measured["min_detectable_tv"])
    outcome.figures.append(job.save(plot_tv(measured, separated), "verification_tv"))
    outcome.numbers = {"tv": measured["tv"], "min_detectable_tv": measured["min_detectable_tv"],
                       "mutants_separated_at_n": separated, "tv_setting": measured["setting"]["name"]}
    calibration = (job.report or {}).get("calibration") or {}
    outcome.numbers["calibration"] = calibration_numbers(calibration) if calibration else None
    if calibration.get("p_values"):
        figure = plot_calibration(calibration, outcome.numbers["calibration"])
        outcome.figures.append(job.save(figure, "verification_calibration"))
    else:
        outcome.notes.append("no calibration histogram: the verification report has no calibration p-values "
                             "(none found, or made by older code); rerun `hippo verify` to get them")
    return outcome
