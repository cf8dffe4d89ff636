"""The model pairs the suite audits: the shipped zoo pairs when they exist, otherwise tiny random
pairs written from config (target, a "near" draft = the target with perturbed language-model
weights, which agrees partially, and an unrelated random draft)."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import torch

from hippo.checkpoint import load_adapter
from hippo.tiny import save_checkpoint, write_tiny_pair


@dataclass
class ModelPair:
    name: str
    target_path: str
    draft_path: str
    target: object = None
    draft: object = None

    def load(self, dtype="float32", device="cpu"):
        self.target = load_adapter(self.target_path, dtype, device)
        self.draft = load_adapter(self.draft_path, dtype, device)
        return self


def check_auditable_files(target: str, draft: str) -> None:
    """Cheap refusals before anything loads: both folders exist, hold a supported family, the same one
    (kept indices and draft tokens transfer only within one family's grid and vocabulary)."""
    from hippo.checkpoint import checkpoint_family, resolve_checkpoint
    from hippo.errors import CheckpointError

    families = {}
    for role, path in (("target", target), ("draft", draft)):
        folder = resolve_checkpoint(path)
        if not folder.is_dir():
            raise CheckpointError(f"--{role} {path}: no such checkpoint folder (a folder laid out as on the Hub, "
                                  "with config.json, *.safetensors and the tokenizer files)")
        families[role] = checkpoint_family(folder)
    if families["target"] != families["draft"]:
        raise CheckpointError(f"cannot audit this pair: the target is {families['target']} and the draft "
                              f"{families['draft']}; a draft must be of its target's family (one vocabulary, one "
                              "visual token grid). Pass a draft of the same family")


def check_auditable(pair: ModelPair, clip) -> None:
    """Refuse a loaded pair that no decoding here can serve: different vocabularies, or visual token
    grids that differ on `clip` (the pruning indices computed on the target's grid would not transfer)."""
    from hippo.errors import CheckpointError
    from hippo.pairing import check_grids, check_vocabulary

    try:
        check_vocabulary(pair.target, pair.draft)
        check_grids(pair.target.prepare(clip, "probe"), pair.draft.prepare(clip, "probe"),
                    pair.target.name, pair.draft.name)
    except CheckpointError as err:
        raise CheckpointError(f"cannot audit this pair: {err}") from None


def zoo_pairs(names: tuple[str, ...] | None = None) -> list[ModelPair]:
    """The shipped zoo pairs of `names` (None: every pair whose two checkpoints are shipped)."""
    try:
        from hippo.zoo.registry import MODELS, PAIRS, resolve_zoo
    except ImportError:
        return []
    pairs = []
    for name, (target, draft) in PAIRS.items():
        if (names is None or name in names) and MODELS[target].shipped and MODELS[draft].shipped:
            # resolve_zoo: the folder a materialized model (built on a pretrained LLM) is written to
            pairs.append(ModelPair(f"zoo:{name}", str(resolve_zoo(target)), str(resolve_zoo(draft))))
    return pairs


def write_near_draft(target_dir: Path, out_dir: Path, scale: float = 0.1, seed: int = 0) -> Path:
    """The target with Gaussian noise (relative size `scale`) on its language-model matrices."""
    adapter = load_adapter(target_dir)
    model = copy.deepcopy(adapter.model)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "language_model" in name and param.dim() > 1:
                param.add_(torch.randn(param.shape, generator=generator) * param.std() * scale)
    return save_checkpoint(model, adapter.tokenizer, adapter.family, out_dir)


def tiny_pairs(cache_dir: Path, families=("qwen2_5_vl", "llava_onevision"), unrelated: bool = True) -> list[ModelPair]:
    pairs = []
    for family in families:
        root = Path(cache_dir) / family
        target, draft = root / "target", root / "draft"
        if not (target / "config.json").is_file():
            write_tiny_pair(root, family)
        near = root / "near"
        if not (near / "config.json").is_file():
            write_near_draft(target, near)
        pairs.append(ModelPair(f"tiny-{family}/near", str(target), str(near)))
        if unrelated:
            pairs.append(ModelPair(f"tiny-{family}/unrelated", str(target), str(draft)))
    return pairs
