"""hippo_fast: the optimized implementation, token-identical to hippo_ref (its specification).

Same API (hippo.generation.implementation("fast") runs a GenerationRequest), the same module and
function names as hippo_ref so a reader can hold one beside the other:

    cache.py                 StaticContext: a request-sized transformers StaticCache, implicit rollback
    sampling.py              the keyed uniforms and the accept / residual rule as batched device ops
    decoding/                autoregressive, speculative, parallel (PEARL, executed serially here)
    pruning/                 scores and methods in batched tensor ops (identical kept indices)
    pipeline.py              static prefills, scoring, pruning; optional torch.compile of the steps

What it shares with hippo_ref stays in hippo/ (video, preprocessing, adapters, request types, the
flow of a request). The verification suite audits it as the candidates fast-sd and fast-pearl.
"""
