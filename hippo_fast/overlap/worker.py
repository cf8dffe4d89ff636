"""The draft's process: it serves jobs from the target's process (rank 0) until told to stop.

Started with `--preload PATH`, it loads that draft before it joins the process group (its start-up,
which overlaps the target's load in `hippo generate`). Its torch threads follow its core(s)
(hippo/placement.py); its placement is in every "ready" and "loaded" reply.

Its jobs and their replies are hippo_fast/overlap/protocol.py's.
A job that fails replies ("error", id, message) and the worker keeps serving. A failure inside a decode
(the target is then waiting for a BLOCK, not an object) is written to the parent's pipe and ends the
worker; the target's receive fails at once and reads the message (processes.DraftWorker).
"""

from __future__ import annotations

import os
import time
import traceback
from collections import OrderedDict

from hippo import placement
from hippo.pairing import vocabulary_hash
from hippo_fast import compiled
from hippo_fast.cache import kv_row_bytes, max_positions, static_prefill
from hippo_fast.decoding.parallel_split import draft_parallel
from hippo_fast.overlap.link import backend_for, init_group, link_for
from hippo_fast.overlap.protocol import WORKER_IDLE_TIMEOUT_S, DraftJob

KEEP_CONTEXTS = 64  # prepared draft contexts kept for reuse (the audit decodes each case many times)


class Server:
    """The worker's state: loaded drafts, prepared contexts."""

    def __init__(self, link):
        self.link = link
        self.adapters = {}
        self.contexts: OrderedDict = OrderedDict()

    def adapter(self, job: DraftJob):
        return self.load((job.path, job.dtype, job.device))

    def load(self, key: tuple[str, str, str]):
        """The draft (path, dtype, device), loaded once."""
        from hippo.checkpoint import load_adapter

        if key not in self.adapters:
            self.adapters[key] = load_adapter(*key)
        return self.adapters[key]

    def loaded_facts(self, key: tuple[str, str, str], load_s: float) -> dict:
        """What the target's process needs to know of a loaded draft before a request: its cache's row size
        and maximum position (hippo_fast.cache.check_fits), this process's placement."""
        draft = self.adapters[key]
        dtype = next(draft.model.parameters()).dtype
        return {"load_s": load_s, "kv_row_bytes": kv_row_bytes(draft.model.config, dtype),
                "max_positions": max_positions(draft.model.config), "placement": placement.describe("draft")}

    def keep(self, job_id, context) -> None:
        self.contexts[job_id] = context
        self.contexts.move_to_end(job_id)
        while len(self.contexts) > KEEP_CONTEXTS:
            self.contexts.popitem(last=False)

    def prepare_video(self, job_id, job: DraftJob) -> None:
        started = time.perf_counter()
        failure = None
        try:
            draft = self.adapter(job)
            inputs = draft.prepare(job.clip, job.prompt)
            embeds = draft.encode_video(inputs)  # while the target prefills and scores
        except Exception as err:  # noqa: BLE001 - answered after the kept indices (never send while it sends)
            failure = err
        encoded = time.perf_counter()
        message = self.link.recv_object()
        if message[0] != "kept" or message[1] != job_id:
            raise RuntimeError(f"draft worker: expected the kept indices of job {job_id}, got {message[:2]}")
        if failure is not None:
            raise failure
        context = static_prefill(draft, inputs, job.capacity, kept_grid_indices=message[2], positions=job.positions,
                                 video_embeds=embeds,
                                 forward_fn=compiled.compiled_forward(draft.model) if job.compile else None)
        if job.compile:  # capture the one-token step now, not in the first round
            compiled.warm(context, (1,))
        self.keep(job_id, context)
        self.link.send_object(("ready", job_id, {
            "grid": inputs.grid, "vocab_sha256": vocabulary_hash(draft.tokenizer), "name": draft.name,
            "encode_s": encoded - started, "prefill_s": time.perf_counter() - encoded, "pid": os.getpid(),
            "placement": placement.describe("draft")}))

    def serve(self) -> None:
        while True:
            message = self.link.recv_object()
            kind = message[0]
            if kind == "stop":
                return
            job_id = message[1]
            if kind == "decode":
                _, _, cfg, vocab = message
                self.link.send_object(draft_parallel(self.contexts[job_id], self.link, cfg, vocab))
                continue
            try:
                if kind == "load":
                    started = time.perf_counter()
                    self.load(message[2])
                    self.link.send_object(("loaded", job_id, self.loaded_facts(message[2], time.perf_counter() - started)))
                elif kind == "video":
                    self.prepare_video(job_id, message[2])
                elif kind == "table":
                    self.keep(job_id, message[2])
                    self.link.send_object(("ready", job_id, {"pid": os.getpid()}))
                elif kind == "step_time":
                    self.link.send_object(("step_time", job_id, self.contexts[job_id].step_time(message[2])))
                elif kind == "release":
                    self.contexts.pop(job_id, None)
                else:
                    raise RuntimeError(f"draft worker: unknown job {kind!r}")
            except Exception as err:  # a job that fails is answered; the worker keeps serving
                from hippo.errors import HippoError

                detail = str(err) if isinstance(err, HippoError) else f"{type(err).__name__}: {err}"
                self.link.send_object(("error", job_id, detail))


def pin(cores: tuple[int, ...] | None) -> dict:
    """One process's share of the machine: its cores (if given), its torch threads following them."""
    if cores:
        os.sched_setaffinity(0, set(cores))
    return placement.follow_cores()


class StatusPipe:
    """The worker's words to the process that spawned it, one JSON line each: ["alive", pid] or
    ["error", text]. A file descriptor of its own, so that nothing a library prints can garble it."""

    def __init__(self, fd: int):
        self.file = os.fdopen(fd, "w", buffering=1)

    def send(self, word) -> None:
        import json

        self.file.write(json.dumps(word) + "\n")
        self.file.flush()


def spawned_main(init_method: str, status: StatusPipe, cores, device: str, timeout_s: float,
                 backend: str = "gloo", preload: tuple[str, str, str] | None = None) -> None:
    """Entry of a worker started by processes.DraftWorker.launch: check the device, load `preload`, join
    the process group (rank 1 of 2), serve. Start-up failures and crashes go to `status` as text before
    the exit; a draft that cannot be loaded is not one (the job that asks for it is answered with why)."""
    import datetime

    import torch.distributed as dist

    try:
        pin(cores)
        from hippo.devices import check_device

        dev = check_device(device)
        status.send(["alive", os.getpid()])
        server = Server(None)
        facts = {"placement": placement.describe("draft")}
        if preload is not None:
            started = time.perf_counter()
            try:
                server.load(preload)
                facts["loaded"] = server.loaded_facts(preload, time.perf_counter() - started)
            except Exception:  # noqa: BLE001 - answered when a job asks for this draft
                pass
        status.send(["ready", {**facts, "ready_at": time.perf_counter()}])
        # The spawning process hosts the store (processes.DraftWorker.launch); both sides pass it explicitly,
        # so that their group's keys agree (torch prefixes a store it builds from init_method, not a given one).
        host, port = init_method.removeprefix("tcp://").rsplit(":", 1)
        timeout = datetime.timedelta(seconds=timeout_s)
        store = dist.TCPStore(host, int(port), world_size=2, is_master=False, timeout=timeout)
        init_group(backend, dev, store=store, rank=1, world_size=2, timeout=timeout)
        server.link = link_for(0, backend, dev)
        if backend == "nccl":  # a dead target is not noticed by an NCCL receive: watch it (link.py)
            parent = os.getppid()
            server.link.watch = lambda: None if os.getppid() == parent else "the target's process ended"
        server.serve()
        dist.destroy_process_group()
    except Exception as err:
        from hippo.errors import HippoError

        detail = str(err) if isinstance(err, HippoError) else "".join(traceback.format_exception(err))[-3000:]
        try:
            status.send(["error", detail])
        except (BrokenPipeError, OSError):
            pass
        raise SystemExit(1) from None


def main(argv=None) -> None:
    """`python -m hippo_fast.overlap.worker ...`: how DraftWorker.spawn starts a worker (a fresh
    interpreter: nothing of the parent's __main__ is re-imported)."""
    import argparse

    parser = argparse.ArgumentParser(description="hippo's draft worker (started by hippo, not by hand)")
    parser.add_argument("--init-method", required=True)
    parser.add_argument("--status-fd", type=int, required=True)
    parser.add_argument("--cores", default="", help="comma-separated core numbers, empty: no pinning")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--timeout", type=float, default=WORKER_IDLE_TIMEOUT_S,
                        help="seconds to wait for the next job (the process group's timeout)")
    parser.add_argument("--backend", default="gloo", choices=["gloo", "nccl"])
    parser.add_argument("--preload", default=None, help="a draft folder to load before joining")
    parser.add_argument("--preload-dtype", default="float32")
    args = parser.parse_args(argv)
    cores = tuple(int(c) for c in args.cores.split(",") if c) or None
    preload = None if args.preload is None else (args.preload, args.preload_dtype, args.device)
    spawned_main(args.init_method, StatusPipe(args.status_fd), cores, args.device, args.timeout, args.backend,
                 preload)


def serve_under_torchrun(device: str = "cpu", target_device: str = "cpu",
                         timeout_s: float = WORKER_IDLE_TIMEOUT_S) -> None:
    """Rank 1 under torchrun (WORLD_SIZE=2): join the group torchrun describes and serve rank 0, over NCCL
    between two GPUs (rank 0 decides the same from the same devices: processes.DraftWorker.attach)."""
    import datetime

    import torch.distributed as dist

    placement.follow_cores(threads=placement.torchrun_share(placement.allowed_cores()))  # the ranks share the cores
    backend = backend_for(target_device, device)
    if not dist.is_initialized():
        init_group(backend, device, timeout=datetime.timedelta(seconds=timeout_s))
    Server(link_for(0, backend, device)).serve()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
