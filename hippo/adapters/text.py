"""Text-only causal LMs (the stock LlamaForCausalLM) behind the adapter interface: a prompt with no
video. The audit's recorded-row checks and hippo_fast's decode loops then run on a text model as on a
video LLM (what auditing a serving engine on SmolLM2-135M-Instruct needs: verification/engines/).

The prompt is the target's own chat template around one user message, tokenized without added special
tokens (the template writes them); positions are plain 1-D, 0..n-1. There is no video: `prepare` refuses
a clip, and the video grid is empty (0 frames), so the base class's prefill (embeddings, kept rows,
positions, cache) runs unchanged on the text alone.
"""

from __future__ import annotations

import torch

from hippo.adapters.base import PreparedInputs, VideoGrid, VideoLLMAdapter
from hippo.errors import ConfigError

EMPTY_GRID = VideoGrid(frames=0, height=0, width=0)


class TextLLMAdapter(VideoLLMAdapter):
    family = "llama"
    position_rows = 1

    def render_prompt(self, prompt: str) -> str:
        """The chat-formatted prompt: one user message, the assistant's turn opened."""
        messages = [{"role": "user", "content": prompt}]
        return self.tokenizer.apply_chat_template(
            messages, chat_template=self.chat_template, tokenize=False, add_generation_prompt=True
        )

    def prompt_ids(self, prompt: str) -> list[int]:
        """The token ids the model reads for `prompt` (what an engine recording rows must feed it too)."""
        return self.tokenizer(self.render_prompt(prompt), add_special_tokens=False).input_ids

    def prepare(self, clip, prompt: str) -> PreparedInputs:
        if clip is not None:
            raise ConfigError(f"{self.name} is a text-only model ({type(self.model).__name__}): a request with a "
                              "video needs a video-LLM target; give a text-only request (no video)")
        ids = self.prompt_ids(prompt)
        return PreparedInputs(torch.tensor(ids, dtype=torch.long), len(ids), EMPTY_GRID, {})

    def encode_video(self, inputs: PreparedInputs) -> torch.Tensor:
        return torch.zeros(0, self.model.config.hidden_size, dtype=self.model.dtype, device=self.device)

    def prompt_positions(self, inputs: PreparedInputs) -> torch.Tensor:
        return torch.arange(inputs.num_tokens)[None]

    def batch_positions(self, pos: torch.Tensor) -> torch.Tensor:
        return pos  # (1, k): batch 1

    def hf_vision_kwargs(self, inputs: PreparedInputs) -> dict:
        return {}

    @property
    def video_token_id(self) -> int:
        raise ConfigError(f"{self.name} is a text-only model: it has no video token")
