"""HIPPO's token scores, computed from the target's ONE full-video prefill, and their fusion.

Three raw scores per grid token v(f, j) (frame f, spatial position j, frame-major order):

- s_attn, global semantic relevance, by KV reconstruction. During the target's prefill, forward
  pre-hooks on the stock attention modules record, for the text rows after the video only, the
  normed hidden states and the (cos, sin) rotary embeddings each module receives. After the prefill
      q = rotary(q_proj(hidden))                    (the family's stock apply_rotary_pos_emb,
                                                     3-D M-RoPE for Qwen-VL)
      S(l, h) = softmax(q K_vid^T * scaling)         (text queries x video keys; softmax over the
                                                     video keys only; K_vid read from the cache,
                                                     already rotated; GQA: query head h reads key
                                                     head h // (heads / kv_heads), as HF's repeat_kv)
      s_attn = mean over layers, heads and text queries of S(l, h)
  The prefill itself stays on the model's own attention kernel (SDPA); the largest tensor built
  here is (heads x text queries x video tokens) of one layer. s_attn sums to 1 over the grid.
  OPEN choices: `attn_layers` (default all), `text_tokens` (default every text token after the video).
  "Video keys" are the grid tokens; extra tokens (LLaVA-OneVision's newline) are always kept and
  take no part in the softmax.
- s_temp, temporal novelty: 1 - cos(v(f, j), v(f-1, j)); frame 0 gets `first_frame_temp` (OPEN, 1).
- s_spat, spatial complexity: population variance of cos(v(f, j), v(f, k)) over the neighbours k of
  j in a `spatial_window` x `spatial_window` window (OPEN, 3), the centre excluded, the window
  clipped at the frame's border (fewer neighbours there; no neighbour at all gives 0).
s_temp and s_spat read the video embeddings the target's LLM receives (`adapter.encode_video`,
grid rows only), the same tensor its prefill uses.

Fusion: S = w_g * mm(s_attn) + w_t * mm(s_temp) + w_s * mm(s_spat), weights divided by their sum,
mm = min-max normalisation within each frame. A frame where a score is constant (max == min, e.g.
s_temp of frame 0, or a one-token frame) normalises to clamp(value, 0, 1), so frame 0's s_temp of 1
means "entirely new" when frames compete under a global budget.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from hippo.adapters.base import DecodeContext, PreparedInputs, VideoGrid, VideoLLMAdapter
from hippo.errors import ConfigError


@dataclass
class TokenScores:
    """Raw (unnormalised) scores of the grid tokens, each (grid_tokens,) fp32 in frame-major order."""

    attn: torch.Tensor | None = None
    temp: torch.Tensor | None = None
    spat: torch.Tensor | None = None


# ---- s_attn: KV reconstruction ----------------------------------------------------------------------
def query_rows(inputs: PreparedInputs, text_tokens: int | None = None) -> torch.Tensor:
    """Prompt rows whose queries score the video: every row after the video, or the last `text_tokens`
    of them (at most every row after the video)."""
    after = torch.arange(inputs.video_end, inputs.num_tokens)
    if after.numel() == 0:
        raise ConfigError("the prompt has no text after the video, so no text query can score the video tokens; "
                          "put the question after the video or use --prune uniform/random")
    return after if text_tokens is None else after[-text_tokens:]


def resolve_layers(layers: tuple[int, ...] | None, num_layers: int) -> list[int]:
    """Layer numbers in [0, num_layers), sorted, unique; negative numbers count from the end."""
    if layers is None:
        return list(range(num_layers))
    bad = [layer for layer in layers if not -num_layers <= layer < num_layers]
    if bad:
        raise ConfigError(f"--attn-layers {','.join(map(str, bad))} out of range: the target has {num_layers} "
                          f"layers (0..{num_layers - 1}, or -{num_layers}..-1 from the end)")
    return sorted({layer % num_layers for layer in layers})


class TextQueryCapture(contextlib.AbstractContextManager):
    """Forward pre-hooks (observe only) on the target's attention modules for one full prefill.

    For each selected layer it records what the module received for the query rows: the normed
    hidden states (1, k, D) and the rotary (cos, sin) (1, k, head_dim). Pass it to
    `adapter.prefill(inputs, observe=capture)`; the hooks return None, so the model's computation
    and outputs are unchanged (tests check the logits and the KV cache bit for bit).
    """

    def __init__(self, adapter: VideoLLMAdapter, inputs: PreparedInputs, layers=None, text_tokens=None):
        self.adapter = adapter
        self.inputs = inputs
        self.modules = adapter.attention_modules()
        self.layers = resolve_layers(layers, len(self.modules))
        self.rows = query_rows(inputs, text_tokens)
        self.records: dict[int, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}
        self._handles = []

    def _hook(self, layer: int):
        def record(module, args, kwargs):
            hidden = kwargs["hidden_states"] if "hidden_states" in kwargs else args[0]
            cos, sin = kwargs["position_embeddings"]
            if hidden.shape[1] != self.inputs.num_tokens:
                raise RuntimeError(f"scores need the full-video prefill of {self.inputs.num_tokens} rows, "
                                   f"layer {layer} saw {hidden.shape[1]}")
            if layer in self.records:
                raise RuntimeError("a TextQueryCapture observes exactly one prefill")
            rows = self.rows.to(hidden.device)
            self.records[layer] = (hidden[:, rows].detach(), cos[:, rows].detach(), sin[:, rows].detach())
            return None  # observe only

        return record

    def __enter__(self):
        for layer in self.layers:
            self._handles.append(self.modules[layer].register_forward_pre_hook(self._hook(layer), with_kwargs=True))
        return self

    def __exit__(self, *exc):
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        return False


@torch.no_grad()
def attention_scores(capture: TextQueryCapture, context: DecodeContext) -> torch.Tensor:
    """s_attn (grid_tokens,) fp32 from the recorded text rows and the prefilled cache."""
    inputs, adapter = capture.inputs, capture.adapter
    if set(capture.records) != set(capture.layers):
        raise RuntimeError("the capture holds no prefill: run adapter.prefill(inputs, observe=capture) first")
    video = torch.arange(inputs.video_start, inputs.video_start + inputs.grid.grid_tokens)
    total = torch.zeros(inputs.grid.grid_tokens, dtype=torch.float64)
    for layer in capture.layers:
        attention = capture.modules[layer]
        hidden, cos, sin = capture.records[layer]
        k = hidden.shape[1]
        q = attention.q_proj(hidden).view(1, k, -1, attention.head_dim).transpose(1, 2)  # (1, H, k, d)
        q = adapter.rotate_queries(attention, q, cos, sin)
        keys = context.cache.layers[layer].keys[:, :, video.to(q.device)]  # (1, KVH, N, d), rotated
        heads, kv_heads = q.shape[1], keys.shape[1]
        q = q.reshape(kv_heads, heads // kv_heads, k, -1).float()  # query head h reads key head h // group
        logits = torch.einsum("grqd,gnd->grqn", q, keys[0].float()) * attention.scaling
        probs = logits.softmax(dim=-1)  # over the video keys only
        total += probs.mean(dim=(0, 1, 2)).double().cpu()
    return (total / len(capture.layers)).float()


# ---- s_temp, s_spat: local visual semantics ----------------------------------------------------------
def temporal_novelty(embeds: torch.Tensor, grid: VideoGrid, first_frame: float = 1.0) -> torch.Tensor:
    """s_temp (grid_tokens,): 1 - cos with the same position in the previous frame; frame 0 = `first_frame`."""
    v = embeds[: grid.grid_tokens].float().reshape(grid.frames, grid.tokens_per_frame, -1)
    out = torch.full((grid.frames, grid.tokens_per_frame), float(first_frame))
    if grid.frames > 1:
        out[1:] = 1 - F.cosine_similarity(v[1:], v[:-1], dim=-1)
    return out.flatten().cpu()


def spatial_complexity(embeds: torch.Tensor, grid: VideoGrid, window: int = 3) -> torch.Tensor:
    """s_spat (grid_tokens,): variance of cos to the in-frame neighbours in a window x window square."""
    f, h, w, r = grid.frames, grid.height, grid.width, window // 2
    v = F.normalize(embeds[: grid.grid_tokens].float(), dim=-1).reshape(f, h, w, -1)
    padded = F.pad(v, (0, 0, r, r, r, r))  # zero vectors outside the frame
    inside = F.pad(torch.ones(h, w), (r, r, r, r))
    sims, masks = [], []
    for dy in range(-r, r + 1):
        for dx in range(-r, r + 1):
            if dy == dx == 0:
                continue
            neighbour = padded[:, r + dy : r + dy + h, r + dx : r + dx + w]
            sims.append((v * neighbour).sum(-1))
            masks.append(inside[r + dy : r + dy + h, r + dx : r + dx + w])
    sims, masks = torch.stack(sims, -1), torch.stack(masks, -1)  # (f, h, w, K), (h, w, K)
    count = masks.sum(-1).clamp(min=1)
    mean = (sims * masks).sum(-1) / count
    var = (((sims - mean[..., None]) ** 2) * masks).sum(-1) / count
    return var.flatten().cpu()


# ---- fusion -------------------------------------------------------------------------------------------
def minmax_per_frame(values: torch.Tensor, grid: VideoGrid) -> torch.Tensor:
    """Min-max normalise within each frame; a constant frame becomes clamp(value, 0, 1)."""
    per = values.float().reshape(grid.frames, grid.tokens_per_frame)
    low, high = per.min(dim=1, keepdim=True).values, per.max(dim=1, keepdim=True).values
    span = high - low
    scaled = (per - low) / torch.where(span > 0, span, torch.ones_like(span))
    return torch.where(span > 0, scaled, per.clamp(0, 1)).flatten()


def fused_score(scores: TokenScores, grid: VideoGrid, weights: tuple[float, float, float]) -> torch.Tensor:
    """S = sum_i w_i / sum(w) * minmax_per_frame(score_i) over (s_attn, s_temp, s_spat), on the scores'
    device (hippo_fast fuses its device scores with this same function)."""
    total = float(sum(weights))
    fused = None
    for name, weight in zip(("attn", "temp", "spat"), weights, strict=True):
        if weight == 0:
            continue
        part = getattr(scores, name)
        if part is None:
            raise ConfigError(f"weight of s_{name} is {weight} but no s_{name} was computed")
        term = weight / total * minmax_per_frame(part, grid)
        fused = term if fused is None else fused + term
    return fused


# ---- the one observed prefill -----------------------------------------------------------------------
def scored_prefill(
    adapter: VideoLLMAdapter, inputs: PreparedInputs, params, video_embeds: torch.Tensor | None = None
) -> tuple[DecodeContext, TokenScores]:
    """The target's full-video prefill (the same bits as `adapter.prefill(inputs)`), observed, and the
    raw scores of its grid tokens. `params` is a PruneParams (attn_layers, text_tokens,
    first_frame_temp, spatial_window); `video_embeds` (adapter.encode_video(inputs)) if already computed."""
    embeds = adapter.encode_video(inputs) if video_embeds is None else video_embeds
    capture = TextQueryCapture(adapter, inputs, params.attn_layers, params.text_tokens)
    context = adapter.prefill(inputs, video_embeds=embeds, observe=capture)
    scores = TokenScores(
        attn=attention_scores(capture, context),
        temp=temporal_novelty(embeds, inputs.grid, params.first_frame_temp),
        spat=spatial_complexity(embeds, inputs.grid, params.spatial_window),
    )
    return context, scores
