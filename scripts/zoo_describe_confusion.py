"""Which attributes a zoo model names right in its 'describe the video.' answers, and its motion confusion
(true motion -> motion words said). Reads the training state (`.cache/zoo-train/NAME`) if there is one,
else the shipped weights (always with --shipped): the mid-training checks in docs/ZOO.md.

    python scripts/zoo_describe_confusion.py qwen-target -n 50 [--shipped]
"""

from __future__ import annotations

import argparse
import collections

import torch

from hippo.checkpoint import load_adapter
from hippo.zoo import dataset
from hippo.zoo.evaluate import greedy_answer
from hippo.zoo.registry import zoo_model
from hippo.zoo.tokenizer import build_zoo_tokenizer
from hippo.zoo.train import default_work_dir, load_trained, make_adapter, training_layout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name")
    parser.add_argument("-n", type=int, default=50, help="validation videos")
    parser.add_argument("--shipped", action="store_true", help="the shipped weights even if a training state exists")
    args = parser.parse_args()
    torch.set_num_threads(1)
    spec = zoo_model(args.name)
    if args.shipped:
        adapter = load_adapter(f"zoo:{spec.name}")
    else:
        tokenizer, work_dir = build_zoo_tokenizer(), default_work_dir()
        model = load_trained(spec, work_dir).eval()
        adapter = make_adapter(model, tokenizer, spec.family, training_layout(spec, tokenizer, model, work_dir))
    pairs, confusion = [], collections.Counter()
    for i in range(args.n):
        ex = dataset.example("val", i, "describe")
        text = greedy_answer(adapter, dataset.as_clip(dataset.render(ex.video)), ex.question)
        pairs.append((text, ex.asked))
        said = [m for m in dataset.MOTIONS if m in text.replace(".", " ").split()]
        confusion[ex.video.motion, "/".join(said) or "?"] += 1
    print({a: round(v, 2) for a, v in dataset.attribute_breakdown(pairs).items()})
    for (true, said), count in sorted(confusion.items()):
        print(f"{true:>10} -> {said:<12} {count}")


if __name__ == "__main__":
    main()
