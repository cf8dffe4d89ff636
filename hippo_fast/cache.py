"""The fast path's decode context: a KV cache preallocated for one request, written at explicit rows.

StaticContext holds a transformers StaticCache of prefill_len + capacity rows (capacity =
max_new_tokens + gamma + 1 generated tokens, not max_position_embeddings) that the STOCK model
reads and writes itself: `forward(ids, offset)` sets every layer's write pointer
(`cumulative_length`) to prefill_len + offset and calls the stock forward, which writes the new
keys / values at those rows and builds its causal mask from the same pointer.

Rollback is implicit, as in gpt-fast: rejected tokens are never cropped. The next forward starts at
the first row that no longer agrees with the sequence and overwrites it; rows past the pointer still
hold stale keys, and the causal mask hides them (a query at row r sees rows <= r only). A bug here
(a pointer left one row late) leaves a stale row visible: the audit's mutant `fast_stale_row_visible`
plants exactly that and must be caught.

Generated token i sits at cache row prefill_len + i and position next_position + i, as in
hippo/adapters/base.py's DecodeContext. HostContext gives any DecodeContext (the reference's,
the audit's table models, a user's) the same `forward` interface, so the fast loops run on them too.
"""

from __future__ import annotations

import torch

from hippo.errors import ConfigError


class StaticContext:
    """One model's prefilled static cache and its position arithmetic (see the module docstring)."""

    def __init__(self, adapter, cache, prefill_len: int, next_position: int, last_logits: torch.Tensor,
                 capacity: int, forward_fn=None):
        self.adapter = adapter
        self.cache = cache
        self.prefill_len = prefill_len
        self.next_position = next_position
        self.last_logits = last_logits  # (V,) fp32 logits for generated token 0, on the model's device
        self.capacity = capacity  # generated tokens the cache has rows for
        self.forward_fn = forward_fn or adapter.model.forward  # the stock forward, or torch.compile of it
        self.device = adapter.device
        self.vocab_size = adapter.vocab_size
        self.forwards = 1  # the prefill
        # Positions of generated tokens 0..capacity-1 (all M-RoPE rows equal for text), on the device.
        self._positions = torch.arange(capacity, device=self.device) + next_position

    def set_write_row(self, offset: int) -> None:
        """Point every layer's next write at generated token `offset` (the implicit rollback)."""
        for layer in self.cache.layers:
            layer.cumulative_length.fill_(self.prefill_len + offset)

    @torch.no_grad()
    def forward(self, ids: torch.Tensor, offset: int) -> torch.Tensor:
        """Logits (k, V) fp32 after each of `ids` (k,), which are generated tokens offset..offset+k-1."""
        k = ids.shape[0]
        if offset + k > self.capacity:
            raise ConfigError(f"the static cache holds {self.capacity} generated tokens, a forward needs "
                              f"{offset + k}: prepare the contexts with the request's max_new_tokens and gamma")
        self.set_write_row(offset)
        positions = self._positions[offset : offset + k].expand(self.adapter.position_rows, -1)
        out = self.forward_fn(input_ids=ids[None].to(self.device), position_ids=self.adapter.batch_positions(positions),
                              cache=self.cache, use_cache=True)
        self.forwards += 1
        return out.logits[0].float()

    def warm(self, step_sizes, seen: set) -> None:
        """Run each forward shape (k tokens on this cache size) not in `seen` once, so that a compiled
        forward captures it now and not in the middle of a decode (which shapes a decode meets depends
        on its acceptances). The rows written are overwritten by the decode; forward counts are kept."""
        rows = self.prefill_len + self.capacity
        for k in step_sizes:
            if (rows, k) not in seen and k <= self.capacity:
                self.forward(torch.zeros(k, dtype=torch.long, device=self.device), 0)
                self.forwards -= 1
                seen.add((rows, k))

    def reserve(self, generated: int) -> None:
        """Make room for `generated` tokens: a larger cache with the prompt's rows copied (the audit
        reuses one prefill for decodes of different lengths; a request sizes it once)."""
        if generated <= self.capacity:
            return
        from transformers import StaticCache

        rows = self.prefill_len
        total = cache_rows(rows, generated)
        generated = total - rows
        bigger = StaticCache(config=self.adapter.model.config, max_cache_len=total)
        for old, new in zip(self.cache.layers, bigger.layers, strict=True):
            keys, values = old.keys[:, :, :rows], old.values[:, :, :rows]
            new.lazy_initialization(keys, values)
            new.keys[:, :, :rows] = keys
            new.values[:, :, :rows] = values
        self.cache, self.capacity = bigger, generated
        self._positions = torch.arange(generated, device=self.device) + self.next_position


class HostContext:
    """The fast loops' `forward` interface over any DecodeContext (step(tokens, offset) with explicit
    rollback): the token ids go through the host. For table models and the reference's contexts."""

    def __init__(self, context):
        self.context = context
        self.last_logits = context.last_logits
        self.vocab_size = context.adapter.vocab_size
        self.device = self.last_logits.device

    @property
    def forwards(self) -> int:
        return self.context.forwards

    def forward(self, ids: torch.Tensor, offset: int) -> torch.Tensor:
        return self.context.step([int(t) for t in ids.tolist()], offset).to(self.device)

    def reserve(self, generated: int) -> None:
        pass


def as_fast_context(context):
    """`context` itself if it has the fast interface (StaticContext), else a HostContext around it."""
    return context if hasattr(context, "set_write_row") else HostContext(context)


CACHE_ROWS_MULTIPLE = 64


def cache_rows(prompt_rows: int, capacity: int, multiple: int = CACHE_ROWS_MULTIPLE) -> int:
    """Rows of a request's static cache: prompt + capacity, rounded up to a multiple of `multiple`, so
    that requests whose prompts differ by a few rows share the compiled graphs of one cache shape."""
    return -(-(prompt_rows + capacity) // multiple) * multiple


def static_prefill(adapter, inputs, capacity: int, kept_grid_indices=None, positions: str = "keep",
                   video_embeds=None, observe=None, forward_fn=None) -> StaticContext:
    """The stock prefill (hippo/adapters/base.py, the same computation) into a StaticCache with rows
    for the prompt plus at least `capacity` generated tokens (cache_rows)."""
    from transformers import StaticCache

    rows = int(adapter.kept_rows(inputs, kept_grid_indices).numel())
    total = cache_rows(rows, capacity)
    cache = StaticCache(config=adapter.model.config, max_cache_len=total)
    context = adapter.prefill(inputs, video_embeds=video_embeds, kept_grid_indices=kept_grid_indices,
                              positions=positions, observe=observe, cache=cache)
    return StaticContext(adapter, cache, context.prefill_len, context.next_position, context.last_logits,
                         total - rows, forward_fn)
