"""`hippo figures` (and `nox -s figures`): every figure into paper/figures/*.png, every table into
paper/tables/*.md and paper/REPRODUCTION.md, from sweeps of the current code, and only for code that
has passed the audit.

The gate: a `hippo verify` certificate (default reports/verify-quick/certificate.json, what `nox -s
verify` writes) whose verdict is PASS and whose source hash is the current code's
(verification.report.source_hash). Without one nothing runs and the command exits 3 saying how to get
one. Then each figure module (paper/reproduce/plots/) runs its sweeps (resumable, into --results), draws, and
returns the numbers the claims are judged on; a module that fails does not stop the others (its
sweeps' finished rows stay for the rerun), and the command exits 1 naming it.
"""

from __future__ import annotations

import importlib
import json
import sys
import time
import traceback
from pathlib import Path

from hippo.errors import HippoError

COMMAND = "figures"
REPO = Path(__file__).resolve().parents[2]
DEFAULT_CERTIFICATE = Path("reports/verify-quick/certificate.json")
# One module per figure or table, in the order they run (main first: others reuse its sweep).
MODULES = ("main_table", "ratio", "gamma", "ablation", "gantt", "latency", "position_bias", "overlays",
           "verification_plots", "systems")
EXIT_NO_CERTIFICATE = 3


class CertificateError(HippoError):
    """No passing audit certificate for the current code."""


def require_certificate(path: Path) -> tuple[dict, dict | None]:
    """The certificate at `path` (and the report.json beside it, or None) if its verdict is PASS and
    its source hash is the current code's; CertificateError saying what is wrong and what to run."""
    from verification.report import source_hash

    how = ("run `nox -s verify` (or `hippo verify --quick`) on this code first: it writes "
           f"{DEFAULT_CERTIFICATE}; or pass --certificate FILE of a passing run")
    if not path.is_file():
        raise CertificateError(f"no verification certificate at {path}: the figures are made only for code that "
                               f"has passed the audit; {how}")
    try:
        certificate = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise CertificateError(f"{path} is not a readable certificate ({err}); {how}") from None
    if certificate.get("verdict") != "PASS":
        raise CertificateError(f"{path}: verdict {certificate.get('verdict')!r}, not PASS: the audit failed on "
                               f"that code (see {path.parent / 'summary.md'}); fix it, then {how}")
    current = source_hash()
    if certificate.get("source_sha256") != current:
        raise CertificateError(f"{path} certifies other code (source sha256 {str(certificate.get('source_sha256'))[:12]}"
                               f"..., this code {current[:12]}...): the code changed since the audit; {how}")
    report_path = path.parent / "report.json"
    report = json.loads(report_path.read_text()) if report_path.is_file() else None
    return certificate, report


def add_subcommand(sub) -> None:
    from paper.reproduce.plots.job import PROFILES

    p = sub.add_parser(COMMAND, help="regenerate the paper's figures, tables and paper/REPRODUCTION.md "
                                     "(needs a passing `hippo verify` certificate of this code)",
                       description=__doc__.split("\n\n")[0])
    p.add_argument("--certificate", type=Path, default=DEFAULT_CERTIFICATE,
                   help=f"the audit's certificate.json (default {DEFAULT_CERTIFICATE})")
    p.add_argument("--profile", default="default", choices=sorted(PROFILES),
                   help="default: the embedded default (zoo pairs, within 30 min on 2 CPU cores); smoke: the tests'")
    p.add_argument("--results", type=Path, default=None, help="sweep rows and measurements (default paper/results)")
    p.add_argument("--figures", type=Path, default=None, help="PNG folder (default paper/figures)")
    p.add_argument("--tables", type=Path, default=None, help="Markdown tables folder (default paper/tables)")
    p.add_argument("--reproduction", type=Path, default=None, help="default paper/REPRODUCTION.md")
    p.add_argument("--only", default=None, help=f"comma-separated modules (default all: {', '.join(MODULES)})")
    p.add_argument("--no-progress", action="store_true")


def run(args) -> int:
    from paper.reproduce.plots.job import PROFILES, FigureJob
    from paper.reproduce.reproduction import write_reproduction

    try:
        certificate, report = require_certificate(args.certificate)
    except CertificateError as err:
        print(f"hippo figures: {err}", file=sys.stderr)
        return EXIT_NO_CERTIFICATE
    try:
        import matplotlib  # noqa: F401
    except ModuleNotFoundError:
        raise HippoError("hippo figures draws with matplotlib, which is not installed: "
                         "pip install 'hippo-repro[figures]' (or -e '.[test]' in a checkout)") from None
    only = MODULES if args.only is None else tuple(m.strip() for m in args.only.split(",") if m.strip())
    unknown = [m for m in only if m not in MODULES]
    if unknown:
        raise HippoError(f"--only: unknown figure module(s) {', '.join(unknown)}; known: {', '.join(MODULES)}")
    paper = REPO / "paper"
    job = FigureJob(results=args.results or paper / "results", figures=args.figures or paper / "figures",
                    tables=args.tables or paper / "tables", profile=PROFILES[args.profile], report=report,
                    certificate=certificate, log=lambda m: print(m, file=sys.stderr, flush=True),
                    progress=not args.no_progress)
    outcomes, failed, seconds = {}, {}, {}
    for name in only:
        start = time.perf_counter()
        try:
            outcomes[name] = importlib.import_module(f"paper.reproduce.plots.{name}").build(job)
        except Exception as err:  # one figure's failure must not cost the others theirs
            traceback.print_exc()
            failed[name] = f"{type(err).__name__}: {err}"
        seconds[name] = time.perf_counter() - start
        if name in outcomes:
            job.store_outcome(name, outcomes[name], seconds[name])
        job.log(f"figures: {name} {'FAILED' if name in failed else 'done'} in {seconds[name]:.0f} s")
    for name in MODULES:  # --only: the other figures' latest outcomes of this code and profile fill the report
        if name not in outcomes and name not in failed:
            stored = job.stored_outcome(name)
            if stored is not None:
                outcomes[name], seconds[name] = stored
    outcomes = {name: outcomes[name] for name in MODULES if name in outcomes}
    path = write_reproduction(args.reproduction or paper / "REPRODUCTION.md", job, outcomes, failed, seconds)
    made = sum(len(outcomes[name].figures) for name in only if name in outcomes)
    print(f"{made} figure(s) in {job.figures}, tables in {job.tables}, {path}"
          + (f"; FAILED: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0
