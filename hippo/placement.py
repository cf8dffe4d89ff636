"""Where a process runs and how many torch threads it uses: its threads follow its cores.

A process's torch intra-op thread count is the number of cores it may run on (its CPU affinity,
`os.sched_getaffinity`), whatever OMP_NUM_THREADS or torch's default says: more threads than cores
spin against each other (issue 25: the target's process narrowed to one core while torch kept two
threads made every target round 100x slower). The inter-op pool follows too, with torch's limit that
it can be sized once per process, before any inter-op work: it is sized at the first call here to the
fewest cores the process will hold (`follow_cores(..., interop_cores=...)`), so a later narrowing
never leaves it larger than the cores.

`describe(role)` is the record of one process's placement that `--json` carries in its stats
(`RequestStats.placement`: one entry per process of the request).
"""

from __future__ import annotations

import logging
import os

import torch

LOG = logging.getLogger("hippo.placement")
_LOGGED: set = set()


def allowed_cores() -> tuple[int, ...]:
    """The cores this process may run on (its affinity; every core where the OS has no affinity call)."""
    if hasattr(os, "sched_getaffinity"):
        return tuple(sorted(os.sched_getaffinity(0)))
    return tuple(range(os.cpu_count() or 1))


def split_cores(allowed) -> tuple[tuple[int, ...], tuple[int, ...] | None]:
    """(the target's process's cores, the draft worker's): the worker takes the last allowed core when
    there are two or more; on one core both share it (None: no pinning)."""
    cores = sorted(allowed)
    if len(cores) < 2:
        return tuple(cores), None
    return tuple(cores[:-1]), (cores[-1],)


def torchrun_share(cores) -> int:
    """Threads of one rank under torchrun: its cores shared among the ranks of its machine
    (LOCAL_WORLD_SIZE), at least one."""
    return max(1, len(cores) // max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1"))))


def set_interop_threads(count: int) -> bool:
    """Size torch's inter-op pool to `count` if it can still be sized (once per process, before any
    inter-op work: torch's rule). Returns whether it was."""
    try:
        torch.set_num_interop_threads(max(1, count))
    except RuntimeError:  # sized already, or inter-op work has started: it keeps its size
        return False
    return True


def follow_cores(cores: tuple[int, ...] | None = None, interop_cores: int | None = None,
                 threads: int | None = None) -> dict:
    """Set this process's torch threads to the number of `cores` (default: its affinity; `threads`: that
    many instead, never more than the cores) and, if it can still be sized, the inter-op pool to
    `interop_cores` (default: the same number). Returns describe()."""
    count = len(cores or allowed_cores())
    count = min(count, threads) if threads else count
    torch.set_num_threads(max(1, count))
    set_interop_threads(min(interop_cores or count, count))
    return describe()


def describe(role: str = "target+draft") -> dict:
    """This process's placement as it is now: role, pid, cores, intra-op and inter-op thread counts."""
    return {"role": role, "pid": os.getpid(), "cores": list(allowed_cores()), "threads": torch.get_num_threads(),
            "interop_threads": torch.get_num_interop_threads()}


def core_list(cores) -> str:
    """"0-3,6" for (0, 1, 2, 3, 6): a set of cores as taskset writes it."""
    cores, parts, start = sorted(cores), [], None
    for i, core in enumerate(cores):
        if start is None:
            start = core
        if i + 1 == len(cores) or cores[i + 1] != core + 1:
            parts.append(str(start) if start == core else f"{start}-{core}")
            start = None
    return ",".join(parts)


def log_once(text: str) -> None:
    """Log a placement decision (INFO, logger hippo.placement) the first time it is made in this process."""
    if text not in _LOGGED and LOG.isEnabledFor(logging.INFO):
        _LOGGED.add(text)
        LOG.info(text)
