"""Tiny random video-LLM checkpoints, built offline from config, saved in the Hub folder layout.

They exist so that tests, the verification suite and the README example run with no download:
`write_tiny_pair(out_dir, family)` writes a target and a draft folder (config.json,
model.safetensors, tokenizer files, chat template, video processor config) that load exactly like
a downloaded checkpoint. Weights are random (initializer_range ~0.3, so that greedy outputs do not
collapse into a repeated token and acceptance patterns are varied); acceptance numbers measured on
them mean nothing. Draft and target share one tokenizer and the same vision geometry.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

FAMILIES = ("qwen2_5_vl", "qwen2_vl", "llava_onevision", "llava_next_video")

# One word list trains the BPE tokenizer; byte-level, so any prompt still tokenizes.
_CORPUS_WORDS = (
    "a the red green blue yellow purple orange white black small large big tiny circle square "
    "triangle star ball box moves left right up down across appears disappears behind in front of "
    "video shows frame object objects what color shape is there how many where does the and then "
    "slowly quickly stops starts first last scene background cluttered textured describe answer "
    "question caption one two three four five six seven eight nine ten yes no it its they"
).split()

SPECIAL_TOKENS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|video_pad|>",
    "<|image_pad|>",
    "<video>",
    "<image>",
)

_QWEN_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for part in message['content'] %}"
    "{% if part['type'] == 'video' %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}{% endfor %}{% endif %}"
    "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
_LLAVA_TEMPLATE = _QWEN_TEMPLATE.replace("<|vision_start|><|video_pad|><|vision_end|>", "<video>\n")


@dataclass(frozen=True)
class TinySize:
    """Language-model and vision-tower sizes of one tiny model."""

    hidden: int
    layers: int
    heads: int
    kv_heads: int
    vision_hidden: int = 32
    vision_layers: int = 1
    # Qwen-VL only: how head_dim/2 rotary frequencies split over (t, h, w); None: _mrope_section's default.
    # The split is in frequency order, so w always gets the lowest frequencies (see docs/ZOO.md).
    mrope_section: tuple[int, int, int] | None = None


TARGET_SIZE = TinySize(hidden=64, layers=2, heads=4, kv_heads=2)
DRAFT_SIZE = TinySize(hidden=32, layers=1, heads=2, kv_heads=1)


def build_tokenizer():
    """A byte-level BPE tokenizer trained on a fixed word list (deterministic), with chat specials."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    sentences = [" ".join(_CORPUS_WORDS[i : i + 7]) for i in range(len(_CORPUS_WORDS))] * 3
    tok.train_from_iterator(sentences, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        extra_special_tokens={"video_token": "<|video_pad|>", "image_token": "<|image_pad|>"},
    )


def _qwen_config(family: str, size: TinySize, tokenizer, init_range: float):
    from transformers import Qwen2_5_VLConfig, Qwen2VLConfig

    ids = tokenizer.convert_tokens_to_ids
    text = _qwen2_text_config(size, tokenizer, init_range)
    del text["model_type"]  # the Qwen-VL text config has its own type
    text["rope_parameters"] = {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": _mrope_section(size)}
    vision = dict(
        depth=size.vision_layers,
        hidden_size=size.vision_hidden,
        intermediate_size=size.vision_hidden * 2,
        num_heads=2,
        patch_size=14,
        spatial_merge_size=2,
        temporal_patch_size=2,
        initializer_range=init_range,
    )
    if family == "qwen2_5_vl":
        vision.update(out_hidden_size=size.hidden, window_size=56, fullatt_block_indexes=[0], tokens_per_second=2)
        cls = Qwen2_5_VLConfig
    else:
        vision.update(embed_dim=size.vision_hidden, hidden_size=size.hidden, mlp_ratio=2)
        vision.pop("intermediate_size")
        cls = Qwen2VLConfig
    return cls(
        text_config=text,
        vision_config=vision,
        video_token_id=ids("<|video_pad|>"),
        image_token_id=ids("<|image_pad|>"),
        vision_start_token_id=ids("<|vision_start|>"),
        vision_end_token_id=ids("<|vision_end|>"),
        tie_word_embeddings=False,
    )


def _mrope_section(size: TinySize) -> list[int]:
    """Split head_dim/2 rotary frequencies over (t, h, w) like Qwen's [16, 24, 24] for head_dim 128."""
    if size.mrope_section is not None:
        if sum(size.mrope_section) != size.hidden // size.heads // 2:
            raise ValueError(f"mrope_section {size.mrope_section} must sum to head_dim/2 = {size.hidden // size.heads // 2}")
        return list(size.mrope_section)
    half = size.hidden // size.heads // 2
    t = half // 4
    h = (half - t) // 2
    return [t, h, half - t - h]


def _qwen2_text_config(size: TinySize, tokenizer, init_range: float) -> dict:
    """The Qwen2 language model both LLaVA families use."""
    ids = tokenizer.convert_tokens_to_ids
    return dict(
        model_type="qwen2",
        vocab_size=len(tokenizer),
        hidden_size=size.hidden,
        intermediate_size=size.hidden * 2,
        num_hidden_layers=size.layers,
        num_attention_heads=size.heads,
        num_key_value_heads=size.kv_heads,
        max_position_embeddings=4096,
        initializer_range=init_range,
        bos_token_id=ids("<|endoftext|>"),
        eos_token_id=ids("<|im_end|>"),
        pad_token_id=ids("<|endoftext|>"),
    )


def _llava_config(size: TinySize, tokenizer, init_range: float, image_size: int):
    from transformers import LlavaOnevisionConfig

    ids = tokenizer.convert_tokens_to_ids
    return LlavaOnevisionConfig(
        text_config=_qwen2_text_config(size, tokenizer, init_range),
        vision_config=dict(
            model_type="siglip_vision_model",
            hidden_size=size.vision_hidden,
            intermediate_size=size.vision_hidden * 2,
            num_hidden_layers=size.vision_layers,
            num_attention_heads=2,
            image_size=image_size,
            patch_size=14,
        ),
        image_token_index=ids("<image>"),
        video_token_index=ids("<video>"),
        vision_feature_select_strategy="full",
        vision_feature_layer=-1,
        initializer_range=init_range,
        tie_word_embeddings=False,
    )


def _llava_next_video_config(size: TinySize, tokenizer, init_range: float, image_size: int):
    from transformers import LlavaNextVideoConfig

    ids = tokenizer.convert_tokens_to_ids
    return LlavaNextVideoConfig(
        text_config=_qwen2_text_config(size, tokenizer, init_range),
        vision_config=dict(
            model_type="clip_vision_model", hidden_size=size.vision_hidden, intermediate_size=size.vision_hidden * 2,
            num_hidden_layers=size.vision_layers + 1, num_attention_heads=2, image_size=image_size, patch_size=14,
            projection_dim=size.vision_hidden,
        ),
        image_token_index=ids("<image>"),
        video_token_index=ids("<video>"),
        vision_feature_select_strategy="default",
        vision_feature_layer=-2,
        spatial_pool_stride=2,
        initializer_range=init_range,
        tie_word_embeddings=False,
    )


# Resize with bicubic, rescale to [0, 1], normalise with CLIP's mean / std: shared by every family.
_CLIP_NORMALISATION = {
    "do_resize": True,
    "resample": 3,
    "do_rescale": True,
    "rescale_factor": 1 / 255,
    "do_normalize": True,
    "image_mean": [0.48145466, 0.4578275, 0.40821073],
    "image_std": [0.26862954, 0.26130258, 0.27577711],
    "do_convert_rgb": True,
}


def _processor_config(family: str, image_size: int) -> dict:
    """The checkpoint's video_preprocessor_config.json, in each family's HF layout."""
    if family == "llava_next_video":
        geometry = {
            "video_processor_type": "LlavaNextVideoVideoProcessor",
            "size": {"shortest_edge": image_size},
            "do_center_crop": True,
            "crop_size": {"height": image_size, "width": image_size},
        }
    elif family == "llava_onevision":
        geometry = {"video_processor_type": "LlavaOnevisionVideoProcessor",
                    "size": {"height": image_size, "width": image_size}}
    else:
        geometry = {
            "video_processor_type": "Qwen2VLVideoProcessor",
            "patch_size": 14,
            "temporal_patch_size": 2,
            "merge_size": 2,
            "min_pixels": 56 * 56,
            "max_pixels": image_size * image_size,
        }
    return {**geometry, **_CLIP_NORMALISATION}


def build_tiny_model(family: str, size: TinySize, tokenizer, seed: int, init_range: float = 0.3, image_size: int = 112):
    """A random stock HF model of `family` (weights drawn from a seeded generator, not the global RNG)."""
    from transformers import (
        LlavaNextVideoForConditionalGeneration,
        LlavaOnevisionForConditionalGeneration,
        Qwen2_5_VLForConditionalGeneration,
        Qwen2VLForConditionalGeneration,
    )

    if family not in FAMILIES:
        raise ValueError(f"unknown tiny family {family!r}; choose one of {', '.join(FAMILIES)}")
    if family == "llava_onevision":
        config, cls = _llava_config(size, tokenizer, init_range, image_size), LlavaOnevisionForConditionalGeneration
    elif family == "llava_next_video":
        config = _llava_next_video_config(size, tokenizer, init_range, image_size)
        cls = LlavaNextVideoForConditionalGeneration
    else:
        config = _qwen_config(family, size, tokenizer, init_range)
        cls = Qwen2_5_VLForConditionalGeneration if family == "qwen2_5_vl" else Qwen2VLForConditionalGeneration
    config._attn_implementation = "sdpa"
    model = cls(config).eval()
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in sorted(model.named_parameters()):
            if name.endswith("norm.weight") or ".norm" in name or "layernorm" in name or "ln_" in name:
                continue  # keep norms at their init (ones / zeros)
            std = init_range if param.dim() > 1 else init_range / 3
            param.copy_(torch.randn(param.shape, generator=generator) * std)
    return model


def save_checkpoint(model, tokenizer, family: str, out_dir: Path, image_size: int = 112) -> Path:
    """Write `model` and `tokenizer` as a Hub-layout folder: config, safetensors, tokenizer, template, processor."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    template = _LLAVA_TEMPLATE if family.startswith("llava") else _QWEN_TEMPLATE
    (out_dir / "chat_template.jinja").write_text(template)
    (out_dir / "video_preprocessor_config.json").write_text(
        json.dumps(_processor_config(family, image_size), indent=2)
    )
    return out_dir


def write_tiny_pair(out_dir: str | Path, family: str = "qwen2_5_vl", seed: int = 0, image_size: int = 112):
    """Write `<out_dir>/target` and `<out_dir>/draft` tiny checkpoints of `family`; return both paths."""
    out_dir = Path(out_dir)
    tokenizer = build_tokenizer()
    target = build_tiny_model(family, TARGET_SIZE, tokenizer, seed=seed, image_size=image_size)
    draft = build_tiny_model(family, DRAFT_SIZE, tokenizer, seed=seed + 1, image_size=image_size)
    return (
        save_checkpoint(target, tokenizer, family, out_dir / "target", image_size),
        save_checkpoint(draft, tokenizer, family, out_dir / "draft", image_size),
    )
