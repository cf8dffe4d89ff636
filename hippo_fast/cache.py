"""The fast path's decode context: a KV cache preallocated for one request, written at explicit rows.

StaticContext holds a transformers StaticCache of prefill_len + capacity rows that the STOCK model
reads and writes itself: `forward(ids, offset)` sets every layer's write pointer
(`cumulative_length`) to prefill_len + offset and calls the stock forward, which writes the new
keys / values at those rows and builds its causal mask from the same pointer.

Capacity grows in steps. The request bounds it (`limit`: request_capacity, max_new_tokens + the
schedule's look-ahead + 2; a request whose positions would pass the model's maximum, or
whose bounded caches would not fit in memory, is refused before any cache exists: `check_fits`), but
a cache starts with rows for at most FIRST_CAPACITY generated tokens and doubles (up to the limit)
when a forward needs more, copying its rows. The stock forward attends over every row of the cache
(masked), so a step costs what the allocated rows cost: growing keeps that within 2x of the rows a
decode has reached, instead of the rows a generous --max-new-tokens could reach (issue 25: a 1,000,000
token bound made a 26-token answer 150x slower). Requests within FIRST_CAPACITY allocate once, as before.

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

import os
import time
from dataclasses import dataclass

import torch

from hippo.errors import ConfigError
from hippo.interfaces import FastContext


class StaticContext:
    """One model's prefilled static cache and its position arithmetic (see the module docstring)."""

    def __init__(self, adapter, cache, prefill_len: int, next_position: int, last_logits: torch.Tensor,
                 capacity: int, forward_fn=None, limit: int | None = None):
        self.adapter = adapter
        self.cache = cache
        self.prefill_len = prefill_len
        self.next_position = next_position
        self.last_logits = last_logits  # (V,) fp32 logits for generated token 0, on the model's device
        self.capacity = capacity  # generated tokens the cache has rows for now
        self.limit = max(capacity, limit or 0)  # generated tokens it may grow to (the request's bound)
        self.forward_fn = forward_fn or adapter.model.forward  # the stock forward, or torch.compile of it
        # Replayed as CUDA graphs (compiled.compiled_forward on a GPU): the cache comes from cache_pool.POOL
        # (stable addresses across requests) and warm() runs each shape until it replays.
        self.cuda_graphs = bool(getattr(self.forward_fn, "cuda_graphs", False))
        self._lease = None  # gives a pooled cache back (cache_pool.CachePool.lend)
        self.device = adapter.device
        self.vocab_size = adapter.vocab_size
        self.forwards = 1  # the prefill
        # Positions of generated tokens 0..capacity-1 (all M-RoPE rows equal for text), on the device.
        self._positions = torch.arange(capacity, device=self.device) + next_position

    def set_write_row(self, offset: int) -> None:
        """Point every layer's next write at generated token `offset` (the implicit rollback)."""
        for layer in self.cache.layers:
            layer.cumulative_length.fill_(self.prefill_len + offset)

    def forward(self, ids: torch.Tensor, offset: int) -> torch.Tensor:
        """Logits (k, V) fp32 after each of `ids` (k,), which are generated tokens offset..offset+k-1."""
        logits = self.probe(ids, offset)
        self.forwards += 1
        return logits

    @torch.no_grad()
    def probe(self, ids: torch.Tensor, offset: int) -> torch.Tensor:
        """forward() not counted in `forwards`: for a warm-up or a measurement, whose rows the decode
        overwrites (implicit rollback)."""
        k = ids.shape[0]
        if offset + k > self.capacity:
            if offset + k > self.limit:
                raise ConfigError(f"the static cache holds {self.limit} generated tokens, a forward needs "
                                  f"{offset + k}: prepare the contexts with the request's max_new_tokens and gamma")
            self.grow(offset + k)
        self.set_write_row(offset)
        positions = self._positions[offset : offset + k].expand(self.adapter.position_rows, -1)
        out = self.forward_fn(input_ids=ids[None].to(self.device), position_ids=self.adapter.batch_positions(positions),
                              cache=self.cache, use_cache=True)
        return owned_fp32(out.logits[0], self.cuda_graphs)

    def warm(self, step_sizes, seen: set) -> None:
        """Run each forward shape (k tokens on this cache size) not in `seen`, so that a compiled forward
        is compiled, and under CUDA graphs recorded, now and not in the middle of a decode (which shapes
        a decode meets depends on its acceptances): once, or WARM_CALLS_CUDA_GRAPHS times on the cache's
        own buffers (a graph is recorded for the addresses it reads). The rows written are overwritten
        by the decode; probes, not counted in `forwards`."""
        rows = self.prefill_len + self.capacity
        calls, buffers = (WARM_CALLS_CUDA_GRAPHS, self.buffer_addresses()) if self.cuda_graphs else (1, None)
        for k in step_sizes:
            if (rows, buffers, k) not in seen and k <= self.capacity:
                for _ in range(calls):
                    self.probe(torch.zeros(k, dtype=torch.long, device=self.device), 0)
                seen.add((rows, buffers, k))

    def step_time(self, token: int, repeats: int = 3) -> float:
        """The median time of a one-token forward (PEARL's `--gamma auto`), probes not counted in
        `forwards`; the first call may compile and is not timed."""
        ids = torch.tensor([token], device=self.device)
        times = []
        for _ in range(repeats + 1):
            t0 = time.perf_counter()
            self.probe(ids, 0)[-1, 0].item()  # .item(): wait for the device
            times.append(time.perf_counter() - t0)
        return sorted(times[1:])[repeats // 2]

    def buffer_addresses(self) -> tuple[int, ...]:
        """The data pointers of the cache's tensors: what a CUDA graph recorded on it replays on."""
        return tuple(t.data_ptr() for layer in self.cache.layers if getattr(layer, "is_initialized", True)
                     for t in (layer.keys, layer.values, layer.cumulative_length))

    def reserve(self, generated: int) -> None:
        """Let the cache grow to `generated` tokens (the audit reuses one prefill for decodes of different
        lengths; a request's bound is set by its prefill). Rows are added when a forward needs them."""
        self.limit = max(self.limit, generated)

    def grow(self, needed: int) -> None:
        """Rows for at least `needed` generated tokens: the capacity doubled (at least `needed`, at most the
        limit), every row copied into a new StaticCache (the old one is freed once the copy is made)."""
        rows = self.prefill_len
        total = min(cache_rows(rows, max(2 * self.capacity, needed)), cache_rows(rows, self.limit))
        bigger = new_cache(self.adapter.model, total, self.cuda_graphs)
        for old, new in zip(self.cache.layers, bigger.layers, strict=True):
            if not getattr(old, "is_initialized", True):
                continue
            new.lazy_initialization(old.keys, old.values)
            new.keys[:, :, : old.keys.shape[2]] = old.keys
            new.values[:, :, : old.values.shape[2]] = old.values
        if self._lease is not None:
            self._lease()  # the smaller cache goes back to the pool
        self.cache, self.capacity = bigger, total - rows
        self.lease_cache(total)
        self.limit = max(self.limit, self.capacity)
        self._positions = torch.arange(self.capacity, device=self.device) + self.next_position

    def lease_cache(self, rows: int) -> None:
        """A pooled cache (cuda_graphs) goes back to cache_pool.POOL when this context is collected."""
        if self.cuda_graphs:
            from hippo_fast.cache_pool import POOL

            self._lease = POOL.lend(self, self.adapter.model, rows, self.cache)


def owned_fp32(logits: torch.Tensor, graph_output: bool) -> torch.Tensor:
    """fp32 logits in memory of their own. `.float()` of fp32 logits is the same tensor, and under CUDA
    graphs (torch.compile mode "reduce-overhead", `graph_output`) that is the graph's output buffer, which
    the next replay of ANY graph of the device overwrites (they share one memory pool): serial PEARL reads
    the target's logits after the draft's replays. Then a copy of k x V floats, small beside a forward;
    any other forward returns fresh logits, which are kept as they are."""
    return logits.clone() if graph_output and logits.dtype == torch.float32 else logits.float()


def new_cache(model, rows: int, pooled: bool):
    """A StaticCache of `rows` rows: from cache_pool.POOL when `pooled` (forwards replayed as CUDA graphs)."""
    from transformers import StaticCache

    if pooled:
        from hippo_fast.cache_pool import POOL

        return POOL.take(model, rows)
    return StaticCache(config=model.config, max_cache_len=rows)


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


def as_fast_context(context) -> FastContext:
    """`context` itself if it has the fast interface (hippo.interfaces.FastContext: a StaticContext, or a
    wrapper of one), else a HostContext around it (a StepContext)."""
    return context if isinstance(context, FastContext) else HostContext(context)


CACHE_ROWS_MULTIPLE = 64
# torch.compile mode "reduce-overhead" (CUDA graph trees): the first call of a shape compiles and warms up,
# the second records its graph, the third replays it.
WARM_CALLS_CUDA_GRAPHS = 3
# Generated tokens a static cache has rows for at first; it doubles from there up to the request's
# bound (StaticContext.grow). Every default request (64 new tokens; the benchmark's 128; the README's
# 192) fits, so it allocates once.
FIRST_CAPACITY = 256


def request_capacity(config, decoding: str) -> int:
    """Generated tokens a request's caches and token buffers may need rows for, the one rule every
    decode, the pipeline and the benchmarks size by: max_new_tokens + the schedule's look-ahead (SD:
    gamma drafts; PEARL: up to gamma - 1 pending and gamma drafted tokens, bounded by 2 gamma; AR:
    none) + 2 spare rows. `config`: a hippo.request.DecodeConfig; caches start smaller and grow."""
    lookahead = {"ar": 0, "sd": config.gamma, "pearl": 2 * config.gamma}[decoding]
    return config.max_new_tokens + lookahead + 2


def cache_rows(prompt_rows: int, capacity: int, multiple: int | None = None) -> int:
    """Rows of a request's static cache: prompt + capacity, rounded up to a multiple of `multiple`
    (CACHE_ROWS_MULTIPLE), so that requests whose prompts differ by a few rows share the compiled graphs
    of one cache shape."""
    multiple = multiple or CACHE_ROWS_MULTIPLE
    return -(-(prompt_rows + capacity) // multiple) * multiple


def first_capacity(capacity: int) -> int:
    """Generated tokens a request bounded by `capacity` allocates rows for at its prefill."""
    return min(capacity, FIRST_CAPACITY)


def static_prefill(adapter, inputs, capacity: int, kept_grid_indices=None, positions: str = "keep",
                   video_embeds=None, observe=None, forward_fn=None) -> StaticContext:
    """The stock prefill (hippo/adapters/base.py, the same computation) into a StaticCache with rows
    for the prompt plus first_capacity(capacity) generated tokens (cache_rows), growing up to `capacity`."""
    rows = int(adapter.kept_rows(inputs, kept_grid_indices).numel())
    total = cache_rows(rows, first_capacity(capacity))
    cache = new_cache(adapter.model, total, bool(getattr(forward_fn, "cuda_graphs", False)))
    context = adapter.prefill(inputs, video_embeds=video_embeds, kept_grid_indices=kept_grid_indices,
                              positions=positions, observe=observe, cache=cache)
    made = StaticContext(adapter, cache, context.prefill_len, context.next_position, context.last_logits,
                         total - rows, forward_fn, limit=capacity)
    made.lease_cache(total)
    return made


# ---- what a request may ask for: positions and memory, checked before any cache exists -----------------
MEMORY_SHARE = 0.9  # of the memory available at the check: the bounded caches may take this much


def kv_row_bytes(config, dtype: torch.dtype) -> int:
    """Bytes of one static-cache row of a model: layers x (keys + values) x KV heads x head size x dtype
    size (every layer counted at full length: an upper bound for sliding-window layers)."""
    text = config.get_text_config(decoder=True)
    heads = getattr(text, "num_key_value_heads", None) or text.num_attention_heads
    head_dim = getattr(text, "head_dim", None) or text.hidden_size // text.num_attention_heads
    return text.num_hidden_layers * 2 * heads * head_dim * torch.empty((), dtype=dtype).element_size()


def max_positions(config) -> int | None:
    """The model's maximum position (max_position_embeddings of its language model), None if it has none."""
    return getattr(config.get_text_config(decoder=True), "max_position_embeddings", None)


def available_bytes(device: torch.device | str) -> int | None:
    """Memory a new allocation can take on `device` now: MemAvailable (Linux) for a CPU, the free memory
    of a CUDA device; None where this cannot be told (then nothing is refused for memory)."""
    device = torch.device(device)
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    if device.type == "cpu":
        try:
            with open("/proc/meminfo") as f:
                for line in f:
                    if line.startswith("MemAvailable:"):
                        return int(line.split()[1]) * 1024
        except OSError:
            pass
        try:
            return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            return None
    return None


def peak_rows(prompt_rows: int, capacity: int) -> int:
    """The most cache rows a context bounded by `capacity` holds at once: its largest size, plus the
    size it grew from while the rows are copied (StaticContext.grow)."""
    sizes, current = [], first_capacity(capacity)
    while True:
        sizes.append(cache_rows(prompt_rows, current))
        if current >= capacity:
            break
        current = min(capacity, 2 * current)
    sizes[-1] = max(sizes[-1], cache_rows(prompt_rows, capacity))
    return max(sizes[-1] + (sizes[-2] if len(sizes) > 1 else 0), sizes[-1])


@dataclass(frozen=True)
class CacheNeed:
    """One model's static cache in a request: what check_fits weighs."""

    model: str  # the checkpoint's name, for the message
    device: str
    prompt_rows: int  # an upper bound of the prompt's rows (the draft's pruned prompt is shorter)
    row_bytes: int
    max_positions: int | None


def check_fits(needs: list[CacheNeed], next_position: int, max_new_tokens: int, capacity: int) -> None:
    """Refuse, before any cache is allocated, a request whose generated tokens would pass a model's
    maximum position, or whose caches at their bound (`capacity` generated tokens, grown in steps:
    peak_rows) would take more than MEMORY_SHARE of the memory available on their device. ConfigError
    (one line: how much it needs, what to lower)."""
    for need in needs:
        if need.max_positions is not None and next_position + max_new_tokens > need.max_positions:
            most = need.max_positions - next_position
            lower = (f"lower --max-new-tokens to at most {most}" if most > 0
                     else "shorten the prompt or lower --frames")
            raise ConfigError(f"--max-new-tokens {max_new_tokens}: {need.model} has {need.max_positions} positions "
                              f"and the prompt takes {next_position}, so at most {max(0, most)} new tokens fit: "
                              f"{lower}")
    slack = capacity - max_new_tokens
    for device in sorted({n.device for n in needs}):
        here = [n for n in needs if n.device == device]
        free = available_bytes(device)
        if free is None:
            continue

        def nbytes(tokens: int, here=here) -> int:
            return sum(peak_rows(n.prompt_rows, tokens + slack) * n.row_bytes for n in here)

        need = nbytes(max_new_tokens)
        if need <= MEMORY_SHARE * free:
            continue
        low, high = 0, max_new_tokens  # the most new tokens that fit: low fits (or is 0), high does not
        while high - low > 1:
            mid = (low + high) // 2
            low, high = (mid, high) if nbytes(mid) <= MEMORY_SHARE * free else (low, mid)
        caches = ", ".join(f"{n.model}: {peak_rows(n.prompt_rows, capacity)} rows x {n.row_bytes} B" for n in here)
        lower = (f"lower --max-new-tokens to at most {low}" if low > 0 else "lower --frames or use a smaller --dtype")
        raise ConfigError(f"--max-new-tokens {max_new_tokens}: the request's KV caches would need {_gib(need)} on "
                          f"{device} ({caches}) and {_gib(free)} is available there ({MEMORY_SHARE:.0%} of it may "
                          f"be used): {lower}")


def _gib(nbytes: float) -> str:
    return f"{nbytes / 2**30:.2f} GiB"
