"""An independent oracle in JAX: the EXACT output laws of AR, SD and PEARL on table models.

JAX is deliberately another framework than the torch code it audits; nothing here imports hippo_ref.
For a target table p and a draft table q (verification/tables.py) and a length L, each function
returns {output sequence of length L: probability}, computed by enumerating every draft path and
every accept / reject event in float64:

- AR:    prod_i p(y_i | y_<i).
- SD:    rounds of gamma drafts x ~ q, accepted with min(1, p/q), a rejection redrawn from
         norm(max(0, p - q)), a bonus from p after a full block (Leviathan et al. 2023).
- PEARL: the pre-verify / post-verify schedule of hippo_ref/decoding/parallel.py's docstring:
         per round the draft drafts gamma tokens after committed + pending; the candidates checked
         are pending + the first new draft; all accepted -> the other new drafts become pending;
         a rejection -> residual draw, pending dropped. No bonus token.
The laws of SD and PEARL must equal AR's (to 1e-12): that is the losslessness of the schedules
as specified, independent of any implementation. The distributions p and q are the table logits
after temperature / top-k / top-p, implemented here again in JAX with HF's semantics.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from functools import cache, lru_cache

import jax
import jax.numpy as jnp
import numpy as np

jax.config.update("jax_enable_x64", True)


@dataclass(frozen=True)
class Warp:
    """temperature 0 = greedy (one-hot at the first argmax); top_k / top_p as HF's warpers."""

    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None


def warp(logits: np.ndarray, w: Warp) -> jnp.ndarray:
    x = jnp.asarray(logits, dtype=jnp.float64)
    if w.temperature == 0:
        return jax.nn.one_hot(jnp.argmax(x), x.shape[0], dtype=jnp.float64)
    x = x / w.temperature
    if w.top_k is not None and w.top_k < x.shape[0]:
        kth = jnp.sort(x)[-w.top_k]
        x = jnp.where(x < kth, -jnp.inf, x)
    if w.top_p is not None and w.top_p < 1:
        order = jnp.argsort(x, stable=True)  # ascending
        cumulative = jnp.cumsum(jax.nn.softmax(x[order]))
        remove_sorted = (cumulative <= 1 - w.top_p).at[-1].set(False)
        remove = jnp.zeros_like(remove_sorted).at[order].set(remove_sorted)
        x = jnp.where(remove, -jnp.inf, x)
    return jax.nn.softmax(x)


class Laws:
    """Exact output laws for one (target table, draft table, warps, L, gamma)."""

    def __init__(self, target, draft, length: int, gamma: int, target_warp: Warp, draft_warp: Warp,
                 broken_control: bool = False):
        self.target, self.draft = target, draft
        # The control: accept with min(1, q/p) instead of min(1, p/q). Its laws must NOT equal AR's,
        # which shows the 1e-12 comparison can fail.
        self.broken_control = broken_control
        self.length, self.gamma = length, gamma
        self.tw, self.dw = target_warp, draft_warp
        self.vocab = target.vocab
        self.p = lru_cache(maxsize=None)(lambda ctx: np.asarray(warp(self.target.logits(ctx), self.tw)))
        self.q = lru_cache(maxsize=None)(lambda ctx: np.asarray(warp(self.draft.logits(ctx), self.dw)))

    # ---- helpers --------------------------------------------------------------------------------
    def residual(self, ctx) -> jnp.ndarray:
        r = jnp.maximum(jnp.asarray(self.p(ctx)) - jnp.asarray(self.q(ctx)), 0.0)
        total = r.sum()
        return jnp.where(total > 0, r / jnp.where(total > 0, total, 1.0), jnp.asarray(self.p(ctx)))

    def draft_paths(self, ctx):
        """Every gamma-token draft path after ctx with its probability under q (zero-mass paths skipped)."""
        paths = [((), 1.0)]
        for _ in range(self.gamma):
            grown = []
            for path, prob in paths:
                q = self.q(ctx + path)
                for v in range(self.vocab):
                    if q[v] > 0:
                        grown.append((path + (v,), prob * float(q[v])))
            paths = grown
        return paths

    def acceptance(self, p, q, c) -> float:
        """The probability that candidate c is accepted: min(1, p(c) / q(c)) (the broken control: q / p)."""
        ratio = q[c] / p[c] if self.broken_control and p[c] > 0 else p[c] / q[c]
        return float(jnp.minimum(1.0, ratio))

    def check(self, ctx, candidates, weight, out, on_reject, on_accept_all):
        """Check candidates in order from ctx; add weighted continuations to `out`."""
        for c in candidates:
            p, q = self.p(ctx), self.q(ctx)
            a = self.acceptance(p, q, c)
            if a < 1:
                r = np.asarray(self.residual(ctx))
                for t in range(self.vocab):
                    if r[t] > 0:
                        for y, prob in on_reject(ctx + (t,)).items():
                            out[y] += weight * (1 - a) * float(r[t]) * prob
            weight *= a
            if weight == 0:
                return
            ctx = ctx + (c,)
        for y, prob in on_accept_all(ctx).items():
            out[y] += weight * prob

    # ---- the three laws -------------------------------------------------------------------------
    def ar(self) -> dict:
        @cache
        def law(ctx):
            if len(ctx) >= self.length:
                return {ctx[: self.length]: 1.0}
            out = defaultdict(float)
            p = self.p(ctx)
            for v in range(self.vocab):
                if p[v] > 0:
                    for y, prob in law(ctx + (v,)).items():
                        out[y] += float(p[v]) * prob
            return dict(out)

        return law(())

    def sd(self) -> dict:
        @cache
        def law(ctx):
            if len(ctx) >= self.length:
                return {ctx[: self.length]: 1.0}
            out = defaultdict(float)

            def bonus(end):
                res = defaultdict(float)
                p = self.p(end)
                for b in range(self.vocab):
                    if p[b] > 0:
                        for y, prob in law(end + (b,)).items():
                            res[y] += float(p[b]) * prob
                return res

            for path, weight in self.draft_paths(ctx):
                self.check(ctx, path, weight, out, law, bonus)
            return dict(out)

        return self._first_token_then(law)

    def pearl(self) -> dict:
        @cache
        def law(ctx, pending):
            if len(ctx) >= self.length:
                return {ctx[: self.length]: 1.0}
            out = defaultdict(float)
            for path, weight in self.draft_paths(ctx + pending):
                candidates = pending + path[:1]
                self.check(
                    ctx, candidates, weight, out,
                    on_reject=lambda c: law(c, ()),
                    on_accept_all=lambda c, rest=path[1:]: law(c, rest),
                )
            return dict(out)

        return self._first_token_then(lambda ctx: law(ctx, ()))

    def _first_token_then(self, law) -> dict:
        """Every algorithm commits token 0 from the target's prefill, then runs its rounds."""
        out = defaultdict(float)
        p = self.p(())
        for v in range(self.vocab):
            if p[v] > 0:
                for y, prob in law((v,)).items():
                    out[y] += float(p[v]) * prob
        return dict(out)


def max_abs_difference(a: dict, b: dict) -> float:
    keys = set(a) | set(b)
    return max(abs(a.get(k, 0.0) - b.get(k, 0.0)) for k in keys)


def greedy_rounds(target, draft, length: int, gamma: int, schedule: str, eos: int | None = None):
    """The deterministic greedy run of `schedule` ("sd" or "pearl") on table models, simulated here
    independently: (tokens, tokens committed per round). A correct implementation reproduces both;
    a draft-side state bug (stale or misplaced draft cache) changes the second even when the first
    is right."""

    def argmax(model, ctx):
        return int(jnp.argmax(jnp.asarray(model.logits(ctx))))

    tokens, rounds, pending = [argmax(target, ())], [], []
    done = tokens[-1] == eos or len(tokens) >= length
    while not done:
        ctx = tuple(tokens) + tuple(pending)
        drafts = []
        for _ in range(gamma):
            drafts.append(argmax(draft, ctx + tuple(drafts)))
        candidates = (pending + drafts[:1]) if schedule == "pearl" else drafts
        new, rejected = [], False
        for c in candidates:
            best = argmax(target, tuple(tokens) + tuple(new))
            new.append(best)
            if best != c:
                rejected = True
                break
        if schedule == "sd" and not rejected:
            new.append(argmax(target, tuple(tokens) + tuple(new)))
        committed = 0
        for t in new:
            tokens.append(t)
            committed += 1
            if t == eos or len(tokens) >= length:
                done = True
                break
        rounds.append(committed)
        pending = [] if (rejected or schedule == "sd") else drafts[1:]
    return tokens, rounds
