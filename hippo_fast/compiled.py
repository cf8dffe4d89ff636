"""torch.compile of the decode steps and their warm-up: one registry per process, shared by the
pipeline, the draft's worker process and the benchmark, so that a model is compiled once and each of
its forward shapes captured once whoever decodes with it.

With compile=True the one-token and (gamma + 1)-token forwards of both models go through
`torch.compile` of the stock forward (fixed shapes: each is captured once per model and cache size;
CUDA graphs on a GPU via mode "reduce-overhead"); the prefill is never compiled.
"""

from __future__ import annotations

import weakref

_COMPILED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # model -> its compiled forward
_WARMED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # model -> {(cache rows, buffers, step tokens)}

# Graphs one compiled forward may hold: transformers wraps every model's forward in one shared
# function, so dynamo keeps the graphs of the target and the draft, of every step shape (1, 2,
# gamma, gamma + 1 tokens) and of every cache size (cache_rows buckets) in one list, whose default
# limit (8) a benchmark over varied prompts exceeds; with fullgraph=True that is a hard failure.
RECOMPILE_LIMIT = 64


def compiled_forward(model):
    """torch.compile of the model's stock forward, one per model (fixed shapes, whole graph)."""
    import torch
    import torch._dynamo

    torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, RECOMPILE_LIMIT)
    if model not in _COMPILED:
        mode = "reduce-overhead" if next(model.parameters()).device.type == "cuda" else None
        options = None if mode else {"cpp_wrapper": True}  # CPU: launch the kernels from C++, not Python
        compiled = torch.compile(model.forward, fullgraph=True, dynamic=False, mode=mode, options=options)
        compiled.cuda_graphs = mode == "reduce-overhead"  # read by cache.StaticContext (its cache pool, warm-up)
        _COMPILED[model] = compiled
    return _COMPILED[model]


def step_sizes(decoding: str, gamma: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The forward shapes (tokens per step) a decode meets: (target's, draft's)."""
    if decoding == "ar":
        return (1,), ()
    if decoding == "sd":
        return (gamma + 1,), (1, 2)  # the draft's 2-token step follows a fully accepted block
    return (1, gamma), (1,)


def warm(context, sizes) -> None:
    """Capture each of `sizes` (tokens per step) on a StaticContext's compiled forward now, not when an
    acceptance first needs it inside a decode; a shape already captured for its model is skipped."""
    if sizes:
        context.warm(sizes, _WARMED.setdefault(context.adapter.model, set()))


def warm_decode(decoding: str, gamma: int, target_context, draft_context) -> None:
    """Every shape a decode meets, on those of its two contexts that are StaticContexts."""
    from hippo_fast.cache import StaticContext

    for context, sizes in zip((target_context, draft_context), step_sizes(decoding, gamma), strict=True):
        if isinstance(context, StaticContext):
            warm(context, sizes)
