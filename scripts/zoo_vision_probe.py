"""Can a zoo vision tower learn the dataset's attributes? A vision-only probe (docs/ZOO.md, "Why these sizes").

Trains a fresh zoo model's vision tower + merger / projector with an auxiliary head that predicts
colour, shape and size from the video tokens, and prints the head's accuracy on 128 validation videos
every 25 steps. The dataset variant is patched in-process, so the probe can replay the generators that
were tried before the shipped one:

    python scripts/zoo_vision_probe.py --sizes 9,15 --square-fill 0.85 --head max   # the first generator (2026-11-24)
    python scripts/zoo_vision_probe.py --head attn --steps 700                      # the shipped recipe

Heads: `max` (per-class max over tokens), `dense` (every token classified, object vs background by the
rendered mask), `attn` (softmax attention pooling, what hippo.zoo.train.AuxHead does; with
`--separate-scores` every attribute pools with its own score). `--attributes` picks what is predicted,
e.g. `--attributes motion,speed,background` asks whether the video tokens carry the attributes that
the language model has to compare across tokens or time.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time

import numpy as np
import torch

from hippo.tiny import build_tiny_model, save_checkpoint
from hippo.zoo import dataset
from hippo.zoo import train as zoo_train
from hippo.zoo.registry import zoo_model
from hippo.zoo.tokenizer import build_zoo_tokenizer


def patch_dataset(sizes: tuple[int, int] | None, square_fill: float, aspect: bool) -> None:
    """Swap the generator's object sizes / shapes in-process (nothing on disk changes)."""
    if sizes:
        dataset.SIZES.update(small=sizes[0], large=sizes[1])
    if aspect:
        dataset.SHAPES = ("square", "bar", "column")
    shipped_mask = dataset._shape_mask

    def shape_mask(shape, cy, cx, half):
        yy, xx = np.mgrid[0:dataset.SIZE, 0:dataset.SIZE].astype(np.float64)
        if shape in ("bar", "column"):
            hy, hx = (0.35 * half, half) if shape == "bar" else (half, 0.35 * half)
            return (np.abs(yy - cy) <= hy) & (np.abs(xx - cx) <= hx)
        if shape == "square":
            return (np.abs(yy - cy) <= half * square_fill) & (np.abs(xx - cx) <= half * square_fill)
        return shipped_mask(shape, cy, cx, half)

    dataset._shape_mask = shape_mask


def object_cover(spec, family: str) -> np.ndarray:
    """Per video token, the fraction of its pixels the object covers (over the frames it merges)."""
    masks = dataset.object_masks(spec).astype(np.float32)
    if family == "llava_onevision":  # projector output: 8x8 patches of 14 per frame
        return masks.reshape(8, 8, 14, 8, 14).mean((2, 4)).reshape(-1)
    return masks.reshape(4, 2, 4, 28, 4, 28).mean((1, 3, 5)).reshape(-1)  # 4 groups x 4x4 merged tokens


def value_of(spec, attribute: str):
    """The class label of `attribute` for a video (speed 'none' and occlusion False when it does not move)."""
    if attribute == "speed":
        return spec.speed or "none"
    if attribute == "occlusion":
        return spec.occluded
    return getattr(spec, attribute)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="qwen-target")
    parser.add_argument("--head", choices=["max", "dense", "attn"], default="attn")
    parser.add_argument("--sizes", default=None, help="small,large half-extents (default: the shipped ones)")
    parser.add_argument("--square-fill", type=float, default=1.0)
    parser.add_argument("--aspect-shapes", action="store_true", help="square / bar / column instead")
    parser.add_argument("--tower-hidden", type=int, default=None)
    parser.add_argument("--attributes", default="color,shape,size",
                        help="comma-separated: color shape size motion speed background occlusion")
    parser.add_argument("--separate-scores", action="store_true", help="attn head: one pooling score per attribute")
    parser.add_argument("--from", dest="checkpoint", default=None,
                        help="start from this checkpoint's tower (zoo:NAME or a folder) instead of a fresh one")
    parser.add_argument("--frozen", action="store_true",
                        help="train only the probe head: does the tower's output still carry the attribute?")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--lr", type=float, default=2e-3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    patch_dataset(tuple(map(int, args.sizes.split(","))) if args.sizes else None, args.square_fill,
                  args.aspect_shapes)
    spec = zoo_model(args.model)
    if args.tower_hidden:
        spec = dataclasses.replace(spec, size=dataclasses.replace(spec.size, vision_hidden=args.tower_hidden))
    tokenizer = build_zoo_tokenizer()
    if args.checkpoint:
        from hippo.checkpoint import load_adapter

        adapter = load_adapter(args.checkpoint)
        model = adapter.model
        if adapter.family != spec.family:
            raise SystemExit(f"--from {args.checkpoint} is {adapter.family}; pass --model of that family")
    else:
        model = build_tiny_model(spec.family, spec.size, tokenizer, seed=0, init_range=0.02)
        folder = save_checkpoint(model, tokenizer, spec.family, f".cache/exp/layout-{spec.family}")
        adapter = zoo_train.make_adapter(model, tokenizer, spec.family, folder)
    values = dict(dataset.ATTRIBUTE_WORDS, shape=dataset.SHAPES, speed=("none", *dataset.SPEEDS),
                  occlusion=(False, True))
    attributes = {a: values[a] for a in args.attributes.split(",")}
    hidden = spec.size.hidden
    extra = 1 if args.head == "dense" else 0  # the dense head's background class
    heads = torch.nn.ModuleDict({a: torch.nn.Linear(hidden, len(v) + extra) for a, v in attributes.items()})
    score = torch.nn.Linear(hidden, len(attributes) if args.separate_scores else 1)
    captured: dict = {}
    zoo_train._projector(model).register_forward_hook(lambda m, a, out: captured.__setitem__("video", out))
    vision = [] if args.frozen else [p for n, p in model.named_parameters() if zoo_train._vision_param(n)]
    model.requires_grad_(not args.frozen)
    optimizer = torch.optim.AdamW(vision + list(heads.parameters()) + list(score.parameters()), lr=args.lr,
                                  weight_decay=0.01)

    def loss_and_accuracy(specs):
        tokens = zoo_train.video_tokens(model, adapter, specs, captured).reshape(len(specs), -1, hidden)
        cover = torch.tensor(np.stack([object_cover(s, spec.family) for s in specs]))
        total, accuracy = 0.0, {}
        for k, (attribute, values) in enumerate(attributes.items()):
            target = torch.tensor([values.index(value_of(s, attribute)) for s in specs])
            if args.head == "dense":
                logits = heads[attribute](tokens)
                labels = torch.where(cover > 0.05, target[:, None], torch.full_like(target[:, None], len(values)))
                total = total + torch.nn.functional.cross_entropy(logits.flatten(0, 1), labels.flatten())
                logp = logits.log_softmax(-1)
                weight = 1 - logp[..., -1].exp()  # probability that the token is the object
                predicted = (logp[..., :-1] * weight[..., None]).sum(1).argmax(-1)
            else:
                if args.head == "attn":
                    weights = score(tokens)[..., k if args.separate_scores else 0].softmax(1)
                    logits = heads[attribute]((weights[..., None] * tokens).sum(1))
                else:
                    logits = heads[attribute](tokens).amax(1)
                total = total + torch.nn.functional.cross_entropy(logits, target)
                predicted = logits.argmax(-1)
            accuracy[attribute] = round((predicted == target).float().mean().item(), 3)
        return total / len(attributes), accuracy

    validation = [dataset.video_spec("val", i) for i in range(128)]
    start = time.time()
    for step in range(args.steps):
        specs = [dataset.video_spec("train", i) for i in zoo_train.batch_indices(1000, step, args.batch)]
        for group in optimizer.param_groups:
            group["lr"] = zoo_train.lr_at(step, args.steps, args.lr, warmup=20)
        loss, _ = loss_and_accuracy(specs)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if (step + 1) % 25 == 0:
            with torch.no_grad():
                val_loss, accuracy = loss_and_accuracy(validation)
            print(json.dumps({"step": step + 1, "elapsed_s": round(time.time() - start), "loss": round(loss.item(), 4),
                              "val_loss": round(val_loss.item(), 4), "val_accuracy": accuracy}), flush=True)


if __name__ == "__main__":
    main()
