"""Table models: tiny next-token models defined by a hash of the context, for exact and fast checks.

A table model over a vocabulary of V tokens gives logits(context) for ANY context (a tuple of token
ids): V numbers drawn from a counter-based hash of (seed, context), scaled by `sharpness`. Nothing is
stored, so contexts of any length work, and the same numbers are available to the torch decode loops
(through `TableContext`, a stand-in for the adapters' DecodeContext) and to the JAX oracle (which
reads `logits` as plain numpy data). A draft table can be made to agree partially with its target:
`mix` blends the target's logits into the draft's.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch

_MASK64 = (1 << 64) - 1


def _mix64(x: int) -> int:
    x = (x + 0x9E3779B97F4A7C15) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


@dataclass(frozen=True)
class TableModel:
    """logits(context) = sharpness * standard-normal-ish hash values; `base` blends another table in."""

    vocab: int
    seed: int
    sharpness: float = 2.0
    base: TableModel | None = None
    mix: float = 0.0  # weight of `base`'s logits (a draft that agrees partially with its target)

    def logits(self, context: tuple[int, ...]) -> np.ndarray:
        return _cached_logits(self, tuple(context))

    def _compute_logits(self, context: tuple[int, ...]) -> np.ndarray:
        h = _mix64(self.seed)
        for token in context:
            h = _mix64(h ^ (token + 1))
        values = []
        for v in range(self.vocab):
            u1 = (_mix64(h ^ (0x1000 + v)) >> 11) * 2.0**-53
            u2 = (_mix64(h ^ (0x2000 + v)) >> 11) * 2.0**-53
            values.append(np.sqrt(-2 * np.log1p(-u1)) * np.cos(2 * np.pi * u2))  # Box-Muller
        # Rounded through float32: the torch loops see float32 logits, the oracle the same numbers.
        own = (self.sharpness * np.array(values, dtype=np.float64)).astype(np.float32).astype(np.float64)
        if self.base is None or self.mix == 0:
            return own
        mixed = (1 - self.mix) * own + self.mix * self.base.logits(context)
        return mixed.astype(np.float32).astype(np.float64)


@functools.lru_cache(maxsize=1 << 16)
def _cached_logits(model: TableModel, context: tuple[int, ...]) -> np.ndarray:
    values = model._compute_logits(context)
    values.flags.writeable = False
    return values


@functools.lru_cache(maxsize=1 << 16)
def _logits_tensor(model: TableModel, context: tuple[int, ...]) -> torch.Tensor:
    return torch.tensor(model.logits(context), dtype=torch.float32)


class _TableAdapter:
    def __init__(self, vocab: int):
        self.vocab_size = vocab


class TableContext:
    """Implements the DecodeContext protocol (step / rollback / last_logits / forwards) for a table
    model. Its "cache" is the list of generated tokens it has been fed; logits come from that list,
    so a decode loop that rolls back wrongly sees the wrong history, exactly as with a real KV cache."""

    def __init__(self, model: TableModel, prompt: tuple[int, ...] = ()):
        self.model = model
        self.prompt = tuple(prompt)
        self.adapter = _TableAdapter(model.vocab)
        self.rows: list[int] = []
        self.forwards = 1
        self.last_logits = self._logits(())

    def _logits(self, generated) -> torch.Tensor:
        return _logits_tensor(self.model, self.prompt + tuple(generated))

    @property
    def generated_in_cache(self) -> int:
        return len(self.rows)

    def rollback(self, offset: int) -> None:
        if offset > len(self.rows):
            raise RuntimeError(f"cache holds {len(self.rows)} generated tokens, cannot resume at {offset}")
        del self.rows[offset:]

    def step(self, tokens: list[int], offset: int) -> torch.Tensor:
        self.rollback(offset)
        out = []
        for token in tokens:
            self.rows.append(int(token))
            out.append(self._logits(self.rows))
        self.forwards += 1
        return torch.stack(out)


@dataclass(frozen=True)
class TablePair:
    """A target table and a draft table that agrees with it partially."""

    name: str
    target: TableModel
    draft: TableModel

    @staticmethod
    def make(name: str, vocab: int, seed: int, agreement: float, sharpness: float = 2.0) -> TablePair:
        target = TableModel(vocab, seed, sharpness)
        draft = TableModel(vocab, seed + 7919, sharpness, base=target, mix=agreement)
        return TablePair(name, target, draft)

    def contexts(self):
        return TableContext(self.target), TableContext(self.draft)
