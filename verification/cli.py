"""`hippo verify [--quick|--full] [--candidate NAME ...] [--out DIR]`: the losslessness audit."""

from __future__ import annotations

import sys
from pathlib import Path

COMMAND = "verify"


def add_subcommand(sub) -> None:
    parser = sub.add_parser(COMMAND, help="audit losslessness: exact laws, greedy equality, Monte Carlo, mutants")
    profile = parser.add_mutually_exclusive_group()
    profile.add_argument("--quick", dest="profile", action="store_const", const="quick",
                         help="the CI profile (default; about 5 minutes on 2 CPU cores)")
    profile.add_argument("--full", dest="profile", action="store_const", const="full", help="the audit profile")
    parser.set_defaults(profile="quick")
    parser.add_argument("--candidate", action="append", default=None,
                        help="ref-sd, ref-pearl, fast-sd, fast-pearl, hf-assisted, or module:function[@sd|@pearl] "
                             "(repeatable; default: all built-ins)")
    parser.add_argument("--out", default=None, help="report folder (default reports/verify-<profile>)")
    parser.add_argument("--cache", default=".cache/hippo-verify", help="where tiny model pairs are written")


def run(args) -> int:
    from verification.candidates import builtin_candidates, load_candidate
    from verification.report import write_report
    from verification.suite import PROFILES, run_suite

    candidates = ([load_candidate(c) for c in args.candidate] if args.candidate
                  else list(builtin_candidates().values()))
    out = Path(args.out or f"reports/verify-{args.profile}")
    command = "hippo verify --" + args.profile + "".join(f" --candidate {c}" for c in args.candidate or [])
    result = run_suite(PROFILES[args.profile], candidates, out, Path(args.cache),
                       log=lambda m: print(m, file=sys.stderr, flush=True))
    cert = write_report(result, out, command)
    print(f"verdict {cert['verdict']}: report in {out}/summary.md, {out}/report.json, {out}/certificate.json")
    return 0 if result.passed else 1
