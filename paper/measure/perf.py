"""`hippo bench perf`: the speed benchmark. Every row (paper/measure/rows.py) runs in ONE process on the
same inputs, warm-up excluded and reported, outputs checked for equality before any time is reported.

    hippo bench perf [--pair qwen|llava | --target DIR --draft DIR] [--video FILE ... --prompt TEXT]
                     [-n 20] [--max-new-tokens 128] [--gamma 5] [--ratio 0.9] [--compile off|on|both]
                     [--rows ROW,...] [--repeats 1] [--json FILE] [--markdown FILE]

Inputs: the first `-n` test-split videos of the zoo (hippo.zoo.dataset), asked the detailed-caption
question DETAIL_PROMPT (`--prompt-mode detail`, SpecVLM's speed protocol: long answers) when the dataset
has it, else each example's own question (`--prompt-mode question`); or `--video FILE ...` with
`--prompt`. Videos are decoded / rendered once, before any timing: end-to-end times start at the
decoded frames.

Protocol:
1. Warm-up: every row runs once on the first input, untimed (torch.compile compiles there); its wall
   time is reported as "warm-up s".
2. Timing: for each repeat and input, every row runs once, the order of the rows rotated by one per
   input, so that noise of the machine falls on all rows alike.
3. Equality gate, before anything is reported. Greedy: every run's tokens must equal HF
   generate()'s greedy tokens on that input. Sampling (--temperature > 0): every fast row's tokens must
   equal hippo_ref's with the same request and seed (HF rows use torch's RNG and are not compared).
   A difference prints the row, the input and the first differing token, and exits with status 1
   without a timing table.
4. The per-forward costs (sampled during step 2), the bandwidth, the profile (--profile), the report.

Definitions (one each):
- generated tokens: the tokens a request returns (an end-of-turn token included, as generate()).
- tokens/s (e2e): generated tokens / end-to-end seconds, pooled over the timed runs (sums of both).
  End-to-end: the request's wall time from the decoded frames: preprocessing, video encoders, scoring,
  pruning, both prefills, decode (hippo.stats.RequestStats.total_s; HF rows: adapter.prepare +
  generate()).
- tokens/s (decode): generated tokens / decode-only seconds (hippo.stats.DecodeStats.decode_s: after
  both prefills). HF rows: generate() does not separate them; their decode-only time is end-to-end
  minus the preprocessing and one stock forward of the prompt by each model it prefills (target; and
  the assistant for hf-assisted), timed right after the run.
- x HF: tokens/s of the row / tokens/s of hf-generate (e2e and decode-only separately).
- x fast AR: tokens/s of the row / tokens/s of fast-ar with the same compile setting (HF and ref rows
  are eager: fast-ar/eager).
- MAT: tokens committed per target round (DecodeStats.mat), pooled: total committed / total rounds.
- run length: PEARL's mean run length (DecodeStats.mean_run_length), pooled: committed / runs.
- per-forward cost: median wall time of one StaticContext.forward on the fast path's static context of
  the first input (compile setting of the row), at generated offset 0, in steady state (a burst of
  calls of that one forward; instruments.ForwardTimer), over samples taken after every input of the
  timed phase (the same machine as the timed runs): the target's one-token step
  (t_target, on fast AR's context), the row's target verify (t_verify: gamma + 1 tokens for SD; gamma
  for PEARL's post-verify forward), the draft's one-token step on the row's (pruned) context (t_draft).
- bandwidth floor: (decode parameter bytes + KV bytes) / measured read bandwidth. Parameter bytes:
  every parameter except the vision encoder / projector and an untied input embedding
  (instruments.decode_parameter_bytes). KV bytes: layers x 2 x kv_heads x head_dim x rows x dtype
  size, rows = the context's prompt rows + the forward's tokens. Read bandwidth: torch.sum over a
  tensor far larger than the last-level cache (DRAM), timed in the same run; "at size": the same over
  a tensor of the target's decode parameter bytes (cache-resident when it fits: then a forward can
  beat the DRAM floor).
- peak memory: instruments.PeakMemory (CPU: the process's peak RSS per run, reset before each run;
  CUDA: max_memory_allocated); the largest over the timed runs, and its increment over the run's start.
- ideal (serial): MAT x t_target / (gamma x t_draft + t_verify), the decode speedup over AR that the
  measured acceptance and per-forward costs imply when draft and target run one after the other, with
  nothing else costing time. Computed over the row's measured rounds: committed tokens x t_target /
  sum over rounds of (gamma x t_draft + t_round), t_round = t_verify, except PEARL's pre-verify rounds
  (its first round and every round after a rejection), whose target forward is one token: t_target.
  With every round a verify round this is exactly the formula above.
- ideal (overlap), PEARL rows: MAT x t_target / max(gamma x t_draft, t_verify): the same with the
  round's draft block and target forward at the same time (part 2's schedule); over the measured
  rounds: committed x t_target / sum of max(gamma x t_draft, t_round).
- achieved: the row's decode-only x fast AR.
"""

from __future__ import annotations

import os
import platform
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from hippo.errors import ConfigError, HippoError

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
    from paper.sweep import runner as sweep

    sweep.add_parser(bench)


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
@dataclass
class RowState:
    spec: object
    warmup_s: float | None = None
    skipped: str | None = None
    runs: list = None  # [(input index, repeat, Run)]

    def __post_init__(self):
        self.runs = []


def reason(err: BaseException) -> str:
    """One line: the exception's type and first line, and its cause's (torch.compile wraps its reasons)."""
    def line(e):
        text = str(e).strip().splitlines()
        return f"{type(e).__name__}: {text[0] if text else ''}".strip()

    out = line(err)
    if err.__cause__ is not None:
        out += f" (cause: {line(err.__cause__)})"
    return out[:400]


def first_divergence(got: list[int], want: list[int]) -> str:
    for i, (a, b) in enumerate(zip(got, want, strict=False)):
        if a != b:
            return f"first divergence at generated token {i}: got {a}, expected {b}"
    return f"same first {min(len(got), len(want))} tokens, then lengths differ: got {len(got)}, expected {len(want)}"


def run(args) -> int:
    if args.bench_command == "sweep":
        from paper.sweep import runner as sweep

        return sweep.run(args)
    from paper.measure import instruments
    from paper.measure import report as perf_report
    from paper.measure import rows as perf_rows

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
    from hippo.checkpoint import load_adapter

    load_start = os.getloadavg() if hasattr(os, "getloadavg") else None
    target = load_adapter(target_path, args.dtype, str(device))
    needs_draft = any(r.decoding != "ar" or r.kind == "hf-assisted" for r in specs)
    draft = load_adapter(draft_path, args.dtype, str(device)) if needs_draft else None
    settings = perf_rows.Settings(args.max_new_tokens, args.gamma, args.ratio, args.prune, args.temperature,
                                  args.seed, args.frames or 8, device)
    greedy = args.temperature == 0
    rows = [RowState(s) for s in specs]
    memory = instruments.PeakMemory(device)

    def timed(row: RowState, i: int) -> perf_rows.Run:
        memory.start()
        graphs = instruments.compiled_graphs()
        result = perf_rows.run_row(row.spec, target, draft, inputs[i].clip, inputs[i].prompt, settings)
        result.peak_bytes, result.increment_bytes = memory.stop()
        result.compiles = instruments.compiled_graphs() - graphs
        return result

    # 1. warm-up on the first input
    progress = instruments.Progress(len(rows) * (1 + len(inputs) * args.repeats), "bench perf")
    warm: dict[str, perf_rows.Run] = {}
    for row in rows:
        progress.update(f"warm-up {row.spec.id}")
        t0 = time.perf_counter()
        try:
            warm[row.spec.id] = timed(row, 0)
        except HippoError:  # the user's to fix (a parameter, a checkpoint): one line, exit 2
            raise
        except Exception as err:  # a row that cannot run is reported with the reason, not fatal
            row.skipped = f"failed in the warm-up on {inputs[0].name}: {reason(err)}"
            print(f"bench perf: row {row.spec.id} {row.skipped}", file=sys.stderr)
            continue
        row.warmup_s = time.perf_counter() - t0
    active = [r for r in rows if r.skipped is None]
    progress.total = len(rows) + len(active) * len(inputs) * args.repeats

    # references of the equality gate
    references: dict = {}

    def reference(row: RowState, i: int) -> tuple[str, list[int]] | None:
        if greedy:
            if ("hf", i) not in references:
                references["hf", i] = perf_rows.reference_tokens(target, inputs[i].clip, inputs[i].prompt, settings)
            return "HF generate() greedy", references["hf", i]
        if row.spec.impl != "fast":
            return None
        key = (row.spec.name, i)
        if key not in references:
            references[key] = perf_rows.ref_tokens_for(row.spec, target, draft, inputs[i].clip, inputs[i].prompt,
                                                       settings)
        return f"hippo_ref (same request, seed {args.seed})", references[key]

    hf_row = next((r for r in active if r.spec.kind == "hf"), None)
    if greedy and hf_row is not None:
        references["hf", 0] = warm[hf_row.spec.id].tokens

    def gate(checks) -> bool:
        mismatches = []
        for row, i, tokens in checks:
            ref = reference(row, i)
            if ref is not None and tokens != ref[1]:
                mismatches.append(f"  row {row.spec.id}, input {inputs[i].name}: differs from {ref[0]}: "
                                  f"{first_divergence(tokens, ref[1])}")
        if mismatches:
            print("bench perf: OUTPUT MISMATCH, no time is reported (a row's tokens must equal the reference's):",
                  file=sys.stderr)
            print("\n".join(mismatches), file=sys.stderr)
        return not mismatches

    if not gate([(r, 0, warm[r.spec.id].tokens) for r in active]):
        progress.finish()
        return 1

    # 2. timed runs, interleaved, the order rotated per input; after each input a few samples of every
    # per-forward cost (on the first input's contexts), so that they see the same machine
    timers = cost_timers(active, target, draft, inputs[0], settings)
    samples = max(1, -(-COST_SAMPLES // (len(inputs) * args.repeats)))
    other_load = instruments.OtherLoad()
    for repeat in range(args.repeats):
        for i in range(len(inputs)):
            shift = (repeat * len(inputs) + i) % max(1, len(active))
            for row in active[shift:] + active[:shift]:
                progress.update(f"{row.spec.id} {inputs[i].name}")
                if row.skipped:
                    continue
                try:
                    result = timed(row, i)
                except HippoError:
                    raise
                except Exception as err:  # the row is reported as failed, without any of its times
                    row.skipped = f"failed in a timed run on {inputs[i].name}: {reason(err)}"
                    row.runs.clear()
                    print(f"\nbench perf: row {row.spec.id} {row.skipped}", file=sys.stderr)
                    continue
                row.runs.append((i, repeat, result))
                if greedy and row is hf_row and repeat == 0:
                    references.setdefault(("hf", i), result.tokens)
            for setting, timer in list(timers.items()):
                try:
                    timer.sample(samples)
                except Exception as err:
                    print(f"\nbench perf: per-forward costs ({setting}) dropped: {reason(err)}", file=sys.stderr)
                    del timers[setting]

    other_load_share = other_load.share()
    progress.finish()
    active = [r for r in active if r.skipped is None]

    # 3. the equality gate, before anything is reported
    if not gate([(r, i, run_.tokens) for r in active for i, _, run_ in r.runs]):
        return 1

    # 4. per-forward costs, bandwidth, profile
    bandwidth = instruments.measured_bandwidth(device)
    target_bytes = instruments.decode_parameter_bytes(target.model)
    bandwidth_at_size = instruments.measured_bandwidth(device, max(1 << 20, target_bytes))
    costs = forward_cost_table(timers, bandwidth["read_gbs"])
    profiles = []
    for row in active:
        if profile_rows and (row.spec.name in profile_rows or row.spec.id in profile_rows) and row.spec.impl == "fast":
            try:
                profiles.append({"row": row.spec.id, **profile_row(row.spec, target, draft, inputs[0], settings)})
            except Exception as err:
                profiles.append({"row": row.spec.id, "error": reason(err)})
    load_end = os.getloadavg() if hasattr(os, "getloadavg") else None
    env = environment(device, load_start, load_end)
    env["other_load_share"] = other_load_share
    env["placement"] = placement_record(active)

    report = perf_report.build_report(
        args=args, rows=rows, inputs=inputs, costs=costs, bandwidth=bandwidth, bandwidth_at_size=bandwidth_at_size,
        memory_method=memory.method, profiles=profiles, environment=env,
        target_path=target_path, draft_path=draft_path, greedy=greedy, command=command_line(args),
    )
    markdown = perf_report.render_markdown(report)
    for path, text in ((args.json, perf_report.to_json(report)), (args.markdown, markdown)):
        if path:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            Path(path).write_text(text)
    print(markdown, end="")
    return 0


def render_stored(args) -> int:
    import json

    from paper.measure import report as perf_report

    try:
        report = json.loads(Path(args.render).read_text())
    except (OSError, ValueError) as err:
        raise ConfigError(f"--render {args.render}: cannot read a JSON report ({err}); give a file written by "
                          "`hippo bench perf --json`") from None
    if args.note is not None:  # the JSON keeps the note the Markdown shows
        report["note"] = args.note
        Path(args.render).write_text(perf_report.to_json(report))
    markdown = perf_report.render_markdown(report)
    if args.markdown:
        Path(args.markdown).parent.mkdir(parents=True, exist_ok=True)
        Path(args.markdown).write_text(markdown)
    print(markdown, end="")
    return 0


def cost_timers(active, target, draft, first: Input, settings) -> dict:
    """Per compile setting of the fast rows, a ForwardTimer over: the target's one-token step on fast AR's
    context (t_target); per SD / PEARL fast row, its verify forward and its draft's one-token step, on the
    contexts of its own request (first input)."""
    from hippo.generation import implementation
    from hippo.request import PruneSpec
    from paper.measure import instruments

    timers: dict = {}
    fast = [r.spec for r in active if r.spec.impl == "fast"]
    for compiled in sorted({bool(s.compile) for s in fast}):
        impl = implementation("fast", compile=compiled)
        ar_request = settings.request(fast[0], first.clip, first.prompt, target.eos_token_ids, decoding="ar",
                                      prune=PruneSpec())
        measured = [("target step", impl.prepare_contexts(target, None, ar_request, first.clip).target_context, 1)]
        for spec in (s for s in fast if bool(s.compile) == compiled and s.decoding != "ar"):
            request = settings.request(spec, first.clip, first.prompt, target.eos_token_ids)
            prepared = impl.prepare_contexts(target, draft, request, first.clip)
            k = settings.gamma + 1 if spec.decoding == "sd" else settings.gamma
            measured += [(spec.id, prepared.target_context, k), (spec.id, prepared.draft_context, 1)]
        try:
            timers["compiled" if compiled else "eager"] = instruments.ForwardTimer(measured)
        except Exception as err:  # e.g. a compiled forward that fails: the rows still run, without costs
            print(f"bench perf: per-forward costs ({'compiled' if compiled else 'eager'}) not measured: "
                  f"{reason(err)}", file=sys.stderr)
    return timers


def forward_cost_table(timers: dict, read_gbs: float) -> dict:
    out = {}
    for setting, timer in timers.items():
        results = timer.results(read_gbs)
        rows = {}
        for j in range(1, len(results), 2):
            rows[results[j].model] = {"verify": results[j].as_json(), "draft_step": results[j + 1].as_json()}
        out[setting] = {"target_step": results[0].as_json(), "samples": len(timer.times[0]), "rows": rows}
    return out


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


# ---- environment -------------------------------------------------------------------------------------
def _git(*cmd) -> str | None:
    try:
        return subprocess.run(["git", *cmd], capture_output=True, text=True, timeout=10,
                              cwd=Path(__file__).resolve().parent).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def environment(device, load_start, load_end) -> dict:
    import torch
    import transformers

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    llc = None
    try:
        llc = Path("/sys/devices/system/cpu/cpu0/cache/index3/size").read_text().strip()
    except OSError:
        pass
    dirty = _git("status", "--porcelain", "--untracked-files=no")
    return {
        "torch": torch.__version__, "transformers": transformers.__version__, "python": platform.python_version(),
        "platform": platform.platform(), "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else cpu,
        "cpus": os.cpu_count(), "last_level_cache": llc,
        "affinity": sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "threads": torch.get_num_threads(), "omp_num_threads": _ENV.get("OMP_NUM_THREADS"),
        "inductor_cache_dir": _ENV.get("TORCHINDUCTOR_CACHE_DIR"),
        "git_revision": _git("rev-parse", "HEAD"),
        "git_modified_files": dirty.splitlines() if dirty else [],
        "load_average_start": list(load_start) if load_start else None,
        "load_average_end": list(load_end) if load_end else None,
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }


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
