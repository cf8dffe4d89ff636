"""The messages of two-process PEARL (hippo_fast/decoding/parallel_split.py), over torch.distributed
point-to-point sends: gloo between CPU processes, NCCL between GPUs. Fixed-shape tensors on the hot
path (one BLOCK and one DECISION per round); pickled objects (jobs, replies, timelines) around it.

    target -> draft  START     [token 0, done]                        once per decode
    draft -> target  BLOCK     gamma token ids (+ (gamma, V) float64 q rows when the draft samples)
    target -> draft  DECISION  [n, draft rows still valid, replaced index, replaced token, rejected, done]

The target decides acceptance alone (it holds p and the ACCEPT / RESIDUAL uniforms); the draft draws
with the DRAFT uniforms of the same keyed table (hippo_fast/sampling.py). No random state crosses.
"""

from __future__ import annotations

import torch

DECISION_FIELDS = ("n", "valid", "replaced_index", "replaced_token", "rejected", "done")


class Link:
    """One side's end of the pair: `peer` is the other rank; tensors travel on `device` (CPU for gloo,
    the GPU for NCCL) and come back on `home` (where the decode keeps its buffers)."""

    def __init__(self, peer: int, device: torch.device, home: torch.device | None = None):
        self.peer = peer
        self.device = torch.device(device)
        self.home = torch.device(home or device)

    # ---- tensors, the per-round messages ------------------------------------------------------------
    def _send(self, tensor: torch.Tensor) -> None:
        import torch.distributed as dist

        dist.send(tensor.to(self.device).contiguous(), self.peer)

    def _recv(self, shape, dtype) -> torch.Tensor:
        import torch.distributed as dist

        buffer = torch.empty(shape, dtype=dtype, device=self.device)
        dist.recv(buffer, self.peer)
        return buffer.to(self.home)

    def send_start(self, token: torch.Tensor, done: bool) -> None:
        self._send(torch.stack([token.reshape(()).to(torch.int64).to(self.device),
                                torch.tensor(int(done), device=self.device)]))

    def recv_start(self) -> tuple[torch.Tensor, bool]:
        message = self._recv((2,), torch.int64)
        return message[:1], bool(message[1])

    def send_block(self, tokens: torch.Tensor, qs: torch.Tensor | None) -> None:
        self._send(tokens.to(torch.int64))
        if qs is not None:
            self._send(qs.to(torch.float64))

    def recv_block(self, gamma: int, vocab: int, sampled: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        tokens = self._recv((gamma,), torch.int64)
        return tokens, (self._recv((gamma, vocab), torch.float64) if sampled else None)

    def send_decision(self, n: int, valid: int, replaced_index: torch.Tensor | int,
                      replaced_token: torch.Tensor | int, rejected: bool, done: bool) -> None:
        values = [torch.as_tensor(x, device=self.home).reshape(()).to(torch.int64)
                  for x in (n, valid, replaced_index, replaced_token, int(rejected), int(done))]
        self._send(torch.stack(values))

    def recv_decision(self) -> dict:
        return dict(zip(DECISION_FIELDS, self._recv((len(DECISION_FIELDS),), torch.int64).tolist(), strict=True))

    # ---- objects, around the decode -------------------------------------------------------------------
    def send_object(self, obj) -> None:
        import torch.distributed as dist

        dist.send_object_list([obj], self.peer, device=self.device if self.device.type == "cuda" else None)

    def recv_object(self):
        import torch.distributed as dist

        box = [None]
        dist.recv_object_list(box, self.peer, device=self.device if self.device.type == "cuda" else None)
        return box[0]
