"""The device check of hippo_fast's GPU paths (issue 27): one command, one machine, within 8 minutes on
an H100, and its twin on a CPU with the tiny config (tests/test_gpu_check.py), so it cannot rot.

    python scripts/gpu_check.py --device cuda --out reports/gpu-check      # what `nox -s gpu` runs
    python scripts/gpu_check.py --device cpu --out /tmp/gpu-check          # the twin (no compile, tiny bench)

Every check compares hippo_fast with hippo_ref ON THE SAME DEVICE (float64 sampling on a GPU is not
bit-identical to a CPU's, so seeded tokens are compared within a device), on hippo.tiny's random pair
(fp32, EOS off so every decode runs its full length):
  fast-vs-ref        AR / SD / PEARL, greedy and seeded sampling, the serial schedules
  compiled           the same through torch.compile (CUDA graphs on a GPU): the tokens, inductor's count
                     of graphs it skipped (must be 0), a second request that records nothing new
  streams            PEARL on two CUDA streams (serial calls on a CPU); with CUDA graphs on one GPU the
                     refusal must come instead (one graph memory pool)
  processes          PEARL with the draft in its own process on the same device (gloo), greedy and seeded
  host-syncs         an SD and a PEARL decode under torch.cuda.set_sync_debug_mode("error") (on a CPU:
                     hippo_fast.host_syncs counts the same reads): the decode's own reads are its one per
                     round (host_syncs.intended); the stock model's eager forward is left out, a compiled
                     one is not
  bench-systems      paper/measure/systems.py's smaller real-size preset (llava-ov-0.5b-7b, 8 frames, one
                     timed pass; `tiny` on a CPU), its equality gate included
Writes gpu-check.json and gpu-check.md (and the benchmark's own JSON and Markdown) under --out; exit
status 0 when every check passed, 1 otherwise (the failures are in both files).
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
PROMPT = "what moves"
NO_EOS = (-1,)  # every decode runs to max_new_tokens


class Checks:
    """Runs named checks, each a function returning a detail dict; a failure is recorded, not raised."""

    def __init__(self):
        self.rows: list[dict] = []

    def run(self, name: str, fn) -> None:
        start = time.perf_counter()
        try:
            detail, ok = fn() or {}, True
            if isinstance(detail, dict) and detail.get("skipped"):
                ok = None
        except Exception as err:  # noqa: BLE001 - every failure is a result of the check
            detail, ok = {"error": f"{type(err).__name__}: {err}", "trace": traceback.format_exc()[-2000:]}, False
        self.rows.append({"check": name, "ok": ok, "seconds": round(time.perf_counter() - start, 2), "detail": detail})
        print(f"gpu check: {name}: {'ok' if ok else 'skipped' if ok is None else 'FAILED'}", file=sys.stderr)

    @property
    def passed(self) -> bool:
        return all(row["ok"] is not False for row in self.rows)


def equal_tokens(got, want, what: str) -> dict:
    if got != want:
        first = next((i for i, (a, b) in enumerate(zip(got, want, strict=False)) if a != b), min(len(got), len(want)))
        raise AssertionError(f"{what}: tokens differ from hippo_ref's at index {first} (of {len(want)})")
    return {"tokens": len(want)}


class Setup:
    """The tiny pair on the device, one clip, requests."""

    def __init__(self, device: str, work: Path, tokens: int):
        from hippo.checkpoint import load_adapter
        from hippo.tiny import write_tiny_pair
        from paper.measure.systems import synthetic_clips

        self.device, self.tokens = device, tokens
        self.target_dir, self.draft_dir = (str(p) for p in write_tiny_pair(work / "tiny", "qwen2_5_vl"))
        self.target = load_adapter(self.target_dir, "float32", device)
        self.draft = load_adapter(self.draft_dir, "float32", device)
        self.clip = synthetic_clips(work, [4], 112)[0][4]

    def request(self, decoding: str, sampled: bool, gamma: int = 3):
        from hippo.request import DecodeConfig, GenerationRequest, PruneSpec, SamplingParams

        params = SamplingParams(1.0, top_k=20) if sampled else SamplingParams()
        config = DecodeConfig(max_new_tokens=self.tokens, gamma=gamma, sampling=params, draft_sampling=params, seed=3,
                              eos_token_ids=NO_EOS)
        return GenerationRequest(self.clip.path, PROMPT, 4, decoding, PruneSpec(), config=config)

    def generate(self, impl, decoding: str, sampled: bool, draft=None):
        from hippo.generation import generate

        return generate(impl, self.target, self.draft if draft is None else draft,
                        self.request(decoding, sampled), clip=self.clip)

    def against_ref(self, impl, decodings=("ar", "sd", "pearl"), samplings=(False, True), draft=None) -> dict:
        from hippo.generation import implementation

        out = {}
        for decoding in decodings:
            for sampled in samplings:
                label = f"{decoding} {'seeded' if sampled else 'greedy'}"
                want = self.generate(implementation("ref"), decoding, sampled).tokens
                out[label] = equal_tokens(self.generate(impl, decoding, sampled, draft).tokens, want, label)
        return out


def check_fast_vs_ref(setup: Setup) -> dict:
    from hippo.generation import implementation

    return setup.against_ref(implementation("fast"))


def check_compiled(setup: Setup, on_cpu: bool) -> dict:
    from torch._dynamo.utils import counters

    from hippo.generation import implementation
    from hippo_fast.cache_pool import POOL

    if setup.device == "cpu" and not on_cpu:
        return {"skipped": "CPU: inductor's compile takes minutes here (--compile-on-cpu runs it)"}
    impl = implementation("fast", compile=True)
    skips = counters["inductor"]["cudagraph_skips"]
    out = setup.against_ref(impl, samplings=(False,))
    gc.collect()  # the requests' contexts give their caches back to the pool
    made = POOL.made
    again = equal_tokens(setup.generate(impl, "sd", False).tokens,
                         setup.generate(implementation("ref"), "sd", False).tokens, "sd greedy, second request")
    out.update({"second request": again, "caches made by the second request": POOL.made - made,
                "cudagraph_skips": counters["inductor"]["cudagraph_skips"] - skips})
    if out["cudagraph_skips"]:
        raise AssertionError(f"inductor skipped CUDA graphs {out['cudagraph_skips']} time(s): run with "
                             "TORCH_LOGS=perf_hints to see why")
    if setup.device != "cpu" and out["caches made by the second request"]:
        raise AssertionError("the second request allocated new caches: its graphs were recorded again")
    return out


def check_streams(setup: Setup) -> dict:
    from hippo.errors import ConfigError
    from hippo.generation import implementation

    out = setup.against_ref(implementation("fast", overlap="streams"), decodings=("pearl",))
    if torch.device(setup.device).type == "cuda":
        try:
            setup.generate(implementation("fast", compile=True, overlap="streams"), "pearl", False)
        except ConfigError as refused:
            out["compiled on one GPU"] = f"refused: {refused}"
        else:
            raise AssertionError("--compile --overlap streams on one GPU was not refused")
    return out


def check_processes(setup: Setup) -> dict:
    from hippo.generation import implementation
    from hippo_fast.overlap.processes import RemoteDraft, close_session

    try:
        return setup.against_ref(implementation("fast", overlap="processes"), decodings=("pearl",),
                                 draft=RemoteDraft(setup.draft_dir, "float32", setup.device))
    finally:
        close_session()


def check_host_syncs(setup: Setup, compiled: bool) -> dict:
    """SD and PEARL decodes with host reads made errors (CUDA) and counted (eager forwards) outside the
    decode's own. A compiled decode runs under CUDA's sync debug mode alone (a dispatch mode, which the
    counter is, would stop torch.compile from replaying its graphs)."""
    import contextlib

    from hippo.generation import implementation
    from hippo_fast.compiled import step_sizes
    from hippo_fast.decoding.parallel import decode_parallel
    from hippo_fast.decoding.speculative import decode_speculative
    from hippo_fast.host_syncs import HostSyncs, intended

    cuda = torch.device(setup.device).type == "cuda"
    if compiled and not cuda:
        return {"skipped": "CPU: there is no sync debug mode, and the compiled decode is the compiled check's"}
    impl = implementation("fast", compile=compiled)
    out = {}
    for decoding, run in (("sd", decode_speculative), ("pearl", decode_parallel)):
        request = setup.request(decoding, sampled=True)
        prepared = impl.prepare_contexts(setup.target, setup.draft, request, setup.clip)
        contexts = (prepared.target_context, prepared.draft_context)
        syncs = None if compiled else HostSyncs()
        if compiled:  # every shape recorded before the decode, as FastImplementation.decode does
            for context, sizes in zip(contexts, step_sizes(decoding, request.config.gamma), strict=True):
                context.warm(sizes, set())
        else:  # the stock eager forward's own reads are the model's, not the decode's
            for context in contexts:
                def allowed(*args, forward=context.forward_fn, device=context.device, counter=syncs, **kwargs):
                    with counter.paused(), intended(device):
                        return forward(*args, **kwargs)

                context.forward_fn = allowed
        with syncs or contextlib.nullcontext():
            if cuda:
                torch.cuda.set_sync_debug_mode("error")
            try:
                result = run(*contexts, request.config)
            finally:
                if cuda:
                    torch.cuda.set_sync_debug_mode(0)
        rounds = len(result.stats.accepted_per_round)
        out[decoding] = {"rounds": rounds, "sync debug mode": "error" if cuda else "n/a (CPU)"}
        if syncs is not None:
            if syncs.count != rounds + 3:  # the commits (rounds + the first), the EOS ids, the tokens returned
                raise AssertionError(f"{decoding}: {syncs.count} host reads for {rounds} rounds: {syncs.events[:12]}")
            out[decoding]["host reads"] = syncs.count
    return out


def check_bench_systems(device: str, out_dir: Path, timeout_s: float) -> dict:
    cuda = torch.device(device).type == "cuda"
    preset = ["--preset", "llava-ov-0.5b-7b", "--frames", "8", "--dtype", "bfloat16", "--max-new-tokens", "32"]
    if not cuda:
        preset = ["--preset", "tiny", "--frames", "4", "--dtype", "float32", "--max-new-tokens", "9", "--gamma", "3"]
    argv = [sys.executable, "-m", "paper.measure.systems", *preset, "--device", device, "--acceptance", "self",
            "--repeats", "1", "--json", str(out_dir / "bench-systems.json"),
            "--markdown", str(out_dir / "bench-systems.md")]
    run = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=timeout_s)
    if run.returncode != 0:
        raise AssertionError(f"exit status {run.returncode}: {run.stderr[-1500:]}")
    return {"command": " ".join(argv[1:]), "json": "bench-systems.json", "markdown": "bench-systems.md"}


def environment(device: str) -> dict:
    env = {"device": device, "torch": torch.__version__, "python": platform.python_version(),
           "machine": platform.node()}
    if torch.device(device).type == "cuda":
        env.update(gpu=torch.cuda.get_device_name(device), cuda=torch.version.cuda)
    return env


def _brief(value) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k} {v}" for k, v in value.items())
    return str(value)


def render_markdown(report: dict) -> str:
    env = report["environment"]
    lines = [f"# hippo_fast device check: {env.get('gpu', env['device'])}", "",
             f"`{report['command']}`, torch {env['torch']}, {report['date']}: "
             f"{'every check passed' if report['passed'] else 'FAILURES below'}.", "",
             "| check | result | s | detail |", "|---|---|---|---|"]
    for row in report["checks"]:
        result = {True: "ok", False: "FAILED", None: "skipped"}[row["ok"]]
        detail = row["detail"].get("error") or row["detail"].get("skipped") or "; ".join(
            f"{k}: {_brief(v)}" for k, v in row["detail"].items())
        lines.append(f"| {row['check']} | {result} | {row['seconds']} | {str(detail).replace('|', '/')[:400]} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python scripts/gpu_check.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda", help="cuda[:N] (the check) or cpu (its twin)")
    parser.add_argument("--out", default="reports/gpu-check", help="folder for gpu-check.json / .md")
    parser.add_argument("--tokens", type=int, default=24, help="new tokens per decode")
    parser.add_argument("--compile-on-cpu", action="store_true", help="run the compiled check on a CPU too")
    parser.add_argument("--skip", nargs="*", default=[], help="checks to leave out (their names)")
    parser.add_argument("--bench-timeout", type=float, default=300.0, help="seconds for the systems benchmark")
    args = parser.parse_args(argv)
    from hippo.devices import check_device

    check_device(args.device)
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    checks = Checks()
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as work:
        setup = Setup(args.device, Path(work), args.tokens)
        plan = [("fast-vs-ref", lambda: check_fast_vs_ref(setup)),
                ("compiled", lambda: check_compiled(setup, args.compile_on_cpu)),
                ("streams", lambda: check_streams(setup)),
                ("processes", lambda: check_processes(setup)),
                ("host-syncs eager", lambda: check_host_syncs(setup, compiled=False)),
                ("host-syncs compiled", lambda: check_host_syncs(setup, compiled=True)),
                ("bench-systems", lambda: check_bench_systems(args.device, out_dir, args.bench_timeout))]
        for name, fn in plan:
            if name.split()[0] not in args.skip and name not in args.skip:
                checks.run(name, fn)
    report = {"command": " ".join(["python scripts/gpu_check.py", *(argv if argv is not None else sys.argv[1:])]),
              "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "environment": environment(args.device),
              "passed": checks.passed, "checks": checks.rows}
    (out_dir / "gpu-check.json").write_text(json.dumps(report, indent=1) + "\n")
    (out_dir / "gpu-check.md").write_text(render_markdown(report))
    print(render_markdown(report), end="")
    return 0 if checks.passed else 1


def cli(argv: list[str] | None = None) -> int:
    """main(), with a bad argument or a missing device as one line on stderr and exit status 2."""
    from hippo.errors import HippoError

    try:
        return main(argv)
    except HippoError as err:
        print(f"gpu check: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    raise SystemExit(cli())
