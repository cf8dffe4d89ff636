"""What `hippo bench sweep` runs: the grid (flags or a JSON plan), its configurations, the samples.

A `Grid` is lists of values per axis (pairs, decodings, pruning methods, ratios, gammas, temperatures,
implementations) and one value per setting (dataset, samples, max new tokens, frames, seed, dtype,
device). `plan(grid)` expands it into `Config`s, one per distinct thing to run:
- `ar` ignores prune, ratio and gamma: one configuration per (pair, temperature, implementation);
- prune `none` ignores the ratios: one configuration with ratio 0;
- `weights` (hippo's score weights w_g:w_t:w_s, the ablations) apply to prune `hippo` only;
- `fast-processes` and `fast-streams` overlap PEARL's draft and target: other decodings are dropped
  (SD and AR are serial by definition; they would repeat `fast`), with one line saying so.
`load_samples(grid)` gives the dataset's samples in order; rows are (sample, configuration) pairs.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from hippo.errors import ConfigError, VideoError
from hippo.generation import VARIANTS  # the implementation variants a grid names (--impls)

OVERLAPPED = ("fast-processes", "fast-streams")  # PEARL only
ZOO = "zoo"
ZOO_SPLIT = "test"
ZOO_PROMPT_MODE = "detail"  # the zoo's speed protocol: the detailed-caption question (hippo.zoo.dataset)
PROMPT_MODES = ("benchmark", "speed")  # paper.sweep.datasets.load_benchmark

# Grid keys: CLI flag (without --, dashes as underscores) -> kind. Lists accept "a,b" or a JSON list.
LIST_KEYS = {"pairs": str, "decodings": str, "prune": str, "ratios": float, "gammas": "gamma",
             "temperatures": float, "impls": str, "tasks": str, "weights": "weights"}
DEFAULT_WEIGHTS = (1.0, 1.0, 1.0)  # hippo's (w_g, w_t, w_s): PruneParams' default
SCALAR_KEYS = {"target": str, "draft": str, "dataset": str, "root": str, "prompt_mode": str, "n": int,
               "max_new_tokens": int, "frames": int, "seed": int, "positions": str, "dtype": str,
               "device": str, "threads": int, "out": str}


@dataclass(frozen=True)
class Grid:
    pairs: tuple[str, ...] = ("qwen",)
    target: str | None = None  # an own pair (folders or zoo:NAME) instead of `pairs`
    draft: str | None = None
    dataset: str = ZOO
    root: str | None = None  # the benchmark's folder (paper.sweep.datasets)
    prompt_mode: str | None = None  # benchmarks: benchmark | speed (default benchmark)
    tasks: tuple[str, ...] | None = None
    n: int = 20
    decodings: tuple[str, ...] = ("ar", "sd", "pearl")
    prune: tuple[str, ...] = ("none",)
    ratios: tuple[float, ...] = (0.9,)
    gammas: tuple[int | str, ...] = (5,)  # an int, or "auto" (PEARL's measured draft length)
    temperatures: tuple[float, ...] = (0.0,)
    weights: tuple[tuple[float, float, float], ...] = (DEFAULT_WEIGHTS,)  # hippo's score weights (ablations)
    impls: tuple[str, ...] = ("fast",)
    max_new_tokens: int = 128
    frames: int = 8
    seed: int = 0
    positions: str = "keep"
    dtype: str = "float32"
    device: str = "cpu"
    threads: int | None = None  # torch.set_num_threads; None: as torch starts
    out: str | None = None

    @classmethod
    def from_mapping(cls, values: dict, source: str = "the grid") -> Grid:
        """A validated Grid from flag-named values ("max-new-tokens" or "max_new_tokens"; lists as
        "a,b" or JSON lists). Raises ConfigError naming the bad key or value."""
        out = {}
        for raw_key, value in values.items():
            key = raw_key.replace("-", "_")
            if key not in LIST_KEYS and key not in SCALAR_KEYS:
                known = ", ".join(sorted(k.replace("_", "-") for k in (*LIST_KEYS, *SCALAR_KEYS)))
                raise ConfigError(f"{source}: unknown key {raw_key!r}; known: {known}")
            if value is None:
                continue
            out[key] = (_list(key, value, LIST_KEYS[key], source) if key in LIST_KEYS
                        else _scalar(key, value, SCALAR_KEYS[key], source))
        if "target" in out and "pairs" in out:
            raise ConfigError(f"{source}: give zoo pairs (pairs) or an own pair (target, draft), not both")
        grid = cls(**out)
        grid.check()
        return grid

    @classmethod
    def from_json(cls, path: str | Path, overrides: dict | None = None) -> Grid:
        """The JSON object in `path` (a committed sweep plan), with `overrides` (flags given) on top."""
        path = Path(path)
        try:
            values = json.loads(path.read_text())
        except OSError as err:
            raise ConfigError(f"--grid {path}: cannot read it ({err.strerror})") from None
        except json.JSONDecodeError as err:
            raise ConfigError(f"--grid {path}: not valid JSON ({err.msg} at line {err.lineno})") from None
        if not isinstance(values, dict):
            raise ConfigError(f"--grid {path}: a sweep plan is a JSON object of flag names, got {type(values).__name__}")
        return cls.from_mapping({**values, **(overrides or {})}, source=f"--grid {path}")

    def check(self) -> None:
        from hippo.checkpoint import DTYPES
        from hippo.request import DECODINGS, PRUNING_METHOD_NAMES
        from hippo.zoo.registry import PAIRS

        if self.draft is not None and self.target is None:
            raise ConfigError("--draft DIR needs --target DIR (or name zoo pairs with --pairs)")
        if self.target is not None and self.draft is None and set(self.decodings) != {"ar"}:
            raise ConfigError("--target DIR needs --draft DIR for sd and pearl (or run --decodings ar only)")
        if self.target is None:
            for pair in self.pairs:
                if pair not in PAIRS:
                    raise ConfigError(f"unknown pair {pair!r}; zoo pairs: {', '.join(PAIRS)} (or --target DIR --draft DIR)")
        _subset("decoding", self.decodings, DECODINGS)
        _subset("pruning method", self.prune, PRUNING_METHOD_NAMES)
        _subset("implementation", self.impls, VARIANTS)
        for r in self.ratios:
            if not 0 <= r < 1:
                raise ConfigError(f"pruning ratio {r} is outside [0, 1) (the fraction of visual tokens removed)")
        for g in self.gammas:
            if g != "auto" and g < 1:
                raise ConfigError(f"gamma {g}: the draft length is an integer >= 1, or auto")
        from hippo.request import PruneParams

        for w in self.weights:
            PruneParams(weights=w)  # ConfigError naming the bad triple
        for t in self.temperatures:
            if not (math.isfinite(t) and t >= 0):
                raise ConfigError(f"temperature {t}: give a number >= 0 (0 = greedy)")
        for name in ("n", "max_new_tokens", "frames"):
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        if self.positions not in ("keep", "compact"):
            raise ConfigError(f"unknown position policy {self.positions!r}; choose keep or compact")
        if self.dtype not in DTYPES:
            raise ConfigError(f"unknown dtype {self.dtype!r}; choose one of {', '.join(DTYPES)}")
        if self.dataset == ZOO:
            if self.prompt_mode not in (None, ZOO_PROMPT_MODE):
                raise ConfigError(f"--prompt-mode {self.prompt_mode}: the zoo dataset asks its detailed-caption "
                                  "question only; drop --prompt-mode (it is for benchmarks)")
            if self.root is not None or self.tasks:
                raise ConfigError("--root and --tasks are for benchmark datasets; the zoo dataset is rendered in memory")
            if self.frames > 8 and (self.frames % 4 or self.frames > 64):
                raise ConfigError(f"--frames {self.frames}: zoo videos have 8 frames, or are rendered longer at a "
                                  "multiple of 4 up to 64 (the smol pair: 16 or 32)")
        else:
            if self.prompt_mode not in (None, *PROMPT_MODES):
                raise ConfigError(f"unknown --prompt-mode {self.prompt_mode!r}; choose one of {', '.join(PROMPT_MODES)}")
            if self.root is None:
                raise ConfigError(f"--dataset {self.dataset} needs --root DIR (the benchmark's folder)")

    def check_device(self) -> None:
        """The device exists; fast-streams has CUDA (cheap: before any model is loaded)."""
        from hippo.checkpoint import check_device

        device = check_device(self.device)
        if "fast-streams" in self.impls and device.type != "cuda":
            raise ConfigError("implementation fast-streams runs the draft and the target on two CUDA streams: it "
                              "needs --device cuda on a machine with a GPU (use fast-processes on a CPU)")

    @property
    def pair_names(self) -> tuple[str, ...]:
        return (own_pair_name(self.target, self.draft),) if self.target is not None else self.pairs

    def pair_specs(self, name: str) -> tuple[str, str | None]:
        """(target, draft) checkpoint arguments of pair `name` (zoo:NAME, or absolute folders)."""
        if self.target is not None:
            return own_pair_specs(self.target, self.draft)
        from hippo.zoo.registry import PAIRS, ZOO_PREFIX

        target, draft = PAIRS[name]
        return ZOO_PREFIX + target, ZOO_PREFIX + draft

    @property
    def dataset_prompt_mode(self) -> str:
        return ZOO_PROMPT_MODE if self.dataset == ZOO else (self.prompt_mode or "benchmark")


def own_pair_specs(target: str, draft: str | None) -> tuple[str, str | None]:
    """An own pair's checkpoints as rows record them: folders made absolute, zoo:NAME as it is."""
    def spec(path):
        return path if path is None or str(path).startswith("zoo:") else str(Path(path).resolve())

    return spec(target), spec(draft)


def own_pair_name(target: str, draft: str | None) -> str:
    """An own pair's name in rows and keys: "<target>+<draft>" (own_pair_specs)."""
    t, d = own_pair_specs(target, draft)
    return f"{t}+{d or ''}"


def _subset(what: str, values, known) -> None:
    for v in values:
        if v not in known:
            raise ConfigError(f"unknown {what} {v!r}; choose from {', '.join(known)}")
    if not values:
        raise ConfigError(f"no {what} given: name at least one")


def _convert(key: str, value, kind, source: str):
    try:
        if kind == "gamma":
            return "auto" if str(value).strip() == "auto" else int(str(value).strip())
        if kind == "weights":  # "w_g:w_t:w_s" or a JSON list of three numbers
            items = value.split(":") if isinstance(value, str) else value
            if len(items) != 3:
                raise ValueError
            return tuple(float(x) for x in items)
        if kind is int and isinstance(value, float) and not value.is_integer():
            raise ValueError
        return kind(value.strip() if isinstance(value, str) else value)
    except (TypeError, ValueError):
        want = {int: "an integer", float: "a number", str: "text", "gamma": "an integer or auto",
                "weights": "three weights w_g:w_t:w_s (e.g. 0:1:1)"}[kind]
        raise ConfigError(f"{source}: {key.replace('_', '-')} {value!r} is not {want}") from None


def _list(key: str, value, kind, source: str) -> tuple:
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)):
        raise ConfigError(f"{source}: {key.replace('_', '-')} is a list (\"a,b\" or a JSON list), got {value!r}")
    return tuple(_convert(key, v, kind, source) for v in items if not (isinstance(v, str) and not v.strip()))


def _scalar(key: str, value, kind, source: str):
    if isinstance(value, (list, dict)):
        raise ConfigError(f"{source}: {key.replace('_', '-')} takes one value, got {value!r}")
    return _convert(key, value, kind, source)


# ---- configurations ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Config:
    """One thing to run on every sample. AR rows have prune none, ratio 0 and gamma None."""

    pair: str
    dataset: str
    prompt_mode: str
    decoding: str
    prune: str
    ratio: float
    gamma: int | str | None
    temperature: float
    impl: str
    max_new_tokens: int
    frames: int
    seed: int
    positions: str
    dtype: str
    weights: tuple[float, float, float] = DEFAULT_WEIGHTS  # hippo pruning's (w_g, w_t, w_s)

    def as_json(self) -> dict:
        return asdict(self)

    def key(self, sample_id: str) -> str:
        """The row key: readable, stable across runs (every field, in a fixed order)."""
        return "|".join([self.pair, f"{self.dataset}:{self.prompt_mode}", sample_id, self.decoding,
                         f"{self.prune}@{self.ratio!r}", f"gamma={self.gamma}", f"T={self.temperature!r}",
                         self.impl, f"new={self.max_new_tokens}", f"frames={self.frames}", f"seed={self.seed}",
                         self.positions, self.dtype]
                        + ([] if self.weights == DEFAULT_WEIGHTS else ["weights=" + ":".join(f"{w:g}" for w in self.weights)]))


def plan(grid: Grid, notes: list[str] | None = None) -> list[Config]:
    """The grid's distinct configurations, in order (pair, decoding, prune, ratio, gamma, temperature,
    implementation). Combinations that cannot run are left out; `notes` gets one line per reason."""
    configs: dict[Config, None] = {}
    dropped: dict[str, set[str]] = {}
    for pair in grid.pair_names:
        for decoding in grid.decodings:
            for method in (("none",) if decoding == "ar" else grid.prune):
                for ratio, weights in [(r, w) for r in ((0.0,) if method == "none" else grid.ratios)
                                       for w in (grid.weights if method == "hippo" else (DEFAULT_WEIGHTS,))]:
                    for gamma in ((None,) if decoding == "ar" else grid.gammas):
                        for temperature in grid.temperatures:
                            for impl in grid.impls:
                                if impl in OVERLAPPED and decoding != "pearl":
                                    dropped.setdefault(f"{impl} overlaps PEARL's draft and target, so it runs pearl "
                                                       "only", set()).add(decoding)
                                    continue
                                configs[Config(pair, grid.dataset, grid.dataset_prompt_mode, decoding, method,
                                               float(ratio), gamma, float(temperature), impl, grid.max_new_tokens,
                                               grid.frames, grid.seed, grid.positions, grid.dtype, weights)] = None
    if notes is not None:
        for reason, decodings in dropped.items():
            notes.append(f"skipped: {reason} (dropped its {', '.join(sorted(decodings))} combinations)")
    return list(configs)


# ---- samples ----------------------------------------------------------------------------------------------
@dataclass
class Sample:
    """One dataset item: what its rows record, and how to get its frames."""

    index: int  # position in the dataset's list (the sampling seed adds it)
    sample_id: str
    video: str  # as recorded: a file, or zoo:<split>/<index> for a zoo clip rendered in memory
    prompt: str
    record: dict  # the sample's own fields, in every row
    clip: Callable[[int], object] = field(repr=False)  # frames -> hippo.video.VideoClip
    source: object = None  # the paper.sweep.datasets BenchmarkSample (score_choice reads it)

    def correct(self, text: str) -> bool | None:
        """Multiple-choice samples: paper.sweep.datasets.score_choice(text, sample); others None."""
        if self.source is None or not getattr(self.source, "choices", None):
            return None
        from paper.sweep import datasets

        return datasets.score_choice(text, self.source)


def load_samples(grid: Grid) -> list[Sample]:
    return zoo_samples(grid.n, grid.frames) if grid.dataset == ZOO else benchmark_samples(grid)


def zoo_samples(n: int, frames: int = 8) -> list[Sample]:
    """The first n test-split videos of the zoo with the detailed-caption question, rendered in memory:
    the 8-frame clips (a row's frames taken from them as from a file), or, for `frames` above 8, the
    videos rendered at that length (labelled "zoo:test/<i>@<frames>")."""
    from hippo.zoo.dataset import DETAIL_PROMPT, SPLIT_SIZES, video_label

    if n > SPLIT_SIZES[ZOO_SPLIT]:
        raise ConfigError(f"-n {n}: the zoo's {ZOO_SPLIT} split has {SPLIT_SIZES[ZOO_SPLIT]} videos")
    samples = []
    prompt = DETAIL_PROMPT
    for i in range(n):
        sample_id = f"{ZOO_SPLIT}/{i}"  # rendered when a row needs its frames
        label = video_label(ZOO_SPLIT, i, frames if frames > 8 else 8)
        record = {"dataset": ZOO, "sample_id": sample_id, "split": ZOO_SPLIT, "index": i, "video": label,
                  "question_type": "detail", "prompt": prompt}
        samples.append(Sample(i, sample_id, label, prompt, record, _zoo_frames(label)))
    return samples


def _zoo_frames(label: str):
    def frames(n: int):
        from hippo.zoo.dataset import labelled_clip

        return labelled_clip(label, n)  # the formula of hippo.video, over the label's frames

    return frames


def benchmark_samples(grid: Grid) -> list[Sample]:
    """paper.sweep.datasets.load_benchmark(dataset, root, prompt_mode, tasks, limit=n), imported on use."""
    try:
        from paper.sweep import datasets
    except ImportError as err:
        raise ConfigError(f"--dataset {grid.dataset}: the benchmark loaders (paper.sweep.datasets) cannot be imported "
                          f"({err}); use --dataset zoo") from None
    loaded = datasets.load_benchmark(grid.dataset, grid.root, prompt_mode=grid.dataset_prompt_mode,
                                     tasks=list(grid.tasks) if grid.tasks else None, limit=grid.n)
    folders = sorted({str(s.task) for s in loaded if getattr(s, "frame_folder", None) is not None})
    if folders:  # hippo.video reads video files; a folder of JPEG frames has no loader here
        raise ConfigError(f"--dataset {grid.dataset}: the samples of task(s) {', '.join(folders)} are folders of "
                          "frames, not video files, which the sweep does not read: leave them out with --tasks")
    samples = []
    for i, s in enumerate(loaded):
        record = s.as_record()
        record.setdefault("sample_id", s.sample_id)
        samples.append(Sample(i, str(s.sample_id), str(s.video), s.prompt, record,
                              _file_frames(Path(s.video), s.segment), source=s))
    return samples


def segment_indices(start_s: float, end_s: float, fps: float, num_source: int, n: int, path) -> tuple[int, ...]:
    """The n frames of [start_s, end_s]: frames first..last with first = ceil(start * fps) and
    last = floor(end * fps) (clipped to the video), sampled by hippo.video's segment-centre formula."""
    from hippo.video import sample_frame_indices

    first = max(0, math.ceil(start_s * fps - 1e-6))
    last = min(num_source - 1, math.floor(end_s * fps + 1e-6))
    count = last - first + 1
    if count < n:
        raise VideoError(f"{path}: the segment {start_s:g}-{end_s:g} s holds {max(count, 0)} frames at {fps:g} fps, "
                         f"{n} requested: lower --frames to at most {max(count, 0)}")
    return tuple(first + i for i in sample_frame_indices(count, n))


def _file_frames(path: Path, segment):
    def frames(n: int):
        from hippo.video import load_video

        if segment is None:
            return load_video(path, n)
        probe = load_video(path, 1)  # the stream's frame count and rate
        indices = segment_indices(segment[0], segment[1], probe.native_fps, probe.num_source_frames, n, path)
        return load_video(path, None, indices=indices)

    return frames
