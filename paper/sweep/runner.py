"""`hippo bench sweep`: a grid of configurations over a dataset's samples, one JSONL row per (sample,
configuration), resumable and shardable.

    hippo bench sweep [--grid PLAN.json] [--pairs qwen,llava | --target DIR --draft DIR]
                      [--dataset zoo | NAME --root DIR --prompt-mode benchmark|speed --tasks T,...] [-n 20]
                      [--decodings ar,sd,pearl] [--prune none,specvlm,hippo] [--ratios 0.5,0.9] [--gammas 5]
                      [--temperatures 0] [--impls ref,fast,fast-compiled,fast-processes,fast-streams]
                      [--max-new-tokens 128] [--frames 8] [--seed 0] --out FILE.jsonl
    hippo bench sweep --merge FILE.jsonl          (merge the shard files of FILE, run nothing)

The grid (paper/sweep/grid.py): flags take comma-separated values; `--grid PLAN.json` is a JSON object
with the same keys (flag names, "max-new-tokens" or "max_new_tokens"; lists as JSON lists or "a,b"),
flags given on the command line override it. `ar` ignores prune, ratio and gamma; prune `none` ignores
the ratios; fast-processes / fast-streams run pearl only (other decodings are dropped, said once);
fast-streams needs CUDA. Datasets: `zoo` (default: the first n test-split videos with the
detailed-caption question, rendered in memory, recorded as video "zoo:test/<i>") or a benchmark of
paper.sweep.datasets (`load_benchmark`; a sample's segment is read as the frames inside it, sampled with
hippo.video's segment-centre formula). Sampling seed: --seed for greedy rows; for temperature > 0,
seed + the sample's index in the dataset (the row's `seed`).

Row order: pair, then sample, then configuration (plan order). Models are loaded once per pair, each
implementation object made once; each configuration runs once untimed (warm-up: compilation, the
draft's worker) right before its first row in a process (`warmup_s`; --no-warmup skips it).

One row (a JSON object per line):
    key          "<pair>|<dataset>:<prompt mode>|<sample id>|<decoding>|<prune>@<ratio>|gamma=<g>|T=<t>|<impl>|
                 new=<max new tokens>|frames=<f>|seed=<s>|<positions>|<dtype>": the row's identity
    row_index, grid_rows   its place in the grid's row order, and the grid's size
    config       the configuration's fields (paper.sweep.grid.Config)
    pair         {name, target, draft}: the checkpoints
    sample       the sample's record (zoo: split, index, sample_id; benchmarks: BenchmarkSample.as_record())
    video, frames, prompt, decoding, prune, sampling, draft_sampling, seed, gamma, max_new_tokens,
    eos_token_ids, frame_indices, tokens, text, stats
                 the recorded-output row (GenerationResult.as_json, docs/VERIFICATION.md): `hippo verify
                 --recorded` reads these rows as they are (one pair's rows per target); stats hold the
                 timings (decode_s, prefill_s, total_s), mat, accepted_per_round, forwards
    implementation, dtype, device
    correct      multiple-choice benchmark samples: paper.sweep.datasets.score_choice(text, sample); else null
    timeline     the decode's busy spans (hippo.stats.Timeline.as_json: fast-processes, fast-timed), or null
    warmup_s     the untimed warm-up run before this row (null: none ran)
    environment  python, torch, transformers, cpu, gpu, threads, hostname, OMP_NUM_THREADS
    source_sha256, revision   verification.report.source_hash() and git_revision(), once per run
    sweep        {id, file, run}: `id` names the sweep the row belongs to (sweep_id: its output file's
                 name and every row key of its grid, so resumed runs and shards of one grid share it);
                 `run` names the invocation that wrote the row. Figures divide only rows of one id
                 (paper/reproduce/plots/same_run.py)
    shard        [rank, world size] under torchrun, else null
    time_utc     when the row was written

Resume: a row is written with one write, flush and fsync, so an interrupt loses at most the row in
flight. On start the rows already in the output (by key) are skipped and counted as done; a last line
cut short (no newline, or not JSON) is reported in one line and truncated away, so its row is redone.
Rows written by other code (another source_sha256) are refused, naming both hashes, unless
--allow-mixed-code (they are kept, not redone).

Shards: under `torchrun --nproc-per-node K` (RANK, WORLD_SIZE set) rank R runs rows i with
i % K == R of the full row order, writes `<out>.rank<R>-of-<K>.jsonl` (resumable the same way; rows
already in <out> or in any shard file of <out> count as done), then the ranks meet at a
torch.distributed barrier (gloo, env://) and rank 0 merges <out> and every shard into <out> in row
order, each key once (the first met: <out>, then the shards by name), and removes the shards.
`--merge OUT` does that merge alone, for shards run on other machines (ordered by the rows'
row_index); a run without torchrun that finds shard files of its <out> merges them first. Under
torchrun a bare `--device cuda` is each rank's GPU, cuda:<LOCAL_RANK>. While rows run, torchrun's RANK / WORLD_SIZE / LOCAL_RANK are hidden from the process, so
that fast-processes spawns its own draft worker per rank instead of attaching to torchrun's group
(hippo_fast.overlap.processes.session attaches when WORLD_SIZE is 2).
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import platform
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from hippo.errors import ConfigError
from paper.sweep.grid import VARIANTS, Config, Grid, Sample, load_samples, plan

__all__ = ["plan", "run_sweep", "read_rows", "merge_shards", "Grid", "Config"]

SUBCOMMAND = "sweep"
TORCHRUN_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK")
BARRIER_TIMEOUT = datetime.timedelta(days=30)  # ranks wait for the slowest; torchrun ends them if one fails


def say(line: str) -> None:
    print(f"sweep: {line}", file=sys.stderr, flush=True)


# ---- the rows file --------------------------------------------------------------------------------------
def _scan(path: Path) -> tuple[list[dict], int | None, str | None]:
    """(rows, offset where a cut-short last line starts or None, why). A bad line elsewhere is an error."""
    data = path.read_bytes() if path.is_file() else b""
    rows, offset = [], 0
    lines = data.split(b"\n")
    for number, raw in enumerate(lines, start=1):
        last = number == len(lines)
        if raw.strip():
            try:
                row = json.loads(raw)
                if not isinstance(row, dict) or "key" not in row:
                    raise ValueError("not a sweep row (no key)")
                if last:  # complete JSON but no newline: the write was cut after it
                    return rows, offset, "no newline at its end"
                rows.append(row)
            except ValueError as err:
                if last or number == len(lines) - 1 and not lines[-1]:
                    return rows, offset, f"not a complete row ({err})"
                raise ConfigError(f"{path}:{number} is not a sweep row ({err}); only the last line may be cut "
                                  "short: repair the file or pass --out to a new one") from None
        offset += len(raw) + 1
    return rows, None, None


def read_rows(path: str | Path) -> list[dict]:
    """The rows of a sweep file, a cut-short last line left out (the file is not changed)."""
    return _scan(Path(path))[0]


def _repair(path: Path) -> list[dict]:
    """The rows of `path`, after truncating a cut-short last line away (reported in one line)."""
    rows, offset, why = _scan(path)
    if offset is not None:
        say(f"{path}: the last line was cut short ({why}); truncated it, its row will be redone")
        with open(path, "r+b") as f:
            f.truncate(offset)
            f.flush()
            os.fsync(f.fileno())
    return rows


def _check_code(rows: list[dict], source: str, where: str, allow_mixed: bool) -> None:
    other = sorted({r.get("source_sha256") for r in rows} - {source}, key=str)
    if other and not allow_mixed:
        raise ConfigError(f"{where} holds rows written by other code (source sha256 {other[0]}; this code: {source}): "
                          "pass --out to a new file, or --allow-mixed-code to keep those rows and add this code's")


class RowWriter:
    """Appends rows: one write, flush and fsync each."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.file = open(path, "a", encoding="utf-8")

    def write(self, row: dict) -> None:
        self.file.write(json.dumps(row) + "\n")
        self.file.flush()
        os.fsync(self.file.fileno())

    def close(self) -> None:
        self.file.close()


# ---- shards ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Shard:
    rank: int = 0
    world: int = 1
    local_rank: int = 0  # this machine's rank: a bare --device cuda becomes cuda:<local_rank>

    @classmethod
    def from_env(cls) -> Shard:
        """torchrun's RANK / WORLD_SIZE / LOCAL_RANK, else one shard."""
        try:
            world, rank = int(os.environ.get("WORLD_SIZE", "1")), int(os.environ.get("RANK", "0"))
            local = int(os.environ.get("LOCAL_RANK", "0"))
        except ValueError:
            raise ConfigError("RANK / WORLD_SIZE / LOCAL_RANK are not integers: run under torchrun, or unset them") from None
        return cls(rank, world, local) if world > 1 else cls()

    def device(self, device):
        """`device`, with a bare cuda under torchrun made this rank's GPU (LOCAL_RANK modulo the GPUs)."""
        import torch

        if self.world > 1 and device.type == "cuda" and device.index is None:
            return torch.device("cuda", self.local_rank % torch.cuda.device_count())
        return device

    def path(self, out: Path) -> Path:
        return out if self.world == 1 else shard_path(out, self.rank, self.world)


def shard_path(out: str | Path, rank: int, world: int) -> Path:
    out = Path(out)
    return out.with_name(f"{out.name}.rank{rank}-of-{world}.jsonl")


def shard_files(out: str | Path) -> list[Path]:
    out = Path(out)
    return sorted(out.parent.glob(f"{out.name}.rank*-of-*.jsonl"))


def merge_shards(out: str | Path, order: list[str] | None = None, allow_mixed_code: bool = False) -> int:
    """Merge <out> and its shard files into <out>: each key once (the first met: <out>, then shards by
    name), in `order` (row keys) when given, else by the rows' row_index; the shards are removed.
    Returns the number of rows written."""
    out = Path(out)
    shards = shard_files(out)
    if not shards and not out.is_file():
        raise ConfigError(f"--merge {out}: neither {out} nor shard files {out.name}.rank*-of-*.jsonl exist")
    rows: dict[str, dict] = {}
    for path in ([out] if out.is_file() else []) + shards:
        found, offset, why = _scan(path)
        if offset is not None:
            say(f"{path}: the last line was cut short ({why}); left out of the merge")
        for row in found:
            rows.setdefault(row["key"], row)
    hashes = sorted({str(r.get("source_sha256")) for r in rows.values()})
    if len(hashes) > 1 and not allow_mixed_code:
        raise ConfigError(f"{out} and its shards hold rows written by different code (source sha256 "
                          f"{', '.join(hashes)}): merge only rows of one code, or pass --allow-mixed-code")
    if order is not None:
        place = {key: i for i, key in enumerate(order)}
        ranked = sorted(rows.values(), key=lambda r: (place.get(r["key"], len(place)), r.get("row_index", 0)))
    else:
        ranked = sorted(rows.values(), key=lambda r: r.get("row_index", 0))
    partial = out.with_name(out.name + ".merging")
    with open(partial, "w", encoding="utf-8") as f:
        f.writelines(json.dumps(r) + "\n" for r in ranked)
        f.flush()
        os.fsync(f.fileno())
    os.replace(partial, out)
    for path in shards:
        path.unlink()
    say(f"merged {len(shards)} shard file(s) into {out}: {len(ranked)} rows")
    return len(ranked)


@contextlib.contextmanager
def _torchrun_hidden(shard: Shard):
    """Hide torchrun's rank variables while rows run: hippo_fast's two-process PEARL attaches to
    torchrun's group when WORLD_SIZE is 2 (processes.session), but a sweep's ranks are not target/draft
    pairs; each spawns its own draft worker instead."""
    saved = {k: os.environ.pop(k) for k in TORCHRUN_VARS if k in os.environ} if shard.world > 1 else {}
    try:
        yield
    finally:
        os.environ.update(saved)


def _close_draft_workers() -> None:
    processes = sys.modules.get("hippo_fast.overlap.processes")
    if processes is not None:
        processes.close_session()  # it holds this process's default group: the barrier needs its own


def _barrier_and_merge(shard: Shard, out: Path, order: list[str], allow_mixed_code: bool) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method="env://", rank=shard.rank, world_size=shard.world,
                            timeout=BARRIER_TIMEOUT)
    failure = None
    try:
        dist.barrier()
        if shard.rank == 0:
            try:
                merge_shards(out, order, allow_mixed_code)
            except ConfigError as err:  # said after the other ranks are released, not as their hang
                failure = err
        dist.barrier()  # no rank leaves before the merged file exists
    finally:
        dist.destroy_process_group()
    if failure is not None:
        raise failure


# ---- one run --------------------------------------------------------------------------------------------
def environment(device) -> dict:
    import torch
    import transformers

    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {"python": platform.python_version(), "torch": torch.__version__, "transformers": transformers.__version__,
            "cpu": cpu, "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
            "threads": torch.get_num_threads(), "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
            "hostname": socket.gethostname(), "platform": platform.platform()}


def sample_seed(config: Config, sample: Sample) -> int:
    """The keyed-uniform seed of a row: --seed, plus the sample's index when the row samples."""
    return config.seed + sample.index if config.temperature > 0 else config.seed


def request_of(config: Config, sample: Sample):
    from hippo.request import DecodeConfig, GenerationRequest, PruneParams, PruneSpec, SamplingParams

    gamma = config.gamma if isinstance(config.gamma, int) else DecodeConfig.gamma
    decode = DecodeConfig(max_new_tokens=config.max_new_tokens, gamma=gamma,
                          sampling=SamplingParams(config.temperature), seed=sample_seed(config, sample))
    return GenerationRequest(sample.video, sample.prompt, config.frames, config.decoding,
                             PruneSpec(config.prune, config.ratio, config.positions, PruneParams(weights=config.weights)),
                             decode)


def row_order(grid: Grid, configs: list[Config], samples: list[Sample]) -> list[tuple[Config, Sample, str]]:
    """Every (configuration, sample) in the sweep's order, with its key: pair, sample, configuration."""
    return [(c, s, c.key(s.sample_id)) for pair in grid.pair_names for s in samples for c in configs if c.pair == pair]


def sweep_id(out: Path, keys: list[str]) -> str:
    """The identity of one sweep: its output file's name and its grid's row keys in order (12 hex digits).
    Rows with the same id ran interleaved, sample by sample, in one grid: the only rows a speedup or a
    paired difference may divide (paper/reproduce/plots/same_run.py)."""
    import hashlib

    digest = hashlib.sha256(Path(out).name.encode())
    for key in keys:
        digest.update(b"\n" + key.encode())
    return digest.hexdigest()[:12]


def grid_sweep_id(grid: Grid, out: str | Path, also: tuple[Grid, ...] = ()) -> str:
    """The sweep_id run_sweep(grid, out, also=also) gives its rows, without running anything."""
    rows = row_order(grid, planned_configs(grid, tuple(also), []), load_samples(grid))
    return sweep_id(Path(out), [key for _, _, key in rows])


def run_id() -> str:
    """One invocation of run_sweep: UTC start time, host and process id."""
    start = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"{start}-{socket.gethostname()}-{os.getpid()}"


def planned_configs(grid: Grid, also: tuple[Grid, ...], notes: list[str]) -> list[Config]:
    """plan(grid) then each of `also`'s configurations not yet planned: one sweep of several grids, its rows
    interleaved sample by sample. The grids must read the same samples."""
    configs = dict.fromkeys(plan(grid, notes))
    for other in also:
        for name in ("dataset", "root", "prompt_mode", "tasks", "n", "device", "dtype"):
            if getattr(other, name) != getattr(grid, name):
                raise ConfigError(f"the grids of one sweep must read the same samples on one device: {name} is "
                                  f"{getattr(grid, name)!r} in the first and {getattr(other, name)!r} in another; "
                                  "run them as separate sweeps")
        configs.update(dict.fromkeys(plan(other, notes)))
    return list(configs)


def run_sweep(grid: Grid, out: str | Path | None = None, *, allow_mixed_code: bool = False, warmup: bool = True,
              progress: bool = True, also: tuple[Grid, ...] = ()) -> Path:
    """Run every row of `grid` (and of the grids in `also`, interleaved with it sample by sample) not yet in
    `out` (or this rank's shard of it), append them, merge shards under torchrun. Returns <out>."""
    import torch
    from tqdm import tqdm

    from hippo.checkpoint import check_device
    from verification.report import git_revision, source_hash

    out = Path(out or grid.out or "")
    if not str(out) or out.is_dir():
        raise ConfigError("pass --out FILE.jsonl (the rows file; an existing one is resumed)")
    grid.check_device()
    notes: list[str] = []
    configs = planned_configs(grid, tuple(also), notes)
    for line in notes:
        say(line)
    samples = load_samples(grid)
    rows = row_order(grid, configs, samples)
    shard = Shard.from_env()
    mine = [(i, *r) for i, r in enumerate(rows) if i % shard.world == shard.rank]
    path = shard.path(out)
    source = source_hash()
    if shard.world == 1 and shard_files(out):  # shards of an earlier torchrun run: they join <out> first
        _repair(out)
        merge_shards(out, [key for _, _, key in rows], allow_mixed_code)
    existing = _repair(path)
    if shard.world > 1:  # what is in <out> or any shard is merged at the end: done too
        existing += [r for p in [out, *shard_files(out)] if p != path for r in read_rows(p)]
    _check_code(existing, source, str(path) if path == out else f"{out} or its shards", allow_mixed_code)
    done = {r["key"] for r in existing}
    todo = [r for r in mine if r[3] not in done]
    say(f"{len(configs)} configuration(s) x {len(samples)} sample(s) = {len(rows)} rows"
        + (f"; rank {shard.rank} of {shard.world}: {len(mine)}" if shard.world > 1 else "")
        + f"; {len(mine) - len(todo)} already in {path}")
    if grid.threads is not None:
        torch.set_num_threads(grid.threads)
    device = shard.device(check_device(grid.device))
    context = {"environment": environment(device), "source_sha256": source, "revision": git_revision(),
               "sweep": {"id": sweep_id(out, [key for _, _, key in rows]), "file": out.name, "run": run_id()},
               "shard": [shard.rank, shard.world] if shard.world > 1 else None}
    bar = tqdm(total=len(mine), initial=len(mine) - len(todo), desc=f"sweep rank {shard.rank}" if shard.world > 1
               else "sweep", unit="row", file=sys.stderr, disable=not progress, dynamic_ncols=True)
    writer = RowWriter(path)
    try:
        with _torchrun_hidden(shard):
            _run_rows(grid, todo, len(rows), device, context, writer, bar, warmup)
    finally:
        writer.close()
        bar.close()
        _close_draft_workers()
    if shard.world > 1:
        _barrier_and_merge(shard, out, [key for _, _, key in rows], allow_mixed_code)
    return out


def _run_rows(grid: Grid, todo, total: int, device, context: dict, writer: RowWriter, bar, warmup: bool) -> None:
    from hippo.checkpoint import load_adapter
    from hippo.generation import generate, variant

    impls: dict[str, object] = {}
    warmed: set[Config] = set()
    models: dict = {}  # the current pair's: name, record, target, draft
    clip_of: tuple[tuple[str, int], object] | None = None
    for index, config, sample, key in todo:
        if models.get("name") != config.pair:
            models.clear()  # the previous pair's models go before the next pair's come
            target_spec, draft_spec = grid.pair_specs(config.pair)
            needs_draft = any(c.pair == config.pair and c.decoding != "ar" for _, c, _, _ in todo)
            models.update(name=config.pair, record={"name": config.pair, "target": target_spec, "draft": draft_spec},
                          target=load_adapter(target_spec, grid.dtype, str(device)),
                          draft=load_adapter(draft_spec, grid.dtype, str(device)) if needs_draft else None)
        target, draft = models["target"], models["draft"]
        if config.impl not in impls:
            impls[config.impl] = variant(config.impl)
        if clip_of is None or clip_of[0] != (config.pair, sample.index):
            clip_of = ((config.pair, sample.index), sample.clip(config.frames))
        clip = clip_of[1]
        request = request_of(config, sample)
        arguments = (impls[config.impl], target, None if config.decoding == "ar" else draft, request)
        warmup_s = None
        if warmup and config not in warmed:
            start = time.perf_counter()
            generate(*arguments, gamma_auto=config.gamma == "auto", clip=clip)
            warmup_s = time.perf_counter() - start
        warmed.add(config)
        result = generate(*arguments, gamma_auto=config.gamma == "auto", clip=clip)
        row = {"key": key, "row_index": index, "grid_rows": total, "config": config.as_json(),
               "pair": models["record"], "sample": sample.record, **result.as_json()}
        if sample.video.startswith("zoo:"):
            row["video"] = sample.video  # a label (rendered in memory), not a file to make absolute
        row.update(implementation=config.impl, dtype=config.dtype, device=str(device), correct=sample.correct(result.text),
                   timeline=None if result.timeline is None else result.timeline.as_json(), warmup_s=warmup_s,
                   **context, time_utc=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"))
        writer.write(row)
        bar.update(1)


# ---- the command ----------------------------------------------------------------------------------------
# The grid's and the data's flags (comma-separated values; None when not given: a --grid file's value holds).
GRID_OPTIONS = (
    ("--pairs", "zoo pairs, e.g. qwen,llava (default qwen)"),
    ("--target", "an own pair's target folder (instead of --pairs)"),
    ("--draft", "an own pair's draft folder"),
    ("--decodings", "ar,sd,pearl (default all three)"),
    ("--prune", "pruning methods: none,random,uniform,attn,specvlm,hippo (default none)"),
    ("--ratios", "pruning ratios in [0, 1) (default 0.9; prune none: 0)"),
    ("--gammas", "draft lengths, integers or auto (default 5)"),
    ("--temperatures", "0 = greedy (default 0)"),
    ("--weights", "hippo's score weights w_g:w_t:w_s, e.g. 1:1:1,0:1:1 (ablations; default 1:1:1)"),
    ("--impls", f"implementations: {', '.join(VARIANTS)} (default fast)"),
)
DATA_OPTIONS = (
    ("--dataset", "zoo (default) or a paper.sweep.datasets benchmark name"),
    ("--root", "the benchmark's folder"),
    ("--prompt-mode", "benchmarks: benchmark (default) or speed"),
    ("--tasks", "benchmarks: the tasks to keep, comma-separated"),
    ("-n", "samples (default 20)"),
    ("--max-new-tokens", "default 128"),
    ("--frames", "frames per video (default 8)"),
    ("--seed", "keyed-uniform seed (sampled rows: + the sample's index); default 0"),
    ("--positions", "the draft's position policy: keep (default) or compact"),
    ("--dtype", "float32 (default), bfloat16, float16"),
    ("--device", "cpu (default) or cuda[:N]"),
    ("--threads", "torch.set_num_threads (default: torch's)"),
)


def add_parser(bench) -> None:
    """`hippo bench sweep`, in the `bench` group of paper/measure/perf.py. Grid flags default to None so
    that a --grid file's values hold unless a flag is given."""
    p = bench.add_parser(SUBCOMMAND, help="a grid of configurations over a dataset, one JSONL row each (resumable)",
                         description=__doc__.split("\n\n")[0])
    g = p.add_argument_group("the grid (comma-separated values; defaults in paper/sweep/grid.py Grid)")
    g.add_argument("--grid", default=None, metavar="PLAN.json", help="a JSON object with these flags' names as keys")
    d = p.add_argument_group("data and settings")
    for group, flags in ((g, GRID_OPTIONS), (d, DATA_OPTIONS)):
        for flag, help_ in flags:
            group.add_argument(flag, default=None, help=help_)  # None: a --grid file's value holds
    o = p.add_argument_group("output")
    o.add_argument("--out", default=None, metavar="FILE.jsonl", help="the rows file (resumed when it exists)")
    o.add_argument("--allow-mixed-code", action="store_true",
                   help="keep rows of another source hash in the file (default: refuse)")
    o.add_argument("--no-warmup", action="store_true", help="no untimed run before each configuration's first row")
    o.add_argument("--no-progress", action="store_true", help="no progress bar")
    o.add_argument("--dry-run", action="store_true", help="print the configurations and the row count, run nothing")
    o.add_argument("--merge", default=None, metavar="OUT", help="merge OUT's shard files into OUT and stop")


GRID_FLAGS = (*(flag.lstrip("-").replace("-", "_") for flag, _ in GRID_OPTIONS + DATA_OPTIONS), "out")  # their dests


def grid_from_args(args) -> Grid:
    given = {k: getattr(args, k) for k in GRID_FLAGS if getattr(args, k) is not None}
    return Grid.from_json(args.grid, given) if args.grid else Grid.from_mapping(given, source="hippo bench sweep")


def run(args) -> int:
    if args.merge:
        merge_shards(args.merge, allow_mixed_code=args.allow_mixed_code)
        return 0
    grid = grid_from_args(args)
    if args.dry_run:
        notes: list[str] = []
        configs = plan(grid, notes)
        for line in notes:
            say(line)
        for c in configs:
            print(c.key("<sample>"))
        print(f"{len(configs)} configuration(s) x {grid.n} sample(s) (at most) = {len(configs) * grid.n} rows")
        return 0
    run_sweep(grid, allow_mixed_code=args.allow_mixed_code, warmup=not args.no_warmup, progress=not args.no_progress)
    return 0
