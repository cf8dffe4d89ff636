"""The one row type of paper/measure/ (RowSpec; the systems benchmark selects from the same BASE_ROWS) and
what each row runs for one request of `hippo bench perf`, and how its time is split.

Every row takes the same input (a VideoClip already decoded or rendered, and a prompt) and returns a
`Run`: the generated tokens, the end-to-end wall time of the request (preprocessing, video encoders,
scoring, pruning, prefills, decode), the decode-only time, and the decode stats where the row has them.

- `hf-generate`: the stock `model.generate(do_sample=False)` of the target on adapter.hf_generate_inputs.
- `hf-assisted`: the same with `assistant_model=draft.model, num_assistant_tokens=gamma,
  num_assistant_tokens_schedule="constant"` (verification/candidates.py's HFAssisted call).
- `ref-*` / `fast-*`: hippo.generation.generate with the row's implementation variant
  (hippo.generation.VARIANTS: ref, fast, fast-processes, fast-streams; compiled or not), the decoding and
  the draft's pruning of the row. `*-processes`: the draft in its own process (a worker spawned on the last core, this process on the others); `*-streams`: two
  CUDA streams (GPU only: on a CPU the same calls run in order, which is fast-pearl itself).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace

import torch

from hippo.generation import VARIANTS
from hippo.request import DecodeConfig, GenerationRequest, PruneSpec, SamplingParams
from hippo.stats import DecodeStats


@dataclass(frozen=True)
class RowSpec:
    name: str  # the base row, e.g. fast-sd-specvlm
    kind: str  # hf | hf-assisted | impl
    description: str
    variant: str | None = None  # kind impl: its implementation variant (hippo.generation.VARIANTS)
    decoding: str = "ar"
    prune: str = "none"  # the draft's pruning method (fast-hippo: replaced by --prune)
    compile: bool | None = None  # fast rows: compiled or eager

    @property
    def impl(self) -> str | None:
        """ref | fast: the registered implementation of its variant (None: an HF row)."""
        return None if self.variant is None else VARIANTS[self.variant][0]

    @property
    def overlap(self) -> str:
        """off | processes | streams: how its PEARL runs the draft beside the target."""
        return "off" if self.variant is None else VARIANTS[self.variant][1].get("overlap", "off")

    @property
    def id(self) -> str:
        return self.name if self.compile is None else f"{self.name}/{'compiled' if self.compile else 'eager'}"

    @property
    def setting(self) -> str:
        """The compile setting this row shares with the fast AR it is compared to (HF and ref: eager)."""
        return "compiled" if self.compile else "eager"


BASE_ROWS: tuple[RowSpec, ...] = (
    RowSpec("hf-generate", "hf", "HF generate() (target alone)"),
    RowSpec("hf-assisted", "hf-assisted", "HF assisted generation (full-video draft)"),
    RowSpec("ref-ar", "impl", "hippo_ref AR", "ref", "ar"),
    RowSpec("ref-sd", "impl", "hippo_ref SD (no pruning)", "ref", "sd"),
    RowSpec("ref-pearl", "impl", "hippo_ref PEARL (no pruning)", "ref", "pearl"),
    RowSpec("fast-ar", "impl", "hippo_fast AR", "fast", "ar"),
    RowSpec("fast-sd", "impl", "hippo_fast SD (no pruning)", "fast", "sd"),
    RowSpec("fast-sd-specvlm", "impl", "hippo_fast SD + SpecVLM pruning", "fast", "sd", "specvlm"),
    RowSpec("fast-pearl", "impl", "hippo_fast PEARL (no pruning)", "fast", "pearl"),
    RowSpec("fast-hippo", "impl", "hippo_fast HIPPO (PEARL + pruning)", "fast", "pearl", "hippo"),
    RowSpec("fast-pearl-processes", "impl", "hippo_fast PEARL, the draft in its own process", "fast-processes",
            "pearl"),
    RowSpec("fast-hippo-processes", "impl", "hippo_fast HIPPO, the draft in its own process", "fast-processes",
            "pearl", "hippo"),
    RowSpec("fast-pearl-streams", "impl", "hippo_fast PEARL, two CUDA streams", "fast-streams", "pearl"),
    RowSpec("fast-hippo-streams", "impl", "hippo_fast HIPPO, two CUDA streams", "fast-streams", "pearl", "hippo"),
)
# Overlapped rows that `--overlap` selects (the serial rows always run: they are what overlap is measured against).
OVERLAP_ROWS = {"processes": ("fast-pearl-processes", "fast-hippo-processes"),
                "streams": ("fast-pearl-streams", "fast-hippo-streams")}
ROW_NAMES = tuple(r.name for r in BASE_ROWS)


def build_rows(names: list[str] | None, compile_mode: str, overlaps: tuple[str, ...] = ("processes",)) -> list[RowSpec]:
    """The selected rows in BASE_ROWS order; each fast row eager and/or compiled per `compile_mode`
    (off | on | both). `names` are base names (fast-sd: both settings) or ids (fast-sd/compiled); with
    `names` None (all rows), the overlapped rows are those of `overlaps`."""
    from hippo.errors import ConfigError

    settings = {"off": (False,), "on": (True,), "both": (False, True)}[compile_mode]
    left_out = {name for kind, names_ in OVERLAP_ROWS.items() if kind not in overlaps for name in names_}
    rows = []
    for base in BASE_ROWS:
        if names is None and base.name in left_out:
            continue
        variants = [base] if base.impl != "fast" else [replace(base, compile=c) for c in settings]
        rows += [r for r in variants if names is None or r.name in names or r.id in names]
    if names is not None:
        known = {r.name for r in BASE_ROWS} | {f"{r.name}/{s}" for r in BASE_ROWS if r.impl == "fast"
                                               for s in ("eager", "compiled")}
        unknown = [n for n in names if n not in known]
        if unknown:
            raise ConfigError(f"unknown row(s) {', '.join(unknown)} in --rows; choose from {', '.join(ROW_NAMES)} "
                              "(a fast row may end in /eager or /compiled)")
        if not rows:
            raise ConfigError(f"--rows {','.join(names)} with --compile {compile_mode} selects no row: fast rows "
                              "need --compile off|both for /eager and on|both for /compiled")
    return rows


@dataclass
class Settings:
    """What every row of one benchmark shares."""

    max_new_tokens: int
    gamma: int
    ratio: float
    prune: str  # the pruning method of the HIPPO row
    temperature: float
    seed: int
    frames: int
    device: torch.device

    def config(self, eos) -> DecodeConfig:
        return DecodeConfig(max_new_tokens=self.max_new_tokens, gamma=self.gamma,
                            sampling=SamplingParams(self.temperature), seed=self.seed, eos_token_ids=tuple(eos))

    def prune_spec(self, row: RowSpec) -> PruneSpec:
        method = self.prune if row.name.startswith("fast-hippo") else row.prune
        return PruneSpec(method, self.ratio if method != "none" else 0.0, "keep")

    def request(self, row: RowSpec, clip, prompt: str, eos, decoding: str | None = None,
                prune: PruneSpec | None = None) -> GenerationRequest:
        return GenerationRequest(video=clip.path, prompt=prompt, frames=self.frames,
                                 decoding=decoding or row.decoding, prune=prune or self.prune_spec(row),
                                 config=self.config(eos))


@dataclass
class Run:
    """One run of a row on one input; the protocol sets `compiles` and the peak memory after it."""

    tokens: list[int]
    total_s: float  # end to end: preprocessing, encoders, scoring, pruning, prefills, decode
    decode_s: float  # after both prefills (HF rows: total - preprocessing - measured prompt forwards)
    prefill_s: float
    stats: DecodeStats | None = None
    kept_visual_tokens: int | None = None
    visual_tokens: int | None = None
    compiles: int = 0  # graphs torch.compile captured during this run
    peak_bytes: int | None = None
    increment_bytes: int | None = None
    extra: dict = field(default_factory=dict)


def _implementation(row: RowSpec):
    from hippo.generation import variant

    return variant(row.variant, compile=bool(row.compile)) if row.impl == "fast" else variant(row.variant)


def run_row(row: RowSpec, target, draft, clip, prompt: str, settings: Settings) -> Run:
    """Run `row` once on (clip, prompt): the unit every timing, warm-up and equality check is made of."""
    if row.kind == "impl":
        return _run_impl(row, target, draft, clip, prompt, settings)
    return _run_hf(row, target, draft, clip, prompt, settings)


def _run_impl(row, target, draft, clip, prompt, settings) -> Run:
    from hippo.generation import generate

    request = settings.request(row, clip, prompt, target.eos_token_ids)
    result = generate(_implementation(row), target, draft if row.decoding != "ar" else None, request, clip=clip)
    s = result.stats
    extra = {"placement": s.placement} if result.timeline is None else {"timeline": result.timeline, "placement": s.placement}
    return Run(result.tokens, s.total_s, s.decode.decode_s, s.prefill_s, s.decode, s.kept_visual_tokens,
               s.visual_tokens, extra=extra)


def hf_generate_kwargs(target, settings: Settings) -> dict:
    kwargs = dict(max_new_tokens=settings.max_new_tokens, eos_token_id=list(target.eos_token_ids) or None,
                  pad_token_id=0)
    if settings.temperature == 0:
        kwargs["do_sample"] = False
    else:
        kwargs.update(do_sample=True, temperature=settings.temperature, top_k=0, top_p=1.0)
    return kwargs


@torch.no_grad()
def _prompt_forward_s(adapter, hf_inputs, device) -> float:
    """Wall time of one stock forward of the whole prompt (video encoder included): HF's prefill."""
    from paper.measure.instruments import synchronize

    t0 = time.perf_counter()
    adapter.model(**hf_inputs, use_cache=True, logits_to_keep=1)
    synchronize(device)
    return time.perf_counter() - t0


def _run_hf(row, target, draft, clip, prompt, settings) -> Run:
    from paper.measure.instruments import synchronize

    kwargs = hf_generate_kwargs(target, settings)
    if row.kind == "hf-assisted":
        kwargs.update(assistant_model=draft.model, num_assistant_tokens=settings.gamma,
                      num_assistant_tokens_schedule="constant")
    if settings.temperature:
        torch.manual_seed(settings.seed)
    start = time.perf_counter()
    inputs = target.prepare(clip, prompt)
    hf_inputs = target.hf_generate_inputs(inputs)
    prepared_s = time.perf_counter() - start
    out = target.model.generate(**hf_inputs, **kwargs)
    synchronize(settings.device)
    total_s = time.perf_counter() - start
    tokens = out[0, inputs.num_tokens :].tolist()
    # Decode-only is not separable inside generate(): subtract the preprocessing and one prompt forward
    # of each model (the assistant prefills the same prompt), timed right after.
    forward_s = _prompt_forward_s(target, hf_inputs, settings.device)
    if row.kind == "hf-assisted":
        forward_s += _prompt_forward_s(draft, hf_inputs, settings.device)
    prefill_s = prepared_s + forward_s
    grid = inputs.grid.total_tokens
    return Run(tokens, total_s, max(0.0, total_s - prefill_s), prefill_s, None, grid, grid,
               extra={"prompt_forward_s": forward_s, "preprocess_s": prepared_s})


def reference_tokens(target, clip, prompt: str, settings: Settings) -> list[int]:
    """HF generate()'s greedy tokens: what every row must produce (greedy)."""
    return _run_hf(BASE_ROWS[0], target, None, clip, prompt, settings).tokens


def ref_tokens_for(row: RowSpec, target, draft, clip, prompt: str, settings: Settings) -> list[int]:
    """hippo_ref's tokens for the request of `row` (same decoding, pruning, seed): what a fast row must
    produce under sampling."""
    ref = replace(row, variant="ref", compile=None)
    return _run_impl(ref, target, draft, clip, prompt, settings).tokens
