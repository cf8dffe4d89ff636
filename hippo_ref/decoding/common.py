"""What the three decode loops share: the config, the result, feeding a model, committing tokens."""

from __future__ import annotations

import torch

from hippo.request import DecodeConfig, DecodeResult  # noqa: F401  (shared request types, re-exported)
from hippo_ref import sampling


class Track:
    """A model's DecodeContext plus the generated tokens its cache rows hold, so that every forward
    states explicitly which tokens it feeds: the rows that still agree with the sequence are reused,
    the rest are rolled back and recomputed."""

    def __init__(self, context, role: str = ""):
        self.context = context
        self.role = role  # "target" or "draft": for messages and for the verification suite's mutants
        self.fed: list[int] = []

    def logits_after(self, sequence: list[int], first: int) -> torch.Tensor:
        """Logits (len(sequence) - first, V): the model's output after each of sequence[first:]."""
        start = 0
        while start < min(len(self.fed), first) and self.fed[start] == sequence[start]:
            start += 1
        logits = self.context.step(sequence[start:], start)
        self.fed = list(sequence)
        return logits[first - start :]


def align_vocab(logits: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """Draft logits over the target's vocabulary: ids the draft lacks get -inf, ids the target lacks are
    cut (the draft then samples only tokens the target can score; q stays what was sampled from)."""
    if logits.shape[-1] >= vocab_size:
        return logits[..., :vocab_size]
    pad = torch.full((*logits.shape[:-1], vocab_size - logits.shape[-1]), float("-inf"), dtype=logits.dtype)
    return torch.cat([logits, pad], dim=-1)


def draft_block(draft: Track, sequence: list[int], gamma: int, cfg: DecodeConfig, vocab_size: int):
    """The draft's gamma tokens after `sequence` (drawn with the DRAFT uniforms of their indices) and
    the distributions q they were drawn from."""
    seq = list(sequence)
    tokens, qs = [], []
    for _ in range(gamma):
        logits = align_vocab(draft.logits_after(seq, len(seq) - 1)[-1], vocab_size)
        token, q = sampling.draw(logits, cfg.draft_params, cfg.seed, sampling.DRAFT, len(seq))
        tokens.append(token)
        qs.append(q)
        seq.append(token)
    return tokens, qs


def verify_in_order(candidates, qs, target_logits, cfg: DecodeConfig, first_index: int) -> tuple[list[int], bool]:
    """Check candidate tokens (generated indices first_index, first_index + 1, ...) against the target
    rows in order; stop at the first rejection with its residual draw. Returns (tokens to commit,
    rejected?). No bonus token: the caller decides whether one follows."""
    out = []
    for i, (token, q) in enumerate(zip(candidates, qs, strict=True)):
        p = sampling.distribution(target_logits[i], cfg.sampling)
        committed, accepted = sampling.speculative_step(p, q, token, cfg.seed, first_index + i)
        out.append(committed)
        if not accepted:
            return out, True
    return out, False


def commit(tokens: list[int], new: list[int], cfg: DecodeConfig) -> tuple[int, bool]:
    """Append `new` to `tokens`, stopping after an EOS or at max_new_tokens.
    Returns (how many were appended, is the decode finished)."""
    for count, token in enumerate(new, start=1):
        tokens.append(token)
        if token in cfg.eos_token_ids or len(tokens) >= cfg.max_new_tokens:
            return count, True
    return len(new), False


def first_token(target_context, cfg: DecodeConfig) -> int:
    """Generated token 0, from the target's prefill logits: the same draw in every algorithm."""
    token, _ = sampling.draw(target_context.last_logits, cfg.sampling, cfg.seed, sampling.TARGET, 0)
    return token
