"""Counting the host's reads of device values, on any device, so that a CPU test can pin what a GPU
run would pay: on a GPU each of them waits for the device's queue to drain (a host sync).

`HostSyncs()` is a context manager that records, while it is open, every operation that reads a tensor's
value on the host or makes a device tensor from host data:
  * `aten._local_scalar_dense`: `.item()`, `bool()`, `int()`, and indexing with a 0-d tensor (torch
    calls `.item()` in C++ to turn it into an int; seen here because it goes through the dispatcher);
  * `Tensor.tolist()` and `Tensor.numpy()`;
  * `torch.tensor` / `torch.as_tensor` of Python data onto a named device (a blocking host-to-device
    copy on a GPU; a device-side `torch.full` is not one).
On a CUDA device `torch.cuda.set_sync_debug_mode("error")` is the ground truth (scripts/gpu_check.py
runs a decode under it); this counter is its device-agnostic twin. `paused()` leaves out work that is
not the decode loop's own (the stock model's eager forward, which a compiled forward replaces).
`intended(device)` marks the reads a decode means to make (its one per round, its EOS ids, its tokens
returned): allowed under the CUDA sync debug mode, still counted here (the tests pin how many).
"""

from __future__ import annotations

import contextlib
import traceback

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode

_READS = {torch.Tensor.tolist: "tolist", torch.Tensor.numpy: "numpy"}
_FROM_HOST = {torch.tensor: "tensor", torch.as_tensor: "as_tensor"}


class HostSyncs:
    """`with HostSyncs() as syncs: ...` then `syncs.count` and `syncs.events` [(what, where)]."""

    def __init__(self):
        self.events: list[tuple[str, str]] = []
        self._paused = 0
        self._modes = (_FunctionMode(self), _DispatchMode(self))

    @property
    def count(self) -> int:
        return len(self.events)

    def record(self, what: str) -> None:
        if self._paused:
            return
        here = next((f for f in reversed(traceback.extract_stack()[:-3]) if "hippo_fast/host_syncs" not in f.filename
                     and "/torch/" not in f.filename), None)
        self.events.append((what, f"{here.filename.rsplit('/', 2)[-1]}:{here.lineno}" if here else "?"))

    @contextlib.contextmanager
    def paused(self):
        self._paused += 1
        try:
            yield
        finally:
            self._paused -= 1

    def outside(self, fn):
        """`fn` with its own host reads left out of the count."""

        def call(*args, **kwargs):
            with self.paused():
                return fn(*args, **kwargs)

        return call

    def __enter__(self) -> HostSyncs:
        for mode in self._modes:
            mode.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        for mode in reversed(self._modes):
            mode.__exit__(*exc)


class _FunctionMode(TorchFunctionMode):
    def __init__(self, syncs: HostSyncs):
        super().__init__()
        self.syncs = syncs

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in _READS:
            self.syncs.record(_READS[func])
        elif func in _FROM_HOST and kwargs.get("device") is not None and not isinstance(args[0], torch.Tensor):
            self.syncs.record(f"{_FROM_HOST[func]} from host data")
        return func(*args, **kwargs)


class _DispatchMode(TorchDispatchMode):
    def __init__(self, syncs: HostSyncs):
        super().__init__()
        self.syncs = syncs

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func is torch.ops.aten._local_scalar_dense.default:
            self.syncs.record("item")
        return func(*args, **(kwargs or {}))


@contextlib.contextmanager
def intended(device):
    """A host read the decode means to make: torch.cuda's sync debug mode is off inside (a no-op elsewhere)."""
    mode = torch.cuda.get_sync_debug_mode() if torch.device(device).type == "cuda" else 0
    if not mode:
        yield
        return
    torch.cuda.set_sync_debug_mode(0)
    try:
        yield
    finally:
        torch.cuda.set_sync_debug_mode(mode)
