"""Two processes through torch.distributed: this one holds the target (rank 0, it decides acceptance),
a worker holds the draft (rank 1, hippo_fast/overlap/worker.py). NCCL between two GPUs, gloo otherwise
(CPU processes, or both on one GPU, where the small per-round messages go through host memory).

Started two ways:
  * `hippo generate --overlap processes` alone: DraftWorker.launch() starts the worker (a fresh
    interpreter) on its own core (the last of this process's cores) or its own device, and it loads
    the draft at once; `join()` then joins it at a free local port. The CLI launches it before it loads
    the target, so the two loads overlap; `session()` launches and joins in one call.
  * under torchrun (one machine or several, WORLD_SIZE=2): rank 1 serves (`hippo generate` on rank 1
    never returns to the CLI until rank 0 is done), rank 0 attaches to the group torchrun set up.

Placement (hippo/placement.py): the worker's torch threads follow its core(s); while a request uses the
worker (`narrow()`, from its video job to the end of its decode) this process runs on the other cores
with its threads following them, and gets its cores and threads back after (`widen()`), so serial work
between requests (the benchmark's other rows) has the whole machine. The worker's start-up (spawn,
imports, the draft's load, the process group) is measured apart (`take_startup`): it is not request time.

Failures: the worker checks its device before joining and reports through a pipe; a taken port, a
missing device or a worker that dies before joining is a WorkerError naming the cause. A worker
killed mid-request closes its sockets, so the target's next receive fails at once (gloo), and the
request ends with a WorkerError (with the worker's last words when it had any); the process-group
timeout bounds a worker that hangs. Under NCCL (two GPUs) a receive does not notice a dead peer: the
target's receives are watched (link.Link.watch: the worker's process polled, the per-round messages
bounded by the same timeout), which ends the request with the same WorkerError; the replies that wait
for the worker's load or compile are bounded by its life, not by the timeout.

The messages, jobs and timeouts are protocol.py's; the transport and the process group link.py's.
"""

from __future__ import annotations

import atexit
import datetime
import itertools
import os
import time

import torch

from hippo import placement
from hippo.errors import CheckpointError, HippoError
from hippo.pairing import vocabulary_hash
from hippo_fast.cache import as_fast_context
from hippo_fast.decoding.lanes import same_gpu
from hippo_fast.decoding.parallel_split import decode_parallel_target
from hippo_fast.overlap.link import backend_for, init_group, link_for
from hippo_fast.overlap.protocol import DEFAULT_TIMEOUT_S, START_TIMEOUT_S, WORKER_IDLE_TIMEOUT_S, DraftJob


class WorkerError(HippoError):
    """The draft's process could not start, or died or failed during a request."""


def _forget_failed_group() -> None:
    """Undo what a failed init_process_group leaves behind (only while no group is alive). torch names the default group by a counter
    it increments before the rendezvous and resets only when a live group is destroyed, so after one
    failure this process's next group reads its peer's store keys under another name than a fresh
    worker writes them, and both wait until the timeout (found 2026-12-02: the audit's two-process
    candidate hung after a port-taken test in the same pytest process)."""
    import torch.distributed as dist
    from torch.distributed import distributed_c10d

    if not dist.is_initialized() and hasattr(distributed_c10d, "_world"):
        distributed_c10d._world.group_count = 0


def watch_process(process):
    """link.Link's `watch` for a spawned worker: None while it runs, else how it ended."""

    def gone() -> str | None:
        code = process.poll()
        return None if code is None else f"the draft worker's process ended (status {code})"

    return gone


split_cores = placement.split_cores  # (this process's cores, the worker's)
torchrun_share = placement.torchrun_share  # threads of one rank under torchrun


class DraftWorker:
    """This process's side of the pair: the link, the worker's process (when spawned), its jobs."""

    def __init__(self, link, process=None, pipe=None, theirs=None):
        self.link = link
        self.process = process
        self.pipe = pipe
        self.theirs = theirs  # the worker's cores (None: not pinned, or not ours to know)
        self._ids = itertools.count()
        self.closed = False
        self.drafts: dict = {}  # (path, dtype, device) -> what the worker said when it loaded that draft
        self.placement: dict | None = None  # the worker's, as it reported it
        self._start: dict | None = None  # launch(): what join() needs
        self._startup_s = 0.0  # start-up (and draft loads) not yet reported by a request (take_startup)
        self._widened = None  # (cores, threads) of this process before narrow()
        self.backend = "gloo"
        self.lost = False  # a request lost it: under NCCL a receive from it is still posted (close() aborts)

    # ---- start ----------------------------------------------------------------------------------------
    @classmethod
    def spawn(cls, device: str = "cpu", port: int | None = None, timeout_s: float = DEFAULT_TIMEOUT_S,
              pin_cores: bool = True, target_device: str = "cpu", preload: RemoteDraft | None = None) -> DraftWorker:
        """launch() then join(): a worker ready to serve."""
        return cls.launch(device, port, timeout_s, pin_cores, target_device, preload).join()

    @classmethod
    def launch(cls, device: str = "cpu", port: int | None = None, timeout_s: float = DEFAULT_TIMEOUT_S,
               pin_cores: bool = True, target_device: str = "cpu", preload: RemoteDraft | None = None) -> DraftWorker:
        """Start the worker's process and return at once: it imports torch, checks its device, loads
        `preload` (a draft) and then waits for this process's join()."""
        import subprocess
        import sys

        import torch.distributed as dist

        if dist.is_initialized():
            raise WorkerError("a torch.distributed process group is already running in this process: under "
                              "torchrun, hippo attaches to it (run with WORLD_SIZE=2); do not spawn another")
        _forget_failed_group()  # an earlier failed start anywhere in this process (ours or not)
        explicit_port = port is not None
        # This process hosts the rendezvous store, made before the worker exists: a taken port fails here,
        # with nothing spawned and no process group half made (port 0: the OS picks a free one).
        try:
            store = dist.TCPStore("127.0.0.1", port or 0, world_size=2, is_master=True,
                                  timeout=datetime.timedelta(seconds=timeout_s), wait_for_workers=False)
        except Exception as err:  # noqa: BLE001 - torch raises DistNetworkError / RuntimeError by version
            if "EADDRINUSE" in str(err) or "address already in use" in str(err):
                hint = "pass another port, or free it" if explicit_port else "retry"
                raise WorkerError(f"cannot start the draft worker: port {port} is taken ({hint})") from None
            raise WorkerError(f"cannot start the draft worker: no rendezvous store on 127.0.0.1:{port or 0} "
                              f"({type(err).__name__}: {str(err)[:300]})") from None
        own, theirs = split_cores(placement.allowed_cores()) if pin_cores else (None, None)
        init_method = f"tcp://127.0.0.1:{store.port}"
        backend = backend_for(target_device, device)
        if same_gpu(target_device, device):  # two CUDA contexts on one GPU take turns unless MPS shares it
            placement.log_once(f"placement: the draft worker shares {torch.device(device)} with this process: without "
                               "NVIDIA MPS their kernels time-slice, so expect little overlap (a second GPU: "
                               "--draft-device cuda:1)")
        read_end, write_end = os.pipe()
        command = [sys.executable, "-m", "hippo_fast.overlap.worker", "--init-method", init_method,
                   "--status-fd", str(write_end), "--cores", ",".join(map(str, theirs or ())), "--device", device,
                   "--timeout", str(WORKER_IDLE_TIMEOUT_S), "--backend", backend]
        if preload is not None:
            command += ["--preload", preload.path, "--preload-dtype", preload.dtype]
        launched = time.perf_counter()
        process = subprocess.Popen(command, pass_fds=(write_end,))
        os.close(write_end)
        if theirs:
            placement.log_once(f"placement: the draft worker (pid {process.pid}) on core {placement.core_list(theirs)} "
                               f"with 1 torch thread; this process on core(s) {placement.core_list(own)} with "
                               f"{len(own)} thread(s) while a request uses the worker")
        elif own:
            placement.log_once(f"placement: one core ({placement.core_list(own)}): the draft worker (pid {process.pid}) "
                               "and this process share it, with 1 torch thread each")
        worker = cls(None, process, StatusReader(read_end), theirs)
        worker._start = {"store": store, "backend": backend, "init_method": init_method, "timeout_s": timeout_s,
                         "target_device": target_device, "launched": launched, "preload": preload}
        return worker

    @property
    def pending(self) -> bool:
        """Launched and not joined yet."""
        return self._start is not None

    def join(self) -> DraftWorker:
        """Wait for the launched worker (its start-up word, its draft's load) and join it in the process
        group. Its start-up, from the launch to its draft loaded, is kept for take_startup()."""
        start, self._start = self._start, None
        if start is None:
            return self
        try:
            _wait_alive(self.process, self.pipe)
            # Under NCCL the link bounds each receive itself (watched), so the group's own timeout, after
            # which NCCL aborts this process, must not come first.
            group_s = WORKER_IDLE_TIMEOUT_S if start["backend"] == "nccl" else start["timeout_s"]
            init_group(start["backend"], start["target_device"], store=start["store"], rank=0, world_size=2,
                       timeout=datetime.timedelta(seconds=group_s))
        except WorkerError:
            self.closed = True
            raise
        except Exception as err:
            self.process.kill()
            self.closed = True
            _forget_failed_group()
            raise WorkerError(f"cannot start the draft worker: joining the process group at {start['init_method']} "
                              f"failed ({type(err).__name__}: {str(err)[:300]})") from None
        ready = next((w for w in self.pipe.words(timeout_s=5.0) if w[0] == "ready"), None)  # sent before it joined
        facts = ready[1] if ready else {}
        self.placement = facts.get("placement")
        preload = start["preload"]
        if preload is not None and "loaded" in facts:
            self.drafts[preload.key] = facts["loaded"]
        ready_at = facts.get("ready_at", time.perf_counter())  # time.perf_counter: one clock for the machine
        self._startup_s += max(0.0, ready_at - start["launched"])
        self.link = link_for(1, start["backend"], start["target_device"])
        if start["backend"] == "nccl":
            self.link.watch, self.link.timeout_s = watch_process(self.process), start["timeout_s"]
        self.backend = start["backend"]
        return self

    @classmethod
    def attach(cls, timeout_s: float = DEFAULT_TIMEOUT_S, target_device: str = "cpu",
               draft_device: str = "cpu") -> DraftWorker:
        """Rank 0 under torchrun: join the group torchrun describes (env://), NCCL between two GPUs as for
        a spawned worker (rank 1 decides the same: worker.serve_under_torchrun)."""
        import torch.distributed as dist

        backend = backend_for(target_device, draft_device)
        if not dist.is_initialized():
            init_group(backend, target_device, timeout=datetime.timedelta(seconds=timeout_s))
        worker = cls(link_for(1, backend, target_device))
        worker.backend = backend
        return worker

    def load(self, draft: RemoteDraft) -> None:
        """Have the worker load `draft` now (a no-op when it has), so that a request does not pay for it."""
        if draft.key in self.drafts:
            return
        started = time.perf_counter()
        job_id = self.new_id()
        self.send(("load", job_id, draft.key))
        self.drafts[draft.key] = self.reply(job_id, "loaded")
        self.placement = self.drafts[draft.key].get("placement", self.placement)
        self._startup_s += time.perf_counter() - started

    def take_startup(self) -> float | None:
        """Seconds of this worker's start-up (launch to draft loaded) and of draft loads that no request has
        reported yet (then 0.0); None for a worker this process did not start (torchrun)."""
        if self.process is None and not self._startup_s:
            return None
        seconds, self._startup_s = self._startup_s, 0.0
        return seconds

    # ---- placement while a request runs -------------------------------------------------------------
    def narrow(self) -> None:
        """While a request uses the worker: this process off the worker's core (when the worker has one of
        its own), its torch threads following the cores it keeps (idempotent; widen() undoes it)."""
        if self._widened is not None or self.process is None:  # under torchrun the ranks share the cores as set
            return
        allowed = placement.allowed_cores()
        own = tuple(c for c in allowed if c not in (self.theirs or ())) or allowed
        self._widened = (set(allowed), torch.get_num_threads())
        if own != allowed:
            os.sched_setaffinity(0, set(own))
        placement.follow_cores(own)

    def widen(self) -> None:
        """This process's cores and thread count as they were before narrow()."""
        if self._widened is not None:
            cores, threads = self._widened
            self._widened = None
            os.sched_setaffinity(0, cores)
            torch.set_num_threads(threads)

    # ---- jobs -----------------------------------------------------------------------------------------
    def new_id(self) -> int:
        return next(self._ids)

    def send(self, message) -> None:
        self._guard(lambda: self.link.send_object(message))

    def reply(self, job_id, kind: str):
        """The worker's answer to job `job_id`: its payload, or WorkerError with the worker's message."""
        answer = self._guard(lambda: self.link.recv_object(patient=True))  # it may follow a load or compile
        if answer[0] == "error":
            raise WorkerError(f"the draft worker could not do job {job_id}: {answer[2]}")
        if answer[0] != kind or answer[1] != job_id:
            raise WorkerError(f"the draft worker answered {answer[:2]} to job {job_id} ({kind} expected)")
        return answer[2]

    def guard(self, fn):
        """Run `fn` (a step of the decode that talks to the worker), turning a lost worker into WorkerError."""
        return self._guard(fn)

    def _guard(self, fn):
        if self.closed:
            raise WorkerError("the draft worker is gone (an earlier request lost it); start a new one")
        try:
            return fn()
        except (RuntimeError, ConnectionError, TimeoutError) as err:
            if not _lost_peer(err):
                raise
            self.closed = self.lost = True
            raise WorkerError(self._obituary(err)) from None

    def _obituary(self, err) -> str:
        """What happened to the worker, in one message."""
        last = None
        if self.pipe is not None:
            for word in self.pipe.words(timeout_s=2.0):
                last = word
        if self.process is not None:
            try:
                self.process.wait(2.0)
            except Exception:  # noqa: BLE001 - still running: it stopped answering
                pass
            code = self.process.returncode
            if code is not None and code < 0:
                import signal

                status = f"was killed by {signal.Signals(-code).name}"
            elif code is not None:
                status = f"exited with status {code}"
            else:
                status = "stopped answering"
            who = f"the draft worker (pid {self.process.pid}) {status}"
        else:
            who = "the draft worker (rank 1) stopped answering"
        said = f"; it said: {last[1].strip()[-1500:]}" if last and last[0] == "error" else ""
        return (f"{who} during the request, which is abandoned (nothing was written){said} "
                f"[{type(err).__name__}: {str(err).splitlines()[0][:200]}]")

    def abandon(self) -> None:
        """End the worker without the stop message (the link is out of step), and the process group."""
        self.close(stop=False)

    def close(self, stop: bool = True) -> None:
        """Stop the worker (`stop`: ask it first and give it 5 s; else kill it), leave the process group,
        give this process its cores back."""
        import torch.distributed as dist

        if self.pending:  # launched, never joined: nothing to say to it
            self._start, stop = None, False
        if stop and not self.closed and self.link is not None:
            try:
                self.link.send_object(("stop",))
            except Exception:  # noqa: BLE001 - a worker already gone is what close wants
                pass
        self.closed = True
        if self.process is not None:
            try:
                self.process.wait(5.0 if stop else 0.0)
            except Exception:  # noqa: BLE001 - it did not stop: end it
                self.process.kill()
                self.process.wait()
        if dist.is_initialized():
            from torch.distributed import distributed_c10d

            if self.backend == "nccl" and self.lost and hasattr(distributed_c10d, "_abort_process_group"):
                distributed_c10d._abort_process_group()  # NCCL: a receive from the dead worker is still posted
            else:
                dist.destroy_process_group()
        self.widen()


def _lost_peer(err: BaseException) -> bool:
    """Is `err` torch.distributed telling that the other process is gone or silent (not a bug here)?"""
    import torch.distributed as dist

    text = str(err)
    return (isinstance(err, (ConnectionError, TimeoutError, dist.DistError))
            or any(marker in text for marker in ("Connection closed", "Connection reset", "gloo", "timed out",
                                                 "Timed out", "NCCL", "Broken pipe")))


class StatusReader:
    """This side of the worker's status pipe (worker.StatusPipe): JSON lines."""

    def __init__(self, fd: int):
        self.fd = fd
        self.buffer = b""
        self.eof = False

    def words(self, timeout_s: float):
        """Every complete word that arrives within `timeout_s` (stops early at EOF)."""
        import json
        import select

        deadline = time.monotonic() + timeout_s
        while not self.eof:
            while b"\n" in self.buffer:
                line, self.buffer = self.buffer.split(b"\n", 1)
                yield json.loads(line)
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.fd], [], [], left)[0]:
                return
            chunk = os.read(self.fd, 65536)
            if not chunk:
                self.eof = True
            self.buffer += chunk


def _wait_alive(process, status: StatusReader, timeout_s: float = START_TIMEOUT_S) -> None:
    """Wait for the spawned worker's first word: alive, or the reason it cannot start."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for word in status.words(timeout_s=0.2):
            if word[0] == "alive":
                return
            process.wait(5.0)
            raise WorkerError(f"cannot start the draft worker: {word[1].strip()}")
        if process.poll() is not None:
            raise WorkerError(f"cannot start the draft worker: it exited with status {process.returncode} before "
                              "saying why (see its output above)")
    process.kill()
    raise WorkerError(f"cannot start the draft worker: no word from it in {timeout_s:.0f} s")


# ---- the session of this process: one worker, started on first use ---------------------------------------
_SESSION: dict = {}


def session(device: str = "cpu", target_device: str = "cpu", preload: RemoteDraft | None = None,
            **options) -> DraftWorker:
    """This process's draft worker for `device` (joined when start_session launched it, else spawned now,
    or attached under torchrun), kept for the requests that follow, with `preload` loaded; a worker lost
    by a failed request is replaced by the next call."""
    current = _SESSION.get("worker")
    placement_key = (device, target_device)
    if current is not None and current.pending and _SESSION.get("placement") == placement_key:
        try:
            current.join()
        except WorkerError:
            _SESSION.pop("worker", None)
            raise
    alive = current is not None and not current.closed and not current.pending and (
        current.process is None or current.process.poll() is None)
    if alive and _SESSION.get("placement") == placement_key:
        worker = current
    else:
        if current is not None:
            current.close()
        _SESSION.pop("worker", None)
        worker = (DraftWorker.attach(target_device=target_device, draft_device=device) if _under_torchrun()
                  else DraftWorker.spawn(device, target_device=target_device, preload=preload, **options))
        _SESSION.update(worker=worker, placement=placement_key)
    if preload is not None:
        worker.load(preload)
    return worker


def start_session(device: str = "cpu", target_device: str = "cpu", preload: RemoteDraft | None = None,
                  **options) -> None:
    """Launch this process's draft worker now, without waiting for it (it imports torch and loads
    `preload` while this process goes on, e.g. loading the target); the next session() joins it.
    Nothing under torchrun (rank 0 attaches to its group)."""
    if _under_torchrun():
        return
    close_session()
    worker = DraftWorker.launch(device, target_device=target_device, preload=preload, **options)
    _SESSION.update(worker=worker, placement=(device, target_device))


def _under_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) == 2 and "RANK" in os.environ


def close_session() -> None:
    worker = _SESSION.pop("worker", None)
    if worker is not None:
        worker.close()


atexit.register(close_session)


# ---- the draft as this process sees it: a folder for the worker to load, then a context it holds ---------
class RemoteDraft:
    """A draft checkpoint the worker loads (this process never does): folder, dtype, device."""

    def __init__(self, path: str, dtype: str = "float32", device: str = "cpu"):
        self.path, self.dtype, self.device = str(path), dtype, device

    @property
    def key(self) -> tuple[str, str, str]:
        """What the worker loads it by (its cache of drafts)."""
        return (self.path, self.dtype, self.device)

    @classmethod
    def of(cls, draft) -> RemoteDraft:
        """`draft` itself, or the RemoteDraft of a loaded adapter (its folder, dtype and device)."""
        if isinstance(draft, RemoteDraft):
            return draft
        dtype = str(next(draft.model.parameters()).dtype).removeprefix("torch.")
        return cls(draft.name, dtype, str(draft.device))


class RemoteDraftContext:
    """A draft context held by the worker (job `job_id`): what the decode and `--gamma auto` need."""

    def __init__(self, worker: DraftWorker, job_id: int, facts: dict):
        self.worker, self.job_id, self.facts = worker, job_id, facts

    def step_time(self, token: int) -> float:
        self.worker.send(("step_time", self.job_id, token))
        return self.worker.reply(self.job_id, "step_time")

    def release(self) -> None:
        if not self.worker.closed:
            self.worker.send(("release", self.job_id))


def start_video_job(worker: DraftWorker, draft: RemoteDraft, request, clip, capacity: int, compile: bool) -> int:
    """Send the draft's job; the worker loads and encodes the video while this process prefills."""
    worker.narrow()  # from here to the end of the decode this process keeps off the worker's core
    job_id = worker.new_id()
    job = DraftJob(draft.path, draft.dtype, draft.device, clip, request.prompt, request.prune.positions, capacity,
                   compile)
    worker.send(("video", job_id, job))
    return job_id


def finish_video_job(worker: DraftWorker, job_id: int, kept, target, target_inputs) -> RemoteDraftContext:
    """Send the kept indices, wait for the pruned prefill, check vocabulary and grid as the one-process
    pipeline does (hippo.pairing), with the worker's facts."""
    worker.send(("kept", job_id, kept))
    facts = worker.reply(job_id, "ready")
    if facts["vocab_sha256"] != vocabulary_hash(target.tokenizer):
        raise CheckpointError(f"draft {facts['name']} and target {target.name} do not share a vocabulary: pick a "
                              "draft from the same model family and tokenizer")
    if facts["grid"] != target_inputs.grid:
        raise CheckpointError(f"draft {facts['name']} turns the video into a {facts['grid']} token grid but target "
                              f"{target.name} into {target_inputs.grid}; pruning indices cannot transfer")
    return RemoteDraftContext(worker, job_id, facts)


def table_job(worker: DraftWorker, draft_context) -> RemoteDraftContext:
    """A DecodeContext sent whole to the worker (the audit's table models)."""
    job_id = worker.new_id()
    worker.send(("table", job_id, draft_context))
    return RemoteDraftContext(worker, job_id, worker.reply(job_id, "ready"))


def decode_remote(target_context, remote: RemoteDraftContext, cfg):
    """Two-process PEARL: the worker runs the draft half of job `remote`, this process the target half."""
    worker = remote.worker
    vocab = as_fast_context(target_context).vocab_size
    worker.narrow()
    worker.send(("decode", remote.job_id, cfg, vocab))
    try:
        return worker.guard(lambda: decode_parallel_target(target_context, worker.link, cfg,
                                                           draft_samples=not cfg.draft_params.greedy))
    except WorkerError:
        raise
    except BaseException:
        # This side failed mid-decode: the worker is somewhere in the round's messages, and the next
        # message would be read as one of them. End it; the next request starts a fresh worker.
        worker.abandon()
        raise
    finally:
        worker.widen()
