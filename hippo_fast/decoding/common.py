"""What the fast decode loops share (hippo_ref/decoding/common.py's twin): the token buffer on the
device, the draft block, and committing a round after its ONE host sync.

A decode keeps its tokens in a device buffer `seq` (committed tokens, then the tokens in flight) and
the host keeps only integers: how many are committed (`n`) and how many rows of each cache still
agree with `seq`. A round runs on the device and ends with one small transfer (accepted count and
where an EOS is), never one per token.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from hippo.request import DecodeConfig
from hippo_fast import sampling
from hippo_fast.cache import as_fast_context, request_capacity
from hippo_fast.host_syncs import intended


def align_vocab(logits: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """hippo_ref.decoding.common.align_vocab: draft logits cut or -inf-padded to the target's vocabulary."""
    if logits.shape[-1] >= vocab_size:
        return logits[..., :vocab_size]
    pad = torch.full((*logits.shape[:-1], vocab_size - logits.shape[-1]), float("-inf"), dtype=logits.dtype,
                     device=logits.device)
    return torch.cat([logits, pad], dim=-1)


@dataclass
class Decode:
    """One decode's device state: the token buffer, the uniforms, the EOS ids; `n` committed tokens."""

    seq: torch.Tensor
    uniforms: sampling.UniformTable
    eos: torch.Tensor
    n: int = 0

    @classmethod
    def buffers(cls, device, cfg: DecodeConfig, decoding: str) -> Decode:
        """Empty buffers for one decode on `device`: request_capacity tokens, their uniforms, the EOS ids."""
        size = request_capacity(cfg, decoding)
        with intended(device):  # the EOS ids, once per decode
            eos = torch.tensor(cfg.eos_token_ids or (-1,), dtype=torch.int64, device=device)
        return cls(torch.zeros(size, dtype=torch.int64, device=device), sampling.UniformTable(cfg.seed, size, device),
                   eos)

    @classmethod
    def start(cls, target, cfg: DecodeConfig, decoding: str) -> Decode:
        """Buffers for the request (the target's cache reserved as far), and generated token 0 drawn from
        the target's prefill logits."""
        target.reserve(request_capacity(cfg, decoding))
        state = cls.buffers(target.device, cfg, decoding)
        first, _ = sampling.draw(target.last_logits, cfg.sampling, state.uniforms, sampling.TARGET, 0)
        state.seq[0] = first
        return state

    def put(self, index: int | torch.Tensor, token: torch.Tensor) -> None:
        """seq[index] = token without a host sync: a Python index selects a row; a device index (a 0-d
        tensor) goes to index_copy_ (indexing with it would call .item(); so would a Python int turned
        into a device tensor, which is a blocking host-to-device copy)."""
        token = token.reshape(()).to(self.seq.device)
        if isinstance(index, torch.Tensor):
            self.seq.index_copy_(0, index.reshape(1).to(self.seq.device), token.reshape(1))
        else:
            self.seq[index] = token

    def commit(self, new: int | torch.Tensor, cfg: DecodeConfig, limit: int,
               rejected: torch.Tensor | bool = False) -> tuple[int, int, bool, bool]:
        """Commit the `new` (a device count, 1..limit) tokens seq[n : n + new], stopping after an EOS or at
        max_new_tokens, as hippo_ref.decoding.common.commit. The round's one host sync, which also
        brings the round's `rejected` flag. Returns (new as proposed, how many were committed, is the
        decode finished, rejected)."""
        device = self.seq.device
        window = self.seq[self.n : self.n + limit]
        is_eos = torch.isin(window, self.eos) & (torch.arange(limit, device=device) < new)
        first_eos = torch.where(is_eos.any(), torch.argmax(is_eos.to(torch.int8)), limit)
        with intended(device):
            proposed, eos_at, was_rejected = _read_once(new, first_eos, rejected)
        count = min(proposed, eos_at + 1, cfg.max_new_tokens - self.n)
        done = count < proposed or eos_at < proposed or self.n + count >= cfg.max_new_tokens
        self.n += count
        return proposed, count, done, bool(was_rejected)

    def tokens(self) -> list[int]:
        with intended(self.seq.device):
            return self.seq[: self.n].tolist()


def _read_once(*values) -> list[int]:
    """The values as ints, the device ones read in ONE transfer (Python values stay on the host: making
    a device tensor of one would be a copy of its own)."""
    on_device = [i for i, v in enumerate(values) if isinstance(v, torch.Tensor)]
    read = torch.stack([values[i].reshape(()).to(torch.int64) for i in on_device]).tolist() if on_device else []
    out = list(values)
    for i, v in zip(on_device, read, strict=True):
        out[i] = v
    return [int(v) for v in out]


def draft_block(draft, state: Decode, start: int, valid: int, gamma: int, cfg: DecodeConfig, vocab: int):
    """The draft's gamma tokens after seq[:start], written to seq[start : start + gamma], drawn with the
    DRAFT uniforms of their indices; `valid` = generated tokens whose draft cache rows agree with seq.
    Returns (the distributions q drawn from as (gamma, V) float64, or None for a greedy draft;
    the draft's valid rows afterwards)."""
    qs = []
    fed = valid
    for j in range(gamma):
        m = start + j  # logits after seq[:m]
        logits = align_vocab(draft.forward(state.seq[fed:m], fed)[-1], vocab)
        token, q = sampling.draw(logits.to(state.seq.device), cfg.draft_params, state.uniforms, sampling.DRAFT, m)
        state.put(m, token)
        qs.append(q)
        fed = m
    return (None if qs[0] is None else torch.stack(qs)), start + gamma - 1


def contexts(target_context, draft_context=None):
    """Both contexts with the fast `forward` interface (HostContext around anything else)."""
    return as_fast_context(target_context), None if draft_context is None else as_fast_context(draft_context)
