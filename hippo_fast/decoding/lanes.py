"""Two CUDA streams in one process: PEARL's target forward and draft block of a round are enqueued on
their own streams, so the GPU runs them at the same time; the verification waits for both. On a CPU
there are no streams and the same calls run one after the other (the code path the tests cover where
no GPU is lent); the schedule, hence the tokens, is decode_parallel's either way.

Each round forks from the stream that holds the last commit (both lanes wait for it: they read the
token buffer it wrote) and joins back (that stream waits for both lanes before the verification
reads the target's logits and the draft's block). With the draft on another GPU, the draft lane also
has a stream on the target's GPU: its draws land in the target's token buffer, and on the target's
default stream they would wait behind the target's forward.

CUDA graphs on one GPU cannot take two lanes: torch records every graph of a device from one memory
pool, so the target's and the draft's graphs share buffers and two concurrent replays overwrite each
other. `check_graph_pools` refuses that pairing (decode_parallel and FastImplementation call it).
"""

from __future__ import annotations

import contextlib

import torch

from hippo.errors import ConfigError


def same_gpu(a, b) -> bool:
    a, b = torch.device(a), torch.device(b)
    return a.type == b.type == "cuda" and (a.index or 0) == (b.index or 0)


def check_graph_pools(target_device, draft_device, cuda_graphs: bool) -> None:
    """ConfigError when both models would replay CUDA graphs on two streams of one GPU (see the docstring)."""
    if cuda_graphs and same_gpu(target_device, draft_device):
        raise ConfigError(f"--compile with --overlap streams on one GPU ({torch.device(target_device)}): torch records "
                          "the target's and the draft's CUDA graphs from one memory pool, and replayed at the same "
                          "time on two streams they would overwrite each other's buffers: drop --compile, or use "
                          "--overlap processes")


class Lanes:
    def __init__(self, target_device: torch.device, draft_device: torch.device):
        self.cuda = torch.device(target_device).type == "cuda" and torch.device(draft_device).type == "cuda"
        if self.cuda:
            self.home = torch.cuda.current_stream(target_device)
            self.streams = {"target": torch.cuda.Stream(target_device), "draft": torch.cuda.Stream(draft_device)}
            self.extra = {"target": [], "draft": []}
            if not same_gpu(target_device, draft_device):  # the draft's draws, on the target's GPU
                self.streams["draft on the target's GPU"] = torch.cuda.Stream(target_device)
                self.extra["draft"].append(self.streams["draft on the target's GPU"])

    def fork(self) -> None:
        """Both lanes see everything enqueued so far (the last commit)."""
        if self.cuda:
            for stream in self.streams.values():
                stream.wait_stream(self.home)

    def lane(self, name: str):
        """Context manager: enqueue the work of lane `name` ("target" or "draft") on its stream."""
        if not self.cuda:
            return contextlib.nullcontext()
        stack = contextlib.ExitStack()
        for stream in (self.streams[name], *self.extra[name]):  # torch.cuda.stream sets one device's stream
            stack.enter_context(torch.cuda.stream(stream))
        return stack

    def join(self) -> None:
        """The home stream waits for both lanes (before anything reads their outputs)."""
        if self.cuda:
            for stream in self.streams.values():
                self.home.wait_stream(stream)


def lanes_for(target, draft, overlap: bool):
    """Lanes of the two fast contexts when `overlap`, else the serial (CPU) behaviour."""
    if not overlap:
        return Lanes(torch.device("cpu"), torch.device("cpu"))
    check_graph_pools(target.device, draft.device,
                      getattr(target, "cuda_graphs", False) or getattr(draft, "cuda_graphs", False))
    return Lanes(target.device, draft.device)
