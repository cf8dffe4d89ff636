"""HIPPO's token scores in batched tensor ops on the device: the twin of hippo_ref.pruning.scores.

Same definitions, names and signatures as the reference (read its docstring for what each score
means); what differs is only how they are computed:
- s_attn: the rotated text queries and the cached video keys of ALL selected layers are stacked, and
  one einsum + one softmax run over (layers, kv_heads, group, queries, video). When that tensor would
  exceed `max_elements`, the layers go in consecutive chunks (at least one layer per chunk, the
  reference's own footprint). Keys are read from `context.cache.layers[l].keys` rows
  video_start..video_start + grid_tokens, so a DynamicCache and a preallocated StaticCache both work.
- s_spat: every token's window is a strided view of the padded frames; the products with all window
  positions are written at once, in frame chunks bounded by `max_elements` (cache-sized on CPU).
- Nothing leaves the device of the inputs; TokenScores come back on it (callers move them).

The element-wise products and the reductions keep the reference's shapes and order (each dot
product a sum over the last dimension, each layer's mean over (kv_heads, group, queries), layers
summed in float64 in order): on CPU the scores have been the reference's bits in every measured case
(the tests, the 4.1k-token bench); batched matrix products may differ in the last bits on other
backends, which tests/test_fast_pruning.py's tolerance allows.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from hippo.adapters.base import DecodeContext, PreparedInputs, VideoGrid, VideoLLMAdapter
from hippo_fast import phases
from hippo_ref.pruning.scores import (  # noqa: F401  (query_rows, resolve_layers: re-exported, the same names)
    TextQueryCapture,
    TokenScores,
    fused_score,
    minmax_per_frame,
    query_rows,
    resolve_layers,
)

# The largest transient buffer of the scores, in fp32 elements (2**24 = 64 MiB): s_attn's stacked
# video keys + logits of one layer chunk (the softmax runs in place), s_spat's window products of one
# frame chunk. It runs after the prefill has freed its activations, so scoring stays within the plain
# SDPA prefill's peak (docs/scoring-memory.md: 1.00x at 4.1k visual tokens).
MAX_ELEMENTS = 2**24


# ---- s_attn: KV reconstruction, all layers at once ----------------------------------------------------
def _layer_queries(capture: TextQueryCapture, layer: int, kv_heads: int) -> torch.Tensor:
    """Rotated fp32 queries (kv_heads, group, k, head_dim) of one layer's recorded text rows."""
    attention = capture.modules[layer]
    hidden, cos, sin = capture.records[layer]
    k = hidden.shape[1]
    q = attention.q_proj(hidden).view(1, k, -1, attention.head_dim).transpose(1, 2)  # (1, H, k, d)
    q = capture.adapter.rotate_queries(attention, q, cos, sin)
    return q.reshape(kv_heads, q.shape[1] // kv_heads, k, -1).float()  # query head h reads key head h // group


@torch.no_grad()
def attention_scores(capture: TextQueryCapture, context: DecodeContext, max_elements: int = MAX_ELEMENTS
                     ) -> torch.Tensor:
    """s_attn (grid_tokens,) fp32 on the queries' device, from the recorded text rows and the cache."""
    inputs = capture.inputs
    if set(capture.records) != set(capture.layers):
        raise RuntimeError("the capture holds no prefill: run adapter.prefill(inputs, observe=capture) first")
    start, n = inputs.video_start, inputs.grid.grid_tokens
    kv_heads = context.cache.layers[capture.layers[0]].keys.shape[1]
    queries = {layer: _layer_queries(capture, layer, kv_heads) for layer in capture.layers}
    _, group, k, head_dim = queries[capture.layers[0]].shape
    chunk = max(1, max_elements // (kv_heads * n * (group * k + head_dim)))  # layers per chunk: logits + keys
    device = queries[capture.layers[0]].device
    total = torch.zeros(n, dtype=torch.float64, device=device)
    for first in range(0, len(capture.layers), chunk):
        layers = capture.layers[first : first + chunk]
        q = torch.stack([queries[layer] for layer in layers])  # (c, KVH, G, k, d)
        keys = torch.empty((len(layers), kv_heads, n, head_dim), dtype=torch.float32, device=device)
        for i, layer in enumerate(layers):  # one copy each: the video rows of the (rotated) cached keys
            keys[i].copy_(context.cache.layers[layer].keys[0, :, start : start + n])
        logits = torch.einsum("lgrqd,lgnd->lgrqn", q, keys)  # (c, KVH, G, k, N)
        del keys
        scaling = [capture.modules[layer].scaling for layer in layers]
        if len(set(scaling)) == 1:
            logits.mul_(scaling[0])
        else:
            logits.mul_(torch.tensor(scaling, dtype=torch.float32, device=device).view(-1, 1, 1, 1, 1))
        probs = torch.softmax(logits, dim=-1, out=logits)  # over the video keys only, in place
        means = probs.view(len(layers), -1, n).mean(dim=1).double()  # (c, N): mean over heads and queries
        del logits, probs
        for row in means:  # layers summed in order, as the reference does
            total += row
    return (total / len(capture.layers)).float()


# ---- s_temp, s_spat: local visual semantics ----------------------------------------------------------
def temporal_novelty(embeds: torch.Tensor, grid: VideoGrid, first_frame: float = 1.0) -> torch.Tensor:
    """s_temp (grid_tokens,): 1 - cos with the same position in the previous frame; frame 0 = `first_frame`."""
    v = embeds[: grid.grid_tokens].float().reshape(grid.frames, grid.tokens_per_frame, -1)
    out = torch.full((grid.frames, grid.tokens_per_frame), float(first_frame), device=v.device)
    if grid.frames > 1:
        out[1:] = 1 - F.cosine_similarity(v[1:], v[:-1], dim=-1)
    return out.flatten()


def _spatial_chunk(device: torch.device, max_elements: int) -> int:
    """On CPU, chunks of at most 2**20 elements (4 MiB, cache-sized) are faster for the memory-bound
    s_spat (measured: 2**24 is 5x slower at 4.1k tokens, one core); on an accelerator one big chunk."""
    return min(max_elements, 2**20) if device.type == "cpu" else max_elements


def spatial_complexity(embeds: torch.Tensor, grid: VideoGrid, window: int = 3, max_elements: int = MAX_ELEMENTS
                       ) -> torch.Tensor:
    """s_spat (grid_tokens,): variance of cos to the in-frame neighbours in a window x window square.

    Every window is a strided view of the zero-padded frames (no copy, no loop over the offsets); one
    multiplication per frame chunk writes the products of a token with its whole window, D last, so
    each cosine is the same sum over the last dimension as in the reference."""
    f, h, w, r = grid.frames, grid.height, grid.width, window // 2
    v = F.normalize(embeds[: grid.grid_tokens].float(), dim=-1).reshape(f, h, w, -1)
    dim = v.shape[-1]
    padded = F.pad(v, (0, 0, r, r, r, r))  # zero vectors outside the frame
    windows = padded.unfold(1, window, 1).unfold(2, window, 1).permute(0, 1, 2, 4, 5, 3)  # (f, h, w, y, x, D)
    frames = max(1, _spatial_chunk(v.device, max_elements) // (h * w * window * window * dim))
    sims = []
    for i in range(0, f, frames):
        part = windows[i : i + frames]
        products = torch.mul(v[i : i + frames, :, :, None, None], part, out=torch.empty(part.shape, device=v.device))
        sims.append(products.sum(-1).flatten(3))  # (c, h, w, window^2): cos to each window position
    centre = window * window // 2
    neighbours = torch.cat([torch.arange(centre), torch.arange(centre + 1, window * window)]).to(v.device)
    sims = torch.cat(sims)[..., neighbours]  # the centre excluded, offsets row-major as in the reference
    inside = F.pad(torch.ones(h, w, device=v.device), (r, r, r, r)).unfold(0, window, 1).unfold(1, window, 1)
    masks = inside.reshape(h, w, -1)[..., neighbours]  # (h, w, K): the neighbour lies in the frame
    count = masks.sum(-1).clamp(min=1)
    mean = (sims * masks).sum(-1) / count
    var = (((sims - mean[..., None]) ** 2) * masks).sum(-1) / count
    return var.flatten()


# ---- fusion: hippo_ref's minmax_per_frame and fused_score (device-agnostic), imported above ----------


# ---- the one observed prefill -----------------------------------------------------------------------
def scored_prefill(
    adapter: VideoLLMAdapter, inputs: PreparedInputs, params, video_embeds: torch.Tensor | None = None,
    prefill=None, max_elements: int = MAX_ELEMENTS, phase=None,
) -> tuple[DecodeContext, TokenScores]:
    """The target's full-video prefill, observed, and the raw scores of its grid tokens (on the device).

    `prefill(inputs, video_embeds, observe) -> context with .cache` replaces
    `adapter.prefill(inputs, video_embeds=..., observe=...)` (e.g. one into a preallocated StaticCache);
    it must enter `observe` around the model's forward. `max_elements` bounds the scores' largest
    buffer (MAX_ELEMENTS). `phase`: hippo_fast/phases.py's recorder of the prefill and the scoring. The
    rest as hippo_ref's scored_prefill."""
    phase = phase or phases.recorder(None, None)
    embeds = adapter.encode_video(inputs) if video_embeds is None else video_embeds
    capture = TextQueryCapture(adapter, inputs, params.attn_layers, params.text_tokens)
    with phase("target prefill"):
        if prefill is None:
            context = adapter.prefill(inputs, video_embeds=embeds, observe=capture)
        else:
            context = prefill(inputs, embeds, capture)
    with phase("scoring"):
        scores = TokenScores(
            attn=attention_scores(capture, context, max_elements),
            temp=temporal_novelty(embeds, inputs.grid, params.first_frame_temp),
            spat=spatial_complexity(embeds, inputs.grid, params.spatial_window, max_elements),
        )
    return context, scores
