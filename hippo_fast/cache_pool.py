"""Static caches kept between requests for forwards that run as CUDA graphs.

A CUDA graph replays on the buffers it was recorded with: transformers marks a StaticCache's tensors as
static addresses, so a new StaticCache per request makes torch record every graph again, inside the
timed decode (and after `triton.cudagraph_unexpected_rerecord_limit` re-records it silently stops
using graphs). The pool lends one model's caches by size: a cache a context holds is lent to it
alone (a target that is its own draft gets two), and comes back when the context is collected or
grows out of it. A cache taken again is `reset()` (zeros, write pointers 0): a fresh cache's state.

Only forwards that run as CUDA graphs take from the pool (their caches' addresses matter); the others
allocate per request and free at once, so memory checks (cache.check_fits) see what a request holds.
"""

from __future__ import annotations

import weakref


class CachePool:
    """Free StaticCaches per model and size (max_cache_len)."""

    def __init__(self):
        self._free: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # model -> {rows: [cache]}
        self.made = 0  # caches allocated by take() (the tests read it)

    def take(self, model, rows: int):
        """A cache of `rows` rows for `model`, lent until `lend`'s owner lets it go."""
        from transformers import StaticCache

        free = self._free.setdefault(model, {}).get(rows)
        if free:
            cache = free.pop()
            cache.reset()
            return cache
        self.made += 1
        return StaticCache(config=model.config, max_cache_len=rows)

    def give_back(self, model, rows: int, cache) -> None:
        self._free.setdefault(model, {}).setdefault(rows, []).append(cache)

    def lend(self, owner, model, rows: int, cache) -> weakref.finalize:
        """Give `cache` back when `owner` is collected (or when the returned handle is called)."""
        return weakref.finalize(owner, self.give_back, model, rows, cache)

    def clear(self) -> None:
        self._free.clear()
        self.made = 0


POOL = CachePool()
