"""`hippo inspect`: what the pruning scores see and what each method keeps, as PNG and JSON files.

    hippo inspect position-bias --target DIR --video FILE --prompt TEXT --out DIR [--ratio 0.9]
        attention mass (s_attn) by frame, by row, by column, per spatial position, border vs interior;
        and how many of the tokens each method keeps lie on the frame border.
    hippo inspect kept --target DIR --video FILE --prompt TEXT --out DIR [--ratio 0.9] [--methods ...]
        the sampled frames with the kept tokens marked (pruned ones darkened), one PNG per method.
    hippo inspect mat --target DIR --draft DIR --video FILE --prompt TEXT --out DIR [--ratios 0.5,0.75,0.9]
        MAT of greedy SD / PEARL as a function of method and ratio (hippo_ref.pipeline.generate), each
        run checked token for token against plain AR.

All three take the pruning parameters of `hippo generate` (--weights, --budget, --attn-layers, ...).
A grid cell is drawn over the matching region of the original frame (the vision encoders see the
whole frame resized, so cell (r, c) of an h x w grid covers rows r/h..(r+1)/h and columns c/w..(c+1)/w).
For Qwen-VL a grid frame is a temporal group of `temporal_patch_size` frames: its first frame is shown.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from hippo.adapters.base import VideoGrid
from hippo.errors import ConfigError

COMMAND = "inspect"
SCORED_METHODS = ("random", "uniform", "attn", "specvlm", "hippo")


# ---- pure functions (tested) -------------------------------------------------------------------------
def border_mask(grid: VideoGrid) -> torch.Tensor:
    """(height, width) bool: True on the outermost row / column of a frame."""
    mask = torch.zeros(grid.height, grid.width, dtype=torch.bool)
    mask[0], mask[-1], mask[:, 0], mask[:, -1] = True, True, True, True
    return mask


def position_bias(s_attn: torch.Tensor, grid: VideoGrid) -> dict:
    """Where the attention mass goes, from s_attn (grid_tokens,) that sums to 1.

    by_frame / by_row / by_col: mass summed over the other axes (uniform attention would give
    1/frames, 1/height, 1/width). per_position: mass per spatial position summed over frames.
    border_to_interior: mean mass of a border token over the mean mass of an interior token
    (1 = no border bias; None when the frame has no interior)."""
    mass = s_attn.double().reshape(grid.frames, grid.height, grid.width)
    border = border_mask(grid)
    per_position = mass.sum(0)
    border_tokens = int(border.sum()) * grid.frames
    return {
        "grid": {"frames": grid.frames, "height": grid.height, "width": grid.width},
        "by_frame": mass.sum((1, 2)).tolist(),
        "by_row": mass.sum((0, 2)).tolist(),
        "by_col": mass.sum((0, 1)).tolist(),
        "per_position": per_position.tolist(),
        "border_mass": float(per_position[border].sum()),
        "interior_mass": float(per_position[~border].sum()),
        "border_token_share": border_tokens / grid.grid_tokens,
        "border_to_interior": border_to_interior(per_position, grid),
    }


def border_to_interior(per_position: torch.Tensor, grid: VideoGrid) -> float | None:
    """Mean mass of a border position over the mean mass of an interior one, from a (height, width) map
    (1 = no border bias; None when the frame has no interior or the interior holds no mass)."""
    per_position = torch.as_tensor(per_position, dtype=torch.float64)
    border = border_mask(grid)
    interior_mass = float(per_position[~border].sum())
    if not (~border).any() or interior_mass <= 0:
        return None
    return float(per_position[border].mean()) / float(per_position[~border].mean())


def border_share(kept: torch.Tensor, grid: VideoGrid) -> float:
    """Fraction of the kept grid tokens that lie on a frame border."""
    border = border_mask(grid).flatten()
    return float(border[kept % grid.tokens_per_frame].double().mean())


def display_frames(clip, grid: VideoGrid) -> list[int]:
    """Index into clip.frames of the frame shown for each grid frame (the first of its temporal group)."""
    total = len(clip.frames)
    return [min(total - 1, (f * total) // grid.frames) for f in range(grid.frames)]


# ---- plots (matplotlib, Agg) ---------------------------------------------------------------------------
def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_position_bias(profile: dict, path: Path, title: str) -> None:
    plt = _pyplot()
    g = profile["grid"]
    uniform = 1 / (g["height"] * g["width"])
    fig, axes = plt.subplots(2, 2, figsize=(10, 7.5))
    image = axes[0, 0].imshow((torch.tensor(profile["per_position"]) / uniform).numpy(), cmap="magma")
    axes[0, 0].set_title("mass per position / uniform (summed over frames)")
    fig.colorbar(image, ax=axes[0, 0])
    for ax, key, n, label in ((axes[0, 1], "by_row", g["height"], "row"), (axes[1, 0], "by_col", g["width"], "column"),
                              (axes[1, 1], "by_frame", g["frames"], "frame")):
        ax.bar(range(n), profile[key], color="tab:blue")
        ax.axhline(1 / n, color="gray", linestyle="--", label="uniform")
        ax.set_xlabel(label)
        ax.set_ylabel("attention mass")
        ax.legend()
    ratio = profile["border_to_interior"]
    fig.suptitle(f"{title}\nborder/interior mass per token: {'n/a' if ratio is None else f'{ratio:.2f}'}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def keep_mask(kept: torch.Tensor | None, grid: VideoGrid) -> torch.Tensor:
    """(frames, height, width) bool: True where a grid token is kept (everywhere for kept None)."""
    keep = torch.ones(grid.grid_tokens, dtype=torch.bool)
    if kept is not None:
        keep[:] = False
        keep[torch.as_tensor(kept, dtype=torch.long)] = True
    return keep.reshape(grid.frames, grid.height, grid.width)


def draw_kept(ax, frame, keep: torch.Tensor) -> None:
    """One frame (H, W, 3) into `ax` with the pruned cells of its (height, width) keep mask darkened and
    the token grid drawn over it."""
    height, width = frame.shape[:2]
    rows, columns = keep.shape
    shade = torch.zeros(rows, columns, 4)
    shade[..., 3] = (~keep).float() * 0.7  # pruned tokens darkened
    ax.imshow(frame)
    ax.imshow(shade.numpy(), extent=(0, width, height, 0), interpolation="nearest")
    for r in range(rows + 1):
        ax.axhline(r * height / rows, color="white", linewidth=0.3)
    for c in range(columns + 1):
        ax.axvline(c * width / columns, color="white", linewidth=0.3)
    ax.set_xticks([])
    ax.set_yticks([])


def plot_kept(clip, grid: VideoGrid, kept: torch.Tensor | None, path: Path, title: str) -> None:
    plt = _pyplot()
    keep = keep_mask(kept, grid)
    columns = min(grid.frames, 4)
    rows = -(-grid.frames // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(3.2 * columns, 2.6 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for f, index in enumerate(display_frames(clip, grid)):
        ax = axes.flat[f]
        draw_kept(ax, clip.frames[index], keep[f])
        ax.set_title(f"frame {f} (clip frame {index}): {int(keep[f].sum())}/{grid.tokens_per_frame}", fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_mat(rows: list[dict], path: Path, title: str) -> None:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for method in sorted({r["method"] for r in rows} - {"none"}):
        points = sorted((r["ratio"], r["mat"]) for r in rows if r["method"] == method)
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=method)
    for r in rows:
        if r["method"] == "none":
            ax.axhline(r["mat"], color="gray", linestyle="--", label="none (full video)")
    ax.set_xlabel("pruning ratio (fraction of visual tokens removed from the draft)")
    ax.set_ylabel("MAT (tokens per target forward)")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# ---- commands --------------------------------------------------------------------------------------------
def _methods(text: str, allowed) -> list[str]:
    methods = [m.strip() for m in text.split(",") if m.strip()]
    bad = [m for m in methods if m not in allowed]
    if bad or not methods:
        raise ConfigError(f"--methods {text!r}: unknown {', '.join(bad) or '(empty)'}; choose from {', '.join(allowed)}")
    return methods


def _ratios(text: str) -> list[float]:
    try:
        ratios = [float(x) for x in text.split(",")]
    except ValueError:
        raise ConfigError(f"--ratios takes comma-separated numbers like 0.5,0.75,0.9, got {text!r}") from None
    bad = [r for r in ratios if not 0 <= r < 1]
    if bad:
        raise ConfigError(f"--ratios {bad}: every pruning ratio must be in [0, 1)")
    return ratios


def _load(args, with_draft: bool = False):
    from hippo.checkpoint import load_adapter
    from hippo.video import load_video

    clip = load_video(args.video, args.frames)  # cheap checks first
    target = load_adapter(args.target, args.dtype, args.device)
    draft = load_adapter(args.draft, args.dtype, args.device) if with_draft else None
    return clip, target, draft


def _write_json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=1))


def run_position_bias(args) -> int:
    from hippo.cli import prune_params_from_args
    from hippo_ref.pruning.methods import PruneSpec, kept_indices
    from hippo_ref.pruning.scores import scored_prefill

    params = prune_params_from_args(args)
    out = Path(args.out)
    clip, target, _ = _load(args)
    inputs = target.prepare(clip, args.prompt)
    _, scores = scored_prefill(target, inputs, params)
    profile = position_bias(scores.attn, inputs.grid)
    profile["kept_border_share"] = {
        m: border_share(kept_indices(PruneSpec(m, args.ratio, params=params), inputs.grid, scores), inputs.grid)
        for m in SCORED_METHODS
    }
    profile.update(ratio=args.ratio, target=target.name, video=args.video, prompt=args.prompt,
                   attn_layers=params.attn_layers, text_tokens=params.text_tokens)
    out.mkdir(parents=True, exist_ok=True)
    _write_json(out / "position_bias.json", profile)
    plot_position_bias(profile, out / "position_bias.png", f"s_attn of {Path(target.name).name}")
    print(f"{out / 'position_bias.json'}\n{out / 'position_bias.png'}")
    return 0


def run_kept(args) -> int:
    from hippo.cli import prune_params_from_args
    from hippo_ref.pruning.methods import NEEDS_SCORES, PruneSpec, kept_indices
    from hippo_ref.pruning.scores import scored_prefill

    params = prune_params_from_args(args)
    methods = _methods(args.methods, SCORED_METHODS + ("none",))
    specs = {m: PruneSpec(m, args.ratio, params=params) for m in methods}  # validate before loading
    out = Path(args.out)
    clip, target, _ = _load(args)
    inputs = target.prepare(clip, args.prompt)
    scores = scored_prefill(target, inputs, params)[1] if NEEDS_SCORES & set(methods) else None
    grid = inputs.grid
    report = {"grid": {"frames": grid.frames, "height": grid.height, "width": grid.width,
                       "extra_tokens": grid.extra_tokens},
              "ratio": args.ratio, "display_frames": display_frames(clip, grid), "methods": {}}
    out.mkdir(parents=True, exist_ok=True)
    for method, spec in specs.items():
        kept = kept_indices(spec, grid, scores)
        png = out / f"kept_{method}.png"
        plot_kept(clip, grid, kept, png, f"{method} at ratio {args.ratio}: kept tokens bright, pruned darkened")
        indices = list(range(grid.grid_tokens)) if kept is None else kept.tolist()
        report["methods"][method] = {
            "kept": indices,
            "per_frame": torch.bincount(torch.tensor(indices) // grid.tokens_per_frame, minlength=grid.frames).tolist(),
            "border_share": border_share(torch.tensor(indices), grid),
            "png": str(png),
        }
        print(png)
    _write_json(out / "kept.json", report)
    print(out / "kept.json")
    return 0


def mat_sweep(target, draft, clip, args, params) -> list[dict]:
    """Greedy MAT for every (method, ratio); `none` once (ratio 0). Each run is compared with AR."""
    from hippo.generation import generate
    from hippo.request import DecodeConfig, GenerationRequest, PruneSpec

    methods = _methods(args.methods, ("none",) + SCORED_METHODS)
    ratios = _ratios(args.ratios)
    config = DecodeConfig(max_new_tokens=args.max_new_tokens, gamma=args.gamma)

    def request(decoding, spec):
        return GenerationRequest(args.video, args.prompt, args.frames, decoding, spec, config)

    ar = generate("ref", target, None, request("ar", PruneSpec()), clip=clip).tokens
    rows = []
    for method in methods:
        for ratio in [0.0] if method == "none" else ratios:
            spec = PruneSpec(method, ratio, args.positions, params)
            result = generate("ref", target, draft, request(args.decoding, spec), clip=clip)
            s = result.stats
            rows.append({"method": method, "ratio": ratio, "mat": s.decode.mat,
                         "mean_run_length": s.decode.mean_run_length,
                         "target_forwards": s.decode.target_forwards,
                         "kept_visual_tokens": s.kept_visual_tokens, "visual_tokens": s.visual_tokens,
                         "tokens": len(result.tokens), "equals_ar": result.tokens == ar})
    return rows


def run_mat(args) -> int:
    from hippo.cli import prune_params_from_args

    params = prune_params_from_args(args)
    _methods(args.methods, ("none",) + SCORED_METHODS)
    _ratios(args.ratios)
    out = Path(args.out)
    clip, target, draft = _load(args, with_draft=True)
    rows = mat_sweep(target, draft, clip, args, params)
    out.mkdir(parents=True, exist_ok=True)
    _write_json(out / "mat.json", {"target": target.name, "draft": draft.name, "decoding": args.decoding,
                                   "gamma": args.gamma, "positions": args.positions,
                                   "max_new_tokens": args.max_new_tokens, "rows": rows})
    plot_mat(rows, out / "mat.png", f"{args.decoding}, gamma {args.gamma}, greedy")
    for r in rows:
        print(f"{r['method']:8s} ratio {r['ratio']:.2f}  MAT {r['mat']:.3f}  kept {r['kept_visual_tokens']}/"
              f"{r['visual_tokens']}  equals AR: {r['equals_ar']}")
    print(f"{out / 'mat.json'}\n{out / 'mat.png'}")
    if not all(r["equals_ar"] for r in rows):
        print("hippo: error: a speculative run differs from AR: this is a losslessness bug, please report it")
        return 1
    return 0


def add_subcommand(sub) -> None:
    from hippo.cli import add_prune_param_options

    parser = sub.add_parser(COMMAND, help="pruning diagnostics: position bias, kept tokens, MAT sweep (PNG + JSON)")
    inner = parser.add_subparsers(dest="inspect_command", required=True)
    commands = {
        "position-bias": "attention mass of s_attn by frame, row, column and border vs interior",
        "kept": "the sampled frames with each method's kept tokens marked, one PNG per method",
        "mat": "MAT as a function of pruning method and ratio (greedy, checked against AR)",
    }
    for name, help_text in commands.items():
        p = inner.add_parser(name, help=help_text)
        p.add_argument("--target", required=True, help="target checkpoint folder (or zoo:NAME)")
        if name == "mat":
            p.add_argument("--draft", required=True, help="draft checkpoint folder (or zoo:NAME)")
        p.add_argument("--video", required=True)
        p.add_argument("--prompt", required=True)
        p.add_argument("--frames", type=int, default=8)
        p.add_argument("--out", required=True, help="folder for the PNG and JSON files")
        p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
        p.add_argument("--device", default="cpu")
        if name == "mat":
            p.add_argument("--methods", default=",".join(("none",) + SCORED_METHODS))
            p.add_argument("--ratios", default="0.5,0.75,0.9")
            p.add_argument("--decoding", default="pearl", choices=["sd", "pearl"])
            p.add_argument("--gamma", type=int, default=4)
            p.add_argument("--max-new-tokens", type=int, default=32)
            p.add_argument("--positions", default="keep", choices=["keep", "compact"])
        else:
            p.add_argument("--ratio", type=float, default=0.9, help="pruning ratio of the kept-token views")
            if name == "kept":
                p.add_argument("--methods", default=",".join(SCORED_METHODS))
        add_prune_param_options(p)


def run(args) -> int:
    ratio = getattr(args, "ratio", None)  # position-bias and kept take one --ratio, mat takes --ratios
    if ratio is not None and not 0 <= ratio < 1:
        raise ConfigError(f"pruning ratio must be in [0, 1) (the fraction of visual tokens removed), got {args.ratio}")
    return {"position-bias": run_position_bias, "kept": run_kept, "mat": run_mat}[args.inspect_command](args)
