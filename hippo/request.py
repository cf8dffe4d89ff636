"""The request every implementation (hippo_ref, hippo_fast) takes and the result it returns: how to
sample, how to decode, how to prune the draft, and the whole generation request. Plain validated data
shared by the CLI, the audit and the benchmarks, so none of them imports an implementation for it.

The definitions these parameters drive live in the reference: sampling in hippo_ref/sampling.py, the
decode loops in hippo_ref/decoding/, the pruning methods in hippo_ref/pruning/methods.py.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, field, fields

import torch

from hippo.errors import ConfigError
from hippo.stats import DecodeStats, RequestStats

DECODINGS = ("ar", "sd", "pearl")
# The pruning methods (hippo_ref.pruning.methods.PRUNING_METHODS implements exactly these).
PRUNING_METHOD_NAMES = ("none", "random", "uniform", "attn", "specvlm", "hippo")
# Methods that read the target's scores (computed from its one prefill by scored_prefill).
NEEDS_SCORES = frozenset({"attn", "specvlm", "hippo"})
BUDGETS = ("per-frame", "global")
DEFAULT_BUDGET = {"random": "per-frame", "hippo": "per-frame", "attn": "global", "specvlm": "global"}


# ---- sampling -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SamplingParams:
    """temperature 0 means greedy; top_k / top_p as HF's warpers (applied in that order, after temperature)."""

    temperature: float = 0.0
    top_k: int | None = None
    top_p: float | None = None

    def __post_init__(self):
        if not self.temperature >= 0:
            raise ConfigError(f"temperature must be >= 0 (0 = greedy), got {self.temperature}")
        if self.top_k is not None and self.top_k < 1:
            raise ConfigError(f"top_k must be a positive integer, got {self.top_k}")
        if self.top_p is not None and not 0 < self.top_p <= 1:
            raise ConfigError(f"top_p must be in (0, 1], got {self.top_p}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


# ---- decoding ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DecodeConfig:
    """How to decode. `draft_sampling` defaults to `sampling` (the draft samples like the target)."""

    max_new_tokens: int = 64
    gamma: int = 5
    sampling: SamplingParams = field(default_factory=SamplingParams)
    draft_sampling: SamplingParams | None = None
    seed: int = 0
    eos_token_ids: tuple[int, ...] = ()

    def __post_init__(self):
        if self.max_new_tokens < 1:
            raise ConfigError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.gamma < 1:
            raise ConfigError(f"gamma (draft length) must be >= 1, got {self.gamma}")

    @property
    def draft_params(self) -> SamplingParams:
        return self.draft_sampling if self.draft_sampling is not None else self.sampling


@dataclass
class DecodeResult:
    tokens: list[int]
    stats: DecodeStats
    timeline: object | None = None  # hippo.stats.Timeline: an overlapped decode, or a serial one asked to record (fast-timed)


# ---- pruning (the draft's context only) --------------------------------------------------------------
@dataclass(frozen=True)
class PruneParams:
    """Every choice the paper leaves OPEN, with the documented defaults (CLI flag in brackets)."""

    weights: tuple[float, float, float] = (1.0, 1.0, 1.0)  # (w_g, w_t, w_s), divided by their sum [--weights]
    budget: str | None = None  # per-frame | global; None = the method's DEFAULT_BUDGET [--budget]
    seed: int = 0  # random [--prune-seed]
    specvlm_mass: float = 0.4  # specvlm stage I attention mass [--specvlm-mass]
    attn_layers: tuple[int, ...] | None = None  # s_attn layers, None = all; negative from the end [--attn-layers]
    text_tokens: int | None = None  # s_attn queries: None = all text after the video, k = last k [--text-tokens]
    first_frame_temp: float = 1.0  # s_temp of frame 0 [--first-frame-temp]
    spatial_window: int = 3  # s_spat window side, odd [--spatial-window]

    def __post_init__(self):
        weights = tuple(float(w) for w in self.weights)
        if len(weights) != 3:
            raise ConfigError(f"pruning weights are three numbers (w_g, w_t, w_s), got {len(weights)}: {weights}")
        if any(not math.isfinite(w) or w < 0 for w in weights):
            raise ConfigError(f"pruning weights must be finite and >= 0, got (w_g, w_t, w_s) = {weights}: "
                              "a negative weight would prefer tokens with LOW scores; use 0 to switch a score off")
        if sum(weights) == 0:
            raise ConfigError("pruning weights (w_g, w_t, w_s) are all zero: at least one score must count; "
                              "the default is 1,1,1")
        object.__setattr__(self, "weights", weights)
        if self.budget is not None and self.budget not in BUDGETS:
            raise ConfigError(f"unknown budget {self.budget!r}; choose per-frame or global")
        if not 0 < self.specvlm_mass <= 1:
            raise ConfigError(f"specvlm mass must be in (0, 1] (the share of attention stage I keeps), "
                              f"got {self.specvlm_mass}")
        if self.attn_layers is not None:
            object.__setattr__(self, "attn_layers", tuple(int(x) for x in self.attn_layers))
            if not self.attn_layers:
                raise ConfigError("--attn-layers is empty: give layer numbers like 0,1,-1 or 'all'")
        if self.text_tokens is not None and self.text_tokens < 1:
            raise ConfigError(f"text tokens must be >= 1 (the last k text tokens after the video), "
                              f"got {self.text_tokens}; omit it for all of them")
        if self.spatial_window < 3 or self.spatial_window % 2 == 0:
            raise ConfigError(f"spatial window must be an odd number >= 3 (3 means 3x3), got {self.spatial_window}")

    @classmethod
    def from_dict(cls, values: dict) -> PruneParams:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"unknown pruning parameter(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        return cls(**values)


@dataclass(frozen=True)
class PruneSpec:
    """Which pruning method, how much to prune, how the kept tokens are positioned in the draft."""

    method: str = "none"
    ratio: float = 0.0
    positions: str = "keep"
    params: PruneParams = field(default_factory=PruneParams)  # a dict is converted

    def __post_init__(self):
        if self.method not in PRUNING_METHOD_NAMES:
            raise ConfigError(
                f"unknown pruning method {self.method!r}; choose one of {', '.join(sorted(PRUNING_METHOD_NAMES))}"
            )
        if not 0 <= self.ratio < 1:
            raise ConfigError(
                f"pruning ratio must be in [0, 1) (the fraction of visual tokens removed), got {self.ratio}"
            )
        if self.positions not in ("keep", "compact"):
            raise ConfigError(f"unknown position policy {self.positions!r}; choose keep or compact")
        if isinstance(self.params, dict):
            object.__setattr__(self, "params", PruneParams.from_dict(self.params))


# ---- one request -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class GenerationRequest:
    video: str
    prompt: str
    frames: int = 8
    decoding: str = "pearl"
    prune: PruneSpec = field(default_factory=PruneSpec)
    config: DecodeConfig = field(default_factory=DecodeConfig)

    def __post_init__(self):
        if self.decoding not in DECODINGS:
            raise ConfigError(f"unknown decoding {self.decoding!r}; choose one of {', '.join(DECODINGS)}")


    @classmethod
    def from_record(cls, obj, defaults: GenerationRequest) -> GenerationRequest:
        """The request of one line of a requests file (`hippo generate --requests`): the request fields of
        a recorded-output row (as_record's), each optional, `defaults` (the command line's) for the rest;
        the fields a row's result carries (tokens, text, stats, ...) are ignored, so that an output row is
        also a request. ConfigError naming the field that is wrong."""
        if not isinstance(obj, dict):
            raise ConfigError(f"a request is a JSON object, got {type(obj).__name__}")
        unknown = sorted(set(obj) - set(REQUEST_FIELDS) - set(RESULT_FIELDS))
        if unknown:
            raise ConfigError(f"unknown field(s) {', '.join(unknown)}; a request's fields are {', '.join(REQUEST_FIELDS)}")
        c, prune = defaults.config, defaults.prune
        values = {"video": defaults.video, "prompt": defaults.prompt, "frames": defaults.frames,
                  "decoding": defaults.decoding}
        for name, kind in (("video", str), ("prompt", str), ("frames", int), ("decoding", str)):
            if name in obj:
                values[name] = _typed(obj, name, kind)
        for name in ("video", "prompt"):
            if not values[name]:
                raise ConfigError(f"no {name}: give \"{name}\" in the line (or --{name} for every line)")
        prune_fields = obj.get("prune", {})
        if not isinstance(prune_fields, dict):
            raise ConfigError("prune must be an object {method, ratio, positions, params}")
        unknown = sorted(set(prune_fields) - {"method", "ratio", "positions", "params"})
        if unknown:
            raise ConfigError(f"unknown prune field(s) {', '.join(unknown)}; known: method, ratio, positions, params")
        params = prune_fields.get("params", None)
        if params is not None and not isinstance(params, dict):
            raise ConfigError("prune.params must be an object of pruning parameters")
        spec = PruneSpec(_typed(prune_fields, "method", str, prune.method), _typed(prune_fields, "ratio", float, prune.ratio),
                         _typed(prune_fields, "positions", str, prune.positions),
                         prune.params if params is None else PruneParams.from_dict(params))
        eos = obj.get("eos_token_ids", list(c.eos_token_ids))
        if not isinstance(eos, list) or not all(isinstance(t, int) and not isinstance(t, bool) for t in eos):
            raise ConfigError("eos_token_ids must be a list of integer token ids (empty: the target's own)")
        config = DecodeConfig(
            max_new_tokens=_typed(obj, "max_new_tokens", int, c.max_new_tokens),
            gamma=_typed(obj, "gamma", int, c.gamma),
            sampling=_sampling(obj, "sampling", c.sampling),
            draft_sampling=_sampling(obj, "draft_sampling", c.draft_sampling),
            seed=_typed(obj, "seed", int, c.seed),
            eos_token_ids=tuple(eos),
        )
        return cls(values["video"], values["prompt"], values["frames"], values["decoding"], spec, config)

    def as_record(self) -> dict:
        """The request's fields of a recorded-output row (docs/VERIFICATION.md, "Recorded outputs"):
        what `hippo verify --recorded` needs to rebuild the target's input and its law."""
        c = self.config
        prune = self.prune
        return {
            "video": os.path.abspath(self.video),
            "frames": self.frames,
            "prompt": self.prompt,
            "decoding": self.decoding,
            "prune": {"method": prune.method, "ratio": prune.ratio, "positions": prune.positions,
                      "params": asdict(prune.params)},
            "sampling": asdict(c.sampling),
            "draft_sampling": None if c.draft_sampling is None else asdict(c.draft_sampling),
            "seed": c.seed,
            "gamma": c.gamma,
            "max_new_tokens": c.max_new_tokens,
            "eos_token_ids": list(c.eos_token_ids),
        }


# A recorded-output row's fields: the request's (GenerationRequest.as_record), and those of its result and
# run (GenerationResult.as_json, `hippo generate --json`), which a requests file may carry and are ignored.
REQUEST_FIELDS = ("video", "frames", "prompt", "decoding", "prune", "sampling", "draft_sampling", "seed", "gamma",
                  "max_new_tokens", "eos_token_ids")
RESULT_FIELDS = ("frame_indices", "tokens", "text", "stats", "timeline", "implementation", "overlap", "target", "draft",
                 "dtype", "line", "error")


def _typed(obj: dict, name: str, kind: type, default=None, nullable: bool = False):
    """obj[name] (default when absent) as `kind`: an int is a float too; a bool is neither; null only
    where `nullable`."""
    if name not in obj:
        return default
    value = obj[name]
    if value is None and nullable:
        return None
    ok = isinstance(value, kind) or (kind is float and isinstance(value, int))
    if not ok or isinstance(value, bool):
        raise ConfigError(f"{name} must be {'a string' if kind is str else 'a number' if kind is float else 'an integer'}, "
                          f"got {value!r}")
    return float(value) if kind is float else value


def _sampling(obj: dict, name: str, default: SamplingParams | None) -> SamplingParams | None:
    if name not in obj:
        return default
    if obj[name] is None:
        return None if name == "draft_sampling" else SamplingParams()
    fields_ = obj[name]
    if not isinstance(fields_, dict) or set(fields_) - {"temperature", "top_k", "top_p"}:
        raise ConfigError(f"{name} must be an object with temperature, top_k, top_p, got {fields_!r}")
    return SamplingParams(_typed(fields_, "temperature", float, 0.0), _typed(fields_, "top_k", int, nullable=True),
                          _typed(fields_, "top_p", float, nullable=True))


@dataclass
class GenerationResult:
    tokens: list[int]
    text: str
    stats: RequestStats
    kept_grid_indices: torch.Tensor | None = None
    request: GenerationRequest | None = None  # as run: the target's EOS ids filled in, gamma as measured
    frame_indices: tuple[int, ...] | None = None  # the video frames the models read
    timeline: object | None = None  # hippo.stats.Timeline of an overlapped decode, or of a serial one that recorded it

    def as_json(self) -> dict:
        """One recorded-output row: the request, the frames, the tokens, the stats."""
        row = self.request.as_record() if self.request is not None else {}
        if self.frame_indices is not None:
            row["frame_indices"] = list(self.frame_indices)
        row.update(tokens=self.tokens, text=self.text, stats=self.stats.as_json())
        return row
