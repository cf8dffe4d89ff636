"""The implementation interface as typing.Protocol classes: what hippo.generation.generate, the audit and
the benchmarks may rely on of an implementation and of the contexts it prepares. An implementation
conforms by shape (nothing to inherit); tests/test_interfaces.py holds every registered implementation
to these, and its contexts too.

    Implementation   prepare_contexts -> PreparedContexts, measured_gamma, decode (hippo_ref.pipeline, the
                     module itself; hippo_fast.pipeline.FastImplementation)
    PreparedContext  a prefilled context as generate() reads it: token 0's logits, the forwards so far
    StepContext      the reference's context (hippo.adapters.base.DecodeContext, the audit's table
                     models): explicit rollback, token ids through the host
    FastContext      hippo_fast's loops' context (hippo_fast.cache.StaticContext, HostContext around any
                     StepContext): token ids on the device, implicit rollback
    TimedContext     a context that measures its own one-token step (`--gamma auto` in hippo_fast: here,
                     or in the draft's worker process)

Probes (a warm-up, a step time) are never counted in `forwards`: a StepContext's `probe` and a
FastContext's `probe` run the step without counting it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

import torch

if TYPE_CHECKING:
    from hippo.generation import PreparedContexts
    from hippo.request import DecodeConfig, DecodeResult, GenerationRequest


@runtime_checkable
class PreparedContext(Protocol):
    last_logits: torch.Tensor  # (V,) fp32 logits of generated token 0, from the prefill
    forwards: int  # forward passes so far, the prefill included


@runtime_checkable
class StepContext(PreparedContext, Protocol):
    def step(self, tokens: list[int], offset: int) -> torch.Tensor:
        """Logits (k, V) after each of `tokens` (generated tokens offset..offset+k-1); rows >= offset
        are dropped first."""

    def rollback(self, offset: int) -> None:
        """Drop the rows of generated tokens >= offset."""


@runtime_checkable
class FastContext(PreparedContext, Protocol):
    vocab_size: int
    device: torch.device

    def forward(self, ids: torch.Tensor, offset: int) -> torch.Tensor:
        """Logits (k, V) fp32 after each of `ids` (k,) on the device, generated tokens offset..offset+k-1."""

    def reserve(self, generated: int) -> None:
        """Rows for `generated` tokens (within the request's bound)."""


@runtime_checkable
class TimedContext(Protocol):
    def step_time(self, token: int) -> float:
        """The median seconds of a one-token step, not counted in `forwards`."""


@runtime_checkable
class Implementation(Protocol):
    name: str  # its key in hippo.generation.IMPLEMENTATIONS

    def prepare_contexts(self, target, draft, request: GenerationRequest, clip) -> PreparedContexts:
        """Both models prefilled for `request` (the draft pruned; None for AR)."""

    def measured_gamma(self, target_context, draft_context, probe_token: int) -> int:
        """PEARL's adaptive draft length in [1, 16]; forward counts unchanged."""

    def decode(self, decoding: str, target_context, draft_context, config: DecodeConfig) -> DecodeResult:
        """One decode ("ar" | "sd" | "pearl") from the prepared contexts."""
