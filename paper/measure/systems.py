"""The systems benchmark: hippo_fast's decode schedules on REAL-SIZE video LLMs with random weights,
under a controlled acceptance, side by side with HF generate() in one process.

Random weights need no download and no licence, and cost exactly what the released weights cost per
forward (same shapes, same kernels); what they cannot give is acceptance: a random draft agrees
with a random target on nothing. So acceptance is CONTROLLED, and every number reads as "this
schedule, at this acceptance, on this hardware".

On a GPU, both presets at 32 and 64 frames, each under full and under planted acceptance (each command
builds its models once, in seconds, and measures both frame counts; not yet run on a GPU, so no
durations are given here; --repeats 1 shortens a run that must fit a small device budget):

    python -m paper.measure.systems --preset llava-ov-0.5b-7b --frames 32 64 --dtype bfloat16 --device cuda \\
        --acceptance self --json reports/bench-systems/llava-self.json --markdown reports/bench-systems/llava-self.md
    python -m paper.measure.systems --preset llava-ov-0.5b-7b --frames 32 64 --dtype bfloat16 --device cuda \\
        --acceptance planted:0.2 --json reports/bench-systems/llava-planted.json \\
        --markdown reports/bench-systems/llava-planted.md
    python -m paper.measure.systems --preset qwen2.5-vl-3b-7b --frames 32 64 --dtype bfloat16 --device cuda \\
        --acceptance self --json reports/bench-systems/qwen-self.json --markdown reports/bench-systems/qwen-self.md
    python -m paper.measure.systems --preset qwen2.5-vl-3b-7b --frames 32 64 --dtype bfloat16 --device cuda \\
        --acceptance planted:0.2 --json reports/bench-systems/qwen-planted.json \\
        --markdown reports/bench-systems/qwen-planted.md

(--compile: the fast rows through torch.compile; --gamma, --max-new-tokens as needed). On a CPU, the
same code with the tiny configs (what tests/test_bench_systems.py runs):

    python -m paper.measure.systems --preset tiny --frames 4 --dtype float32 --device cpu --max-new-tokens 13 \\
        --gamma 3 --repeats 1

Presets (architecture numbers of the released checkpoints' config.json, written here by hand; the
weights are the stock HF init, on the device directly):
- `llava-ov-0.5b-7b`: LLaVA-OneVision, draft Qwen2-0.5B LM, target Qwen2-7B LM, both with the
  SigLIP-so400m tower (26 layers, 384 px, patch 14); video frames are not anyres: 27 x 27 patches
  bilinearly pooled to 14 x 14 = 196 tokens per frame (as lmms-eval feeds LLaVA-OneVision video),
  plus one newline token.
- `qwen2.5-vl-3b-7b`: Qwen2.5-VL 3B draft / 7B target (their own vision towers, 32 layers, window
  attention); frames resized to 448 x 448 (max_pixels = 448^2): 16 x 16 = 256 tokens per two frames.
- `tiny`: hippo.tiny's Qwen2.5-VL pair (CPU, seconds).
Draft and target share one tokenizer (hippo.tiny's; only the ids matter for timing) and keep their
real vocabulary sizes (151936 / 152064: the draft's logits are -inf-padded, hippo_fast's align_vocab).

Acceptance (`--acceptance`):
- `self`: the target is its own draft (a second prefill of the target). Every drafted token is
  accepted, so SD commits gamma + 1 tokens per round and PEARL gamma (its first round: 1): the rows
  then measure the schedules' own overheads (verification, bookkeeping, host syncs) at the best
  acceptance there is, with a draft step as expensive as a target step. No real draft is that slow,
  so x fast AR is a lower bound on what a cheap draft gives at full acceptance (planted:0 is that).
- `planted:R`: the real draft runs every step (its cost is real), but its logits are replaced by a
  one-hot on the target's own greedy token at that index (known from one hippo_fast AR decode of
  the target beforehand), except at a planted rejection rate R: index i is refused when
  keyed_uniform(seed, PLANTED, i) < R (hippo_ref.sampling's counter-based hash: reproducible, no
  global RNG), and the draft then proposes another token. That is a draft whose tokens are accepted
  independently with probability alpha = 1 - R: SD's MAT is about (1 - alpha^(gamma+1)) / (1 - alpha).
  The target still verifies every token. The replacement is one (k, V) zeros + scatter per draft
  step, timed with it (the draft step ms is measured through the wrapper).
Either way the rows' tokens must equal the target's greedy tokens; that equality gate runs on the
warm-up and on every timed run, before any time is printed (exit status 1 and the first divergence
otherwise).

Random weights and greedy ties: a stock-init LM head gives near-uniform logits, whose top two differ
by less than bf16's rounding between a 1-token and a (gamma + 1)-token forward, so the target's greedy
tokens would depend on the schedule and no gate could hold. The target therefore gets a SUCCESSOR
HEAD (plant_successor_head): its input embeddings are random directions scaled so that they dominate
the residual stream, and its LM head maps the direction of token t to token successor(t) (a seeded
permutation): the greedy token then has a margin of about sqrt(hidden) standard deviations over the
rest (a 6-layer model of the 7B's width in bf16: smallest top-2 gap 0.0 with the stock head, 54 with
this one). The forwards cost what they cost (same shapes, same kernels); the report prints the
smallest greedy margin over the reference tokens. EOS is disabled (generation_config.eos_token_id = None) so
that every row generates exactly --max-new-tokens tokens.

Rows: paper/measure/rows.py's RowSpec, the rows of `ROWS`: `hf-generate` (the target's stock generate(),
greedy), `fast-ar`, `fast-sd`, `fast-pearl` (variant fast: the serial schedule), `fast-pearl-streams`
(variant fast-streams: the draft and the target on two CUDA streams; on a CPU the same calls in order,
labelled so), each eager or, with --compile, compiled. The fast rows prepare with the benchmark's
implementation("fast").prepare_contexts and decode with their variant's decode, so that the planted
draft can be passed between. Protocol, definitions and report are paper/measure/protocol.py's and
report.py's: one warm-up run per row (untimed, reported), then --repeats timed passes, the rows' order
rotated by one per pass, per-forward cost samples between the passes, the equality gate on every run
(reference: the target's greedy tokens) before any time; one table of rows and one of per-forward costs
per frame count.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from hippo.errors import ConfigError, HippoError

PROMPT = "Describe the video in detail."
PLANTED = 0x504C414E  # keyed_uniform purpose of the planted rejections ("PLAN"), apart from hippo's 1..4
SUCCESSOR_SCALE = 100.0  # embedding norm per dimension: far above what the random layers add
COST_SAMPLES = 30  # samples of each per-forward cost, spread over the timed passes
MIB = 1 << 20


# ---- presets ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LanguageModel:
    """A released language model's architecture numbers (its config.json)."""

    name: str
    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    vocab: int
    tied: bool
    max_positions: int


QWEN2_0_5B = LanguageModel("Qwen2-0.5B", 896, 4864, 24, 14, 2, 151936, True, 32768)
QWEN2_7B = LanguageModel("Qwen2-7B", 3584, 18944, 28, 28, 4, 152064, False, 32768)
QWEN2_5_VL_3B = LanguageModel("Qwen2.5-VL-3B", 2048, 11008, 36, 16, 2, 151936, True, 128000)
QWEN2_5_VL_7B = LanguageModel("Qwen2.5-VL-7B", 3584, 18944, 28, 28, 4, 152064, False, 128000)

SIGLIP_SO400M = dict(model_type="siglip_vision_model", hidden_size=1152, intermediate_size=4304, num_hidden_layers=26,
                     num_attention_heads=16, image_size=384, patch_size=14, vision_use_head=False)
QWEN2_5_VL_VISION = dict(depth=32, hidden_size=1280, intermediate_size=3420, num_heads=16, in_channels=3, patch_size=14,
                         spatial_merge_size=2, temporal_patch_size=2, window_size=112,
                         fullatt_block_indexes=[7, 15, 23, 31], tokens_per_second=2, hidden_act="silu")


@dataclass(frozen=True)
class Preset:
    """A draft / target pair. `image_size`: the frames' side (the processor's size for LLaVA, the side
    of max_pixels for Qwen; the synthetic video is written at it). No models (tiny): hippo.tiny's."""

    name: str
    family: str
    draft: LanguageModel | None
    target: LanguageModel | None
    image_size: int
    description: str


PRESETS = {p.name: p for p in (
    Preset("llava-ov-0.5b-7b", "llava_onevision", QWEN2_0_5B, QWEN2_7B, 384,
           "LLaVA-OneVision 0.5B / 7B (SigLIP-so400m, 196 tokens per frame + 1)"),
    Preset("qwen2.5-vl-3b-7b", "qwen2_5_vl", QWEN2_5_VL_3B, QWEN2_5_VL_7B, 448,
           "Qwen2.5-VL 3B / 7B (448 x 448 frames, 256 tokens per 2 frames)"),
    Preset("tiny", "qwen2_5_vl", None, None, 112, "hippo.tiny's random Qwen2.5-VL pair"),
)}


def preset_named(name: str) -> Preset:
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    return PRESETS[name]


def text_config(lm: LanguageModel, tokenizer) -> dict:
    """The Qwen2 text config of `lm`, with the shared tokenizer's special ids."""
    ids = tokenizer.convert_tokens_to_ids
    return dict(model_type="qwen2", vocab_size=lm.vocab, hidden_size=lm.hidden, intermediate_size=lm.intermediate,
                num_hidden_layers=lm.layers, num_attention_heads=lm.heads, num_key_value_heads=lm.kv_heads,
                max_position_embeddings=lm.max_positions, rms_norm_eps=1e-6, tie_word_embeddings=lm.tied,
                rope_parameters={"rope_type": "default", "rope_theta": 1000000.0},
                bos_token_id=ids("<|endoftext|>"), eos_token_id=ids("<|im_end|>"), pad_token_id=ids("<|endoftext|>"))


def llava_onevision_config(lm: LanguageModel, tokenizer):
    from transformers import LlavaOnevisionConfig

    ids = tokenizer.convert_tokens_to_ids
    return LlavaOnevisionConfig(text_config=text_config(lm, tokenizer), vision_config=dict(SIGLIP_SO400M),
                                image_token_index=ids("<image>"), video_token_index=ids("<video>"),
                                vision_feature_select_strategy="full", vision_feature_layer=-1,
                                tie_word_embeddings=lm.tied)


def qwen2_5_vl_config(lm: LanguageModel, tokenizer):
    """Qwen2.5-VL: the Qwen2 text config with M-RoPE [16, 24, 24] (head_dim 128), the 32-layer tower."""
    from transformers import Qwen2_5_VLConfig

    ids = tokenizer.convert_tokens_to_ids
    text = text_config(lm, tokenizer)
    del text["model_type"]  # the Qwen-VL text config has its own type
    text["rope_parameters"]["mrope_section"] = [16, 24, 24]
    return Qwen2_5_VLConfig(text_config=text, vision_config={**QWEN2_5_VL_VISION, "out_hidden_size": lm.hidden},
                            video_token_id=ids("<|video_pad|>"), image_token_id=ids("<|image_pad|>"),
                            vision_start_token_id=ids("<|vision_start|>"), vision_end_token_id=ids("<|vision_end|>"),
                            tie_word_embeddings=lm.tied)


MODEL_CONFIGS = {"llava_onevision": llava_onevision_config, "qwen2_5_vl": qwen2_5_vl_config}


# ---- models -------------------------------------------------------------------------------------------
def build_model(config, device: torch.device, dtype: torch.dtype, seed: int):
    """The stock HF model of `config`, created and initialised on `device` itself (a 7B model in bf16
    in seconds; `meta` for shapes only). The stock init draws from a forked, seeded RNG: reproducible,
    and the caller's global RNG is untouched."""
    from transformers import AutoModelForImageTextToText

    config._attn_implementation = "sdpa"
    cuda = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda), torch.device(device):
        torch.manual_seed(seed)
        model = AutoModelForImageTextToText.from_config(config, dtype=dtype)
    return model.eval()


@torch.no_grad()
def plant_successor_head(model, vocab: int, seed: int, scale: float = SUCCESSOR_SCALE) -> None:
    """Give `model` greedy tokens with a wide margin (see the module docstring): token t's input
    embedding becomes scale x a random direction d_t, and the LM head's row successor(t) becomes
    d_t / sqrt(hidden), for t < vocab (a seeded permutation; other head rows zero, so tokens >= vocab,
    which a smaller draft could not embed, never win). After the final RMSNorm the hidden state is
    about d_t, so the logit of successor(t) is about sqrt(hidden) and every other about N(0, 1). A
    tied head (input = output embeddings) gets the directions only: its greedy token repeats t."""
    embed = model.get_input_embeddings().weight
    head = model.get_output_embeddings().weight
    hidden = embed.shape[1]
    generator = torch.Generator(device=embed.device).manual_seed(seed)
    directions = torch.randn((vocab, hidden), generator=generator, device=embed.device, dtype=embed.dtype)
    embed[:vocab] = directions * scale
    if head is not embed:
        successor = torch.randperm(vocab, generator=torch.Generator().manual_seed(seed)).to(head.device)
        head.zero_()
        head[successor] = directions / math.sqrt(hidden)


def stop_at_max_tokens(adapter) -> None:
    """No EOS: every row generates exactly max_new_tokens (random weights have no reason to stop, and
    an early stop would shorten the runs unevenly)."""
    adapter.model.generation_config.eos_token_id = None


@dataclass
class Pair:
    """The models of one benchmark: the target, the draft's model (None: the target drafts itself),
    and the vocabulary both embed (tokens the successor head may produce)."""

    target: object
    draft: object | None
    shared_vocab: int


def write_layout(folder: Path, family: str, image_size: int, seed: int) -> tuple[Path, Path]:
    """hippo.tiny's checkpoints in the Hub layout: the tokenizer, chat template and video processor
    config the real-size models reuse, and the tiny models themselves (the `tiny` preset)."""
    from hippo.tiny import write_tiny_pair

    return write_tiny_pair(folder, family, seed=seed, image_size=image_size)


def real_adapter(preset: Preset, lm: LanguageModel, layout: Path, device, dtype, seed: int, role: str):
    """A real-size random model of `lm` wrapped in its family's adapter, in memory (no weights written),
    with the tokenizer, template and processor config of the layout folder."""
    from transformers import AutoTokenizer

    from hippo.checkpoint import ADAPTERS, read_chat_template
    from hippo.preprocess import load_processor_config

    tokenizer = AutoTokenizer.from_pretrained(layout, local_files_only=True)
    config = MODEL_CONFIGS[preset.family](lm, tokenizer)
    model = build_model(config, device, dtype, seed)
    return ADAPTERS[preset.family](model, tokenizer, load_processor_config(layout), read_chat_template(layout, tokenizer),
                                   f"{preset.name}:{role} ({lm.name}, random)")


def build_pair(preset: Preset, work_dir: Path, device, dtype, seed: int, needs_draft: bool) -> Pair:
    """The preset's target (successor head, no EOS) and, when `needs_draft`, its draft (stock init)."""
    from hippo.checkpoint import load_adapter

    target_dir, draft_dir = write_layout(work_dir / "layout", preset.family, preset.image_size, seed)
    if preset.target is None:
        target = load_adapter(target_dir, dtype, str(device))
        draft = load_adapter(draft_dir, dtype, str(device)) if needs_draft else None
    else:
        target = real_adapter(preset, preset.target, target_dir, device, dtype, seed, "target")
        draft = real_adapter(preset, preset.draft, target_dir, device, dtype, seed + 1, "draft") if needs_draft else None
    if draft is not None:
        draft.tokenizer = target.tokenizer  # one tokenizer: hippo.pairing.check_vocabulary holds
    shared = min(target.vocab_size, draft.vocab_size) if draft is not None else target.vocab_size
    plant_successor_head(target.model, shared, seed)
    for adapter in (target, draft):
        if adapter is not None:
            stop_at_max_tokens(adapter)
    return Pair(target, draft, shared)


# ---- the video ----------------------------------------------------------------------------------------
def synthetic_frames(count: int, side: int) -> np.ndarray:
    """(count, side, side, 3) uint8: a gradient background and two squares moving across it."""
    yy, xx = np.mgrid[0:side, 0:side]
    frames = np.empty((count, side, side, 3), dtype=np.uint8)
    box = max(2, side // 6)
    for t in range(count):
        frame = np.stack([(yy + 2 * t) % 256, (xx + t) % 256, np.full_like(yy, 40 + t % 64)], axis=-1)
        for k, colour in enumerate(((230, 60, 60), (60, 200, 90))):
            y = (t * (3 + k) + k * side // 2) % (side - box)
            x = (t * (5 - k) + side // 3) % (side - box)
            frame[y : y + box, x : x + box] = colour
        frames[t] = frame
    return frames


def synthetic_clips(work_dir: Path, frame_counts: list[int], side: int) -> tuple[dict, str]:
    """One clip per frame count, sampled (hippo.video.load_video) from one synthetic H.264 video of
    max(frame_counts) frames written with hippo.video.write_video; without PyAV, the same frames
    in memory. Returns ({frames: VideoClip}, where they came from)."""
    from hippo.video import VideoClip, load_video, sample_frame_indices, write_video

    count = max(frame_counts)
    frames = synthetic_frames(count, side)
    path = work_dir / f"synthetic-{count}x{side}.mp4"
    try:
        write_video(path, frames, fps=10.0)
    except ConfigError:  # PyAV missing: the decoded frames are what the benchmark starts from anyway
        clips = {}
        for n in frame_counts:
            keep = sample_frame_indices(count, n)
            clips[n] = VideoClip(frames[list(keep)], tuple(keep), 10.0, tuple(i / 10.0 for i in keep), count, str(path))
        return clips, f"{count} synthetic frames of {side} x {side} in memory (PyAV not installed)"
    return {n: load_video(path, n) for n in frame_counts}, f"{path.name}: {count} frames of {side} x {side}, H.264"


# ---- controlled acceptance ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Acceptance:
    """`self` (the target drafts for itself) or `planted` at rejection rate `rate`."""

    kind: str
    rate: float = 0.0

    @property
    def label(self) -> str:
        return "self" if self.kind == "self" else f"planted:{self.rate:g}"


def parse_acceptance(text: str) -> Acceptance:
    if text == "self":
        return Acceptance("self")
    kind, _, rate = text.partition(":")
    try:
        value = float(rate)
    except ValueError:
        value = None
    if kind != "planted" or value is None or not 0.0 <= value <= 1.0:
        raise ConfigError(f"--acceptance {text!r}: use self, or planted:RATE with RATE a rejection rate in [0, 1]")
    return Acceptance("planted", value)


def planted_proposals(reference: list[int], rate: float, seed: int, vocab: int, length: int,
                      device) -> torch.Tensor:
    """(length,) the token the planted draft proposes for generated token i: the target's greedy
    reference[i], or (reference[i] + 1) mod vocab where keyed_uniform(seed, PLANTED, i) < rate.
    Indices past the reference (drafts beyond max_new_tokens, never committed) propose token 0."""
    from hippo_ref.sampling import keyed_uniform

    out = [0] * length
    for i, token in enumerate(reference[:length]):
        out[i] = (token + 1) % vocab if keyed_uniform(seed, PLANTED, i) < rate else token
    return torch.tensor(out, dtype=torch.long, device=device)


class PlantedDraft:
    """A fast draft context (hippo_fast/cache.py's interface) whose forward runs the real draft and then
    answers, for each row, a one-hot on the planted proposal of the token that row predicts (row j of
    forward(ids, offset) predicts generated token offset + j + 1). Everything else is the wrapped
    context's (forward counts included)."""

    def __init__(self, context, proposals: torch.Tensor):
        self.context = context
        self.proposals = proposals

    def forward(self, ids: torch.Tensor, offset: int) -> torch.Tensor:
        return self._planted(self.context.forward(ids, offset), ids, offset)

    def probe(self, ids: torch.Tensor, offset: int) -> torch.Tensor:
        return self._planted(self.context.probe(ids, offset), ids, offset)

    def _planted(self, logits: torch.Tensor, ids: torch.Tensor, offset: int) -> torch.Tensor:
        wanted = self.proposals[offset + 1 : offset + 1 + ids.shape[0]]
        return torch.zeros_like(logits).scatter_(1, wanted[:, None], 1.0)

    @property
    def forwards(self) -> int:
        return self.context.forwards

    def __getattr__(self, name):
        if name == "context":  # not set yet (copy, pickle): no recursion
            raise AttributeError(name)
        return getattr(self.context, name)


# ---- rows -----------------------------------------------------------------------------------------------
ROWS = ("hf-generate", "fast-ar", "fast-sd", "fast-pearl", "fast-pearl-streams")


def build_rows(device: torch.device, compiled: bool) -> list:
    """`ROWS` as paper/measure/rows.py's RowSpecs, eager or compiled; on a CPU the streams row says that its
    calls run in order."""
    from dataclasses import replace

    from paper.measure import rows

    specs = rows.build_rows(list(ROWS), "on" if compiled else "off", ("streams",))
    if device.type == "cuda":
        return specs
    return [replace(s, description="hippo_fast PEARL, CPU: no streams, the same calls in order")
            if s.overlap == "streams" else s for s in specs]


@dataclass
class Case:
    """One frame count: the clip, the target's greedy reference tokens, what the planted draft proposes."""

    frames: int
    clip: object
    reference: list[int] = field(default_factory=list)
    proposals: torch.Tensor | None = None
    visual_tokens: int = 0
    prompt_rows: int = 0
    margin: float | None = None

    @property
    def name(self) -> str:
        return f"{self.frames} frames"


@dataclass
class Bench:
    """What every run of one benchmark shares."""

    pair: Pair
    acceptance: Acceptance
    impl: object  # hippo.generation.implementation("fast", compile=...)
    config: object  # hippo.request.DecodeConfig
    device: torch.device

    @property
    def draft_model(self):
        """The adapter that drafts: the draft, or under `self` the target."""
        return self.pair.target if self.acceptance.kind == "self" else self.pair.draft

    def request(self, case: Case, decoding: str):
        from hippo.request import GenerationRequest

        return GenerationRequest(video=case.clip.path, prompt=PROMPT, frames=case.clip.num_frames, decoding=decoding,
                                 config=self.config)

    def prepare(self, case: Case, decoding: str, impl=None):
        """Both static-cache prefills of one request (the draft's wrapped under planted acceptance), by
        `impl` (default: the benchmark's own)."""
        draft = None if decoding == "ar" else self.draft_model
        impl = impl or self.impl
        prepared = impl.prepare_contexts(self.pair.target, draft, self.request(case, decoding), case.clip)
        if prepared.draft_context is not None and self.acceptance.kind == "planted":
            prepared.draft_context = PlantedDraft(prepared.draft_context, case.proposals)
        return prepared


def decode_row(row, target_context, draft_context, config):
    """The row's decode alone: its variant's (uncompiled: run_fast has warmed the compiled shapes)."""
    from hippo.generation import variant

    return variant(row.variant).decode(row.decoding, target_context, draft_context, config)


def warm_compiled(row, prepared, gamma: int) -> None:
    """Capture every forward shape of the row's decode before it starts (hippo_fast/compiled.py, as the
    pipeline's decode does; a planted draft passes it to the draft it wraps), so that no acceptance
    pattern compiles inside a timed run."""
    from hippo_fast import compiled

    for context, sizes in zip((prepared.target_context, prepared.draft_context),
                              compiled.step_sizes(row.decoding, gamma), strict=True):
        if context is not None:
            compiled.warm(context, sizes)


def run_fast(row, bench: Bench, case: Case):
    """One request of a fast row: from the decoded frames to the last token."""
    from paper.measure.rows import Run

    start = time.perf_counter()
    prepared = bench.prepare(case, row.decoding)
    if bench.impl.compile:
        warm_compiled(row, prepared, bench.config.gamma)
    result = decode_row(row, prepared.target_context, prepared.draft_context, bench.config)
    total_s = time.perf_counter() - start
    s = result.stats
    return Run(result.tokens, total_s, s.decode_s, total_s - s.decode_s, s, visual_tokens=case.visual_tokens)


def run_row(row, bench: Bench, case: Case):
    """One request of `row`: the HF row is paper/measure/rows.py's own."""
    if row.impl == "fast":
        return run_fast(row, bench, case)
    from paper.measure import rows

    cfg = bench.config
    settings = rows.Settings(cfg.max_new_tokens, cfg.gamma, 0.0, "none", 0.0, cfg.seed, case.frames, bench.device)
    return rows.run_row(row, bench.pair.target, None, case.clip, PROMPT, settings)


# ---- reference ----------------------------------------------------------------------------------------------
def prepare_case(bench: Bench, frames: int, clip, seed: int) -> Case:
    """The target's greedy tokens by one hippo_fast AR decode, their smallest greedy margin, and the
    planted draft's proposals."""
    from hippo.generation import implementation
    from hippo_fast.cache import request_capacity
    from hippo_fast.decoding.autoregressive import decode_autoregressive

    case = Case(frames, clip)
    prepared = bench.prepare(case, "ar")
    case.visual_tokens = prepared.target_inputs.grid.total_tokens
    case.prompt_rows = prepared.target_inputs.num_tokens
    case.reference = decode_autoregressive(prepared.target_context, bench.config).tokens
    eager = implementation("fast")  # the margin's one long forward: no graph to compile for it
    case.margin = greedy_margin(bench.prepare(case, "ar", eager).target_context, case.reference)
    if bench.acceptance.kind == "planted":
        # A forward's rows predict the tokens after it (offset + 1 on), up to the draft cache's bound.
        length = request_capacity(bench.config, "pearl") + 2
        case.proposals = planted_proposals(case.reference, bench.acceptance.rate, seed, bench.pair.shared_vocab,
                                           length, bench.device)
    return case


def greedy_margin(target_context, reference: list[int]) -> float:
    """Smallest top-1 minus top-2 fp32 logit of the target over the reference tokens, teacher-forced
    (one forward of the reference on a fresh context): how far every greedy choice is from a tie."""
    logits = [target_context.last_logits[None]]
    if len(reference) > 1:
        ids = torch.tensor(reference[:-1], dtype=torch.long, device=target_context.device)
        logits.append(target_context.forward(ids, 0))
    top = torch.cat(logits).float().topk(2, dim=-1).values
    return float((top[:, 0] - top[:, 1]).min())


# ---- one frame count: the protocol ----------------------------------------------------------------------------
def measure_case(bench: Bench, case: Case, specs: list, repeats: int, memory) -> dict:
    """paper/measure/protocol.py on one frame count (its one input), then its costs and its report."""
    from paper.measure import instruments, protocol, report

    states = [protocol.RowState(spec) for spec in specs]
    timers, other_load_share = protocol.measure(
        states, [case.name], lambda spec, i: run_row(spec, bench, case),
        lambda spec, i: ("the target's greedy tokens (hippo_fast AR)", case.reference), repeats=repeats,
        memory=memory, cost_samples=COST_SAMPLES, label="bench systems",
        make_timers=lambda active: protocol.cost_timers(
            active, lambda spec, decoding, compiled: bench.prepare(case, decoding), bench.config.gamma, "bench systems"))
    bandwidth = instruments.measured_bandwidth(bench.device, None if bench.device.type == "cuda" else 64 * MIB, 3)
    costs = protocol.forward_cost_table(timers, bandwidth["read_gbs"])
    return {"frames": case.frames, "visual_tokens": case.visual_tokens, "prompt_rows": case.prompt_rows,
            "greedy_margin": case.margin, "planted_rejections": planted_count(case),
            "drafted_indices": len(case.reference) - 1, "reference": case.reference,
            "rows": report.row_entries(states, [case.name], costs, lambda spec: ("none", 0.0)),
            "forward_costs": costs, "bandwidth": bandwidth, "other_load_share": other_load_share}


def planted_count(case: Case) -> int | None:
    """How many drafted indices (1 .. max_new_tokens - 1; token 0 is the target's) propose a wrong token."""
    if case.proposals is None:
        return None
    proposals = case.proposals.tolist()
    return sum(proposals[i] != case.reference[i] for i in range(1, len(case.reference)))


# ---- the report ----------------------------------------------------------------------------------------------
def render_markdown(report: dict) -> str:
    """The header, then per frame count paper/measure/report.py's tables of rows and of per-forward costs."""
    from paper.measure.report import compiles_note, costs_table, notes, rows_table

    cfg, env = report["config"], report["environment"]
    lines = [f"# bench systems: {cfg['preset']}, acceptance {cfg['acceptance']}", "", "```", report["command"], "```",
             "", f"{report['description']}. {cfg['dtype']} on {env['device']} ({env['device_name']}), torch "
             f"{env['torch']}, transformers {env['transformers']}, git {env['git_revision']}. Greedy, exactly "
             f"{cfg['max_new_tokens']} new tokens, gamma {cfg['gamma']}, {cfg['repeats']} timed pass(es), "
             f"compile {'on' if cfg['compile'] else 'off'}; video: {report['video']}.", "",
             f"Equality gate: passed: {report['gate']}."]
    for case in report["cases"]:
        planted = "" if case["planted_rejections"] is None else \
            f"; planted rejections at {case['planted_rejections']} of the {case['drafted_indices']} drafted indices"
        lines += ["", f"## {case['frames']} frames: {case['visual_tokens']} visual tokens, {case['prompt_rows']} "
                  "prompt rows", "", f"Smallest greedy margin of the target over the reference: "
                  f"{case['greedy_margin']:.2f} (fp32 logits){planted}."]
        lines += rows_table(case["rows"])
        lines += costs_table(case["rows"], case["forward_costs"], case["bandwidth"], None, None)
        lines += ["", "Rows: " + "; ".join(f"{r['id']} = {r['description']}" for r in case["rows"]) + "."]
        lines += compiles_note(case["rows"])
    lines += notes(report["memory_method"])
    lines.append(f"- acceptance {cfg['acceptance']}: " + ACCEPTANCE_NOTES[cfg["acceptance"].split(":")[0]])
    return "\n".join(lines) + "\n"


ACCEPTANCE_NOTES = {
    "self": "the target drafts for itself: every token accepted, a draft step as costly as a target step.",
    "planted": "the real draft's forward, its proposals replaced by the target's greedy tokens except at the "
               "planted rejection rate (a draft with per-token acceptance 1 - rate).",
}


# ---- command line ----------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m paper.measure.systems", description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="llava-ov-0.5b-7b", help=f"one of {', '.join(PRESETS)}")
    p.add_argument("--frames", type=int, nargs="+", default=[32, 64], help="frame counts, one table each")
    p.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16", "float32"])
    p.add_argument("--device", default="cuda", help="cuda[:N] or cpu")
    p.add_argument("--acceptance", default="self", help="self, or planted:RATE (a rejection rate in [0, 1])")
    p.add_argument("--gamma", type=int, default=5, help="draft length")
    p.add_argument("--max-new-tokens", type=int, default=128, help="tokens every row generates (EOS is disabled)")
    p.add_argument("--repeats", type=int, default=3, help="timed passes over the rows")
    p.add_argument("--compile", action="store_true", help="fast rows through torch.compile (FastImplementation)")
    p.add_argument("--seed", type=int, default=0, help="weights, successor head and planted rejections")
    p.add_argument("--json", default=None, metavar="FILE", help="write the JSON report")
    p.add_argument("--markdown", default=None, metavar="FILE", help="write the Markdown report")
    p.add_argument("--work-dir", default=None, metavar="DIR",
                   help="where the video and the tokenizer layout are written (default: a temporary folder)")
    return p


def check_args(args) -> tuple[Preset, Acceptance, torch.device]:
    """Every argument, before any model is built: a ConfigError names the bad one."""
    from paper.measure.perf import check_device

    preset = preset_named(args.preset)
    acceptance = parse_acceptance(args.acceptance)
    for flag, value in (("--gamma", args.gamma), ("--max-new-tokens", args.max_new_tokens),
                        ("--repeats", args.repeats), *(("--frames", n) for n in args.frames)):
        if value < 1:
            raise ConfigError(f"{flag} must be >= 1, got {value}")
    return preset, acceptance, check_device(args.device)


def command_line(argv: list[str]) -> str:
    import shlex

    return " ".join(["python -m paper.measure.systems", *(shlex.quote(a) for a in argv)])


def load_average():
    return os.getloadavg() if hasattr(os, "getloadavg") else None


def make_bench(args, preset: Preset, acceptance: Acceptance, device: torch.device, work_dir: Path) -> Bench:
    """The models (and the draft's only when it runs), the decode settings and the implementation."""
    from hippo.checkpoint import DTYPES
    from hippo.generation import implementation
    from hippo.request import DecodeConfig

    pair = build_pair(preset, work_dir, device, DTYPES[args.dtype], args.seed, acceptance.kind == "planted")
    config = DecodeConfig(max_new_tokens=args.max_new_tokens, gamma=args.gamma, seed=args.seed)
    return Bench(pair, acceptance, implementation("fast", compile=args.compile), config, device)


def run(args, argv: list[str]) -> int:
    """Check the arguments, build, measure every frame count, report; 1 without any time if the gate fails."""
    from paper.measure import instruments, protocol, report

    user_env = {k: os.environ[k] for k in ("OMP_NUM_THREADS", "TORCHINDUCTOR_CACHE_DIR") if k in os.environ}
    preset, acceptance, device = check_args(args)
    with tempfile.TemporaryDirectory(prefix="bench-systems-") as scratch:
        work_dir = Path(args.work_dir or scratch)
        work_dir.mkdir(parents=True, exist_ok=True)
        clips, video = synthetic_clips(work_dir, sorted(set(args.frames)), preset.image_size)
        load_start = load_average()
        bench = make_bench(args, preset, acceptance, device, work_dir)
        specs = build_rows(device, args.compile)
        memory = instruments.PeakMemory(device)
        try:
            cases = [measure_case(bench, prepare_case(bench, n, clips[n], args.seed), specs, args.repeats, memory)
                     for n in args.frames]
        except protocol.GateFailure as failure:
            print("bench systems: OUTPUT MISMATCH, no time is reported (every row must produce the target's "
                  f"greedy tokens):\n{failure}", file=sys.stderr)
            return 1
    env = instruments.environment(device, load_start, load_average(), user_env)
    out = build_report(args, argv, preset, acceptance, device, video, memory.method, env, cases)
    report.write(out, render_markdown(out), args.json, args.markdown)
    return 0


def build_report(args, argv, preset, acceptance, device, video, memory_method, env, cases) -> dict:
    from verification.report import source_hash

    return {"command": command_line(argv), "description": preset.description, "video": video,
            "config": {"preset": preset.name, "acceptance": acceptance.label, "frames": args.frames,
                       "dtype": args.dtype, "device": str(device), "gamma": args.gamma,
                       "max_new_tokens": args.max_new_tokens, "repeats": args.repeats, "compile": args.compile,
                       "seed": args.seed, "prompt": PROMPT},
            "gate": "every row's tokens, warm-up and timed runs, equal the target's greedy tokens (hippo_fast AR)",
            "memory_method": memory_method, "environment": env, "cases": cases,
            "source_sha256": source_hash()}  # the code that made it: paper/reproduce/plots/systems.py draws only the current code's


def main(argv: list[str] | None = None) -> int:
    """Exit status 0, 1 (the equality gate failed) or 2 (a bad argument: one line on stderr)."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    try:
        return run(args, argv)
    except HippoError as err:
        print(f"bench systems: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
