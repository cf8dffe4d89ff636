"""Position bias: where the target's attention mass (s_attn) goes, by spatial position and by frame,
against the fused HIPPO score.

The paper's claim: attention-only pruning suffers a position bias, boundary tokens collecting inflated
attention whatever their content. For the target of each of the profile's zoo pairs, on the zoo test
videos and on one real clip, each score is turned into shares of its total per video (hippo_ref's
position_bias) and averaged over the videos. Judged on: the border/interior ratio (mean share of a
border position over that of an interior one; 1 = no border bias) and the last-frame / first-frame
share ratio, of s_attn and of the fused score (default PruneParams), and the first-token sink (the first
visual token's share over the uniform share), each with a bootstrap interval over the videos: three
biases, each judged on its own in paper/REPRODUCTION.md.

Beside them, where SpecVLM's two stages degenerate into attention top-k: at a pruning ratio whose budget
is smaller than the tokens stage I needs to hold its attention mass (`specvlm_degenerates`), stage II
keeps nothing and SpecVLM is FastV's top-k.
"""

from __future__ import annotations

import torch

from hippo.adapters.base import VideoGrid
from hippo.request import PruneParams
from hippo_ref.pruning.diagnostics import border_mask, border_to_interior, position_bias
from hippo_ref.pruning.methods import per_frame_budget, specvlm_pick, top_k
from paper.reproduce.plots import scored_videos
from paper.reproduce.plots.job import FigureJob, FigureProfile, Outcome

NAME = "position_bias"
SCORES = {"attn": "s_attn", "fused": "fused HIPPO score"}
VIDEO_SETS = ("zoo", "real")
# the three biases, each judged on its own: spatial, temporal, the first-token sink (1 = none)
BIASES = ("border_to_interior", "last_to_first_frame", "first_token_to_uniform")


# ---- pure functions ------------------------------------------------------------------------------------
def shares(values: torch.Tensor, grid: VideoGrid) -> dict:
    """One video's score as shares of its total: per spatial position (summed over frames) and per frame."""
    values = values.double()
    profile = position_bias(values / values.sum(), grid)
    return {"per_position": profile["per_position"], "by_frame": profile["by_frame"],
            "first_token": float(values[0] / values.sum())}


def bootstrap_interval(per_video: torch.Tensor, statistic, resamples: int = 2000, seed: int = 0,
                       confidence: float = 0.95) -> list[float] | None:
    """Percentile-bootstrap interval of `statistic(mean over videos)`, the videos (rows of `per_video`)
    resampled with replacement from an explicitly seeded generator; None where a resample's statistic is
    undefined (returns None)."""
    import numpy as np

    picks = np.random.default_rng(seed).integers(0, len(per_video), size=(resamples, len(per_video)))
    values = [statistic(per_video[torch.as_tensor(pick)].mean(0)) for pick in picks]
    if any(v is None for v in values):
        return None
    tail = (1 - confidence) / 2
    return [float(q) for q in np.quantile(values, [tail, 1 - tail])]


def border_interval(per_video: torch.Tensor, grid: VideoGrid, resamples: int = 2000, seed: int = 0,
                    confidence: float = 0.95) -> list[float] | None:
    """bootstrap_interval of border_to_interior of the videos' mean per-position shares."""
    return bootstrap_interval(per_video, lambda mean: border_to_interior(mean, grid), resamples, seed, confidence)


def last_to_first(by_frame: torch.Tensor) -> float | None:
    """The last frame's share over the first's (1 = no temporal bias; None when the first holds nothing)."""
    return float(by_frame[-1] / by_frame[0]) if by_frame[0] > 0 else None


def first_token_to_uniform(first_share: torch.Tensor, grid: VideoGrid) -> float:
    """The first visual token's share over the share every token would hold under uniform attention (1 = no
    sink)."""
    return float(first_share.reshape(-1)[0]) * grid.grid_tokens


def specvlm_degenerates(attn: torch.Tensor, grid: VideoGrid, ratio: float, mass: float) -> tuple[int, bool]:
    """SpecVLM's global budget at `ratio` (frames x per-frame budget) and whether its two stages keep exactly
    attention top-k's tokens there: stage I (the fewest top tokens holding `mass` of s_attn) fills the
    whole budget, so stage II keeps nothing (hippo_ref's own specvlm_pick and top_k, compared)."""
    budget = grid.frames * per_frame_budget(grid, ratio)
    attn = attn.reshape(-1)[: grid.grid_tokens]
    return budget, bool(torch.equal(specvlm_pick(attn, budget, mass), top_k(attn, budget)))


def pooled(profiles: list[dict], grid: VideoGrid) -> dict:
    """Mean shares over videos, with the two ratios the claim is judged on (the border one with its
    bootstrap interval over the videos)."""
    per_video = torch.tensor([p["per_position"] for p in profiles], dtype=torch.float64)
    per_position = per_video.mean(0)
    frames_per_video = torch.tensor([p["by_frame"] for p in profiles], dtype=torch.float64)
    by_frame = frames_per_video.mean(0)
    first = torch.tensor([[p["first_token"]] for p in profiles], dtype=torch.float64)
    return {
        "per_position": per_position.tolist(),
        "by_frame": by_frame.tolist(),
        "border_to_interior": border_to_interior(per_position, grid),
        "border_to_interior_ci": border_interval(per_video, grid),
        "last_to_first_frame": last_to_first(by_frame),
        "last_to_first_frame_ci": bootstrap_interval(frames_per_video, last_to_first),
        "first_token_to_uniform": first_token_to_uniform(first.mean(0), grid),
        "first_token_to_uniform_ci": bootstrap_interval(first, lambda mean: first_token_to_uniform(mean, grid)),
    }


def summary(value: dict) -> dict:
    """Outcome.numbers: per pair and video set, the grid and the ratios of s_attn and the fused score."""
    out = {"real_video": value["real_video"]}
    for pair, sets in value["pairs"].items():
        out[pair] = {}
        for name, entry in sets.items():
            g = entry["grid"]
            row = {"grid": f"{g['frames']}x{g['height']}x{g['width']}", "videos": entry["videos"]}
            for score in SCORES:
                for bias in BIASES:
                    row[f"{score}_{bias}"] = entry[score].get(bias)
                    row[f"{score}_{bias}_ci"] = entry[score].get(f"{bias}_ci")
            out[pair][name] = row
        if "specvlm_top_k" in value.get("zoo_specvlm", {}).get(pair, {}):
            out[pair]["zoo"]["specvlm_top_k"] = value["zoo_specvlm"][pair]["specvlm_top_k"]
    return out


def grid_notes(value: dict) -> list[str]:
    notes = []
    for pair, sets in value["pairs"].items():
        for name, entry in sets.items():
            grid = scored_videos.grid_of(entry["grid"])
            border = int(border_mask(grid).sum())
            notes.append(f"{pair}, {name} videos: {grid.height}x{grid.width} tokens per frame ({border} border, "
                         f"{grid.tokens_per_frame - border} interior positions), {grid.frames} frames (temporal "
                         "groups); a grid this small has little interior, so a border bias, if any, is coarse here")
    notes.append("the fused score is min-max normalised within each frame, so its per-frame shares are near equal "
                 "by construction; frame 0 gets s_temp = 1 everywhere (first_frame_temp), which raises its share")
    return notes


# ---- measurement -------------------------------------------------------------------------------------------
def measure(profile: FigureProfile, log=print) -> dict:
    """Pooled shares of s_attn and of the fused score per pair and video set (JSON)."""
    from hippo.checkpoint import load_adapter

    clip, fallback = scored_videos.real_clip(profile.frames)
    videos = {"zoo": scored_videos.zoo_clips(profile.n, profile.frames), "real": [clip]}
    value = {"real_video": fallback or clip.path, "real_fallback": fallback, "pairs": {}, "zoo_specvlm": {}}
    mass = PruneParams().specvlm_mass
    for pair in profile.pairs:
        target = load_adapter(scored_videos.target_spec(pair))
        value["pairs"][pair] = {}
        for name, clips in videos.items():
            log(f"figures: {NAME}: {pair} on {len(clips)} {name} video(s)")
            scored = [scored_videos.score_video(target, c) for c in clips]
            grid = scored[0].grid
            entry = {"grid": scored_videos.grid_json(grid), "videos": len(clips)}
            for score in SCORES:
                parts = [shares(s.fused if score == "fused" else s.scores.attn, grid) for s in scored]
                entry[score] = pooled(parts, grid)
            value["pairs"][pair][name] = entry
            if name == "zoo":  # the ratio sweep's videos: where SpecVLM is attention top-k at its ratios
                value["zoo_specvlm"][pair] = {"specvlm_top_k": specvlm_at_ratios(scored, profile.ratios, mass)}
    return value


def specvlm_at_ratios(scored: list, ratios, mass: float) -> dict:
    """{ratio: {budget, tokens, top_k_videos, videos}}: on how many of the videos SpecVLM's two stages keep
    attention top-k's tokens at each ratio (specvlm_degenerates)."""
    out = {}
    for ratio in ratios:
        results = [specvlm_degenerates(s.scores.attn, s.grid, float(ratio), mass) for s in scored]
        out[str(ratio)] = {"budget": results[0][0], "tokens": scored[0].grid.grid_tokens,
                           "top_k_videos": sum(d for _, d in results), "videos": len(results), "mass": mass}
    return out


# ---- figure ----------------------------------------------------------------------------------------------
def _ratio_text(ratio: float | None) -> str:
    return "n/a" if ratio is None else f"{ratio:.2f}"


def _heatmap(fig, ax, entry: dict, score: str, norm, title: str) -> None:
    from matplotlib.patches import Rectangle

    grid = scored_videos.grid_of(entry["grid"])
    relative = torch.tensor(entry[score]["per_position"]) * grid.tokens_per_frame  # 1 = uniform share
    image = ax.imshow(relative.numpy(), cmap="RdBu_r", norm=norm)
    for r in range(grid.height):
        for c in range(grid.width):
            value = float(relative[r, c])
            dark = abs(norm(value) - 0.5) > 0.3  # white text on the saturated ends of the colour map
            ax.text(c, r, f"{value:.2f}", ha="center", va="center", fontsize=8, color="white" if dark else "black")
    if grid.height > 2 and grid.width > 2:  # the interior, inside the one-token border
        ax.add_patch(Rectangle((0.5, 0.5), grid.width - 2, grid.height - 2, fill=False, linestyle="--",
                               linewidth=1.2, edgecolor="black"))
    ax.set_title(f"{title}\n{SCORES[score]} per position, border/interior "
                 f"{_ratio_text(entry[score]['border_to_interior'])}", fontsize=9)
    ax.set_xticks(range(grid.width))
    ax.set_yticks(range(grid.height))
    ax.set_xlabel("token column")
    ax.set_ylabel("token row")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share / uniform share")


def _frame_bars(ax, entry: dict, title: str) -> None:
    from paper.reproduce.plots.style import METHOD_COLORS

    frames = entry["grid"]["frames"]
    x = torch.arange(frames).numpy()
    for offset, score, color in ((-0.2, "attn", METHOD_COLORS["attn"]), (0.2, "fused", METHOD_COLORS["hippo"])):
        ax.bar(x + offset, entry[score]["by_frame"], width=0.4, color=color, label=SCORES[score])
    ax.axhline(1 / frames, color="gray", linestyle="--", linewidth=1, label="uniform")
    ratios = ", ".join(f"{SCORES[s].split()[0]} {_ratio_text(entry[s]['last_to_first_frame'])}" for s in SCORES)
    ax.set_title(f"{title}\nshare per frame (last/first: {ratios})", fontsize=9)
    ax.set_xticks(x)
    ax.set_xlabel("frame (temporal group)")
    ax.set_ylabel("share of the score's mass")
    top = max(max(entry[s]["by_frame"]) for s in SCORES)
    ax.set_ylim(0, 1.3 * top)  # headroom for the legend above the bars
    ax.legend(fontsize=7, loc="upper center", ncol=3, frameon=False)


def draw(value: dict, profile: FigureProfile):
    from matplotlib.colors import TwoSlopeNorm

    from paper.reproduce.plots.style import subplots

    rows = [(pair, name) for pair in value["pairs"] for name in VIDEO_SETS]
    fig, axes = subplots(len(rows), 3, width=15, height=3.6 * len(rows), squeeze=False)
    for (pair, name), row in zip(rows, axes, strict=True):
        entry = value["pairs"][pair][name]
        tokens = entry["grid"]["height"] * entry["grid"]["width"]
        relative = [v * tokens for s in SCORES for line in entry[s]["per_position"] for v in line]
        norm = TwoSlopeNorm(vcenter=1.0, vmin=0.0, vmax=max(max(relative), 1.05))  # one scale per row; white = uniform
        label = (f"{pair}: zoo test videos (n={entry['videos']} videos)" if name == "zoo"
                 else f"{pair}: {scored_videos.REAL_VIDEO if value['real_fallback'] is None else 'zoo video 0 (real one absent)'}"
                 f" (n={entry['videos']} video)")
        _heatmap(fig, row[0], entry, "attn", norm, label)
        _heatmap(fig, row[1], entry, "fused", norm, label)
        _frame_bars(row[2], entry, label)
    counts = ", ".join(f"{pair} {name} n={value['pairs'][pair][name]['videos']}" for pair, name in rows)
    fig.suptitle("Position bias: share of s_attn vs of the fused HIPPO score, by spatial position (summed over "
                 f"frames, mean over videos; 1 = uniform, dashed box = interior) and by frame; {profile.frames} "
                 f"frames per video; videos per row: {counts}", fontsize=11)
    fig.tight_layout()
    return fig


def build(job: FigureJob) -> Outcome:
    value = job.measurement(NAME, lambda: measure(job.profile, job.log))
    outcome = Outcome(figures=[job.save(draw(value, job.profile), NAME)], numbers=summary(value),
                      notes=grid_notes(value))
    if value["real_fallback"]:
        outcome.notes.append(value["real_fallback"])
    return outcome
