"""The zoo's models and pairs, and where their shipped checkpoints live.

A zoo model is a stock HF Qwen2.5-VL or LLaVA-OneVision model trained by `hippo zoo train NAME` on
the synthetic dataset (hippo.zoo.dataset) with the zoo tokenizer. Shipped checkpoints sit in
`hippo/zoo/checkpoints/<name>/` in the Hub folder layout, so `hippo.checkpoint.load_adapter` loads
them like any downloaded checkpoint; `zoo:NAME` names one anywhere a folder is accepted.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from hippo.errors import CheckpointError
from hippo.tiny import TinySize

CHECKPOINT_ROOT = Path(__file__).resolve().parent / "checkpoints"
ZOO_PREFIX = "zoo:"


COLOR_SHAPE_SIZE = (("color", "shape", "size"),)  # one pool for the three (stages 0-1, 2026-11-25)


@dataclass(frozen=True)
class Stage:
    """One stage of a zoo model's training recipe. Stages run in order, each from the weights the
    previous one left, each with its own optimizer and LR schedule (warm-up, cosine to 10%).

    kind "vision": hippo.zoo.train.pretrain_vision, the vision tower and merger / projector alone on the
    auxiliary loss; kind "joint": hippo.zoo.train.train_model, the whole model on the answers plus the
    auxiliary loss. `aux_pools` says what the training-only AuxHead predicts from the video tokens and
    which attributes share one attention pool (hippo.zoo.train.AuxHead). `mrope_section` (Qwen-VL only)
    overrides the model size's split for this stage: a recipe whose last stage changed it records what
    the earlier stages were trained with. `detail_fraction` (joint stages) is the share of training
    examples that ask for the detailed caption (hippo.zoo.dataset.DETAIL_PROMPT) instead of one of the
    five short questions; 0 gives exactly the examples of the stages before it existed."""

    kind: str  # "vision" | "joint"
    steps: int
    lr: float
    batch: int = 16
    aux_pools: tuple[tuple[str, ...], ...] = COLOR_SHAPE_SIZE
    mrope_section: tuple[int, int, int] | None = None
    detail_fraction: float = 0.0

    def __post_init__(self):
        if self.kind not in ("vision", "joint"):
            raise ValueError(f"stage kind must be 'vision' or 'joint', not {self.kind!r}")
        if not 0.0 <= self.detail_fraction <= 1.0 or (self.kind == "vision" and self.detail_fraction):
            raise ValueError(f"detail_fraction {self.detail_fraction}: a share in [0, 1], and 0 for vision stages "
                             "(they read no answers)")


@dataclass(frozen=True)
class ZooModel:
    """One zoo model: its family, role, final size, training recipe, and (for drafts) the target it
    copies its vision tower from and is paired with."""

    name: str
    family: str
    role: str  # "target" | "draft"
    size: TinySize  # as shipped (the last stage's)
    stages: tuple[Stage, ...]
    target: str | None = None  # drafts: the target whose vision tower initialises theirs
    frames: int = 8  # the clip length its pair is evaluated and benchmarked at (hippo.zoo.dataset.render)
    # The shipped folder holds only what the project trained on top of a pretrained LLM that is not
    # committed; the full checkpoint is materialized into the cache (hippo.zoo.pretrained).
    materialized: bool = False

    @property
    def path(self) -> Path:
        return CHECKPOINT_ROOT / self.name

    @property
    def shipped(self) -> bool:
        if self.materialized:  # a target's trained parts, or a compact draft (hippo.zoo.pretrained)
            return (self.path / "config.json").is_file() and any(
                (self.path / f).is_file() for f in ("trained.safetensors", "draft.safetensors"))
        return (self.path / "config.json").is_file() and any(self.path.glob("*.safetensors"))

    def stage_size(self, index: int) -> TinySize:
        """The model size stage `index` trains (the shipped size, with the stage's rotary split)."""
        section = self.stages[index].mrope_section
        return self.size if section is None else replace(self.size, mrope_section=section)


TARGET_SIZE = TinySize(hidden=256, layers=8, heads=4, kv_heads=2, vision_hidden=64, vision_layers=2)
DRAFT_SIZE = TinySize(hidden=128, layers=1, heads=4, kv_heads=2, vision_hidden=64, vision_layers=2)
# Qwen-VL's rotary split gives w the lowest frequencies; with head_dim 64 and theta 1e4 the default
# [8, 12, 12] rotates a horizontal step by 0.003 rad, so the LLM cannot tell left from right (the
# diagnosis behind qwen-target stage 2, 2026-11-26, docs/ZOO.md). [2, 4, 26] gives t 2, h 4 and w 26
# frequencies, the fastest w one 0.18 rad. Text tokens have t = h = w, so the split does not change how
# text positions are encoded.
QWEN_SECTION = (2, 4, 26)
QWEN_DRAFT_SECTION = (1, 2, 13)  # head_dim 32: the same frequencies for t, h and w (w from 0.18 rad)
DEFAULT_SECTION = (8, 12, 12)  # the tiny config's default split: qwen-target stages 0-1 (2026-11-25)
# The pools added in stage 2 (2026-11-26): the background (the tower had stopped encoding it),
# occlusion, and, for Qwen-VL whose patches span two frames, motion and speed (what moves between a
# patch's two frames).
BACKGROUND_OCCLUSION = (("background",), ("occlusion",))
MOTION_SPEED = (("motion",), ("speed",))
# llava-target stage 3 (2026-11-26): shape gets a pool of its own (LLaVA-OV's shape accuracy lagged at
# 0.70, colour and size do not need the same tokens' attention), plus motion and speed.
SHAPE_APART = (("color", "size"), ("shape",))
# The detailed-caption stages (2026-12-01, the last stage of every recipe): targets continue from the
# shipped weights (`--from-shipped`) with half of the examples asking for the detailed caption and half
# the five short questions as before (so that they are not forgotten). Drafts are retrained from
# scratch on their target's final tower, as always: stage 0 as before (the short questions), then
# stage 1 distilled on the same mix as the targets'.
DETAIL_FRACTION = 0.5
# Steps sized to one shared CPU core (measured 2026-12-01, batch 16, the mix padded to the captions'
# length: qwen-target 2.75 s/step, llava-target 3.4, qwen-draft 1.14, llava-draft 1.4; the drafts'
# stage 0 about 0.7 / 1.0): about 4.2 h for the whole pipeline in a row (scripts/zoo_detail_stage.py).
QWEN_DETAIL_STEPS = 2000
LLAVA_DETAIL_STEPS = 1700
QWEN_DRAFT_DETAIL_STEPS = 1000
LLAVA_DRAFT_DETAIL_STEPS = 1200
# The second draft of each pair (2026-12-02): a larger one whose one-token step on hippo_fast's
# compiled path costs about a fifth of its target's, the regime of the paper's pairs (ParallelVLM
# reports about 5 for LLaVA-OneVision 7B/72B), where overlapping drafting with verification pays; the
# first drafts' steps cost a tenth to a thirteenth. Sized by scripts/draft_cost_probe.py (random weights,
# one core, the target beside it): hidden x layers 128x1 0.27 ms, 192x3 0.44, 192x4 0.50, 256x2 0.33,
# 256x3 1.04 against qwen-target's 2.83 ms (ratio 5.7 for 192x4); llava 192x4 0.53 against 2.89 (5.5).
# Trained, qwen-draft-large's step measured 1.1 ms against 2.95 (ratio 2.6, docs/bench-perf/qwen-large-overlap.md):
# random weights underestimate the cost; to be re-sized on trained weights.
# The same two-stage recipe as the first drafts (short questions, then the detailed-caption mix),
# lower peak LRs for the deeper model, steps sized to one core.
LARGE_DRAFT_SIZE = TinySize(hidden=192, layers=4, heads=4, kv_heads=2, vision_hidden=64, vision_layers=2)
QWEN_LARGE_DRAFT_SECTION = (2, 3, 19)  # head_dim 48: w from 1e4^(-10/48) = 0.15 rad (the target's: 0.18)
LARGE_DRAFT_STAGES = (
    Stage("joint", 400, 2e-3),
    Stage("joint", 1000, 1e-3, detail_fraction=DETAIL_FRACTION),
)

# The pretrained pair (2026-12-06, docs/ZOO.md "The pretrained pair"): SmolLM2-135M-Instruct as the
# target's language model (hippo.zoo.pretrained), 16-frame videos of 8 x 8 tokens a frame; trained by
# one job (hippo.zoo.pretrained_train, `hippo zoo train-pretrained`), not by stages of this registry.
SMOL_TARGET_SIZE = TinySize(hidden=576, layers=30, heads=9, kv_heads=3, vision_hidden=64, vision_layers=2)
SMOL_DRAFT_SIZE = TinySize(hidden=256, layers=4, heads=4, kv_heads=2, vision_hidden=64, vision_layers=2)
SMOL_FRAMES = 16

MODELS: dict[str, ZooModel] = {
    m.name: m
    for m in (
        ZooModel("qwen-target", "qwen2_5_vl", "target", replace(TARGET_SIZE, mrope_section=QWEN_SECTION), (
            Stage("vision", 700, 2e-3, batch=32, mrope_section=DEFAULT_SECTION),
            Stage("joint", 2600, 1.5e-3, mrope_section=DEFAULT_SECTION),
            Stage("joint", 3600, 1e-3, aux_pools=COLOR_SHAPE_SIZE + BACKGROUND_OCCLUSION + MOTION_SPEED),
            Stage("joint", QWEN_DETAIL_STEPS, 7.5e-4, aux_pools=COLOR_SHAPE_SIZE + BACKGROUND_OCCLUSION + MOTION_SPEED,
                  detail_fraction=DETAIL_FRACTION),
        )),
        ZooModel("qwen-draft", "qwen2_5_vl", "draft", replace(DRAFT_SIZE, mrope_section=QWEN_DRAFT_SECTION), (
            Stage("joint", 400, 3e-3),
            Stage("joint", QWEN_DRAFT_DETAIL_STEPS, 1.5e-3, detail_fraction=DETAIL_FRACTION),
        ), target="qwen-target"),
        ZooModel("llava-target", "llava_onevision", "target", TARGET_SIZE, (
            Stage("vision", 700, 2e-3, batch=32),
            Stage("joint", 1500, 1.5e-3),
            Stage("joint", 2300, 1e-3, aux_pools=COLOR_SHAPE_SIZE + BACKGROUND_OCCLUSION),
            Stage("joint", 2000, 7.5e-4, aux_pools=SHAPE_APART + BACKGROUND_OCCLUSION + MOTION_SPEED),
            Stage("joint", LLAVA_DETAIL_STEPS, 7.5e-4, aux_pools=SHAPE_APART + BACKGROUND_OCCLUSION + MOTION_SPEED,
                  detail_fraction=DETAIL_FRACTION),
        )),
        ZooModel("llava-draft", "llava_onevision", "draft", DRAFT_SIZE, (
            Stage("joint", 800, 3e-3),
            Stage("joint", LLAVA_DRAFT_DETAIL_STEPS, 1.5e-3, detail_fraction=DETAIL_FRACTION),
        ), target="llava-target"),
        ZooModel("qwen-draft-large", "qwen2_5_vl", "draft", replace(LARGE_DRAFT_SIZE, mrope_section=QWEN_LARGE_DRAFT_SECTION),
                 LARGE_DRAFT_STAGES, target="qwen-target"),
        ZooModel("llava-draft-large", "llava_onevision", "draft", LARGE_DRAFT_SIZE, LARGE_DRAFT_STAGES,
                 target="llava-target"),
        ZooModel("smol-target", "llava_onevision", "target", SMOL_TARGET_SIZE, (), frames=SMOL_FRAMES,
                 materialized=True),
        ZooModel("smol-draft", "llava_onevision", "draft", SMOL_DRAFT_SIZE, (), target="smol-target",
                 frames=SMOL_FRAMES, materialized=True),
    )
}
# pair name -> (target, draft); the first pair is the default of `hippo generate`.
PAIRS: dict[str, tuple[str, str]] = {
    "qwen": ("qwen-target", "qwen-draft"),
    "llava": ("llava-target", "llava-draft"),
    # the same targets with their second, larger drafts (a fifth of the target's step cost)
    "qwen-large": ("qwen-target", "qwen-draft-large"),
    "llava-large": ("llava-target", "llava-draft-large"),
    # SmolLM2-135M-Instruct as the target's LLM, 16-frame videos (materialized: `hippo zoo materialize smol`)
    "smol": ("smol-target", "smol-draft"),
}
DEFAULT_PAIR = "qwen"


def zoo_model(name: str) -> ZooModel:
    if name not in MODELS:
        raise CheckpointError(f"unknown zoo model {name!r}; available: {', '.join(MODELS)} (see `hippo zoo list`)")
    return MODELS[name]


def resolve_zoo(spec: str) -> Path:
    """`zoo:NAME` -> the shipped checkpoint folder of NAME (a model name, or a pair name, which means
    that pair's target). Raises CheckpointError when NAME is unknown or its weights are not shipped."""
    name = spec[len(ZOO_PREFIX):] if spec.startswith(ZOO_PREFIX) else spec
    if name in PAIRS:
        name = PAIRS[name][0]
    model = zoo_model(name)
    if not model.shipped:
        how = "hippo zoo train-pretrained" if name.startswith("smol-") else f"hippo zoo train {name}"
        raise CheckpointError(
            f"zoo model {name!r} has no shipped weights in {model.path}: train and export it with "
            f"`{how}` (see docs/ZOO.md), or pass a checkpoint folder"
        )
    if model.materialized:
        import sys

        from hippo.zoo.pretrained import materialize

        files_from = zoo_model(model.target).path if model.role == "draft" and model.target else None
        return materialize(name, model.path, progress=lambda message: print(message, file=sys.stderr),
                           files_from=files_from)
    return model.path


def pair_frames(pair_or_model: str) -> int:
    """The clip length a zoo pair (or model) is evaluated at: its target's `frames`."""
    name = pair_or_model[len(ZOO_PREFIX):] if pair_or_model.startswith(ZOO_PREFIX) else pair_or_model
    if name in PAIRS:
        name = PAIRS[name][0]
    return zoo_model(name).frames


def is_zoo_spec(path) -> bool:
    return isinstance(path, str) and path.startswith(ZOO_PREFIX)


def default_target() -> str:
    """`hippo generate`'s target when none is given: the default pair's target."""
    return ZOO_PREFIX + PAIRS[DEFAULT_PAIR][0]


def default_draft(target: str) -> str | None:
    """The draft that goes with `target` when none is given: its zoo pair's draft, if `target` is zoo:."""
    if not is_zoo_spec(target):
        return None
    name = target[len(ZOO_PREFIX):]
    for pair, (t, d) in PAIRS.items():
        if name in (pair, t):
            return ZOO_PREFIX + d
    return None
