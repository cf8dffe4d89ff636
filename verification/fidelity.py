"""Target fidelity notes: where the pinned stock HF target itself departs from its model authors' scheme.

The audit proves that speculative decoding reproduces the STOCK target (the HF class of the pinned
transformers release) exactly. That is the right reference for losslessness, but an auditor should
also know where that stock target is not what the model's authors specified, because every number
measured on it inherits the difference. These notes say so; they are notes, never failures.

Known case, Qwen2-VL / Qwen2.5-VL M-RoPE (transformers 5.24, the pinned release; upstream threads
huggingface/transformers #45381, #45400, #48669): the stock `get_rope_index` advances the position
counter past a video by max(grid_h, grid_w) / spatial_merge_size only, so the text after a video
starts at video_start + max(h, w) whatever the video's temporal extent. The Qwen reference (the Qwen
authors' own get_rope_index, added in #32318 / #35569 and still used by transformers 5.2.0, as the
positions quoted in #45381 show) starts it at the video's largest (t, h, w) position + 1. The two
coincide when the video's temporal ids stay below its spatial ones, and differ otherwise (the stock
text then sits lower, overlapping the video's later temporal ids). Inside the video both schemes
give the same ids; `qwen_rope_fidelity` checks that too.

Keys of one note (all JSON-serialisable):
    pair, video             (fidelity_notes only) the audited pair's name and the video path
    family                  "qwen2_5_vl" or "qwen2_vl"
    target                  the target adapter's name (its checkpoint folder)
    transformers            the transformers version whose stock positions were compared
    video_start             sequence index of the first video token
    video_tokens            number of video tokens in the prompt
    grid                    [t, h, w] of the tokens the LLM reads (temporal groups, merged rows, merged columns)
    video_grid_thw          [t, h, w] of the vision encoder's patch grid (h, w before the spatial merge)
    spatial_merge_size      the merge factor between the two grids
    temporal_step           position step per temporal group (tokens_per_second * second_per_grid_ts for
                            Qwen2.5-VL, 1 for Qwen2-VL); temporal ids are floor(group * step)
    video_max_position      largest position id of any video token (over t, h, w)
    stock_text_start        position id of the first token after the video, stock (None if there is none)
    reference_text_start    the same under the Qwen reference
    offset                  reference_text_start - stock_text_start (>= 0; 0 when nothing follows the video)
    video_positions_agree   whether the video tokens' (t, h, w) ids are equal in both schemes
    positions_differ        whether any prompt position id differs
    differing_tokens        how many prompt tokens have a position id (any of t, h, w) that differs
    stock_next_position     position id of the first generated token, stock
    reference_next_position the same under the Qwen reference
    note                    one plain-English sentence for the report
"""

from __future__ import annotations

import torch

QWEN_FAMILIES = ("qwen2_5_vl", "qwen2_vl")


def temporal_timing(adapter, inputs) -> tuple[float, float]:
    """(seconds per temporal group, tokens_per_second) of the video's temporal ids.

    Qwen2.5-VL spaces temporal ids by real time: group g gets floor(g * seconds * tokens_per_second),
    with 1 second per group when the processor gives no timing. Qwen2-VL counts groups: (1, 1)."""
    if adapter.family != "qwen2_5_vl":
        return 1.0, 1.0
    seconds = inputs.vision_inputs.get("second_per_grid_ts")
    seconds = 1.0 if seconds is None else float(torch.as_tensor(seconds, dtype=torch.float32).reshape(-1)[0])
    return seconds, float(adapter.model.config.vision_config.tokens_per_second)


def qwen_reference_positions(
    num_tokens: int,
    video_start: int,
    grid: tuple[int, int, int],
    seconds_per_group: float = 1.0,
    tokens_per_second: float = 1.0,
) -> torch.Tensor:
    """(3, num_tokens) M-RoPE position ids of a prompt with one video, under the Qwen reference scheme.

    Text before the video counts 0, 1, ... on all three rows. The video's t*h*w tokens (frame-major,
    row-major inside a frame) get t = video_start + floor(group * seconds_per_group * tokens_per_second)
    (float32, multiplied in that order, as the Qwen authors wrote it), h = video_start + row and
    w = video_start + column. The text after the video starts at the video's LARGEST id over the three
    rows + 1, as in the Qwen authors' get_rope_index (transformers #32318 / #35569, still so in 5.2.0;
    see #45381, #45400, #48669); transformers 5.24 starts it at video_start + max(h, w) instead,
    whatever the temporal extent.
    """
    t, h, w = grid
    seconds = torch.tensor(seconds_per_group, dtype=torch.float32)
    rate = torch.tensor(tokens_per_second, dtype=torch.float32)
    t_ids = (torch.arange(t, dtype=torch.float32) * seconds * rate).long()
    tt, hh, ww = torch.meshgrid(t_ids, torch.arange(h), torch.arange(w), indexing="ij")
    video = torch.stack([tt, hh, ww]).reshape(3, -1) + video_start
    text_start = int(video.max()) + 1 if video.numel() else video_start
    after = num_tokens - video_start - video.shape[1]
    return torch.cat([
        torch.arange(video_start).expand(3, -1),
        video,
        (torch.arange(after) + text_start).expand(3, -1),
    ], dim=1)


def _note(info: dict) -> str:
    """One plain-English sentence saying whether, and how, the stock target departs from the reference."""
    t, h, w = info["grid"]
    generated = info["reference_next_position"] - info["stock_next_position"]
    if not info["video_positions_agree"]:
        return (f"The stock {info['family']} target's (t, h, w) position ids inside the video differ from the Qwen "
                f"reference scheme on {info['differing_tokens']} prompt tokens: check the temporal spacing.")
    if info["offset"] == 0:
        return (f"Here the stock {info['family']} target (transformers {info['transformers']}) and the Qwen reference "
                f"give the same positions: the text after the video starts at {info['stock_text_start']} in both, "
                f"since the video's {t} temporal groups reach no further than its spatial extent (largest video "
                f"position {info['video_max_position']}).")
    return (f"The stock {info['family']} target (transformers {info['transformers']}) starts the text after the "
            f"video at position {info['stock_text_start']} (video start {info['video_start']} plus max(h, w) = "
            f"{max(h, w)}, ignoring the video's {t} temporal groups, whose ids reach {info['video_max_position']}), "
            f"while the Qwen reference starts it at {info['reference_text_start']} (largest video id + 1), so the "
            f"{info['differing_tokens']} prompt tokens after the video sit {info['offset']} positions lower, and "
            f"the generated tokens {generated} lower, than in the model authors' scheme; the audit's equality is "
            f"with the stock target.")


def qwen_rope_fidelity(adapter, inputs) -> dict | None:
    """Compare the stock target's prompt positions with the Qwen reference scheme; None for other families.

    `inputs` is the adapter's PreparedInputs (one video). The stock positions are the adapter's own
    (`adapter.prompt_positions`, i.e. the stock `get_rope_index`); the reference is computed here."""
    if getattr(adapter, "family", None) not in QWEN_FAMILIES:
        return None
    import transformers

    stock = adapter.prompt_positions(inputs).cpu().long()
    seconds, rate = temporal_timing(adapter, inputs)
    grid = (inputs.grid.frames, inputs.grid.height, inputs.grid.width)
    reference = qwen_reference_positions(inputs.num_tokens, inputs.video_start, grid, seconds, rate)
    if stock.shape != reference.shape:
        raise RuntimeError(f"stock positions have shape {tuple(stock.shape)}, reference {tuple(reference.shape)}")
    start, end = inputs.video_start, inputs.video_end
    thw = [int(x) for x in torch.as_tensor(inputs.vision_inputs["video_grid_thw"]).reshape(-1, 3)[0]]
    differ = (stock != reference).any(dim=0)
    after = end < inputs.num_tokens
    stock_text = int(stock[0, end]) if after else None
    reference_text = int(reference[0, end]) if after else None
    info = {
        "family": adapter.family,
        "target": str(getattr(adapter, "name", "")),
        "transformers": transformers.__version__,
        "video_start": start,
        "video_tokens": end - start,
        "grid": list(grid),
        "video_grid_thw": thw,
        "spatial_merge_size": int(adapter.model.config.vision_config.spatial_merge_size),
        "temporal_step": seconds * rate,
        "video_max_position": int(stock[:, start:end].max()),
        "stock_text_start": stock_text,
        "reference_text_start": reference_text,
        "offset": reference_text - stock_text if after else 0,
        "video_positions_agree": bool(torch.equal(stock[:, start:end], reference[:, start:end])),
        "positions_differ": bool(differ.any()),
        "differing_tokens": int(differ.sum()),
        "stock_next_position": int(stock.max()) + 1,
        "reference_next_position": int(reference.max()) + 1,
    }
    info["note"] = _note(info)
    return info


def fidelity_notes(pairs, videos, frames: int, prompt: str) -> list[dict]:
    """The fidelity notes of every audited pair with a Qwen target, on every video.

    `pairs` are loaded verification.models.ModelPair objects; `videos` are file paths. Each clip is
    decoded once and shared by the pairs; only positions are computed (no forward pass)."""
    from hippo.video import load_video

    unloaded = [p.name for p in pairs if p.target is None]
    if unloaded:
        raise ValueError(f"fidelity_notes needs loaded pairs (ModelPair.load()); not loaded: {', '.join(unloaded)}")
    qwen = [p for p in pairs if p.target.family in QWEN_FAMILIES]
    if not qwen:
        return []
    notes = []
    for video in videos:
        clip = load_video(video, frames)
        for pair in qwen:
            info = qwen_rope_fidelity(pair.target, pair.target.prepare(clip, prompt))
            notes.append({"pair": pair.name, "video": str(video), **info})
    return notes
