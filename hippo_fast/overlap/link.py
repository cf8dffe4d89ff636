"""The transport of two-process PEARL: the messages of protocol.py over torch.distributed point-to-point
sends, gloo between CPU processes, NCCL between GPUs; the process group both sides join. Fixed-shape
tensors on the hot path; objects pickled into a length and a byte tensor sent as two messages (the same
on gloo and NCCL).

A watched link (`watch`, the target's side of a spawned worker under NCCL) receives with irecv and
polls: a peer gone (`watch()` says how) or silent past `timeout_s` raises ConnectionError / TimeoutError
at once, which processes.DraftWorker turns into the WorkerError that gloo's closed socket gives. A
blocking NCCL receive from a dead worker would instead wait for the group's timeout and then abort
the whole process. A receive that waits for the worker's load or compile (`patient`) is bounded by
the worker's life, not by `timeout_s`.

NCCL needs each process's GPU named before the group exists (`init_group`: torch.cuda.set_device and
device_id), else both ranks' communicators sit on cuda:0.
"""

from __future__ import annotations

import pickle
import time

import torch

from hippo_fast.overlap.protocol import DECISION, DECISION_FIELDS, POLL_S, ROW


class Link:
    """One side's end of the pair: `peer` is the other rank; tensors travel on `device` (CPU for gloo,
    the GPU for NCCL) and come back on `home` (where the decode keeps its buffers). `watch`: see the
    module docstring."""

    def __init__(self, peer: int, device: torch.device, home: torch.device | None = None, watch=None,
                 timeout_s: float | None = None):
        self.peer = peer
        self.device = torch.device(device)
        self.home = torch.device(home or device)
        self.watch = watch  # () -> None while the peer lives, else a line saying how it ended
        self.timeout_s = timeout_s

    # ---- tensors, the per-round messages ------------------------------------------------------------
    def _send(self, tensor: torch.Tensor) -> None:
        import torch.distributed as dist

        dist.send(tensor.to(self.device).contiguous(), self.peer)

    def _recv(self, shape, dtype, home: torch.device | None = None, patient: bool = False) -> torch.Tensor:
        import torch.distributed as dist

        buffer = torch.empty(shape, dtype=dtype, device=self.device)
        if self.watch is None:
            dist.recv(buffer, self.peer)
        else:
            self._wait(dist.irecv(buffer, self.peer), patient)
        return buffer.to(home or self.home)

    def _wait(self, work, patient: bool) -> None:
        """Poll a receive until it completes, the peer is gone, or (unless `patient`) timeout_s passes."""
        deadline = None if patient or self.timeout_s is None else time.monotonic() + self.timeout_s
        while not work.is_completed():
            gone = self.watch()
            if gone:
                raise ConnectionError(f"Connection closed by peer: {gone}")
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"the peer sent nothing for {self.timeout_s:.0f} s (timed out)")
            time.sleep(POLL_S)
        work.wait()

    def send_start(self, token: torch.Tensor, done: bool) -> None:
        self._send(torch.stack([token.reshape(()).to(torch.int64).to(self.device),
                                torch.tensor(int(done), device=self.device)]))

    def recv_start(self) -> tuple[torch.Tensor, bool]:
        message = self._recv((2,), torch.int64)
        return message[:1], bool(message[1])

    def send_block(self, tokens: torch.Tensor, q_of_tokens: torch.Tensor | None) -> None:
        self._send(tokens.to(torch.int64))
        if q_of_tokens is not None:
            self._send(q_of_tokens.to(torch.float64))

    def recv_block(self, gamma: int, sampled: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        tokens = self._recv((gamma,), torch.int64)
        return tokens, (self._recv((gamma,), torch.float64) if sampled else None)

    def send_row_request(self, row: int) -> None:
        self._send(torch.tensor([ROW, row] + [0] * (len(DECISION_FIELDS) - 2), dtype=torch.int64))

    def send_row(self, q_row: torch.Tensor) -> None:
        self._send(q_row.to(torch.float64))

    def recv_row(self, vocab: int) -> torch.Tensor:
        return self._recv((vocab,), torch.float64)

    def send_decision(self, n: int, valid: int, replaced_index: torch.Tensor | int,
                      replaced_token: torch.Tensor | int, rejected: bool, done: bool) -> None:
        values = [torch.as_tensor(x, device=self.home).reshape(()).to(torch.int64)
                  for x in (DECISION, n, valid, replaced_index, replaced_token, int(rejected), int(done))]
        self._send(torch.stack(values))

    def recv_decision(self, row_of) -> dict:
        """The round's DECISION, answering each ROW request on the way with `row_of(candidate)` (its q row)."""
        while True:
            decision = dict(zip(DECISION_FIELDS, self._recv((len(DECISION_FIELDS),), torch.int64).tolist(), strict=True))
            if decision["kind"] != ROW:
                return decision
            self.send_row(row_of(decision["n"]))

    # ---- objects, around the decode -------------------------------------------------------------------
    def send_object(self, obj) -> None:
        data = torch.frombuffer(bytearray(pickle.dumps(obj)), dtype=torch.uint8)
        self._send(torch.tensor([data.numel()], dtype=torch.int64))
        self._send(data)

    def recv_object(self, patient: bool = False):
        """The next object; `patient`: it may follow the worker's load or compile (see the module docstring)."""
        cpu = torch.device("cpu")
        size = int(self._recv((1,), torch.int64, home=cpu, patient=patient)[0])
        return pickle.loads(self._recv((size,), torch.uint8, home=cpu).numpy().tobytes())


# ---- the process group ----------------------------------------------------------------------------------
def backend_for(target_device: str, draft_device: str) -> str:
    """NCCL between two different GPUs; gloo otherwise (CPUs, or both processes on one GPU, which NCCL
    refuses: its messages then go through host memory)."""
    t, d = torch.device(target_device), torch.device(draft_device)
    if t.type == d.type == "cuda" and (t.index or 0) != (d.index or 0):
        return "nccl"
    return "gloo"


def init_group(backend: str, device, **options) -> None:
    """dist.init_process_group, under NCCL on this process's GPU: torch.cuda.set_device first (NCCL's
    communicator and streams follow the current device, cuda:0 otherwise) and device_id (the
    communicator is made now on that GPU, not guessed at the first send)."""
    import torch.distributed as dist

    if backend == "nccl":
        device = torch.device(device)
        torch.cuda.set_device(device)
        options["device_id"] = torch.device("cuda", torch.cuda.current_device() if device.index is None else device.index)
    dist.init_process_group(backend, **options)


def link_for(peer: int, backend: str, home) -> Link:
    """The link to `peer`: tensors on the home GPU under NCCL, on the CPU under gloo; received ones
    land on `home`, where the decode keeps its buffers (a sampled draft's q rows included)."""
    home = torch.device(home)
    return Link(peer, home if backend == "nccl" else torch.device("cpu"), home)
