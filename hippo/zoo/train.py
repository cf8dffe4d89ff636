"""Training of the zoo models on the synthetic dataset: deterministic from a seed, resumable.

`train_model(name, steps=...)` trains zoo model `name` (hippo.zoo.registry.MODELS) with AdamW on
batches of (video, question, templated answer); the loss is cross-entropy on the answer tokens and
the closing <|im_end|> only. Batch k of step s is a pure function of (seed, s), so a run resumed from
a checkpoint sees exactly the batches the uninterrupted run would have seen.

State (model, optimizer, step, losses) is saved every `save_every` steps to
`<work_dir>/<name>/state.pt` (gitignored `.cache/zoo-train/` by default); `export_model(name)`
writes the shipped Hub-layout folder `hippo/zoo/checkpoints/<name>/` from the latest state.

Drafts start from their target's trained vision tower (patch embedding and blocks, copied and
frozen; the projector / merger and the language model are trained), so a draft and its target turn
the video into the same token grid and the draft only has to learn to read it.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import torch

from hippo.checkpoint import ADAPTERS, load_adapter
from hippo.preprocess import load_processor_config
from hippo.tiny import build_tiny_model, save_checkpoint
from hippo.zoo import dataset
from hippo.zoo.registry import MODELS, ZooModel, zoo_model
from hippo.zoo.tokenizer import build_zoo_tokenizer

IGNORE = -100


def default_work_dir() -> Path:
    return Path(__file__).resolve().parents[2] / ".cache" / "zoo-train"


def make_adapter(model, tokenizer, family: str, folder: Path):
    """An adapter around an in-memory model (processor config and chat template read from `folder`)."""
    from hippo.checkpoint import read_chat_template

    return ADAPTERS[family](model, tokenizer, load_processor_config(folder), read_chat_template(folder, tokenizer),
                            str(folder))


def encode_example(adapter, ex: dataset.Example, frames: np.ndarray):
    """(input_ids, labels, vision_inputs) of one training example: the chat prompt with the video
    placeholders expanded, then the answer and <|im_end|>; labels are IGNORE on the prompt."""
    inputs = adapter.prepare(dataset.as_clip(frames), ex.question)
    tok = adapter.tokenizer
    answer = tok(ex.answer, add_special_tokens=False).input_ids + [tok.convert_tokens_to_ids("<|im_end|>")]
    ids = torch.cat([inputs.input_ids, torch.tensor(answer)])
    labels = torch.full_like(ids, IGNORE)
    labels[inputs.num_tokens:] = torch.tensor(answer)
    return ids, labels, inputs


def collate(adapter, encoded) -> dict:
    """Right-padded batch kwargs for the stock forward, plus `labels`."""
    pad = adapter.tokenizer.pad_token_id
    length = max(ids.numel() for ids, _, _ in encoded)
    batch = len(encoded)
    input_ids = torch.full((batch, length), pad, dtype=torch.long)
    labels = torch.full((batch, length), IGNORE, dtype=torch.long)
    mask = torch.zeros((batch, length), dtype=torch.long)
    for i, (ids, lab, _) in enumerate(encoded):
        input_ids[i, : ids.numel()] = ids
        labels[i, : ids.numel()] = lab
        mask[i, : ids.numel()] = 1
    out = {"input_ids": input_ids, "attention_mask": mask, "labels": labels}
    vis = [inp.vision_inputs for _, _, inp in encoded]
    out["pixel_values_videos"] = torch.cat([v["pixel_values_videos"] for v in vis])
    if adapter.family != "llava_onevision":  # Qwen-VL: the grid, its timing and the token types too
        out["video_grid_thw"] = torch.cat([v["video_grid_thw"] for v in vis])
        out["second_per_grid_ts"] = torch.cat([v["second_per_grid_ts"] for v in vis])
        types = torch.zeros((batch, length), dtype=torch.int)
        for i, (_, _, inp) in enumerate(encoded):
            types[i, inp.video_start : inp.video_end] = 2
        out["mm_token_type_ids"] = types
    return out


def batch_indices(seed: int, step: int, batch: int) -> list[int]:
    """Training video indices of step `step`: epoch-wise permutations of the train split."""
    n = dataset.SPLIT_SIZES["train"]
    first = step * batch
    out = []
    for k in range(first, first + batch):
        epoch, pos = divmod(k, n)
        perm = np.random.default_rng([seed, epoch]).permutation(n)
        out.append(int(perm[pos]))
    return out


def answer_loss(model, batch: dict, teacher=None, distill: float = 0.0) -> torch.Tensor:
    """Cross-entropy on the answer tokens; with a `teacher` (a draft's target), mixed with weight
    `distill` with KL(teacher || model) at the same positions (teacher-forced on the reference answer),
    so that the draft learns what its target says, including where the target is wrong."""
    labels = batch.pop("labels")
    logits = model(**batch, use_cache=False).logits
    vocab = logits.shape[-1]
    ce = torch.nn.functional.cross_entropy(
        logits[:, :-1].reshape(-1, vocab).float(), labels[:, 1:].reshape(-1), ignore_index=IGNORE
    )
    if teacher is None or distill <= 0:
        return ce
    with torch.no_grad():
        teacher_logits = teacher(**batch, use_cache=False).logits[..., :vocab]
    mask = labels[:, 1:] != IGNORE
    student = torch.log_softmax(logits[:, :-1][mask].float(), -1)
    target = torch.log_softmax(teacher_logits[:, :-1][mask].float(), -1)
    kl = torch.nn.functional.kl_div(student, target, log_target=True, reduction="batchmean")
    return (1 - distill) * ce + distill * kl


# Every attribute the auxiliary head can predict, with its class labels (speed "none" and occlusion
# False for objects that do not move).
AUX_CLASSES: dict[str, tuple] = {
    "color": tuple(dataset.COLORS), "shape": dataset.SHAPES, "size": tuple(dataset.SIZES),
    "background": dataset.BACKGROUNDS, "occlusion": (False, True), "motion": dataset.MOTIONS,
    "speed": ("none", *dataset.SPEEDS),
}
SHIPPED_AUX = ("color", "shape", "size")  # what the shipped checkpoints were trained with


def aux_label(spec: dataset.VideoSpec, attribute: str) -> int:
    """The class index of `attribute` for one video."""
    value = {"speed": spec.speed or "none", "occlusion": spec.occluded}.get(attribute)
    return AUX_CLASSES[attribute].index(getattr(spec, attribute) if value is None else value)


class AuxHead(torch.nn.Module):
    """Training-only helper, not part of the shipped model: from the video tokens the LLM receives
    (the merger / projector output), predict attributes of the object (colour, shape, size by
    default). The tokens are pooled by a learnt attention (softmax of a linear score per token; one
    score for all attributes, or one each with `separate_scores`), so the gradients reach the tokens
    that matter rather than whichever token scores highest. Its gradient makes the object's tokens
    carry those attributes early, which breaks the long plateau where the LLM has learnt the answer
    templates but cannot yet find the object among the video tokens. What it does not ask for, the
    tower is free to discard (docs/ZOO.md: the background was lost that way)."""

    def __init__(self, hidden: int, attributes=SHIPPED_AUX, separate_scores: bool = False):
        super().__init__()
        unknown = set(attributes) - set(AUX_CLASSES)
        if unknown:
            raise ValueError(f"unknown auxiliary attributes {sorted(unknown)}; choose from {', '.join(AUX_CLASSES)}")
        self.attributes = tuple(attributes)
        self.score = torch.nn.Linear(hidden, len(self.attributes) if separate_scores else 1)
        self.heads = torch.nn.ModuleDict({a: torch.nn.Linear(hidden, len(AUX_CLASSES[a])) for a in self.attributes})

    def logits(self, features: torch.Tensor, videos: int) -> dict[str, torch.Tensor]:
        per_video = features.reshape(videos, -1, features.shape[-1])
        weights = self.score(per_video).softmax(dim=1)  # (videos, tokens, 1 or one per attribute)
        return {a: self.heads[a]((weights[..., k % weights.shape[-1], None] * per_video).sum(dim=1))
                for k, a in enumerate(self.attributes)}

    def loss(self, features: torch.Tensor, specs) -> torch.Tensor:
        total = features.new_zeros(())
        for attribute, logits in self.logits(features, len(specs)).items():
            target = torch.tensor([aux_label(s, attribute) for s in specs])
            total = total + torch.nn.functional.cross_entropy(logits, target)
        return total / len(self.attributes)

    def accuracy(self, features: torch.Tensor, specs) -> dict[str, float]:
        out = {}
        for attribute, logits in self.logits(features, len(specs)).items():
            target = torch.tensor([aux_label(s, attribute) for s in specs])
            out[attribute] = round((logits.argmax(-1) == target).float().mean().item(), 3)
        return out


def _projector(model):
    for name, module in model.named_modules():
        if name.endswith("visual.merger") or name.endswith("multi_modal_projector"):
            return module
    raise RuntimeError("no vision merger / projector found")


def lr_at(step: int, steps: int, lr: float, warmup: int = 100) -> float:
    if step < warmup:
        return lr * (step + 1) / warmup
    frac = (step - warmup) / max(1, steps - warmup)
    return lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, frac))))


def _vision_param(name: str) -> bool:
    return ".visual." in f".{name}" or ".vision_tower." in f".{name}"


def _frozen_vision_param(name: str) -> bool:
    return _vision_param(name) and ".merger." not in name


def init_model(spec: ZooModel, tokenizer, seed: int, work_dir: Path):
    """A fresh model of `spec` (drafts: with their target's trained vision tower copied in, frozen)."""
    model = build_tiny_model(spec.family, spec.size, tokenizer, seed=seed, init_range=0.02)
    if spec.target is not None:
        target = load_trained(zoo_model(spec.target), work_dir)
        target_params = dict(target.named_parameters())
        with torch.no_grad():
            for name, param in model.named_parameters():
                src = target_params.get(name)
                if _vision_param(name) and src is not None and src.shape == param.shape:
                    param.copy_(src)
        for name, param in model.named_parameters():
            if _frozen_vision_param(name):
                param.requires_grad_(False)
    return model


def training_layout(spec: ZooModel, tokenizer, model, work_dir: Path) -> Path:
    """A Hub-layout folder for `spec` under its training state (processor config and chat template for
    the adapter that wraps the in-memory model; the weights written there are not read back)."""
    return save_checkpoint(model, tokenizer, spec.family, Path(work_dir) / spec.name / "layout")


def load_trained(spec: ZooModel, work_dir: Path):
    """The latest trained weights of `spec`: its training state if there is one, else the shipped folder."""
    state_file = work_dir / spec.name / "state.pt"
    if state_file.is_file():
        tokenizer = build_zoo_tokenizer()
        model = build_tiny_model(spec.family, spec.size, tokenizer, seed=0, init_range=0.02)
        model.load_state_dict(torch.load(state_file, weights_only=False)["model"])
        return model
    if spec.shipped:
        return load_adapter(spec.path).model
    raise FileNotFoundError(f"{spec.name} is not trained yet: run `hippo zoo train {spec.name}` first")


def train_model(
    name: str,
    steps: int = 2000,
    batch: int = 16,
    lr: float = 2e-3,
    seed: int = 0,
    work_dir: Path | None = None,
    save_every: int = 50,
    log_every: int = 10,
    threads: int = 1,
    export: bool = True,
    progress: bool = True,
    max_minutes: float | None = None,
    aux_weight: float | None = None,  # None: 1.0 (the AuxHead loss weight; 0 turns it off)
    distill: float | None = None,  # None: 0.5 for drafts (KL to their target), 0 for targets
) -> dict:
    """Train zoo model `name` up to `steps` steps, resuming from `<work_dir>/<name>/state.pt`."""
    from tqdm import tqdm

    torch.set_num_threads(threads)
    spec = zoo_model(name)
    if aux_weight is None:
        aux_weight = 1.0
    work_dir = Path(work_dir or default_work_dir())
    run_dir = work_dir / name
    run_dir.mkdir(parents=True, exist_ok=True)
    tokenizer = build_zoo_tokenizer()
    torch.manual_seed(seed)  # dropout-free models; only the init below reads randomness, from its own generator
    model = init_model(spec, tokenizer, seed, work_dir)
    if distill is None:
        distill = 0.5 if spec.target is not None else 0.0
    teacher = None
    if distill > 0:
        teacher = load_trained(zoo_model(spec.target), work_dir).eval()
        teacher.requires_grad_(False)
    folder = training_layout(spec, tokenizer, model, work_dir)
    adapter = make_adapter(model, tokenizer, spec.family, folder)
    aux = AuxHead(spec.size.hidden, spec.aux_attributes, spec.aux_separate_scores) if aux_weight > 0 else None
    captured = {}
    if aux is not None:
        _projector(model).register_forward_hook(lambda module, args, out: captured.__setitem__("video", out))
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.01, betas=(0.9, 0.98))
    aux_optimizer = torch.optim.AdamW(aux.parameters(), lr=lr) if aux is not None else None
    state_file = run_dir / "state.pt"
    step, history, vision_stages = 0, [], []
    if state_file.is_file():
        state = torch.load(state_file, weights_only=False)
        vision_stages = state.get("vision_pretrain", [])
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if aux is not None and state.get("aux") is not None:
            aux.load_state_dict(state["aux"])
            if state.get("aux_optimizer") is not None:
                aux_optimizer.load_state_dict(state["aux_optimizer"])
        step, history = state["step"], state["history"]
    model.train()
    log = open(run_dir / "train.log", "a")  # noqa: SIM115
    start = time.time()
    bar = tqdm(total=steps, initial=step, desc=name, mininterval=20, disable=not progress)
    running = []

    def save():
        tmp = state_file.with_suffix(".tmp")
        torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": step,
                    "history": history,
                    "aux": aux.state_dict() if aux is not None else None,
                    "aux_optimizer": aux_optimizer.state_dict() if aux is not None else None,
                    "vision_pretrain": vision_stages,
                    "config": {"steps": steps, "batch": batch, "lr": lr, "seed": seed}}, tmp)
        tmp.replace(state_file)

    while step < steps:
        indices = batch_indices(seed, step, batch)
        encoded, specs = [], []
        for i in indices:
            ex = dataset.example("train", i)
            specs.append(ex.video)
            encoded.append(encode_example(adapter, ex, dataset.render(ex.video)))
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, steps, lr)
        loss = answer_loss(model, collate(adapter, encoded), teacher, distill)
        total = loss
        if aux is not None:
            total = loss + aux_weight * aux.loss(captured.pop("video"), specs)
            aux_optimizer.zero_grad(set_to_none=True)
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        if aux is not None:
            aux_optimizer.step()
        step += 1
        running.append(loss.item())
        bar.update(1)
        if step % log_every == 0 or step == steps:
            mean = sum(running) / len(running)
            running = []
            history.append((step, mean))
            line = json.dumps({"step": step, "loss": round(mean, 5), "lr": lr_at(step - 1, steps, lr),
                               "elapsed_s": round(time.time() - start, 1)})
            log.write(line + "\n")
            log.flush()
            bar.set_postfix(loss=f"{mean:.4f}")
        if step % save_every == 0 or step == steps:
            save()
        if max_minutes is not None and time.time() - start > 60 * max_minutes:
            save()
            break
    bar.close()
    log.close()
    model.eval()
    if export and step >= steps:
        export_model(name, work_dir)
    return {"name": name, "step": step, "steps": steps, "loss": history[-1][1] if history else None}


def export_model(name: str, work_dir: Path | None = None) -> Path:
    """Write the shipped checkpoint folder of `name` from its latest training state."""
    spec = zoo_model(name)
    model = load_trained(spec, Path(work_dir or default_work_dir())).eval()
    tokenizer = build_zoo_tokenizer()
    for param in model.parameters():
        param.requires_grad_(True)
    model.config._name_or_path = f"zoo:{name}"
    return save_checkpoint(model, tokenizer, spec.family, spec.path)


ORDER = tuple(MODELS)  # targets before their drafts


def train_all(names=ORDER, seed: int = 0, work_dir: Path | None = None, **kwargs) -> list[dict]:
    """Train (or resume) every model of `names` in order with its registry defaults, exporting each. A
    target without a training state first runs its vision-only stage (`vision_steps`), as shipped."""
    results = []
    steps = kwargs.pop("steps", None)
    for name in names:
        spec = zoo_model(name)
        fresh = not (Path(work_dir or default_work_dir()) / name / "state.pt").is_file()
        if spec.vision_steps and fresh:  # stage 1 of a fresh run: the vision side alone
            pretrain_vision(name, steps=spec.vision_steps, seed=seed, work_dir=work_dir,
                            threads=kwargs.get("threads", 1), progress=kwargs.get("progress", True))
        results.append(train_model(name, steps=steps or spec.steps, lr=spec.lr, seed=seed, work_dir=work_dir,
                                   **kwargs))
    return results


def video_tokens(model, adapter, specs, captured: dict) -> torch.Tensor:
    """The merger / projector output for the videos of `specs` (read by the hook that fills `captured`)."""
    vis = [adapter.prepare(dataset.as_clip(dataset.render(s)), "").vision_inputs for s in specs]
    pixels = torch.cat([v["pixel_values_videos"] for v in vis])
    if adapter.family == "llava_onevision":
        model.model.get_video_features(pixels)
    else:
        model.model.get_video_features(pixels, torch.cat([v["video_grid_thw"] for v in vis]))
    return captured.pop("video")


def pretrain_vision(name: str, steps: int = 700, batch: int = 32, lr: float = 2e-3, seed: int = 0,
                    work_dir: Path | None = None, threads: int = 1, progress: bool = True) -> dict:
    """Stage 1 (vision only): train the vision tower and merger / projector of `name` on the AuxHead
    task (colour, shape, size from the video tokens), leaving the language model untouched. About 10x
    cheaper per video than a full step, so it gives the LLM readable object tokens early. Works on the
    training state in place (creating it if there is none); the LLM's optimizer state is kept."""
    from tqdm import tqdm

    torch.set_num_threads(threads)
    spec = zoo_model(name)
    work_dir = Path(work_dir or default_work_dir())
    run_dir = work_dir / name
    run_dir.mkdir(parents=True, exist_ok=True)
    tokenizer = build_zoo_tokenizer()
    torch.manual_seed(seed)
    model = init_model(spec, tokenizer, seed, work_dir)
    folder = training_layout(spec, tokenizer, model, work_dir)
    adapter = make_adapter(model, tokenizer, spec.family, folder)
    state_file = run_dir / "state.pt"
    state = torch.load(state_file, weights_only=False) if state_file.is_file() else None
    if state is not None:
        model.load_state_dict(state["model"])
    aux = AuxHead(spec.size.hidden, spec.aux_attributes, spec.aux_separate_scores)
    if state is not None and state.get("aux") is not None:
        aux.load_state_dict(state["aux"])
    vision = [p for n, p in model.named_parameters() if _vision_param(n) and p.requires_grad]
    optimizer = torch.optim.AdamW(vision + list(aux.parameters()), lr=lr, weight_decay=0.01)
    captured = {}
    _projector(model).register_forward_hook(lambda module, args, out: captured.__setitem__("video", out))
    model.train()
    validation = [dataset.video_spec("val", i) for i in range(128)]
    log = open(run_dir / "train.log", "a")  # noqa: SIM115
    running = []
    for step in tqdm(range(steps), desc=f"{name} vision", mininterval=20, disable=not progress):
        specs = [dataset.video_spec("train", i) for i in batch_indices(seed + 1000, step, batch)]
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, steps, lr, warmup=20)
        loss = aux.loss(video_tokens(model, adapter, specs, captured), specs)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        running.append(loss.item())
        if (step + 1) % 10 == 0 or step + 1 == steps:
            record = {"vision_step": step + 1, "aux_loss": round(sum(running) / len(running), 5)}
            if (step + 1) % 100 == 0 or step + 1 == steps:
                with torch.no_grad():
                    record["val_accuracy"] = aux.accuracy(video_tokens(model, adapter, validation, captured), validation)
            log.write(json.dumps(record) + "\n")
            log.flush()
            running = []
    log.close()
    if state is None:
        state = {"model": None, "optimizer": torch.optim.AdamW([p for p in model.parameters() if p.requires_grad],
                                                              lr=lr).state_dict(), "step": 0, "history": []}
    state["model"] = model.state_dict()
    state["aux"] = aux.state_dict()
    state["aux_optimizer"] = None
    state.setdefault("vision_pretrain", []).append({"steps": steps, "batch": batch, "lr": lr, "at_step": state["step"]})
    tmp = state_file.with_suffix(".tmp")
    torch.save(state, tmp)
    tmp.replace(state_file)
    return {"name": name, "vision_steps": steps, "aux_loss": sum(running) / len(running) if running else None}
