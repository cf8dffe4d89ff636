"""The adapter protocol: everything decoding and pruning need from a video-LLM, around the STOCK HF class.

An adapter never changes the model's computation. It calls the stock modules the way the stock
forward calls them (vision encoder -> embeddings -> masked scatter -> language model), with explicit
position ids, so that a prefill over the full prompt is the stock forward and a prefill over a
subset of the visual tokens (the draft's pruned context) is the same code on fewer rows.

Family specifics (prompt placeholder, grid geometry, position ids) live in one subclass per family.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Literal

import torch

from hippo.errors import CheckpointError, ConfigError

PositionPolicy = Literal["keep", "compact"]
POSITION_POLICIES = ("keep", "compact")


@dataclass(frozen=True)
class VideoGrid:
    """Layout of the visual tokens the LLM reads: `frames` x `height` x `width` in frame-major order,
    followed by `extra_tokens` family tokens (LLaVA-OneVision's newline) that pruning always keeps.
    A "frame" is one temporal group of tokens (Qwen merges `temporal_patch_size` frames into one)."""

    frames: int
    height: int
    width: int
    extra_tokens: int = 0

    @property
    def tokens_per_frame(self) -> int:
        return self.height * self.width

    @property
    def grid_tokens(self) -> int:
        return self.frames * self.height * self.width

    @property
    def total_tokens(self) -> int:
        return self.grid_tokens + self.extra_tokens


@dataclass
class PreparedInputs:
    """One request's prompt for one model: token ids with the video placeholders expanded, where the
    video sits in the sequence, its grid, and the pixel inputs of the model's own vision encoder."""

    input_ids: torch.Tensor  # (L,) long
    video_start: int  # index of the first video placeholder token in input_ids
    grid: VideoGrid
    vision_inputs: dict = field(repr=False)

    @property
    def video_end(self) -> int:
        return self.video_start + self.grid.total_tokens

    @property
    def num_tokens(self) -> int:
        return int(self.input_ids.shape[0])


class DecodeContext:
    """A model's KV cache after a prefill, and the explicit position arithmetic of what follows.

    Generated token number `i` (0-based, counted from the first generated token) sits at cache row
    `prefill_len + i` and at position id `next_position + i` (all three M-RoPE rows equal for text).
    `step(tokens, offset)` runs the model on tokens number offset..offset+k-1; if the cache holds
    more rows than `prefill_len + offset` (drafts that were rejected) they are cropped first, so
    rollback is explicit in the call, never implied by hidden state.
    """

    def __init__(self, adapter: VideoLLMAdapter, cache, prefill_len: int, next_position: int, last_logits):
        self.adapter = adapter
        self.cache = cache
        self.prefill_len = prefill_len
        self.next_position = next_position
        self.last_logits = last_logits  # (V,) fp32 logits for generated token 0
        self.forwards = 1  # the prefill

    @property
    def generated_in_cache(self) -> int:
        """How many generated tokens the cache currently holds."""
        return self.cache.get_seq_length() - self.prefill_len

    def rollback(self, offset: int) -> None:
        """Drop cache rows of generated tokens number >= offset."""
        extra = self.generated_in_cache - offset
        if extra < 0:
            raise RuntimeError(f"cache holds {self.generated_in_cache} generated tokens, cannot resume at {offset}")
        if extra > 0:
            self.cache.crop(-extra)

    def step(self, tokens: list[int], offset: int) -> torch.Tensor:
        """Logits (k, V) after each of `tokens`, which are generated tokens number offset..offset+k-1."""
        logits = self.probe(tokens, offset)
        self.forwards += 1
        return logits

    @torch.no_grad()
    def probe(self, tokens: list[int], offset: int) -> torch.Tensor:
        """step() not counted in `forwards`: for a measurement (roll back after it)."""
        self.rollback(offset)
        ids = torch.tensor([tokens], dtype=torch.long, device=self.adapter.device)
        positions = torch.arange(len(tokens), device=self.adapter.device) + self.next_position + offset
        return self.adapter.forward_tokens(ids, positions, self.cache)


class VideoLLMAdapter:
    """Base class. Subclasses set `family` and implement the four family hooks at the bottom."""

    family: str = ""

    def __init__(self, model, tokenizer, processor_config, chat_template: str | None, name: str = ""):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.processor_config = processor_config
        self.chat_template = chat_template
        self.name = name or getattr(model.config, "_name_or_path", self.family)

    # ---- properties shared by every family --------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def vocab_size(self) -> int:
        return self.model.get_output_embeddings().weight.shape[0]

    @property
    def eos_token_ids(self) -> tuple[int, ...]:
        eos = self.model.generation_config.eos_token_id
        if eos is None:
            return ()
        return tuple(eos) if isinstance(eos, (list, tuple)) else (int(eos),)

    # ---- prompt -------------------------------------------------------------------------------------
    def render_prompt(self, prompt: str) -> str:
        """The chat-formatted prompt with ONE video placeholder (expanded later to the grid size)."""
        messages = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": prompt}]}]
        return self.tokenizer.apply_chat_template(
            messages, chat_template=self.chat_template, tokenize=False, add_generation_prompt=True
        )

    def prepare(self, clip, prompt: str) -> PreparedInputs:
        """Preprocess `clip` for this model's vision encoder and build the expanded prompt ids."""
        from hippo.preprocess import preprocess_video

        vision_inputs = preprocess_video(clip, self.processor_config, self.family)
        grid = self.video_grid(vision_inputs)
        text = self.render_prompt(prompt)
        placeholder = self.video_placeholder
        if text.count(placeholder) != 1:
            raise CheckpointError(
                f"{self.name}: the chat template rendered {text.count(placeholder)} video placeholders "
                f"{placeholder!r}, expected exactly 1; check chat_template.jinja / chat_template.json"
            )
        before, after = text.split(placeholder)
        ids_before = self.tokenizer(before, add_special_tokens=False).input_ids
        ids_after = self.tokenizer(after, add_special_tokens=False).input_ids
        video_ids = [self.video_token_id] * grid.total_tokens
        input_ids = torch.tensor(ids_before + video_ids + ids_after, dtype=torch.long)
        return PreparedInputs(input_ids, len(ids_before), grid, vision_inputs)

    # ---- forward passes -----------------------------------------------------------------------------
    @torch.no_grad()
    def encode_video(self, inputs: PreparedInputs) -> torch.Tensor:
        """The video embeddings the LLM receives (total_tokens, D), from this model's own vision encoder."""
        embeds = self.video_features(inputs)
        if embeds.shape[0] != inputs.grid.total_tokens:
            raise RuntimeError(f"vision encoder gave {embeds.shape[0]} tokens, grid says {inputs.grid.total_tokens}")
        return embeds

    @torch.no_grad()
    def input_embeddings(self, inputs: PreparedInputs, video_embeds: torch.Tensor) -> torch.Tensor:
        """Token embeddings of the prompt with the video rows replaced, as the stock forward does."""
        embeds = self.model.get_input_embeddings()(inputs.input_ids.to(self.device))
        embeds = embeds.clone()
        embeds[inputs.video_start : inputs.video_end] = video_embeds.to(embeds.dtype)
        return embeds

    def kept_rows(self, inputs: PreparedInputs, kept_grid_indices: torch.Tensor | None) -> torch.Tensor:
        """Sequence rows kept in the draft's prompt: all text, the kept grid tokens, the extra tokens."""
        rows = torch.arange(inputs.num_tokens)
        if kept_grid_indices is None:
            return rows
        kept = torch.as_tensor(kept_grid_indices, dtype=torch.long)
        grid = inputs.grid
        if kept.ndim != 1 or (kept.numel() and (kept.min() < 0 or kept.max() >= grid.grid_tokens)):
            raise ConfigError(f"kept indices must be a 1-D tensor of grid positions in [0, {grid.grid_tokens})")
        if kept.numel() > 1 and not bool((kept[1:] > kept[:-1]).all()):
            raise ConfigError("kept indices must be sorted and unique (pruning keeps the tokens' order)")
        start = inputs.video_start
        extra = torch.arange(grid.grid_tokens, grid.total_tokens) + start
        return torch.cat([rows[:start], kept + start, extra, rows[inputs.video_end :]])

    @torch.no_grad()
    def prefill(
        self,
        inputs: PreparedInputs,
        video_embeds: torch.Tensor | None = None,
        kept_grid_indices: torch.Tensor | None = None,
        positions: PositionPolicy = "keep",
        observe: contextlib.AbstractContextManager | None = None,
        cache=None,
    ) -> DecodeContext:
        """Run the prompt (all visual tokens, or only `kept_grid_indices` of the grid) into a fresh cache.

        positions="keep": every kept token keeps the position id it has in the full prompt (for
        Qwen its (t, h, w) M-RoPE triple); generated tokens continue after the full prompt.
        positions="compact": the kept sequence is renumbered 0..n-1 as plain 1-D positions (what
        SpecVLM does); generated tokens continue after it.

        observe: a context manager entered around the model's forward only (e.g. one that registers
        forward pre-hooks to record what the attention modules receive, as the pruning scores do);
        it must observe, never change, the computation.

        cache: an empty transformers Cache to prefill into (e.g. a StaticCache preallocated for the
        request, as hippo_fast does); default: the stock forward's own DynamicCache.
        """
        if positions not in POSITION_POLICIES:
            raise ConfigError(f"unknown position policy {positions!r}; choose keep or compact")
        if video_embeds is None:
            video_embeds = self.encode_video(inputs)
        rows = self.kept_rows(inputs, kept_grid_indices)
        embeds = self.input_embeddings(inputs, video_embeds)[rows]
        if positions == "keep":
            pos = self.prompt_positions(inputs)[:, rows]
        else:
            pos = torch.arange(rows.numel()).expand(self.position_rows, -1)
        with observe if observe is not None else contextlib.nullcontext():
            out = self.model(
                inputs_embeds=embeds[None],
                position_ids=self.batch_positions(pos.to(self.device)),
                cache=cache,
                use_cache=True,
                logits_to_keep=1,
            )
        return DecodeContext(self, out.cache, rows.numel(), int(pos.max()) + 1, out.logits[0, -1].float())

    @torch.no_grad()
    def forward_tokens(self, ids: torch.Tensor, positions: torch.Tensor, cache) -> torch.Tensor:
        """Logits (k, V) for token ids (1, k) at 1-D positions (k,), appended to `cache`."""
        pos = positions[None].expand(self.position_rows, -1)
        out = self.model(input_ids=ids, position_ids=self.batch_positions(pos), cache=cache, use_cache=True)
        return out.logits[0].float()

    def hf_generate_inputs(self, inputs: PreparedInputs) -> dict:
        """kwargs for the stock `model.generate()` on this prompt (the reference the tests compare to)."""
        ids = inputs.input_ids[None].to(self.device)
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids), **self.hf_vision_kwargs(inputs)}

    # ---- family hooks -------------------------------------------------------------------------------
    video_placeholder: str = ""
    position_rows: int = 1  # 3 for M-RoPE

    @property
    def video_token_id(self) -> int:
        raise NotImplementedError

    def video_grid(self, vision_inputs: dict) -> VideoGrid:
        raise NotImplementedError

    def video_features(self, inputs: PreparedInputs) -> torch.Tensor:
        raise NotImplementedError

    def prompt_positions(self, inputs: PreparedInputs) -> torch.Tensor:
        """Position ids (position_rows, L) of the full prompt, as the stock model computes them."""
        raise NotImplementedError

    def batch_positions(self, pos: torch.Tensor) -> torch.Tensor:
        """(position_rows, k) -> the position_ids layout the stock forward takes for batch 1."""
        raise NotImplementedError

    def hf_vision_kwargs(self, inputs: PreparedInputs) -> dict:
        raise NotImplementedError

    # ---- family hooks of the pruning scores (KV reconstruction of the text-to-video attention) ---
    def attention_modules(self) -> list[torch.nn.Module]:
        """The language model's stock self-attention modules, in layer order; module `l` writes cache
        layer `l`. Each is called with keyword arguments `hidden_states` (already normed) and
        `position_embeddings` (cos, sin), and has `q_proj`, `head_dim` and `scaling`."""
        raise NotImplementedError

    def rotate_queries(self, attention: torch.nn.Module, q: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor):
        """Queries (1, heads, k, head_dim) rotated by the (cos, sin) the module received, with the
        family's own stock rotary function (imported from the HF modeling module, never copied)."""
        raise NotImplementedError
