"""Load a video-LLM checkpoint folder (laid out as on the Hub) into the adapter of its family."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from hippo.adapters.base import VideoLLMAdapter
from hippo.adapters.llava import LlavaNextVideoAdapter, LlavaOnevisionAdapter
from hippo.adapters.qwen import Qwen2VLAdapter, QwenVLAdapter
from hippo.adapters.text import TextLLMAdapter
from hippo.devices import check_device  # noqa: F401 - re-exported: callers import it from here
from hippo.errors import CheckpointError

ADAPTERS: dict[str, type[VideoLLMAdapter]] = {
    "qwen2_5_vl": QwenVLAdapter,
    "qwen2_vl": Qwen2VLAdapter,
    "llava_onevision": LlavaOnevisionAdapter,
    "llava_next_video": LlavaNextVideoAdapter,
    # text only (no video): what the recorded-row audit of a serving engine runs on (hippo/adapters/text.py)
    "llama": TextLLMAdapter,
}
TEXT_FAMILIES = frozenset({"llama"})

DTYPES = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16,
          "bf16": torch.bfloat16, "float16": torch.float16, "fp16": torch.float16}


TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json")


def read_chat_template(folder: Path, tokenizer) -> str | None:
    """The multimodal chat template: chat_template.jinja, else chat_template.json, else the tokenizer's."""
    if (folder / "chat_template.jinja").is_file():
        return (folder / "chat_template.jinja").read_text()
    if (folder / "chat_template.json").is_file():
        return json.loads((folder / "chat_template.json").read_text())["chat_template"]
    return getattr(tokenizer, "chat_template", None)


def checkpoint_family(folder: Path) -> str:
    config_file = folder / "config.json"
    if not config_file.is_file():
        raise CheckpointError(f"{folder} has no config.json: pass a checkpoint folder laid out as on the Hub")
    model_type = json.loads(config_file.read_text()).get("model_type")
    if model_type not in ADAPTERS:
        raise CheckpointError(
            f"{folder}: model_type {model_type!r} is not supported; supported: {', '.join(sorted(ADAPTERS))}"
        )
    return model_type


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint argument as a folder: `zoo:NAME` is the shipped zoo checkpoint NAME (or the target of
    zoo pair NAME); anything else is taken as a folder path."""
    if isinstance(path, str) and path.startswith("zoo:"):
        from hippo.zoo.registry import resolve_zoo

        return resolve_zoo(path)
    return Path(path)


def load_adapter(path: str | Path, dtype: str | torch.dtype = torch.float32, device: str = "cpu") -> VideoLLMAdapter:
    """Load the stock HF model, tokenizer, chat template and video processor config from `path`
    (a folder, or `zoo:NAME` for a model the package ships; see `hippo zoo list`)."""
    from transformers import AutoModelForCausalLM, AutoModelForImageTextToText, AutoTokenizer

    from hippo.preprocess import load_processor_config

    device = check_device(device)
    folder = resolve_checkpoint(path)
    if not folder.is_dir():
        raise CheckpointError(f"checkpoint folder {folder} does not exist: check --target / --draft")
    family = checkpoint_family(folder)
    if not any(folder.glob("*.safetensors")) and not any(folder.glob("*.bin")):
        raise CheckpointError(f"{folder} has no weights (*.safetensors): the checkpoint is incomplete")
    torch_dtype = DTYPES[dtype] if isinstance(dtype, str) else dtype
    if not any((folder / name).is_file() for name in TOKENIZER_FILES):
        raise CheckpointError(f"{folder} has no tokenizer files (looked for {', '.join(TOKENIZER_FILES)}): "
                              "copy the tokenizer of the checkpoint into the folder")
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    except (OSError, ValueError) as err:
        raise CheckpointError(f"{folder}: cannot load the tokenizer ({err}); it needs tokenizer.json "
                              "and tokenizer_config.json") from err
    model_class = AutoModelForCausalLM if family in TEXT_FAMILIES else AutoModelForImageTextToText
    model = model_class.from_pretrained(
        folder, dtype=torch_dtype, attn_implementation="sdpa", local_files_only=True
    ).to(device)
    processor_config = None if family in TEXT_FAMILIES else load_processor_config(folder)
    return ADAPTERS[family](model, tokenizer, processor_config, read_chat_template(folder, tokenizer), str(folder))
