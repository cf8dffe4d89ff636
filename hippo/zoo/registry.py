"""The zoo's models and pairs, and where their shipped checkpoints live.

A zoo model is a stock HF Qwen2.5-VL or LLaVA-OneVision model trained by `hippo zoo train NAME` on
the synthetic dataset (hippo.zoo.dataset) with the zoo tokenizer. Shipped checkpoints sit in
`hippo/zoo/checkpoints/<name>/` in the Hub folder layout, so `hippo.checkpoint.load_adapter` loads
them like any downloaded checkpoint; `zoo:NAME` names one anywhere a folder is accepted.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from hippo.errors import CheckpointError
from hippo.tiny import TinySize

CHECKPOINT_ROOT = Path(__file__).resolve().parent / "checkpoints"
ZOO_PREFIX = "zoo:"


@dataclass(frozen=True)
class ZooModel:
    """One zoo model: its family, role, sizes, and (for drafts) the target it copies its vision tower
    from and is paired with."""

    name: str
    family: str
    role: str  # "target" | "draft"
    size: TinySize
    target: str | None = None  # drafts: the target whose vision tower initialises theirs
    steps: int = 1000  # default training steps (batch 16)
    lr: float = 2e-3
    vision_steps: int = 0  # vision-only stage first (hippo.zoo.train.pretrain_vision, batch 32, lr 2e-3)
    # the training-only auxiliary head (hippo.zoo.train.AuxHead): what it predicts, how it pools
    aux_attributes: tuple[str, ...] = ("color", "shape", "size")
    aux_separate_scores: bool = False

    @property
    def path(self) -> Path:
        return CHECKPOINT_ROOT / self.name

    @property
    def shipped(self) -> bool:
        return (self.path / "config.json").is_file() and any(self.path.glob("*.safetensors"))


TARGET_SIZE = TinySize(hidden=256, layers=8, heads=4, kv_heads=2, vision_hidden=64, vision_layers=2)
DRAFT_SIZE = TinySize(hidden=128, layers=1, heads=4, kv_heads=2, vision_hidden=64, vision_layers=2)

MODELS: dict[str, ZooModel] = {
    m.name: m
    for m in (
        ZooModel("qwen-target", "qwen2_5_vl", "target", TARGET_SIZE, steps=2600, lr=1.5e-3,
                 vision_steps=700),
        ZooModel("qwen-draft", "qwen2_5_vl", "draft", DRAFT_SIZE, target="qwen-target", steps=400, lr=3e-3),
        ZooModel("llava-target", "llava_onevision", "target", TARGET_SIZE, steps=1500, lr=1.5e-3,
                 vision_steps=700),
        ZooModel("llava-draft", "llava_onevision", "draft", DRAFT_SIZE, target="llava-target", steps=400, lr=3e-3),
    )
}
# pair name -> (target, draft); the first pair is the default of `hippo generate`.
PAIRS: dict[str, tuple[str, str]] = {
    "qwen": ("qwen-target", "qwen-draft"),
    "llava": ("llava-target", "llava-draft"),
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
        raise CheckpointError(
            f"zoo model {name!r} has no shipped weights in {model.path}: train and export it with "
            f"`hippo zoo train {name}` (see docs/ZOO.md), or pass a checkpoint folder"
        )
    return model.path


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
