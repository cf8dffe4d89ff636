"""The plan of a vLLM audit run (what the runner asks vLLM for), written by the project's environment.

The prompts are rendered here, once, by the target's own chat template (hippo.adapters.text.TextLLMAdapter
.prompt_ids): the engine is given token ids and reads no tokenizer, and every row states the ids it read,
which the audit checks against the same rendering. Sampled prompts are chosen so that speculation starts at
once: in the first one the answer repeats the prompt (the n-gram method proposes from its first generated
token), so the first k tokens the audit compares pass through vLLM's rejection sampler.
"""

from __future__ import annotations

import json
from pathlib import Path

PROMPTS = (
    "Repeat this sentence exactly: the quick brown fox jumps over the lazy dog.",
    "What is the capital of France?",
    "Write a short paragraph about the sea.",
)
SAMPLED_PROMPTS = (0, 2)  # indices into PROMPTS (the second: an open answer, a spread first-token law)
# Temperature 1 alone, then with top-k and top-p (last: vLLM 0.32.0 as shipped crashes on it with speculation).
SAMPLING_SETTINGS = ({"temperature": 1.0}, {"temperature": 1.0, "top_k": 50, "top_p": 0.9})


def write_plan(path: Path, target: str, draft: str, rows_per_pool: int = 300, greedy_max_tokens: int = 48,
               sampled_max_tokens: int = 3, threads: int = 1, num_speculative_tokens: int = 4,
               seed_base: int = 1000, video_target: str | None = None) -> dict:
    from hippo.checkpoint import load_adapter

    if rows_per_pool < 1 or greedy_max_tokens < 1 or sampled_max_tokens < 1 or threads < 1:
        raise ValueError("rows per pool, token counts and threads must be positive")
    adapter = load_adapter(target)
    plan = {
        "target": target, "draft": draft, "video_target": video_target, "threads": threads, "num_speculative_tokens": num_speculative_tokens,
        "eos_token_ids": list(adapter.eos_token_ids), "max_model_len": 512, "max_num_seqs": 128,
        "prompts": [{"text": p, "token_ids": adapter.prompt_ids(p)} for p in PROMPTS],
        "greedy_max_tokens": greedy_max_tokens,
        "sampled": {"prompts": list(SAMPLED_PROMPTS), "settings": list(SAMPLING_SETTINGS), "seed_base": seed_base,
                    "rows_per_pool": rows_per_pool, "max_tokens": sampled_max_tokens},
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(plan, indent=1))
    return plan


def main(argv=None) -> int:
    """`python -m verification.engines.vllm_plan --out PLAN.json`: the models written into the cache (once),
    then the plan."""
    import argparse

    from verification.engines.text_models import materialize

    parser = argparse.ArgumentParser(description="write the vLLM audit's plan (verification/engines/vllm_plan.py)")
    parser.add_argument("--out", required=True)
    parser.add_argument("--rows-per-pool", type=int, default=100, help="sampled rows per prompt and setting")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    models = materialize()
    from hippo.zoo.registry import resolve_zoo

    video_target = str(resolve_zoo("zoo:smol-target"))  # materialized once (about 20 s), for the video probe
    plan = write_plan(Path(args.out), models["target"], models["draft"], rows_per_pool=args.rows_per_pool,
                      threads=args.threads, video_target=video_target)
    print(f"plan {args.out}: {len(plan['prompts'])} prompts, target {plan['target']}, draft {plan['draft']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
