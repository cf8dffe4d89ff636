"""hippo_fast: the optimized implementation (static cache, fewer host syncs, two-worker overlap).

Not implemented yet: it is a later issue. It will expose the same Request -> Result API as
hippo_ref.pipeline.generate and must be token-identical to it; `hippo generate --impl fast`
says so until then.
"""
