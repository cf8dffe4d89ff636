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
from hippo.zoo.registry import COLOR_SHAPE_SIZE, MODELS, ZooModel, zoo_model
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


def aux_label(spec: dataset.VideoSpec, attribute: str) -> int:
    """The class index of `attribute` for one video."""
    value = {"speed": spec.speed or "none", "occlusion": spec.occluded}.get(attribute)
    return AUX_CLASSES[attribute].index(getattr(spec, attribute) if value is None else value)


class AuxHead(torch.nn.Module):
    """Training-only helper, not part of the shipped model: from the video tokens the LLM receives
    (the merger / projector output), predict attributes of the object. The tokens are pooled by a
    learnt attention (softmax of a linear score per token), one pool per group of `pools` (attributes
    in one group share it), so the gradients reach the tokens that matter rather than whichever token
    scores highest. Its gradient makes the object's tokens carry those attributes early, which breaks
    the long plateau where the LLM has learnt the answer templates but cannot yet find the object among
    the video tokens. What it does not ask for, the tower is free to discard (docs/ZOO.md: the
    background was lost that way)."""

    def __init__(self, hidden: int, pools=COLOR_SHAPE_SIZE):
        super().__init__()
        pools = tuple(tuple(group) for group in pools)
        attributes = [a for group in pools for a in group]
        unknown = set(attributes) - set(AUX_CLASSES)
        if unknown or len(set(attributes)) != len(attributes) or not attributes:
            raise ValueError(f"auxiliary pools {pools}: each attribute once, from {', '.join(AUX_CLASSES)}")
        self.pools = pools
        self.attributes = tuple(attributes)
        self._pool_of = {a: k for k, group in enumerate(pools) for a in group}
        self.score = torch.nn.Linear(hidden, len(pools))
        self.heads = torch.nn.ModuleDict({a: torch.nn.Linear(hidden * self.reads(a), len(AUX_CLASSES[a]))
                                          for a in self.attributes})

    def reads(self, attribute: str) -> int:
        """How many hidden-sized vectors `attribute`'s head reads (one here: its pool)."""
        return 1

    def logits(self, features: torch.Tensor, videos: int) -> dict[str, torch.Tensor]:
        per_video = features.reshape(videos, -1, features.shape[-1])
        weights = self.score(per_video).softmax(dim=1)  # (videos, tokens, pools)
        return {a: self.heads[a]((weights[..., self._pool_of[a], None] * per_video).sum(dim=1))
                for a in self.attributes}

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


def init_model(spec: ZooModel, tokenizer, seed: int, work_dir: Path, stage: int = 0):
    """A fresh model of `spec` as stage `stage` trains it (drafts: with their target's trained vision
    tower copied in, frozen)."""
    model = build_tiny_model(spec.family, spec.stage_size(stage), tokenizer, seed=seed, init_range=0.02)
    if spec.target is not None:
        copy_target_tower(model, spec, work_dir)
        for name, param in model.named_parameters():
            if _frozen_vision_param(name):
                param.requires_grad_(False)
    return model


def copy_target_tower(model, spec: ZooModel, work_dir: Path, frozen_only: bool = False) -> None:
    """Copy the vision parameters of the draft `spec`'s target (its latest trained weights) into
    `model` where the shapes agree: the tower, which the draft keeps frozen, and (unless
    `frozen_only`) the Qwen-VL merger's layers that fit, an initialisation the draft goes on training.
    A fresh draft copies both; a draft continuing into a new stage copies the tower only (its own
    merger / projector is trained for its own LLM), so it reads the video through the tower its target
    has now."""
    target = load_trained(zoo_model(spec.target), work_dir)
    target_params = dict(target.named_parameters())
    wanted = _frozen_vision_param if frozen_only else _vision_param
    with torch.no_grad():
        for name, param in model.named_parameters():
            src = target_params.get(name)
            if wanted(name) and src is not None and src.shape == param.shape:
                param.copy_(src)


def training_layout(spec: ZooModel, tokenizer, model, work_dir: Path) -> Path:
    """A Hub-layout folder for `spec` under its training state (processor config and chat template for
    the adapter that wraps the in-memory model; the weights written there are not read back)."""
    return save_checkpoint(model, tokenizer, spec.family, Path(work_dir) / spec.name / "layout")


def load_trained(spec: ZooModel, work_dir: Path):
    """The latest trained weights of `spec` (in its shipped size): its training state if there is one,
    else the shipped folder."""
    state_file = work_dir / spec.name / "state.pt"
    if state_file.is_file():
        tokenizer = build_zoo_tokenizer()
        model = build_tiny_model(spec.family, spec.size, tokenizer, seed=0, init_range=0.02)
        model.load_state_dict(torch.load(state_file, weights_only=False)["model"])
        return model
    if spec.shipped:
        return load_adapter(spec.path).model
    raise FileNotFoundError(f"{spec.name} is not trained yet: run `hippo zoo train {spec.name}` first")


def _read_state(state_file: Path) -> dict | None:
    return torch.load(state_file, weights_only=False) if state_file.is_file() else None


def _write_state(state_file: Path, state: dict) -> None:
    tmp = state_file.with_suffix(".tmp")
    torch.save(state, tmp)
    tmp.replace(state_file)


def completed_stages(name: str, work_dir: Path | None = None) -> list[int]:
    """Indices of the recipe stages of `name` that its training state has finished."""
    state = _read_state(Path(work_dir or default_work_dir()) / name / "state.pt")
    return [] if state is None else list(state.get("completed", []))


def _stage_index(spec: ZooModel, stage: int | None, kind: str) -> int:
    if stage is None:  # the recipe's last stage of that kind
        matching = [i for i, s in enumerate(spec.stages) if s.kind == kind]
        if not matching:
            raise ValueError(f"{spec.name}'s recipe has no {kind} stage")
        return matching[-1]
    if not 0 <= stage < len(spec.stages) or spec.stages[stage].kind != kind:
        raise ValueError(f"{spec.name}: stage {stage} is not a {kind} stage of its recipe "
                         f"({[s.kind for s in spec.stages]})")
    return stage


def _carried_aux(aux: AuxHead, state: dict | None) -> bool:
    """Load the previous stage's auxiliary head into `aux` if it predicted the same pools."""
    if state is None or state.get("aux") is None or tuple(state.get("aux_pools", ())) != aux.pools:
        return False
    aux.load_state_dict(state["aux"])
    return True


def train_model(
    name: str,
    stage: int | None = None,
    steps: int | None = None,
    batch: int | None = None,
    lr: float | None = None,
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
    progress_file=None,  # where the tqdm bar goes (default stderr)
    on_step=None,  # called as on_step(step, steps) after every step (e.g. a whole-pipeline ETA)
) -> dict:
    """Run joint stage `stage` of `name`'s recipe (default: its last joint stage) up to its steps
    (`steps`, `batch`, `lr` override the recipe), resuming from `<work_dir>/<name>/state.pt`. A state
    left by an earlier stage gives the starting weights; the optimizer and LR schedule start afresh, and
    a draft copies its target's current vision tower (copy_target_tower). Each training example asks
    for the detailed caption with the stage's `detail_fraction` (hippo.zoo.dataset.example)."""
    from tqdm import tqdm

    torch.set_num_threads(threads)
    spec = zoo_model(name)
    stage = _stage_index(spec, stage, "joint")
    recipe = spec.stages[stage]
    steps, batch, lr = steps or recipe.steps, batch or recipe.batch, lr or recipe.lr
    if aux_weight is None:
        aux_weight = 1.0
    work_dir = Path(work_dir or default_work_dir())
    run_dir = work_dir / name
    run_dir.mkdir(parents=True, exist_ok=True)
    tokenizer = build_zoo_tokenizer()
    torch.manual_seed(seed)  # dropout-free models; only the init below reads randomness, from its own generator
    model = init_model(spec, tokenizer, seed, work_dir, stage)
    if distill is None:
        distill = 0.5 if spec.target is not None else 0.0
    teacher = None
    if distill > 0:
        teacher = load_trained(zoo_model(spec.target), work_dir).eval()
        teacher.requires_grad_(False)
    folder = training_layout(spec, tokenizer, model, work_dir)
    adapter = make_adapter(model, tokenizer, spec.family, folder)
    aux = AuxHead(spec.size.hidden, recipe.aux_pools) if aux_weight > 0 else None
    captured = {}
    if aux is not None:
        _projector(model).register_forward_hook(lambda module, args, out: captured.__setitem__("video", out))
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.01, betas=(0.9, 0.98))
    aux_optimizer = torch.optim.AdamW(aux.parameters(), lr=lr) if aux is not None else None
    state_file = run_dir / "state.pt"
    state = _read_state(state_file)
    step, history, completed = 0, [], []
    if state is not None:
        completed = list(state.get("completed", []))
        extended = state.get("stage") == stage and state["step"] < steps  # resumed with more steps
        if stage in completed and not extended:
            return {"name": name, "stage": stage, "step": state["step"], "steps": steps, "loss": None,
                    "note": "stage already completed"}
        completed = [c for c in completed if c != stage]
        model.load_state_dict(state["model"])
        if state.get("stage") == stage:  # resume this stage
            optimizer.load_state_dict(state["optimizer"])
            if aux is not None and state.get("aux") is not None:
                aux.load_state_dict(state["aux"])
                if state.get("aux_optimizer") is not None:
                    aux_optimizer.load_state_dict(state["aux_optimizer"])
            step, history = state["step"], state["history"]
        else:  # a new stage: weights (and a matching auxiliary head) carry over
            if spec.target is not None:
                copy_target_tower(model, spec, work_dir, frozen_only=True)
            if aux is not None:
                _carried_aux(aux, state)
    records = list(state.get("records", [])) if state is not None else []
    model.train()
    log = open(run_dir / "train.log", "a")  # noqa: SIM115
    start = time.time()
    bar = tqdm(total=steps, initial=step, desc=f"{name} stage {stage}", mininterval=20, disable=not progress,
               file=progress_file)
    running = []

    def save(done: bool = False):
        finished = completed + [stage] if done else completed
        record = {"stage": stage, "kind": "joint", "steps": steps, "batch": batch, "lr": lr, "seed": seed,
                  "aux_pools": recipe.aux_pools, "detail_fraction": recipe.detail_fraction,
                  "final_loss": history[-1][1] if history else None}
        _write_state(state_file, {
            "model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": step, "history": history,
            "aux": aux.state_dict() if aux is not None else None,
            "aux_optimizer": aux_optimizer.state_dict() if aux is not None else None,
            "aux_pools": aux.pools if aux is not None else None,
            "stage": stage, "completed": finished, "records": records + ([record] if done else [])})

    while step < steps:
        indices = batch_indices(seed, step, batch)
        encoded, specs = [], []
        for i in indices:
            ex = dataset.example("train", i, detail_fraction=recipe.detail_fraction)
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
        if on_step is not None:
            on_step(step, steps)
        if step % log_every == 0 or step == steps:
            mean = sum(running) / len(running)
            running = []
            history.append((step, mean))
            line = json.dumps({"stage": stage, "step": step, "loss": round(mean, 5), "lr": lr_at(step - 1, steps, lr),
                               "elapsed_s": round(time.time() - start, 1)})
            log.write(line + "\n")
            log.flush()
            bar.set_postfix(loss=f"{mean:.4f}")
        if step % save_every == 0 or step == steps:
            save(done=step >= steps)
        if max_minutes is not None and time.time() - start > 60 * max_minutes:
            save(done=step >= steps)
            break
    bar.close()
    log.close()
    model.eval()
    if export and step >= steps and stage == len(spec.stages) - 1:
        export_model(name, work_dir)
    return {"name": name, "stage": stage, "step": step, "steps": steps, "loss": history[-1][1] if history else None}


def export_model(name: str, work_dir: Path | None = None, out: Path | None = None) -> Path:
    """Write the shipped checkpoint folder of `name` (its shipped size) from its latest training state,
    or, with `out`, a Hub-layout folder there (to measure weights in training without replacing the
    shipped ones)."""
    spec = zoo_model(name)
    model = load_trained(spec, Path(work_dir or default_work_dir())).eval()
    tokenizer = build_zoo_tokenizer()
    for param in model.parameters():
        param.requires_grad_(True)
    model.config._name_or_path = f"zoo:{name}"
    return save_checkpoint(model, tokenizer, spec.family, Path(out) if out is not None else spec.path)


def start_from_shipped(name: str, stages_done: int, work_dir: Path | None = None) -> Path:
    """Seed the training state of `name` with its shipped weights as the output of the first
    `stages_done` recipe stages, so that `train_all` continues with the next stage. For extending a
    recipe: the shipped weights are exactly what its first stages produce from scratch (training is
    deterministic), so this saves recomputing them and changes no result."""
    spec = zoo_model(name)
    if not 0 < stages_done < len(spec.stages):
        raise ValueError(f"{name}'s recipe has {len(spec.stages)} stages; stages_done must be 1..{len(spec.stages) - 1}")
    work_dir = Path(work_dir or default_work_dir())
    state_file = work_dir / name / "state.pt"
    if state_file.is_file():
        raise FileExistsError(f"{state_file} exists: move it away to seed {name} from its shipped weights")
    if not spec.shipped:
        raise FileNotFoundError(f"{name} has no shipped weights in {spec.path}")
    state_file.parent.mkdir(parents=True, exist_ok=True)
    model = load_adapter(spec.path).model
    _write_state(state_file, {"model": model.state_dict(), "optimizer": None, "step": 0, "history": [],
                              "aux": None, "aux_optimizer": None, "aux_pools": None, "stage": stages_done - 1,
                              "completed": list(range(stages_done)),
                              "records": [{"stage": i, "from_shipped": str(spec.path)} for i in range(stages_done)]})
    return state_file


ORDER = tuple(n for n, m in MODELS.items() if m.stages)  # targets before their drafts (the pretrained pair has its own job)


def train_all(names=ORDER, seed: int = 0, work_dir: Path | None = None, **kwargs) -> list[dict]:
    """Run (or resume) the whole recipe of every model of `names` in order, exporting each at its end:
    exactly what was shipped. Stops at the first stage that did not finish (`max_minutes`)."""
    results = []
    for name in names:
        spec = zoo_model(name)
        for index, stage in enumerate(spec.stages):
            if index in completed_stages(name, work_dir):
                continue
            if stage.kind == "vision":
                result = pretrain_vision(name, stage=index, seed=seed, work_dir=work_dir,
                                         threads=kwargs.get("threads", 1), progress=kwargs.get("progress", True))
            else:
                result = train_model(name, stage=index, seed=seed, work_dir=work_dir, **kwargs)
            results.append(result)
            if index not in completed_stages(name, work_dir):
                return results
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


def pretrain_vision(name: str, stage: int | None = None, steps: int | None = None, batch: int | None = None,
                    lr: float | None = None, seed: int = 0, work_dir: Path | None = None, threads: int = 1,
                    progress: bool = True) -> dict:
    """Vision stage `stage` of `name`'s recipe (default: its last vision stage; `steps`, `batch`, `lr`
    override it): train the vision tower and merger / projector on the AuxHead task alone, leaving the
    language model untouched. About 10x cheaper per video than a joint step, so it gives the LLM
    readable object tokens early. Works on the training state in place (creating it if there is none);
    not resumable inside the stage (minutes long)."""
    from tqdm import tqdm

    torch.set_num_threads(threads)
    spec = zoo_model(name)
    stage = _stage_index(spec, stage, "vision")
    recipe = spec.stages[stage]
    steps, batch, lr = steps or recipe.steps, batch or recipe.batch, lr or recipe.lr
    work_dir = Path(work_dir or default_work_dir())
    run_dir = work_dir / name
    run_dir.mkdir(parents=True, exist_ok=True)
    tokenizer = build_zoo_tokenizer()
    torch.manual_seed(seed)
    model = init_model(spec, tokenizer, seed, work_dir, stage)
    folder = training_layout(spec, tokenizer, model, work_dir)
    adapter = make_adapter(model, tokenizer, spec.family, folder)
    state_file = run_dir / "state.pt"
    state = _read_state(state_file)
    if state is not None:
        model.load_state_dict(state["model"])
    aux = AuxHead(spec.size.hidden, recipe.aux_pools)
    _carried_aux(aux, state)
    vision = [p for n, p in model.named_parameters() if _vision_param(n) and p.requires_grad]
    optimizer = torch.optim.AdamW(vision + list(aux.parameters()), lr=lr, weight_decay=0.01)
    captured = {}
    _projector(model).register_forward_hook(lambda module, args, out: captured.__setitem__("video", out))
    model.train()
    validation = [dataset.video_spec("val", i) for i in range(128)]
    log = open(run_dir / "train.log", "a")  # noqa: SIM115
    running, accuracy = [], {}
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
            record = {"stage": stage, "vision_step": step + 1, "aux_loss": round(sum(running) / len(running), 5)}
            if (step + 1) % 100 == 0 or step + 1 == steps:
                with torch.no_grad():
                    accuracy = aux.accuracy(video_tokens(model, adapter, validation, captured), validation)
                record["val_accuracy"] = accuracy
            log.write(json.dumps(record) + "\n")
            log.flush()
            running = []
    log.close()
    previous = state or {}
    record = {"stage": stage, "kind": "vision", "steps": steps, "batch": batch, "lr": lr, "seed": seed,
              "aux_pools": recipe.aux_pools, "val_accuracy": accuracy}
    _write_state(state_file, {
        "model": model.state_dict(), "optimizer": None, "step": 0, "history": [],
        "aux": aux.state_dict(), "aux_optimizer": None, "aux_pools": aux.pools, "stage": stage,
        "completed": list(previous.get("completed", [])) + [stage],
        "records": list(previous.get("records", [])) + [record]})
    return {"name": name, "stage": stage, "vision_steps": steps, "val_accuracy": accuracy}
