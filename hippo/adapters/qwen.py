"""Qwen2-VL and Qwen2.5-VL around the stock HF classes: 3-D M-RoPE positions from the stock
`get_rope_index`, video tokens merged `spatial_merge_size`^2 per token and `temporal_patch_size`
frames per temporal group."""

from __future__ import annotations

import torch
from transformers.models.qwen2_5_vl import modeling_qwen2_5_vl
from transformers.models.qwen2_vl import modeling_qwen2_vl

from hippo.adapters.base import PreparedInputs, VideoGrid, VideoLLMAdapter


class QwenVLAdapter(VideoLLMAdapter):
    family = "qwen2_5_vl"
    video_placeholder = "<|video_pad|>"
    position_rows = 3

    @property
    def video_token_id(self) -> int:
        return int(self.model.config.video_token_id)

    def video_grid(self, vision_inputs: dict) -> VideoGrid:
        t, h, w = (int(x) for x in vision_inputs["video_grid_thw"][0])
        merge = int(self.model.config.vision_config.spatial_merge_size)
        return VideoGrid(frames=t, height=h // merge, width=w // merge)

    def video_features(self, inputs: PreparedInputs) -> torch.Tensor:
        v = inputs.vision_inputs
        out = self.model.get_video_features(
            v["pixel_values_videos"].to(self.device), v["video_grid_thw"].to(self.device)
        )
        return torch.cat(out.pooler_output, dim=0)

    def mm_token_type_ids(self, inputs: PreparedInputs) -> torch.Tensor:
        """0 for text, 2 for video rows: what the stock processor returns and get_rope_index reads."""
        types = torch.zeros(inputs.num_tokens, dtype=torch.int)
        types[inputs.video_start : inputs.video_end] = 2
        return types

    def prompt_positions(self, inputs: PreparedInputs) -> torch.Tensor:
        kwargs = self.hf_vision_kwargs(inputs)
        pos, _ = self.model.model.get_rope_index(
            inputs.input_ids[None].to(self.device),
            mm_token_type_ids=kwargs["mm_token_type_ids"],
            video_grid_thw=kwargs["video_grid_thw"],
            second_per_grid_ts=kwargs.get("second_per_grid_ts"),
        )
        return pos[:, 0].cpu()

    def batch_positions(self, pos: torch.Tensor) -> torch.Tensor:
        return pos[:, None, :]  # (3, batch=1, k)

    def hf_vision_kwargs(self, inputs: PreparedInputs) -> dict:
        v = inputs.vision_inputs
        kwargs = {
            "pixel_values_videos": v["pixel_values_videos"].to(self.device),
            "video_grid_thw": v["video_grid_thw"].to(self.device),
            "mm_token_type_ids": self.mm_token_type_ids(inputs)[None].to(self.device),
        }
        if self.family == "qwen2_5_vl" and v.get("second_per_grid_ts") is not None:
            kwargs["second_per_grid_ts"] = torch.as_tensor(v["second_per_grid_ts"], dtype=torch.float32)
        return kwargs

    # The stock rotary function of the family. The (cos, sin) a Qwen-VL attention module receives are
    # already the 3-D M-RoPE mix (the rotary embedding recomposes the t/h/w frequency sections), so
    # the stock apply_rotary_pos_emb applied to them gives the queries the stock forward used.
    modeling = modeling_qwen2_5_vl

    def attention_modules(self) -> list[torch.nn.Module]:
        return [layer.self_attn for layer in self.model.model.language_model.layers]

    def rotate_queries(self, attention, q, cos, sin):
        return self.modeling.apply_rotary_pos_emb(q, q, cos, sin)[0]


class Qwen2VLAdapter(QwenVLAdapter):
    family = "qwen2_vl"
    modeling = modeling_qwen2_vl
