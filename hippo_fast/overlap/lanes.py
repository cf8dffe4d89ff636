"""Two CUDA streams in one process: PEARL's target forward and draft block of a round are enqueued on
their own streams, so the GPU runs them at the same time; the verification waits for both. On a CPU
there are no streams and the same calls run one after the other (the code path the tests cover where
no GPU is lent); the schedule, hence the tokens, is decode_parallel's either way.

Each round forks from the stream that holds the last commit (both lanes wait for it: they read the
token buffer it wrote) and joins back (that stream waits for both lanes before the verification
reads the target's logits and the draft's block).
"""

from __future__ import annotations

import contextlib

import torch


class Lanes:
    def __init__(self, target_device: torch.device, draft_device: torch.device):
        self.cuda = torch.device(target_device).type == "cuda" and torch.device(draft_device).type == "cuda"
        if self.cuda:
            self.home = torch.cuda.current_stream(target_device)
            self.streams = {"target": torch.cuda.Stream(target_device), "draft": torch.cuda.Stream(draft_device)}

    def fork(self) -> None:
        """Both lanes see everything enqueued so far (the last commit)."""
        if self.cuda:
            for stream in self.streams.values():
                stream.wait_stream(self.home)

    def lane(self, name: str):
        """Context manager: enqueue the work of lane `name` ("target" or "draft") on its stream."""
        return torch.cuda.stream(self.streams[name]) if self.cuda else contextlib.nullcontext()

    def join(self) -> None:
        """The home stream waits for both lanes (before anything reads their outputs)."""
        if self.cuda:
            for stream in self.streams.values():
                self.home.wait_stream(stream)


def lanes_for(target, draft, overlap: bool):
    """Lanes of the two fast contexts when `overlap`, else the serial (CPU) behaviour."""
    if not overlap:
        return Lanes(torch.device("cpu"), torch.device("cpu"))
    return Lanes(target.device, draft.device)
