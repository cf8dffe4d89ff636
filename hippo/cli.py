"""`hippo`: the command line.

    hippo generate [--target DIR|zoo:NAME] [--draft DIR|zoo:NAME] --video FILE --prompt TEXT [--decoding ar|sd|pearl] ...
                                       (default: the shipped zoo pair `qwen`)
    hippo generate ... --requests FILE.jsonl   (one request per line, one recorded-output row per line)
    hippo tiny OUT_DIR [--family qwen2_5_vl|qwen2_vl|llava_onevision|llava_next_video]   (random tiny pair, offline)
    hippo inspect position-bias|kept|mat ...   (pruning diagnostics, PNG + JSON; hippo_ref/pruning/diagnostics.py)

Errors the user can fix (bad paths, videos, parameters, mismatched pairs) print one line saying what
was wrong and what to do, and exit with status 2; nothing is printed as a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import sys

from hippo.errors import ConfigError, HippoError
from hippo.tiny import FAMILIES


def _gamma(text: str) -> int | str:
    if text == "auto":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--gamma takes a positive integer or 'auto', got {text!r}") from None


def add_prune_param_options(parser: argparse.ArgumentParser) -> None:
    """The pruning methods' parameters (the paper's OPEN choices), shared by `generate` and `inspect`."""
    group = parser.add_argument_group("pruning parameters (defaults: hippo_ref.pruning.methods.PruneParams)")
    group.add_argument("--weights", default="1,1,1", metavar="W_G,W_T,W_S",
                       help="hippo: weights of s_attn, s_temp, s_spat (>= 0, not all 0; divided by their sum)")
    group.add_argument("--budget", default=None, metavar="per-frame|global",
                       help="kept tokens per frame, or anywhere in the grid (same count); default: the "
                            "method's own (per-frame: hippo, random; global: attn, specvlm)")
    group.add_argument("--prune-seed", type=int, default=0, help="random: seed of its torch.Generator")
    group.add_argument("--specvlm-mass", type=float, default=0.4, help="specvlm: attention mass of stage I")
    group.add_argument("--attn-layers", default="all", metavar="all|L,L,...",
                       help="s_attn: target layers averaged (negative counts from the end; write --attn-layers=-1,0)")
    group.add_argument("--text-tokens", default="all", metavar="all|K",
                       help="s_attn: queries = every text token after the video, or the last K")
    group.add_argument("--first-frame-temp", type=float, default=1.0, help="s_temp of the first frame")
    group.add_argument("--spatial-window", type=int, default=3, help="s_spat: odd side of the square window")


def _numbers(flag: str, text: str, kind, example: str) -> tuple:
    try:
        return tuple(kind(x) for x in text.split(","))
    except ValueError:
        raise ConfigError(f"{flag} takes comma-separated numbers like {example}, got {text!r}") from None


def prune_params_from_args(args):
    """PruneParams from the flags of add_prune_param_options (validated there: ConfigError on bad values)."""
    from hippo.request import PruneParams

    text_tokens = None if args.text_tokens == "all" else _numbers("--text-tokens", args.text_tokens, int, "8")
    if text_tokens is not None and len(text_tokens) != 1:
        raise ConfigError(f"--text-tokens takes 'all' or one number, got {args.text_tokens!r}")
    return PruneParams(
        weights=_numbers("--weights", args.weights, float, "1,1,1"),
        budget=args.budget,
        seed=args.prune_seed,
        specvlm_mass=args.specvlm_mass,
        attn_layers=None if args.attn_layers == "all" else _numbers("--attn-layers", args.attn_layers, int, "0,-1"),
        text_tokens=None if text_tokens is None else text_tokens[0],
        first_frame_temp=args.first_frame_temp,
        spatial_window=args.spatial_window,
    )


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The command line's parser. `command`: the subcommand about to run, whose module alone is imported
    (None: every subcommand's, for the tests and the docs)."""
    parser = argparse.ArgumentParser(prog="hippo", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    gen = sub.add_parser("generate", help="decode one video question with AR, SD, PEARL or HIPPO")
    gen.add_argument("--target", default=None,
                     help="target checkpoint folder (Hub layout) or zoo:NAME; default: the zoo's default pair")
    gen.add_argument("--draft", default=None,
                     help="draft checkpoint folder or zoo:NAME; default: the zoo pair's draft when --target "
                          "is a zoo pair or not given; required for --decoding sd|pearl")
    gen.add_argument("--video", default=None, help="video file (anything decord reads)")
    gen.add_argument("--prompt", default=None, help="the question / instruction about the video")
    gen.add_argument("--requests", default=None, metavar="FILE.jsonl",
                     help="many requests in one call: one JSON object per line (a recorded-output row's request "
                          "fields, each optional: these flags give the rest); prints one recorded-output row per "
                          "line, with its line number; the models load and the draft's worker starts once")
    gen.add_argument("--decoding", default="pearl", choices=["ar", "sd", "pearl"])
    gen.add_argument("--prune", default="none",
                     help="draft pruning method: none, random, uniform, attn (FastV-like), specvlm, hippo")
    gen.add_argument("--ratio", type=float, default=0.0, help="fraction of visual tokens removed from the draft")
    gen.add_argument("--positions", default="keep", choices=["keep", "compact"],
                     help="position ids of the kept tokens in the draft")
    add_prune_param_options(gen)
    gen.add_argument("--gamma", type=_gamma, default=5, help="draft length, or 'auto' (measured speed ratio)")
    gen.add_argument("--temperature", type=float, default=0.0, help="0 = greedy")
    gen.add_argument("--top-k", type=int, default=None)
    gen.add_argument("--top-p", type=float, default=None)
    gen.add_argument("--seed", type=int, default=0, help="seed of the keyed random numbers (sampling only)")
    gen.add_argument("--max-new-tokens", type=int, default=64)
    gen.add_argument("--frames", type=int, default=None,
                     help="frames sampled uniformly from the video (default 8; a zoo target: its pair's, 16 for smol)")
    gen.add_argument("--impl", default="ref", choices=["ref", "fast"],
                     help="hippo_ref (the readable specification) or hippo_fast (static caches, on-device sampling)")
    gen.add_argument("--compile", action="store_true",
                     help="--impl fast: torch.compile the decode steps (pays off over many requests; the first "
                          "request of each shape compiles for tens of seconds on a CPU)")
    gen.add_argument("--overlap", default="off", choices=["off", "streams", "processes"],
                     help="--impl fast --decoding pearl: run draft and target at the same time: 'processes' = the "
                          "draft in its own process (torch.distributed; spawned here, or rank 1 under torchrun), "
                          "'streams' = two CUDA streams in this process (serial on a CPU)")
    gen.add_argument("--draft-device", default=None, help="--overlap processes: the draft's device (default --device)")
    gen.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    gen.add_argument("--device", default="cpu")
    gen.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    gen.add_argument("--verbose", action="store_true",
                     help="say on stderr where each process runs (its cores, its torch threads), once")

    tiny = sub.add_parser("tiny", help="write a random tiny target/draft pair (for tests and demos, offline)")
    tiny.add_argument("out_dir")
    tiny.add_argument("--family", default="qwen2_5_vl", choices=list(FAMILIES))
    tiny.add_argument("--seed", type=int, default=0)
    for name, (module, summary) in SUBCOMMANDS.items():
        if command is None or command == name:
            importlib.import_module(module).add_subcommand(sub)
        else:  # named with its help only: its module loads when it runs
            sub.add_parser(name, help=summary, add_help=False)
    return parser


# Subcommands that live with the code they drive: each module defines `COMMAND` (its name),
# `add_subcommand(subparsers)` and `run(args) -> int`, and is imported only when its command runs (the
# layers: hippo/ imports no implementation, verification/ or paper/; .importlinter). Add one here to add
# a command; its summary is what `hippo --help` lists.
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "zoo": ("hippo.zoo.cli", "the trained model zoo shipped with the package (list, train, table)"),
    "verify": ("verification.cli", "audit losslessness: exact laws, greedy equality, Monte Carlo, mutants"),
    "inspect": ("hippo_ref.pruning.diagnostics", "pruning diagnostics: position bias, kept tokens, MAT sweep (PNG + JSON)"),
    "bench": ("paper.measure.perf", "benchmarks (perf: tokens/s of every implementation, one process)"),
    "figures": ("paper.reproduce.figures", "regenerate the paper's figures, tables and paper/REPRODUCTION.md (needs a passing "
                                 "`hippo verify` certificate of this code)"),
}


def run_generate(args) -> int:
    from hippo.checkpoint import load_adapter
    from hippo.generation import generate, implementation
    from hippo.request import DecodeConfig, GenerationRequest, PruneSpec, SamplingParams
    from hippo.video import load_video

    if args.requests is None and (args.video is None or args.prompt is None):
        raise ConfigError("--video FILE and --prompt TEXT are required (or --requests FILE.jsonl, one request a line)")
    from hippo.zoo.registry import default_draft, default_target

    sampling = SamplingParams(args.temperature, args.top_k, args.top_p)
    gamma_auto = args.gamma == "auto"
    config = DecodeConfig(
        max_new_tokens=args.max_new_tokens,
        gamma=5 if gamma_auto else args.gamma,
        sampling=sampling,
        seed=args.seed,
    )
    if args.frames is None:
        from hippo.zoo.registry import is_zoo_spec, pair_frames

        target = args.target or default_target()
        args.frames = pair_frames(target) if is_zoo_spec(target) else 8
    request = GenerationRequest(
        video=args.video or "",
        prompt=args.prompt or "",
        frames=args.frames,
        decoding=args.decoding,
        prune=PruneSpec(args.prune, args.ratio, args.positions, prune_params_from_args(args)),
        config=config,
    )
    from hippo.checkpoint import check_device, resolve_checkpoint

    if args.compile and args.impl != "fast":
        raise ConfigError("--compile applies to --impl fast only")
    if args.overlap != "off" and (args.impl != "fast" or args.decoding != "pearl"):
        raise ConfigError(f"--overlap {args.overlap} runs PEARL's two halves at the same time: it needs --impl fast "
                          "--decoding pearl (SD and AR are serial by definition)")

    def check_line(line_request) -> None:  # a --requests line that sets its own decoding
        if args.overlap != "off" and line_request.decoding != "pearl":
            raise ConfigError(f"decoding {line_request.decoding} is serial, and --overlap {args.overlap} runs PEARL's "
                              'two halves at the same time: give the line "decoding": "pearl", or run it without --overlap')
    if args.draft_device is not None and args.overlap != "processes":
        raise ConfigError("--draft-device applies to --overlap processes (one process holds both models otherwise)")
    options = {"compile": True} if args.compile else {}
    if args.overlap != "off":
        options["overlap"] = args.overlap
    impl = implementation(args.impl, **options)
    if _torchrun_rank() == 1:  # under torchrun, rank 1 is the draft's process: it serves rank 0's requests
        impl.serve_draft(args.draft_device or args.device, target_device=args.device)
        return 0
    check_device(args.device)
    if args.impl == "fast":  # before any model is loaded
        impl.check_devices(args.device, args.device)
    if args.draft_device is not None:
        check_device(args.draft_device)
    args.target = args.target or default_target()
    if not resolve_checkpoint(args.target).is_dir():  # before asking for a draft: the target is what is wrong
        raise ConfigError(f"target checkpoint folder {args.target} does not exist: check --target "
                          "(a folder laid out as on the Hub, or zoo:NAME; see `hippo zoo list`)")
    args.draft = args.draft or default_draft(args.target)
    if args.decoding != "ar" and not args.draft:
        raise ConfigError(f"--decoding {args.decoding} needs a draft model: pass --draft DIR (or use --decoding ar)")
    # Cheap checks first: a bad video must fail before minutes of model loading, not after.
    if args.requests is not None:
        from hippo.requests_file import read_requests

        lines, clip = read_requests(args.requests, request, check=check_line), None
        if all(line.error for line in lines):  # nothing to run: report the lines without loading a model
            from hippo.requests_file import run_requests

            return run_requests(lines, None)
    else:
        lines, clip = None, load_video(args.video, args.frames)
    follow_cores(args)
    if args.overlap == "processes":  # the worker loads the draft (this process never does), while the target loads
        draft = impl.launch_draft(resolve_checkpoint(args.draft), args.dtype, args.draft_device or args.device,
                                  target_device=args.device)
    target = load_adapter(args.target, args.dtype, args.device)
    if args.overlap != "processes":
        draft = load_adapter(args.draft, args.dtype, args.device) if args.draft and args.decoding != "ar" else None

    def run_one(request, clip):
        result = generate(impl, target, draft, request, gamma_auto=gamma_auto, clip=clip)
        row = result.as_json()  # a recorded-output row: `hippo verify --recorded` reads these as they are
        row.update(implementation=args.impl, overlap=args.overlap, target=str(args.target),
                   draft=args.draft and str(args.draft), dtype=args.dtype)
        if result.timeline is not None:
            row["timeline"] = result.timeline.as_json()
        return row, result

    try:
        if lines is not None:
            from hippo.requests_file import run_requests

            return run_requests(lines, lambda request, clip: run_one(request, clip)[0])
        row, result = run_one(request, clip)
    finally:
        if args.overlap == "processes":
            impl.close()
    if args.json:
        print(json.dumps(row))
    else:
        s = result.stats
        print(result.text)
        print(
            f"[{args.decoding} prune={args.prune}@{args.ratio}] {len(result.tokens)} tokens, "
            f"MAT {s.decode.mat:.2f}, target forwards {s.decode.target_forwards}, "
            f"draft forwards {s.decode.draft_forwards}, visual tokens {s.kept_visual_tokens}/{s.visual_tokens}, "
            f"decode {s.decode.decode_s:.3f} s, total {s.total_s:.3f} s"
            + (f", draft worker start-up {s.worker_start_s:.3f} s (not in total)" if s.worker_start_s else ""),
            file=sys.stderr,
        )
    return 0


def follow_cores(args) -> None:
    """This process's torch threads follow its cores (hippo/placement.py), whatever OMP_NUM_THREADS says:
    all of them for one process; with --overlap processes the inter-op pool, sized once, takes the cores
    it keeps while a request uses the worker (the worker takes the last); under torchrun the ranks of
    the machine share them."""
    from hippo import placement

    cores = placement.allowed_cores()
    if _torchrun_rank() is not None:
        share = placement.torchrun_share(cores)
        placement.follow_cores(threads=share)
        placement.log_once(f"placement: rank 0 on core(s) {placement.core_list(cores)} with {share} torch thread(s), "
                           "shared with the other ranks of the machine")
    elif args.overlap == "processes":
        own, _ = placement.split_cores(cores)
        placement.follow_cores(interop_cores=len(own))
    else:
        placement.follow_cores()
        placement.log_once(f"placement: one process on core(s) {placement.core_list(cores)} with {len(cores)} torch "
                           "thread(s)")


def _torchrun_rank() -> int | None:
    """This process's rank when torchrun started it as a pair (WORLD_SIZE=2), else None."""
    import os

    if os.environ.get("WORLD_SIZE") == "2" and "RANK" in os.environ:
        return int(os.environ["RANK"])
    return None


def run_tiny(args) -> int:
    from hippo.tiny import write_tiny_pair

    target, draft = write_tiny_pair(args.out_dir, args.family, seed=args.seed)
    print(f"target: {target}\ndraft:  {draft}")
    return 0


class _StderrLog(logging.Handler):
    """hippo's log lines on the stderr of the moment (not the one at set-up: tests replace it)."""

    def emit(self, record: logging.LogRecord) -> None:
        print(f"hippo: {record.getMessage()}", file=sys.stderr)


def _log_to_stderr(verbose: bool) -> None:
    """hippo's log (e.g. the placement decision, hippo/placement.py) on stderr: warnings, and with
    --verbose the INFO lines too."""
    log = logging.getLogger("hippo")
    if not any(isinstance(h, _StderrLog) for h in log.handlers):
        log.addHandler(_StderrLog())
        log.propagate = False
    log.setLevel(logging.INFO if verbose else logging.WARNING)


def main(argv: list[str] | None = None) -> int:
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    argv = sys.argv[1:] if argv is None else argv
    command = next((a for a in argv if not a.startswith("-")), "")  # the subcommand: the first word
    args = build_parser(command).parse_args(argv)
    _log_to_stderr(getattr(args, "verbose", False))
    try:
        if args.command in SUBCOMMANDS:
            return importlib.import_module(SUBCOMMANDS[args.command][0]).run(args)
        return {"generate": run_generate, "tiny": run_tiny}[args.command](args)
    except HippoError as err:
        print(f"hippo: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
