"""LLaVA-OneVision and LLaVA-NeXT-Video around the stock HF classes. OneVision: per frame a
bilinearly pooled ceil(h/2) x ceil(w/2) token grid, one `image_newline` token after the whole video,
plain 1-D positions. NeXT-Video: the same but average-pooled by `spatial_pool_stride`, no newline."""

from __future__ import annotations

import importlib
import math

import torch

from hippo.adapters.base import PreparedInputs, VideoGrid, VideoLLMAdapter


class LlavaOnevisionAdapter(VideoLLMAdapter):
    family = "llava_onevision"
    video_placeholder = "<video>"
    position_rows = 1

    @property
    def video_token_id(self) -> int:
        return int(self.model.config.video_token_index)

    def video_grid(self, vision_inputs: dict) -> VideoGrid:
        frames = int(vision_inputs["pixel_values_videos"].shape[1])
        vision = self.model.config.vision_config
        side = math.ceil(vision.image_size // vision.patch_size / 2)
        return VideoGrid(frames=frames, height=side, width=side, extra_tokens=1)

    def video_features(self, inputs: PreparedInputs) -> torch.Tensor:
        pixels = inputs.vision_inputs["pixel_values_videos"].to(self.device, self.model.dtype)
        out = self.model.get_video_features(pixels)
        return out.pooler_output.flatten(0, 1)

    def prompt_positions(self, inputs: PreparedInputs) -> torch.Tensor:
        return torch.arange(inputs.num_tokens)[None]

    def batch_positions(self, pos: torch.Tensor) -> torch.Tensor:
        return pos  # (1, k): batch 1

    def hf_vision_kwargs(self, inputs: PreparedInputs) -> dict:
        return {"pixel_values_videos": inputs.vision_inputs["pixel_values_videos"].to(self.device)}

    def attention_modules(self) -> list[torch.nn.Module]:
        return [layer.self_attn for layer in self.model.model.language_model.layers]

    def rotate_queries(self, attention, q, cos, sin):
        # The language model is any HF text backbone (Qwen2 for the released checkpoints): use the
        # apply_rotary_pos_emb of the modeling module that defines its attention class.
        modeling = importlib.import_module(type(attention).__module__)
        return modeling.apply_rotary_pos_emb(q, q, cos, sin)[0]


class LlavaNextVideoAdapter(LlavaOnevisionAdapter):
    """LLaVA-NeXT-Video: per frame the vision grid average-pooled by `spatial_pool_stride`, no
    newline token; everything else (placeholder, 1-D positions, attention hooks) as LLaVA-OneVision."""

    family = "llava_next_video"

    def video_grid(self, vision_inputs: dict) -> VideoGrid:
        _, frames, _, height, width = vision_inputs["pixel_values_videos"].shape
        patch = self.model.config.vision_config.patch_size
        stride = self.model.config.spatial_pool_stride
        return VideoGrid(frames=int(frames), height=height // patch // stride, width=width // patch // stride)
