"""Is the pretrained pair's language model still pretrained? SmolLM2-135M-Instruct before training (the
stock weights from the GGUF) against the shipped target (its low-rank deltas merged), on the same inputs:

- perplexity on held-out plain English sentences (none of them is in the zoo's data);
- per layer, the attention mass the last 32 query rows put on the first token (the attention sink),
  on a text-only chat prompt and on a 16-frame zoo video prompt (eager attention, fp32).

    python scripts/smol_pretrained_check.py [--json docs/zoo-smol/pretrained-check.json]
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import torch

SENTENCES = (
    "The museum opens at nine in the morning and closes at five in the afternoon.",
    "She poured the tea slowly, careful not to spill a single drop on the tablecloth.",
    "Heavy rain is expected across the northern coast for the rest of the week.",
    "The committee will meet again next month to review the new budget proposal.",
    "He had never seen so many stars before moving to the countryside.",
    "Photosynthesis converts light energy into chemical energy stored in sugars.",
    "The old bridge was closed for repairs after engineers found cracks in its supports.",
    "Most of the students finished the exam well before the time ran out.",
    "A good night's sleep improves memory, mood and concentration.",
    "The recipe calls for two cups of flour, one egg and a pinch of salt.",
)


def perplexity(model, tokenizer, sentences) -> float:
    """exp(mean token NLL) over the sentences, each scored alone (its first token not predicted)."""
    total, count = 0.0, 0
    for text in sentences:
        ids = tokenizer(text, return_tensors="pt").input_ids
        with torch.no_grad():
            logits = model(input_ids=ids).logits.float()
        nll = torch.nn.functional.cross_entropy(logits[0, :-1], ids[0, 1:], reduction="sum")
        total += float(nll)
        count += ids.shape[1] - 1
    return math.exp(total / count)


def sink_mass(model, **inputs) -> list[float]:
    """Per layer: mean over heads and the last 32 query rows of the attention on position 0."""
    with torch.no_grad():
        out = model(**inputs, output_attentions=True)
    return [round(float(a[0, :, -32:, 0].mean()), 3) for a in out.attentions]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    from transformers import AutoModelForImageTextToText

    from hippo.checkpoint import load_adapter
    from hippo.zoo import dataset, pretrained
    from hippo.zoo.registry import resolve_zoo

    tokenizer = pretrained.base_tokenizer()
    base = pretrained.load_base_llm()
    base.config._attn_implementation = "eager"
    trained = AutoModelForImageTextToText.from_pretrained(resolve_zoo("zoo:smol"), dtype=torch.float32,
                                                          attn_implementation="eager").eval()
    chat = tokenizer("<|im_start|>user\nWhat can you tell me about the history of the bicycle?<|im_end|>\n"
                     "<|im_start|>assistant\n", return_tensors="pt").input_ids
    adapter = load_adapter("zoo:smol")
    clip = dataset.labelled_clip("zoo:test/0@16")
    video = adapter.prepare(clip, dataset.DETAIL_PROMPT)
    video_kwargs = adapter.hf_generate_inputs(video)
    report = {
        "perplexity": {"before": round(perplexity(base, tokenizer, SENTENCES), 3),
                       "after": round(perplexity(trained, tokenizer, SENTENCES), 3)},
        "sink_text": {"before": sink_mass(base, input_ids=chat), "after": sink_mass(trained, input_ids=chat)},
        "sink_video_after": sink_mass(trained, **video_kwargs),
        "video_tokens": video.grid.total_tokens, "prompt_tokens": video.num_tokens,
    }
    print(json.dumps(report, indent=1))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
