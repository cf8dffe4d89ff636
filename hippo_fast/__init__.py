"""hippo_fast: the optimized implementation, token-identical to hippo_ref (its specification).

Same API (hippo.generation.implementation("fast") runs a GenerationRequest), the same module and
function names as hippo_ref so a reader can hold one beside the other:

    cache.py                 StaticContext: a request-sized transformers StaticCache, implicit rollback;
                             request_capacity, the one size rule of caches and token buffers
    cache_pool.py            static caches kept for forwards replayed as CUDA graphs
    compiled.py              torch.compile of the decode steps and their warm-up, one registry per process
    sampling.py              the keyed uniforms and the accept / residual rule as batched device ops
    host_syncs.py            host reads of device values, counted
    decoding/                autoregressive, speculative, parallel (PEARL: serial, or on two CUDA streams,
                             lanes.py; its two halves for two processes, parallel_split.py)
    overlap/                 the draft in its own process: processes.py (this side), worker.py (the
                             worker), protocol.py (messages, jobs, timeouts), link.py (their transport)
    pruning/                 scores and methods in batched tensor ops (identical kept indices)
    phases.py                prepare_contexts' opt-in phase times
    pipeline.py              static prefills, scoring, pruning; the implementation the registry returns

Layers (pyproject.toml, `nox -s lint`): pipeline over overlap/ over decoding/, no import cycles. What it
shares with hippo_ref stays in hippo/ (video, preprocessing, adapters, request types, the flow of a
request). The verification suite audits it as the candidates fast-sd, fast-pearl, fast-pearl-streams and
fast-pearl-processes.
"""
