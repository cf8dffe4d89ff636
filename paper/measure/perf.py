"""`hippo bench perf`: the speed benchmark on zoo pairs or any checkpoints: every row (paper/measure/rows.py)
in ONE process on the same inputs, under paper/measure/protocol.py.

    hippo bench perf [--pair qwen|llava | --target DIR --draft DIR] [--video FILE ... --prompt TEXT]
                     [-n 20] [--max-new-tokens 128] [--gamma 5] [--ratio 0.9] [--compile off|on|both]
                     [--rows ROW,...] [--repeats 1] [--json FILE] [--markdown FILE]

Inputs: the first `-n` test-split videos of the zoo (hippo.zoo.dataset), asked the detailed-caption
question DETAIL_PROMPT (`--prompt-mode detail`, SpecVLM's speed protocol: long answers) when the dataset
has it, else each example's own question (`--prompt-mode question`); or `--video FILE ...` with
`--prompt`. Videos are decoded / rendered once, before any timing: end-to-end times start at the
decoded frames.

Protocol and definitions: paper/measure/protocol.py. The equality gate's reference here: greedy, every
run's tokens must equal HF generate()'s greedy tokens on that input; sampling (--temperature > 0), every
fast row's tokens must equal hippo_ref's with the same request and seed (HF rows use torch's RNG and are
not compared). After the protocol: the per-forward costs, the bandwidth, the profile (--profile), the
report (paper/measure/report.py).
"""

from __future__ import annotations

import os
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

from hippo.errors import ConfigError

COMMAND = "bench"
DEFAULT_JSON = "reports/bench-perf/bench.json"
DEFAULT_MARKDOWN = "reports/bench-perf/bench.md"
COST_SAMPLES = 60  # samples of each per-forward cost, spread over the timed phase


def add_subcommand(sub) -> None:
    parser = sub.add_parser(COMMAND, help="benchmarks (perf: tokens/s of every implementation, one process)")
    bench = parser.add_subparsers(dest="bench_command", required=True)
    global _PERF_PARSER
    p = bench.add_parser("perf", help="HF generate / assisted, hippo_ref and hippo_fast rows on the same inputs",
                         description=__doc__.split("\n\n")[0])
    src = p.add_argument_group("models and inputs")
    src.add_argument("--pair", default="qwen", help="zoo pair (qwen, llava) when --target is not given")
    src.add_argument("--target", default=None, help="target checkpoint folder or zoo:NAME (instead of --pair)")
    src.add_argument("--draft", default=None, help="draft checkpoint folder or zoo:NAME (default: the zoo pair's)")
    src.add_argument("--video", nargs="+", default=None, metavar="FILE", help="videos instead of the zoo test split")
    src.add_argument("--prompt", default=None, help="the prompt (required with --video; overrides --prompt-mode)")
    src.add_argument("--prompt-mode", default=None, choices=["detail", "question"],
                     help="zoo inputs: the detailed-caption question (default when the dataset has it) or each "
                          "example's own question")
    src.add_argument("-n", "--examples", type=int, default=20, help="first N test-split examples (zoo)")
    src.add_argument("--frames", type=int, default=None, help="frames per video (default 8; zoo: the pair's, 8 or 16 for smol; "
                     "zoo videos render at any multiple of 4 up to 64, or at most 8 taken from the 8-frame clip)")
    dec = p.add_argument_group("decoding")
    dec.add_argument("--max-new-tokens", type=int, default=128)
    dec.add_argument("--gamma", type=int, default=5, help="draft length (HF assisted: num_assistant_tokens)")
    dec.add_argument("--ratio", type=float, default=0.9, help="pruning ratio of the SpecVLM and HIPPO rows")
    dec.add_argument("--prune", default="hippo", help="pruning method of the fast-hippo row")
    dec.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default)")
    dec.add_argument("--seed", type=int, default=0, help="keyed-uniform seed (sampling)")
    run_ = p.add_argument_group("measurement")
    run_.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    run_.add_argument("--device", default="cpu")
    run_.add_argument("--threads", type=int, default=None,
                      help="torch threads of the one-process rows (default: one per core this process may run on, "
                           "as `hippo generate`; hippo/placement.py); a two-process row's processes follow their cores")
    run_.add_argument("--compile", default="both", choices=["off", "on", "both"],
                      help="fast rows eager (off), compiled (on) or both (default)")
    run_.add_argument("--repeats", type=int, default=1, help="timed passes over the inputs")
    run_.add_argument("--rows", default="all", help="comma-separated rows (default all): " + ", ".join(
        __import__("paper.measure.rows", fromlist=["ROW_NAMES"]).ROW_NAMES) + "; a fast row may end in /eager or /compiled")
    run_.add_argument("--overlap", default=None,
                      help="overlapped PEARL rows to add: processes, streams, both or off (default: processes on a "
                           "CPU, both on a GPU; streams need a GPU)")
    run_.add_argument("--profile", default="fast-ar,fast-sd",
                      help="rows whose decode is profiled on the first input (torch.profiler), or 'none'")
    out = p.add_argument_group("output")
    out.add_argument("--json", default=DEFAULT_JSON, help=f"JSON report (default {DEFAULT_JSON})")
    out.add_argument("--markdown", default=DEFAULT_MARKDOWN, help=f"Markdown report (default {DEFAULT_MARKDOWN})")
    out.add_argument("--note", default=None, help="text printed under the command in the Markdown report")
    out.add_argument("--render", default=None, metavar="JSON",
                     help="measure nothing: re-render the Markdown of a JSON report this command wrote (to --markdown; "
                          "--note replaces its note, in the JSON too)")
    _PERF_PARSER = p
    from paper.sweep import runner

    runner.add_parser(bench)


# ---- argument checks (cheap, before any model is loaded) ---------------------------------------------
def check_device(text: str):
    """hippo.checkpoint.check_device (no CUDA, no such GPU: one line), then cpu or cuda only; a bare
    `cuda` becomes the current GPU (its memory counters need an index)."""
    import torch

    from hippo.checkpoint import check_device as existing_device

    device = existing_device(text)
    if device.type not in ("cpu", "cuda"):
        raise ConfigError(f"--device {text}: the benchmark runs on cpu or cuda[:N]")
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    return device


def detail_prompt() -> str | None:
    from hippo.zoo import dataset

    return getattr(dataset, "DETAIL_PROMPT", None)


@dataclass
class Input:
    name: str
    clip: object
    prompt: str


def load_inputs(args) -> list[Input]:
    """The benchmark's inputs: decoded videos (or rendered zoo videos) and their prompts."""
    from hippo.video import load_video, sample_frame_indices

    if args.video:
        if args.prompt is None:
            raise ConfigError("--video needs --prompt TEXT (the question asked about every video)")
        frames = args.frames or 8
        args.prompt_mode = "custom"
        return [Input(Path(v).name, load_video(v, frames), args.prompt) for v in args.video]
    from hippo.zoo import dataset

    mode = args.prompt_mode or ("detail" if detail_prompt() else "question")
    if mode == "detail" and detail_prompt() is None:
        raise ConfigError("--prompt-mode detail: hippo.zoo.dataset has no DETAIL_PROMPT in this version; "
                          "use --prompt-mode question or --prompt TEXT")
    if not 1 <= args.examples <= dataset.SPLIT_SIZES["test"]:
        raise ConfigError(f"-n must be in 1..{dataset.SPLIT_SIZES['test']} (the test split's size), got {args.examples}")
    from hippo.zoo.registry import pair_frames

    frames = args.frames or (pair_frames(args.pair) if args.target is None else dataset.FRAMES)
    if frames > dataset.FRAMES:  # a longer clip of the same video (the generator renders any multiple of 4)
        try:
            dataset.check_frames(frames)
        except ValueError as err:
            raise ConfigError(f"--frames {frames}: {err}") from None
        length, keep = frames, list(range(frames))
    elif frames >= 1:  # at most 8: taken from the 8-frame clip, as from a file
        length, keep = dataset.FRAMES, list(sample_frame_indices(dataset.FRAMES, frames))
    else:
        raise ConfigError(f"--frames {frames}: use 1..8 or a multiple of 4 up to 64")
    inputs = []
    for i in range(args.examples):
        ex = dataset.example("test", i)
        prompt = args.prompt or (detail_prompt() if mode == "detail" else ex.question)
        inputs.append(Input(f"test/{i}", dataset.as_clip(dataset.render(ex.video, length)[keep], f"test/{i}"), prompt))
    args.prompt_mode = "custom" if args.prompt else mode
    return inputs


def check_args(args):
    from hippo.request import PruneSpec, SamplingParams
    from paper.measure.rows import build_rows

    for flag, value in (("--threads", args.threads), ("--repeats", args.repeats), ("--gamma", args.gamma),
                        ("--max-new-tokens", args.max_new_tokens)):
        if value is not None and value < 1:
            raise ConfigError(f"{flag} must be >= 1, got {value}")
    SamplingParams(args.temperature)
    PruneSpec(args.prune, args.ratio)
    PruneSpec("specvlm", args.ratio)
    device = check_device(args.device)
    overlaps = {"processes": ("processes",), "streams": ("streams",), "both": ("processes", "streams"),
                "off": (), None: ("processes",) if device.type == "cpu" else ("processes", "streams")}
    if args.overlap not in overlaps:
        raise ConfigError(f"--overlap {args.overlap}: choose processes, streams, both or off")
    if "streams" in (overlaps[args.overlap]) and device.type != "cuda":
        raise ConfigError("--overlap streams needs --device cuda: on a CPU the two streams run in order, which is "
                          "the fast-pearl row itself")
    names = None if args.rows == "all" else [r.strip() for r in args.rows.split(",") if r.strip()]
    rows = build_rows(names, args.compile, overlaps[args.overlap])
    profile = [] if args.profile == "none" else [r.strip() for r in args.profile.split(",") if r.strip()]
    build_rows(profile or None, "both")  # names valid
    return device, rows, profile


def resolve_models(args, rows) -> tuple[str, str | None]:
    from hippo.zoo.registry import PAIRS, ZOO_PREFIX, default_draft

    if args.target is None:
        if args.pair not in PAIRS:
            raise ConfigError(f"unknown zoo pair {args.pair!r}; choose one of {', '.join(PAIRS)} or pass --target DIR")
        target, draft = (ZOO_PREFIX + n for n in PAIRS[args.pair])
        return target, args.draft or draft
    draft = args.draft or default_draft(args.target)
    if draft is None and any(r.decoding != "ar" or r.kind == "hf-assisted" for r in rows):
        raise ConfigError(f"--target {args.target}: the SD / PEARL / assisted rows need a draft: pass --draft DIR "
                          "(or --rows hf-generate,ref-ar,fast-ar)")
    return args.target, draft


# ---- the run ----------------------------------------------------------------------------------------
class ReferenceGate:
    """Greedy: HF generate()'s greedy tokens on each input (the hf-generate row's first run there when it
    runs, else one generate() of its own). Sampling: each fast row's request under hippo_ref."""

    def __init__(self, greedy: bool, target, draft, inputs: list[Input], settings, seed: int):
        self.greedy, self.target, self.draft, self.inputs, self.settings = greedy, target, draft, inputs, settings
        self.seed = seed
        self.tokens: dict = {}

    def seen(self, spec, i: int, run) -> None:
        if self.greedy and spec.kind == "hf":
            self.tokens.setdefault(("hf", i), run.tokens)

    def reference(self, spec, i: int) -> tuple[str, list[int]] | None:
        from paper.measure import rows

        clip, prompt = self.inputs[i].clip, self.inputs[i].prompt
        if self.greedy:
            if ("hf", i) not in self.tokens:
                self.tokens["hf", i] = rows.reference_tokens(self.target, clip, prompt, self.settings)
            return "HF generate() greedy", self.tokens["hf", i]
        if spec.impl != "fast":
            return None
        if (spec.name, i) not in self.tokens:
            self.tokens[spec.name, i] = rows.ref_tokens_for(spec, self.target, self.draft, clip, prompt,
                                                            self.settings)
        return f"hippo_ref (same request, seed {self.seed})", self.tokens[spec.name, i]


def run(args) -> int:
    if args.bench_command == "sweep":
        from paper.sweep import runner

        return runner.run(args)
    from hippo.checkpoint import load_adapter
    from paper.measure import instruments, protocol, report, rows

    if args.render:
        return render_stored(args)
    _ORIGINAL.clear()
    _ORIGINAL.update(vars(args))
    _ENV.clear()  # as the user set them: torch.compile sets TORCHINDUCTOR_CACHE_DIR itself once it runs
    _ENV.update({k: os.environ[k] for k in ENV_VARS if k in os.environ})
    if hasattr(os, "sched_getaffinity"):  # as started: a two-process row narrows it while its request runs
        _ENV["affinity"] = sorted(os.sched_getaffinity(0))
    device, specs, profile_rows = check_args(args)
    follow_cores(args.threads, any(r.overlap == "processes" for r in specs))
    target_path, draft_path = resolve_models(args, specs)
    inputs = load_inputs(args)
    load_start = os.getloadavg() if hasattr(os, "getloadavg") else None
    target = load_adapter(target_path, args.dtype, str(device))
    needs_draft = any(r.decoding != "ar" or r.kind == "hf-assisted" for r in specs)
    draft = load_adapter(draft_path, args.dtype, str(device)) if needs_draft else None
    settings = rows.Settings(args.max_new_tokens, args.gamma, args.ratio, args.prune, args.temperature,
                             args.seed, args.frames or 8, device)
    greedy = args.temperature == 0
    states = [protocol.RowState(s) for s in specs]
    memory = instruments.PeakMemory(device)
    first = inputs[0]

    def prepare(spec, decoding: str, compiled: bool):
        from hippo.generation import implementation
        from hippo.request import PruneSpec

        prune = PruneSpec() if decoding == "ar" else None
        request = settings.request(spec, first.clip, first.prompt, target.eos_token_ids, decoding=decoding,
                                   prune=prune)
        impl = implementation("fast", compile=compiled)
        return impl.prepare_contexts(target, draft if decoding != "ar" else None, request, first.clip)

    gate = ReferenceGate(greedy, target, draft, inputs, settings, args.seed)
    try:
        timers, other_load_share = protocol.measure(
            states, [i.name for i in inputs],
            lambda spec, i: rows.run_row(spec, target, draft, inputs[i].clip, inputs[i].prompt, settings),
            gate.reference, seen=gate.seen, repeats=args.repeats, memory=memory, cost_samples=COST_SAMPLES,
            make_timers=lambda active: protocol.cost_timers(active, prepare, args.gamma, "bench perf"),
            label="bench perf")
    except protocol.GateFailure as failure:
        print(f"bench perf: OUTPUT MISMATCH, no time is reported (a row's tokens must equal the reference's):\n"
              f"{failure}", file=sys.stderr)
        return 1
    active = [r for r in states if r.skipped is None]

    # per-forward costs, bandwidth, profile
    bandwidth = instruments.measured_bandwidth(device)
    target_bytes = instruments.decode_parameter_bytes(target.model)
    bandwidth_at_size = instruments.measured_bandwidth(device, max(1 << 20, target_bytes))
    costs = protocol.forward_cost_table(timers, bandwidth["read_gbs"])
    profiles = []
    for row in active:
        if profile_rows and (row.spec.name in profile_rows or row.spec.id in profile_rows) and row.spec.impl == "fast":
            try:
                profiles.append({"row": row.spec.id, **profile_row(row.spec, target, draft, first, settings)})
            except Exception as err:
                profiles.append({"row": row.spec.id, "error": protocol.reason(err)})
    load_end = os.getloadavg() if hasattr(os, "getloadavg") else None
    env = instruments.environment(device, load_start, load_end, _ENV)
    env["other_load_share"] = other_load_share
    env["placement"] = placement_record(active)

    out = report.build_report(
        args=args, rows=states, inputs=inputs, costs=costs, bandwidth=bandwidth, bandwidth_at_size=bandwidth_at_size,
        memory_method=memory.method, profiles=profiles, environment=env,
        target_path=target_path, draft_path=draft_path, greedy=greedy, command=command_line(args),
    )
    report.write(out, report.render_markdown(out), args.json, args.markdown)
    return 0


def render_stored(args) -> int:
    import json

    from paper.measure import report

    try:
        stored = json.loads(Path(args.render).read_text())
    except (OSError, ValueError) as err:
        raise ConfigError(f"--render {args.render}: cannot read a JSON report ({err}); give a file written by "
                          "`hippo bench perf --json`") from None
    if args.note is not None:  # the JSON keeps the note the Markdown shows
        stored["note"] = args.note
        Path(args.render).write_text(report.to_json(stored))
    report.write(stored, report.render_markdown(stored), None, args.markdown)
    return 0


def profile_row(spec, target, draft, first: Input, settings) -> dict:
    """torch.profiler summary of the decode of `spec` on fresh contexts of the first input."""
    from hippo.generation import implementation
    from paper.measure import instruments

    impl = implementation("fast", compile=bool(spec.compile))
    request = settings.request(spec, first.clip, first.prompt, target.eos_token_ids)
    prepared = impl.prepare_contexts(target, draft if spec.decoding != "ar" else None, request, first.clip)
    return instruments.profile_decode(
        lambda: impl.decode(spec.decoding, prepared.target_context, prepared.draft_context, request.config),
        settings.device)


# ---- placement: what `hippo generate` does by default -------------------------------------------------
def follow_cores(threads: int | None, two_process_rows: bool) -> None:
    """The benchmark process's torch threads follow its cores as `hippo generate`'s do (hippo/placement.py):
    one per core (or `threads`, at most that), whatever OMP_NUM_THREADS says; with two-process rows the
    inter-op pool (sized once) takes the cores this process keeps while their worker is in use."""
    from hippo import placement

    own = placement.split_cores(placement.allowed_cores())[0]
    placement.follow_cores(threads=threads, interop_cores=len(own) if two_process_rows else None)


def placement_record(active) -> dict:
    """The placement the rows ran in, recorded once: the one-process rows' (this process, as now), and
    the two-process rows' (both processes, as the last run of such a row measured them)."""
    from hippo import placement

    record = {"one_process": placement.describe("benchmark")}
    for row in active:
        runs = [run_ for _, _, run_ in row.runs if run_.extra.get("placement")]
        if row.spec.overlap == "processes" and runs:
            record["two_processes"] = runs[-1].extra["placement"]
            break
    return record


# ---- the command as typed -----------------------------------------------------------------------------
def command_line(args) -> str:
    """The command as typed, as far as the process can tell: OMP_NUM_THREADS, TORCHINDUCTOR_CACHE_DIR and
    a CPU affinity narrower than the machine (taskset) in front of `hippo` and its arguments (sys.argv
    when run as `hippo`; else rebuilt from the options that differ from their defaults)."""
    prefix = []
    for var in ENV_VARS:
        if _ENV.get(var):
            prefix.append(f"{var}={shlex.quote(_ENV[var])}")
    affinity = _ENV.get("affinity")
    if affinity and len(affinity) < (os.cpu_count() or 0):
        prefix.append("taskset -c " + ",".join(str(c) for c in affinity))
    if Path(sys.argv[0]).name == "hippo" and sys.argv[1:3] == ["bench", "perf"]:
        argv = list(sys.argv[1:])
        for j in range(len(argv) - 1):
            if argv[j] == "--note":
                argv[j + 1] = "<the note below>"
    else:
        argv = ["bench", "perf"]
        for action in _PERF_PARSER._actions if _PERF_PARSER else ():
            if not action.option_strings or action.dest == "help":
                continue
            value = _ORIGINAL.get(action.dest, getattr(args, action.dest, None))
            if value != action.default:
                flag = action.option_strings[-1]
                argv += [flag, *(value if isinstance(value, list) else [str(value)])]
    return " ".join(prefix + ["hippo"] + [shlex.quote(a) for a in argv])


_PERF_PARSER = None  # set by add_subcommand
_ORIGINAL: dict = {}  # options as parsed, before run() fills in derived values
ENV_VARS = ("OMP_NUM_THREADS", "TORCHINDUCTOR_CACHE_DIR")
_ENV: dict = {}  # ENV_VARS at the start of run()
