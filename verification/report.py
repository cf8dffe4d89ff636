"""The report of a suite run: report.json (every check with its inputs, seeds, numbers, verdict),
summary.md (a person reads it in a minute), certificate.json (what was verified, where, with what)."""

from __future__ import annotations

import hashlib
import json
import platform
import subprocess
import time
from collections import defaultdict
from importlib import metadata
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("torch", "transformers", "jax", "jaxlib", "numpy", "scipy", "decord", "tokenizers", "safetensors")


def source_hash() -> str:
    """sha256 over the package sources (hippo, hippo_ref, hippo_fast, verification), path-sorted."""
    digest = hashlib.sha256()
    for package in ("hippo", "hippo_ref", "hippo_fast", "verification"):
        for path in sorted((REPO / package).rglob("*.py")):
            digest.update(str(path.relative_to(REPO)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


def git_revision() -> dict:
    def git(*args):
        try:
            return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=True).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            return None

    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": git("rev-parse", "HEAD"), "dirty": bool(status) if status is not None else None}


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def model_fingerprints(pairs) -> list[dict]:
    out = []
    for pair in pairs:
        entry = dict(pair)
        for role in ("target", "draft"):
            if pair.get(role) is None:  # --recorded without --draft: the target alone is audited
                continue
            weights = sorted(Path(pair[role]).glob("*.safetensors"))
            entry[f"{role}_sha256"] = {w.name: file_sha256(w) for w in weights}
        out.append(entry)
    return out


def certificate(run) -> dict:
    import torch

    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    devices = ["cpu: " + (platform.processor() or platform.machine())]
    if torch.cuda.is_available():
        devices += [f"cuda:{i}: {torch.cuda.get_device_name(i)}" for i in range(torch.cuda.device_count())]
    return {
        "verdict": "PASS" if run.passed else "FAIL",
        "profile": run.profile.name,
        # Taken when the run started: the code that ran, even if files changed while it ran.
        "revision": run.provenance.get("revision") or git_revision(),
        "source_sha256": run.provenance.get("source_sha256") or source_hash(),
        "python": platform.python_version(),
        "packages": versions,
        "devices": devices,
        "dtypes": _dtypes(run),
        "subject": run.subject.as_json(),
        "videos": {v: file_sha256(Path(v)) for v in _audited_videos(run) if Path(v).is_file()},
        "models": model_fingerprints(run.pairs),
        "notes": run.notes,
        "alpha": run.profile.alpha,
        "seed": run.profile.seed,
        "finished_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "seconds": round(run.timings.get("total", 0.0), 1),
    }


def _dtypes(run) -> list[str]:
    subject = run.subject
    if run.profile.name == "recorded":
        return [f"{subject.dtype} (the target the rows are checked against)"]
    if subject.reduced_precision:
        return [f"{subject.dtype} (every check on your pair; greedy mismatches diagnosed)", "float64 (diagnosis)"]
    return ["float32 (exact checks)", "bfloat16 (reduced-precision diagnosis)"]


def _audited_videos(run) -> list[str]:
    videos = {r.inputs.get("video") for r in run.results} | set(run.subject.video_files())
    return sorted(v for v in videos if isinstance(v, str))


def _scope_lines(run) -> list[str]:
    """What ran on which models, in words (an own-pair or a recorded audit is not the default run)."""
    subject = run.subject
    if run.profile.name == "recorded":
        return ["", f"Rows recorded elsewhere, audited against the target `{subject.target}` ({subject.dtype}, "
                f"{subject.device}); no candidate ran here, so there are no negative controls or calibration.", ""]
    if not subject.own_pair:
        return []
    return ["", f"Your pair: target `{subject.target}`, draft `{subject.draft}`, {subject.dtype} on {subject.device}; "
            f"videos {', '.join(f'`{v}`' for v in subject.video_files())}; prompts "
            f"{', '.join(repr(p) for p in subject.prompts)}. The video checks (greedy_*, mc_video, "
            "seeded_equivalence) ran on it; exact_step, oracle, greedy_table, self_draft_table and mc_table run on "
            "table models, and the negative controls and the calibration on the package's own models (table "
            "models, zoo pairs): they test the implementations, whatever the models.", ""]


def _notes_lines(run) -> list[str]:
    if not run.notes:
        return []
    lines = ["", "## Target fidelity notes (not verdicts)", "",
             "Where the pinned stock target itself departs from its model authors' scheme; the audit proves "
             "equality with the stock target.", ""]
    return lines + [f"- {n.get('pair', '')} / `{str(n.get('video', '')).rsplit('/', 1)[-1]}`: {n.get('note', '')}"
                    for n in run.notes]


def summary_markdown(run, cert: dict, command: str) -> str:
    by_check = defaultdict(list)
    for r in run.results:
        by_check[r.check].append(r)
    lines = [
        f"# hippo verify: {cert['verdict']} ({run.profile.name} profile)",
        "",
        f"`{command}` at commit `{(cert['revision'].get('commit') or 'unknown')[:12]}`"
        f"{' (dirty tree)' if cert['revision'].get('dirty') else ''}, source sha256 `{cert['source_sha256'][:16]}`, "
        f"{cert['seconds']} s, alpha {run.profile.alpha} (Holm over each statistical family).",
        "",
        "| check | pass | fail | error | not available / applicable | numbers |",
        "|---|---|---|---|---|---|",
    ]
    for check, results in by_check.items():
        count = defaultdict(int)
        for r in results:
            count[r.verdict] += 1
        lines.append(f"| {check} | {count['pass']} | {count['fail']} | {count['error']} | "
                     f"{count['not available'] + count['not applicable']} | {_headline(check, results)} |")
    lines[3:3] = _scope_lines(run)
    lines += recorded_sections(run.results)
    if run.mutants:
        lines += _mutant_lines(run.mutants)
    c = run.calibration
    if c:
        lines += ["", "## Calibration", "",
                  f"{c['false_alarms']} false alarms in {c['runs']} reruns of the table Monte Carlo family on the "
                  f"correct reference ({c['samples_per_check']} samples per check): rate {c['false_alarm_rate']:.3f} "
                  f"(95% CI {c['rate_95ci'][0]:.3f} to {c['rate_95ci'][1]:.3f}), declared alpha "
                  f"{c['declared_alpha']}: **{c['verdict']}**."]
    lines += _notes_lines(run)
    failed = [r for r in run.results if r.failed]
    if failed:
        lines += ["", "## Failures", ""] + [f"- `{r.name}`{' (metric finding)' if r.check == 'recorded_metrics' else ''}: "
                                            f"{json.dumps(r.numbers)[:300]}" for r in failed]
    skipped = sorted({(r.name.split("|")[1], r.numbers.get("reason")) for r in run.results
                      if r.verdict in ("not available", "not applicable")})
    if skipped:
        lines += ["", "## Not run", ""] + [f"- {name}: {reason}" for name, reason in skipped]
    lines += ["", "Every check with its inputs, seeds and numbers: `report.json`; what was verified: "
              "`certificate.json`."]
    return "\n".join(lines) + "\n"


def recorded_by_implementation(results) -> dict[str, dict]:
    """Recorded rows' verdicts per implementation (the rows' `implementation` field): greedy rows token-identical
    or diagnosed, sampled rows and pools, the smallest p-value, the largest TV seen and the largest minimal
    detectable TV of its pools (its power: a law further than that from the target's is found with
    probability 0.8). Verdict: fail if any of its checks failed, error if any errored, else pass."""
    out: dict[str, dict] = {}
    for r in results:
        if r.check not in ("recorded_greedy", "recorded_sampled"):
            continue
        name = r.inputs.get("implementation") or "(not named)"
        s = out.setdefault(name, {"verdict": "pass", "greedy_rows": 0, "greedy_identical": 0, "greedy_diagnosed": 0,
                                  "sampled_rows": 0, "sampled_pools": 0, "min_p": None, "max_tv": None,
                                  "min_detectable_tv": None, "failures": []})
        if r.failed or r.verdict == "error":
            s["verdict"] = "fail" if r.failed or s["verdict"] == "fail" else "error"
            s["failures"].append(r.numbers.get("message") or r.numbers.get("error") or r.name)
        if r.check == "recorded_greedy":
            s["greedy_rows"] += 1
            s["greedy_identical"] += r.numbers.get("first_mismatch", -1) is None
            s["greedy_diagnosed"] += bool(r.numbers.get("diagnosis"))
            continue
        s["sampled_rows"] += r.inputs.get("rows", 0)
        s["sampled_pools"] += 1
        if r.p_value is not None:
            s["min_p"] = r.p_value if s["min_p"] is None else min(s["min_p"], r.p_value)
        for key, value in (("max_tv", r.numbers.get("tv")), ("min_detectable_tv", r.numbers.get("min_detectable_tv"))):
            if value is not None:
                s[key] = value if s[key] is None else max(s[key], value)
    return out


def recorded_sections(results) -> list[str]:
    """One line per implementation whose rows were audited (what a recorded file from several engines,
    methods or settings needs: each one's own verdict and power)."""
    table = recorded_by_implementation(results)
    if not table:
        return []
    lines = ["", "## Per implementation", "",
             "| implementation | verdict | greedy rows (identical / diagnosed) | sampled rows (pools) | min p | max TV | "
             "min detectable TV (worst pool, power 0.8) |", "|---|---|---|---|---|---|---|"]
    for name, s in table.items():
        def num(x):
            return "-" if x is None else f"{x:.3g}"

        lines.append(f"| {name} | **{s['verdict'].upper()}** | {s['greedy_rows']} ({s['greedy_identical']} / "
                     f"{s['greedy_diagnosed']}) | {s['sampled_rows']} ({s['sampled_pools']}) | {num(s['min_p'])} | "
                     f"{num(s['max_tv'])} | {num(s['min_detectable_tv'])} |")
    return lines


def _mutant_lines(mutants: list[dict]) -> list[str]:
    """The negative controls: the score (a mutant is caught only by a check that FAILS on it), crashes
    and mutants below the audit's detectability apart, then one row per planted bug with its source."""
    from verification.suite import mutation_score

    score = mutation_score(mutants)
    lines = ["", f"## Negative controls: mutation score {score['caught']}/{score['planted']}", "",
             f"{score['caught']} of {score['planted']} planted bugs caught by a check that failed on them "
             f"({score['modelled_on_public_bugs']} modelled on public bugs, source named); {score['crashed']} "
             f"with a check that crashed (listed, never counted as a catch); {score['below_detectability']} below "
             f"the audit's minimal detectable TV; {score['not_caught']} not caught.", "",
             "| mutant | impl | source | what it breaks | caught by | crashed / not applicable |",
             "|---|---|---|---|---|---|"]
    for m in mutants:
        status = m.get("status", "caught" if m["caught_by"] else "not caught")
        caught = ", ".join(m["caught_by"]) if status == "caught" else f"**{status.upper()}**"
        if m.get("missed_required"):
            caught += f" (required {', '.join(m['missed_required'])} did not fail)"
        measured = m.get("measured") or {}
        if "induced_tv" in measured:
            caught += (f"; induced TV {measured['induced_tv']:.2g} vs minimal detectable TV "
                       f"{measured['min_detectable_tv']:.2g} (Monte Carlo"
                       f"{' cannot' if measured['below_detectability'] else ' can'} see it)")
        aside = [f"crashed in {c['check']}: {c['error'][:100]}" for c in m.get("crashed", [])]
        aside += [f"{n['check']} not applicable: {n['reason']}" for n in m.get("not_applicable", [])]
        lines.append(f"| {m['mutant']} | {m.get('implementation', 'ref')} | {m.get('source') or '-'} | "
                     f"{m['description']} | {caught} | {'; '.join(aside) or '-'} |")
    return lines


def _headline(check: str, results) -> str:
    nums = [r.numbers for r in results if r.verdict in ("pass", "fail")]
    if not nums:
        return ""
    if check == "exact_step":
        return f"max error {max(n['max_abs_error'] for n in nums):.1e}"
    if check == "oracle":
        worst = max(max(n["sd_vs_ar"], n["pearl_vs_ar"]) for n in nums)
        control = min(n["control_sd_vs_ar"] for n in nums if n.get("control_applicable", True))
        return f"max law difference {worst:.1e}; broken control differs by >= {control:.1e}"
    if check in ("mc_table", "mc_video", "recorded_sampled"):
        return (f"min p {min(r.p_value for r in results if r.p_value is not None):.3f}; "
                f"max TV {max(n['tv'] for n in nums):.3f}; min detectable TV {max(n['min_detectable_tv'] for n in nums):.3f}")
    if check == "reduced_precision":
        diag = [n["diagnosis"]["classification"] for n in nums if n.get("diagnosis")]
        return f"{len(nums) - len(diag)} identical, {len(diag)} diagnosed ({', '.join(sorted(set(diag))) or '-'})"
    if check == "recorded_greedy":
        diag = sum(bool(n.get("diagnosis")) for n in nums)
        return f"{sum(n['first_mismatch'] is None for n in nums)}/{len(nums)} token-identical, {diag} diagnosed"
    if check == "recorded_metrics":
        return (f"{sum(not n['findings'] for n in nums)}/{len(nums)} rows' stated MAT / run length / round counts "
                "agree with hippo.stats (a disagreement is a metric finding, not a losslessness failure)")
    if check in ("greedy_video", "greedy_target_vs_generate"):
        return f"{sum(n['first_mismatch'] is None for n in nums)}/{len(nums)} token-identical"
    if check == "seeded_equivalence":
        return (f"{sum(n['decodes'] - n['mismatches'] for n in nums)}/{sum(n['decodes'] for n in nums)} seeded decodes "
                "== the reference's tokens")
    return ""


def _score(mutants: list[dict]) -> dict | None:
    from verification.suite import mutation_score

    return mutation_score(mutants) if mutants else None


def write_report(run, out_dir: Path, command: str) -> dict:
    out_dir.mkdir(parents=True, exist_ok=True)
    cert = certificate(run)
    report = {
        "certificate": cert,
        "profile": run.profile.__dict__,
        "checks": [r.as_json() for r in run.results],
        "mutants": run.mutants,
        "mutation_score": _score(run.mutants),
        "calibration": run.calibration,
        "notes": run.notes,
        "timings_s": {k: round(v, 2) for k, v in run.timings.items()},
    }
    (out_dir / "report.json").write_text(json.dumps(report, indent=1, default=str))
    (out_dir / "certificate.json").write_text(json.dumps(cert, indent=1))
    (out_dir / "summary.md").write_text(summary_markdown(run, cert, command))
    return cert
