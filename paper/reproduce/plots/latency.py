"""Where one request's time goes, phase by phase, for AR, SD, SD + SpecVLM, PEARL and HIPPO on the main
pair: the median over the zoo test videos of each phase's wall time.

The phases before the decode are the pipeline's own, recorded by it (`implementation("fast", phases=True)`,
hippo_fast/phases.py: preprocessing, vision encoding, target prefill, scoring, pruning, draft prefill)
after the video load timed here; the decode is split by its timeline: the target's verify forwards and
verification, the draft's work that the target did not hide, and the rest (messages, the loop's host
work). Every phase is wall time of this process, one after the other, so they add up to the end-to-end
time. With the draft in its own process (PEARL, HIPPO) the worker prepares and encodes the video while
this process works on the target: "draft prefill" is then what this process waited for the worker's
pruned prefill.

The zoo renders its videos in memory; each is written once as an MP4 (hippo.video.write_video) so that
"video load" times the decoder a real request goes through.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from pathlib import Path

from hippo_fast.phases import PHASES as PREPARE_PHASES
from paper.reproduce.plots import style
from paper.reproduce.plots.job import FigureJob, Outcome
from paper.reproduce.plots.rows import METHODS

RATIO = 0.9
GAMMA = 5  # the sweep's default draft length (paper/sweep/grid.py Grid.gammas)
DECODE_PHASES = ("draft decode", "verify decode", "decode other")
PHASES = ("video load", *PREPARE_PHASES, *DECODE_PHASES)  # prepare_contexts' own, as the pipeline names them


def implementation_of(impl: str):
    """The method's implementation variant recording its phases, a serial one its timeline too (the draft /
    verify split)."""
    from hippo.generation import variant

    return variant("fast-timed" if impl == "fast" else impl, phases=True)


def decode_phases(result) -> dict:
    """The decode's wall time split by its timeline (AR has none: every step is the target's)."""
    stats, timeline = result.stats, result.timeline
    if timeline is None:
        return {"verify decode": stats.decode_s, "draft_busy": 0.0, "draft_hidden": 0.0}
    verify = timeline.busy_s("target") + timeline.busy_s("verify")
    hidden = timeline.overlap_s("target", "draft")  # the draft's work done while the target worked
    exposed = timeline.busy_s("draft") - hidden
    return {"verify decode": verify, "draft decode": exposed, "decode other": max(0.0, stats.decode_s - verify - exposed),
            "draft_busy": timeline.busy_s("draft"), "draft_hidden": hidden}


def time_request(impl, target, draft, request) -> tuple[dict, list[int]]:
    """Seconds per phase of one request (the video load, prepare_contexts' phases, the decode's), and its tokens."""
    from hippo.video import load_video

    times = dict.fromkeys(PHASES, 0.0)
    start = time.perf_counter()
    clip = load_video(request.video, request.frames)  # on the CPU: no device to wait for
    times["video load"] = time.perf_counter() - start
    prepared = impl.prepare_contexts(target, draft, request, clip)
    times.update(prepared.phases)
    result = impl.decode(request.decoding, prepared.target_context, prepared.draft_context, request.config)
    times.update(decode_phases(result))
    return times, result.tokens


def write_videos(folder: Path, count: int) -> list[tuple[str, str]]:
    """The first `count` zoo test videos as MP4 files in `folder`, with their prompts."""
    from hippo.video import write_video
    from paper.sweep.grid import zoo_samples

    out = []
    for sample in zoo_samples(count):
        clip = sample.clip(8)  # every rendered frame; load_video samples the request's frames from the file
        path = folder / f"{sample.sample_id.replace('/', '-')}.mp4"
        write_video(path, clip.frames, clip.native_fps)
        out.append((str(path), sample.prompt))
    return out


def measure(job: FigureJob) -> dict:
    from hippo.checkpoint import load_adapter
    from hippo.request import DecodeConfig, GenerationRequest, PruneSpec
    from hippo.zoo.registry import PAIRS, ZOO_PREFIX

    p = job.profile
    pair = p.pairs[0]
    target, draft = (load_adapter(ZOO_PREFIX + name, "float32", "cpu") for name in PAIRS[pair])
    config = DecodeConfig(max_new_tokens=p.max_new_tokens, gamma=GAMMA, seed=p.seed,
                          eos_token_ids=tuple(target.eos_token_ids))
    out: dict = {"pair": pair, "frames": p.frames, "n": p.n, "gamma": GAMMA, "max_new_tokens": p.max_new_tokens,
                 "ratio": RATIO, "methods": {}, "load_average_at_start": os.getloadavg()[0]}  # other work on the cores slows the timings
    tokens: dict[str, list] = {}
    with tempfile.TemporaryDirectory() as folder:
        videos = write_videos(Path(folder), p.n)
        impl = None
        try:
            for label, (decoding, prune, impl_name) in METHODS.items():
                impl = implementation_of(impl_name)
                spec = PruneSpec(prune, 0.0 if prune == "none" else RATIO)
                requests = [GenerationRequest(video, prompt, p.frames, decoding, spec, config) for video, prompt in videos]
                time_request(impl, target, draft, requests[0])  # warm-up, untimed (first calls, the worker's start)
                runs = [time_request(impl, target, draft, r) for r in requests]
                tokens[label] = [t for _, t in runs]
                out["methods"][label] = summarize([times for times, _ in runs], [len(t) for _, t in runs])
        finally:
            if impl is not None:
                impl.close()  # the draft's worker holds a core of this process's while it lives
    out["same_tokens_as_ar"] = {label: t == tokens["AR"] for label, t in tokens.items()}
    out["load_average_at_end"] = os.getloadavg()[0]
    return out


def summarize(runs: list[dict], generated: list[int]) -> dict:
    """Medians over the requests, in ms: every phase, the end to end (median of the sums), the draft's
    decode work in all and the part of it the target hid."""
    def median_ms(values):
        return 1e3 * statistics.median(values)

    return {"phases_ms": {name: median_ms([r[name] for r in runs]) for name in PHASES},
            "end_to_end_ms": median_ms([sum(r[name] for name in PHASES) for r in runs]),
            "before_decode_ms": median_ms([sum(r[name] for name in PHASES if name not in DECODE_PHASES) for r in runs]),
            "draft_busy_ms": median_ms([r["draft_busy"] for r in runs]),
            "draft_hidden_ms": median_ms([r["draft_hidden"] for r in runs]),
            "generated_mean": sum(generated) / len(generated)}


AR_DECODE = "AR decode (the target's own steps)"


def segment_name(label: str, phase: str) -> str:
    """The name a phase is drawn under: AR's decode is every step of the target, not a verification (its
    numbers keep it under "verify decode", the one target phase of the decode)."""
    return AR_DECODE if label == "AR" and phase == "verify decode" else phase


def plot(numbers: dict):
    import matplotlib

    colors = dict(zip(PHASES, matplotlib.colormaps["tab10"].colors, strict=True))
    colors[AR_DECODE] = style.DECODING_COLORS["ar"]
    labels = list(numbers["methods"])
    fig, axes = style.subplots(1, 2, 13, 0.55 * len(labels) + 2.4, sharey=True,
                               gridspec_kw={"width_ratios": [3, 2]})
    before = [name for name in PHASES if name not in DECODE_PHASES]
    for ax, names, title in ((axes[0], PHASES, "the whole request"), (axes[1], before, "before the decode (zoomed)")):
        longest, legend = 0.0, set()
        for y, label in enumerate(labels):
            left = 0.0
            for name in names:
                width = numbers["methods"][label]["phases_ms"][name]
                shown = segment_name(label, name)
                ax.barh(y, width, left=left, color=colors[shown], edgecolor="white", linewidth=0.5,
                        hatch="//" if shown == AR_DECODE else None, label=None if shown in legend else shown)
                legend.add(shown)
                left += width
            ax.text(left, y, f" {left:.0f} ms", va="center", fontsize=8)
            longest = max(longest, left)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("wall time (ms): each phase's median, stacked")
        ax.grid(axis="x", alpha=0.3)
        ax.set_xlim(0, 1.15 * longest)  # room for the totals
    axes[0].set_yticks(range(len(labels)), labels)
    axes[0].invert_yaxis()
    handles, names = axes[0].get_legend_handles_labels()
    fig.legend(handles, names, loc="lower center", ncol=(len(names) + 1) // 2, fontsize=8, frameon=False)
    fig.suptitle(f"Latency per phase of one request: zoo {numbers['pair']}, {numbers['frames']} frames, "
                 f"{numbers['max_new_tokens']} new tokens max, gamma {numbers['gamma']}, pruning ratio "
                 f"{numbers['ratio']}; median over {numbers['n']} zoo test videos", fontsize=10)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    return fig


NOTES = ["AR's decode is drawn as such (hatched): every one of its steps is a target forward, no verification",
         "PEARL and HIPPO: the worker prepares and encodes the video for the draft while this process works on "
         "the target; their 'draft prefill' is this process's wait for the worker's pruned prefill",
         "draft decode: the draft's work the target did not hide (all of it in serial SD); decode other: the rest "
         "of the decode's wall time (messages, waits, the loop's host work)"]


def check_lossless(numbers: dict) -> None:
    """Refuses to draw a measurement where any method's greedy tokens differed from AR's on a video."""
    differ = sorted(label for label, same in numbers.get("same_tokens_as_ar", {}).items() if not same)
    if differ:
        raise ValueError(f"latency: the greedy tokens of {', '.join(differ)} differ from AR's on at least one video: "
                         "not lossless, nothing is drawn; run `hippo verify` on this code and fix the decode")
    if "same_tokens_as_ar" not in numbers:
        raise ValueError("latency: the measurement records no token check against AR (same_tokens_as_ar): delete "
                         "results/latency.json and rerun `hippo figures --only latency`")


def build(job: FigureJob) -> Outcome:
    numbers = job.measurement("latency", lambda: measure(job))
    check_lossless(numbers)
    return Outcome(figures=[job.save(plot(numbers), "latency")], numbers=numbers, notes=list(NOTES))
