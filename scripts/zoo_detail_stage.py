"""Train the detailed-caption stage of the zoo in one sequential run, resumable, in the background.

qwen-target (its recipe's stage 3, seeded from the shipped weights as stages 0-2), llava-target
(stage 4, from the shipped stages 0-3), then both drafts from scratch on their targets' new towers
(stage 0 as before, stage 1 on the detailed-caption mix): `hippo zoo train NAME` for each, in that
order, on one work dir (hippo/zoo/registry.py holds the steps). Nothing is exported to
hippo/zoo/checkpoints: the weights land in WORK_DIR/export/NAME when all four are done, to be
measured (`hippo zoo table` on them) before anything replaces the shipped checkpoints.

Start, and resume after any stop (the same command: every model resumes from its last saved step,
batches being a function of (seed, step), so a resumed run equals an uninterrupted one):

    cd /work/main && OMP_NUM_THREADS=1 nohup taskset -c 1 .venv/bin/python scripts/zoo_detail_stage.py \\
        --work-dir /work/zoo-train >> /work/zoo-train/train.log 2>&1 &

The driver makes itself a process-group leader and writes WORK_DIR/train.pid and WORK_DIR/train.pgid;
pause and continue with `kill -STOP -- -$(cat WORK_DIR/train.pgid)` / `kill -CONT -- -$(...)` (one
process, no children; the state file is replaced atomically, so a stop at any point is safe). The log
gets a tqdm bar line every 20 s and a pipeline line (steps, s/step, ETA of the model and of the whole
run) every 50 steps; each model's JSON loss lines are in WORK_DIR/NAME/train.log.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from hippo.zoo.registry import zoo_model
from hippo.zoo.train import completed_stages, export_model, pretrain_vision, start_from_shipped, train_model

# (model, recipe stages the shipped weights stand for; None: train every stage from scratch)
PIPELINE = (("qwen-target", 3), ("llava-target", 4), ("qwen-draft", None), ("llava-draft", None))
# Seconds per step measured 2026-12-01 on one core (for the whole-run ETA of models not started yet).
SECONDS_PER_STEP = {("qwen-target", 3): 2.75, ("llava-target", 4): 3.4, ("qwen-draft", 0): 0.72,
                    ("qwen-draft", 1): 1.14, ("llava-draft", 0): 1.04, ("llava-draft", 1): 1.4}


class LineFile:
    """A file for tqdm that ends every refresh with a newline (a log file, not a terminal)."""

    def __init__(self, stream):
        self.stream = stream

    def write(self, text: str) -> None:
        text = text.replace("\r", "").strip("\n")
        if text.strip():
            self.stream.write(text + "\n")

    def flush(self) -> None:
        self.stream.flush()


def _hms(seconds: float) -> str:
    seconds = int(max(0, seconds))
    return f"{seconds // 3600}h{seconds // 60 % 60:02d}m"


def _remaining_plan(work_dir: Path, after: tuple[str, int] | None) -> float:
    """Estimated seconds of the stages not yet started, after stage `after` (model, index)."""
    total, seen = 0.0, after is None
    for name, _ in PIPELINE:
        done = completed_stages(name, work_dir)
        for index, stage in enumerate(zoo_model(name).stages):
            if (name, index) == after:
                seen = True
                continue
            if seen and index not in done and (name, index) in SECONDS_PER_STEP:
                total += stage.steps * SECONDS_PER_STEP[name, index]
    return total


def _claim(work_dir: Path) -> None:
    """Refuse to run beside a live driver; become a process-group leader; write train.pid / train.pgid."""
    pid_file = work_dir / "train.pid"
    if pid_file.is_file():
        try:
            other = int(pid_file.read_text().split()[0])
        except (ValueError, IndexError):
            other = None
        if other and other != os.getpid():
            try:
                os.kill(other, 0)
                cmdline = Path(f"/proc/{other}/cmdline").read_bytes().decode(errors="replace")
            except (ProcessLookupError, FileNotFoundError, PermissionError):
                cmdline = ""
            if "zoo_detail_stage" in cmdline:
                raise SystemExit(f"a driver is already running (pid {other}, {pid_file}): resume it with "
                                 f"kill -CONT -- -$(cat {work_dir / 'train.pgid'}), or stop it before starting another")
    if os.getpgid(0) != os.getpid():
        os.setsid()  # its own session and process group, so that kill -STOP -PGID reaches exactly this run
    pid_file.write_text(f"{os.getpid()}\n")
    (work_dir / "train.pgid").write_text(f"{os.getpgid(0)}\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work-dir", default="/work/zoo-train", help="training state, logs, exports")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    work_dir = Path(args.work_dir).resolve()
    work_dir.mkdir(parents=True, exist_ok=True)
    _claim(work_dir)
    bar_file = LineFile(sys.stderr)

    def say(text: str) -> None:
        print(f"[{time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime())} UTC] {text}", file=sys.stderr, flush=True)

    say(f"driver pid {os.getpid()} pgid {os.getpgid(0)}; work dir {work_dir}; plan: "
        + ", ".join(f"{name} stages {[i for i in range(len(zoo_model(name).stages)) if i not in completed_stages(name, work_dir)]}"
                    for name, _ in PIPELINE)
        + f"; estimated {_hms(_remaining_plan(work_dir, None))} on one core")
    for name, shipped_stages in PIPELINE:
        state = work_dir / name / "state.pt"
        if shipped_stages is not None and not state.is_file():
            say(f"{name}: seeded from the shipped weights as stages 0-{shipped_stages - 1}: "
                f"{start_from_shipped(name, shipped_stages, work_dir)}")
        spec = zoo_model(name)
        while True:
            todo = [i for i in range(len(spec.stages)) if i not in completed_stages(name, work_dir)]
            if not todo:
                break
            index = todo[0]
            clock = {"t0": time.time(), "s0": None}

            def on_step(step: int, steps: int, name=name, index=index, clock=clock) -> None:
                if clock["s0"] is None:
                    clock["s0"], clock["t0"] = step - 1, time.time()  # the first step of this process
                if step % 50 and step != steps:
                    return
                rate = (time.time() - clock["t0"]) / max(1, step - clock["s0"])
                left = (steps - step) * rate
                total = left + _remaining_plan(work_dir, (name, index))
                say(f"[pipeline] {name} stage {index}: step {step}/{steps} ({100 * step / steps:.0f}%), {rate:.2f} s/step "
                    f"(wall, pauses included), stage ETA {_hms(left)}, whole run ETA {_hms(total)} "
                    f"(~{time.strftime('%H:%M', time.gmtime(time.time() + total))} UTC)")

            say(f"{name} stage {index}: {spec.stages[index]}")
            if spec.stages[index].kind == "vision":  # not in this pipeline's remaining stages; for completeness
                result = pretrain_vision(name, stage=index, seed=args.seed, work_dir=work_dir, threads=args.threads)
            else:
                result = train_model(name, stage=index, seed=args.seed, work_dir=work_dir, threads=args.threads,
                                     export=False, progress_file=bar_file, on_step=on_step)
            say(f"{name}: {json.dumps(result, default=str)}")
            if index not in completed_stages(name, work_dir):
                say(f"{name} stage {index} did not finish; run this command again to resume")
                return 1
    for name, _ in PIPELINE:
        say(f"exported {export_model(name, work_dir, out=work_dir / 'export' / name)}")
    (work_dir / "DONE").write_text(time.strftime("%Y-%m-%d %H:%M:%S UTC\n", time.gmtime()))
    say("done: measure WORK_DIR/export/* (docs/ZOO.md) before replacing hippo/zoo/checkpoints")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
