"""Per-token cost of candidate draft sizes on hippo_fast's compiled decode path, against the zoo target.

Random weights of each candidate size (cost does not depend on the values), the zoo tokenizer and a
zoo test video; each draft's one-token step timed by paper.measure.instruments.ForwardTimer beside the
shipped target's, in one process. Used on 2026-12-02 to size the zoo's second drafts (`*-draft-wide`,
docs/ZOO.md): the issue asks for a draft whose step costs about a fifth of its target's.

    OMP_NUM_THREADS=1 taskset -c 1 python scripts/draft_cost_probe.py --family qwen2_5_vl
    OMP_NUM_THREADS=1 taskset -c 1 python scripts/draft_cost_probe.py --shipped qwen-draft,qwen-draft-large --sizes 192x4
"""

from __future__ import annotations

import argparse
import tempfile
from dataclasses import replace
from pathlib import Path

import torch


def main() -> None:
    from hippo.checkpoint import load_adapter
    from hippo.generation import implementation
    from hippo.request import DecodeConfig, GenerationRequest, PruneSpec
    from hippo.tiny import build_tiny_model, save_checkpoint
    from hippo.zoo import dataset
    from hippo.zoo.registry import DRAFT_SIZE, PAIRS, QWEN_DRAFT_SECTION, zoo_model
    from hippo.zoo.tokenizer import build_zoo_tokenizer
    from paper.measure.instruments import ForwardTimer

    parser = argparse.ArgumentParser()
    parser.add_argument("--family", default="qwen2_5_vl", choices=["qwen2_5_vl", "llava_onevision"])
    parser.add_argument("--sizes", default="128x1,128x2,128x3,192x2,256x1,256x2",
                        help="comma-separated HIDDENxLAYERS")
    parser.add_argument("--shipped", default="",
                        help="comma-separated zoo model names whose trained weights are timed too (e.g. qwen-draft,qwen-draft-large)")
    parser.add_argument("--repeats", type=int, default=60)
    args = parser.parse_args()
    torch.set_num_threads(1)
    pair = "qwen" if args.family == "qwen2_5_vl" else "llava"
    target = load_adapter(zoo_model(PAIRS[pair][0]).path)
    tokenizer = build_zoo_tokenizer()
    clip, prompt = dataset.detail_requests("test", 1)[0]
    impl = implementation("fast", compile=True)
    request = GenerationRequest(video=clip.path, prompt=prompt, frames=8, decoding="sd", prune=PruneSpec(),
                                config=DecodeConfig(max_new_tokens=128, gamma=5, eos_token_ids=tuple(target.eos_token_ids)))
    measured = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in filter(None, args.shipped.split(",")):
            draft = load_adapter(zoo_model(name).path)
            prepared = impl.prepare_contexts(target, draft, request, clip)
            if not measured:
                measured.append(("target", prepared.target_context, 1))
            measured.append((name, prepared.draft_context, 1))
        for spec in filter(None, args.sizes.split(",")):
            hidden, layers = (int(x) for x in spec.split("x"))
            size = replace(DRAFT_SIZE, hidden=hidden, layers=layers)
            if args.family == "qwen2_5_vl":  # the split must sum to head_dim / 2 (cost does not depend on it)
                t, h, _ = QWEN_DRAFT_SECTION
                size = replace(size, mrope_section=(t, h, hidden // size.heads // 2 - t - h))
            model = build_tiny_model(args.family, size, tokenizer, seed=0, init_range=0.02)
            draft = load_adapter(save_checkpoint(model, tokenizer, args.family, Path(tmp) / spec))
            prepared = impl.prepare_contexts(target, draft, request, clip)
            if not measured:
                measured.append(("target", prepared.target_context, 1))
            measured.append((spec, prepared.draft_context, 1))
        timer = ForwardTimer(measured)
        for _ in range(5):
            timer.sample(args.repeats // 5)
        results = timer.results(10.0)
    target_ms = results[0].median_ms
    print(f"{args.family}: target step {target_ms:.3f} ms")
    print("| draft (hidden x layers) | step ms | target / draft |")
    print("|---|---:|---:|")
    for r in results[1:]:
        print(f"| {r.model} | {r.median_ms:.3f} | {target_ms / r.median_ms:.1f} |")


if __name__ == "__main__":
    main()
