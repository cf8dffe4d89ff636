"""Distributions, draws and the speculative accept / residual step: the reference definitions.

Randomness scheme (a second implementation reproduces it exactly)
-----------------------------------------------------------------
Every random number is a counter-based uniform `keyed_uniform(seed, purpose, index)` in [0, 1):
the 64-bit splitmix64 hash of (seed, purpose, index), top 53 bits, times 2**-53. `index` is the
0-based number of the generated token the draw decides; `purpose` says which draw it is
(TARGET: a draw from the target's p (autoregressive step, bonus token); DRAFT: the draft's draw
from q; ACCEPT: the accept test; RESIDUAL: the draw from norm(max(0, p - q))). No global RNG,
no generator state: the numbers do not depend on the schedule (serial or parallel), on how many
times a position was drafted, or on the device. Why that is still exact: the token finally
committed at index i is a function of the committed prefix and the four uniforms of index i only,
and those are independent of everything that decided the prefix, so its law given the prefix is
the single-step law (p for AR; p again for the accept/residual step, by Leviathan et al. Thm. 1).

Distributions are float64 probability vectors over the target's vocabulary, computed from the
model's fp32 logits. Greedy decoding (temperature 0) is the one-hot vector at `torch.argmax` of the
fp32 logits (first maximum on ties, as HF's greedy search); with one-hot p and q the general
accept / residual rule below reduces exactly to "accept while the draft token is the target's
argmax, else take the argmax", so greedy needs no separate code path.
"""

from __future__ import annotations

import torch

from hippo.request import SamplingParams  # noqa: F401  (defined with the request; re-exported)

TARGET, DRAFT, ACCEPT, RESIDUAL = 1, 2, 3, 4
_MASK64 = (1 << 64) - 1


def _splitmix64(x: int) -> int:
    x = (x + 0x9E3779B97F4A7C15) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


def keyed_uniform(seed: int, purpose: int, index: int) -> float:
    """A uniform in [0, 1) determined by (seed, purpose, index) alone."""
    h = _splitmix64(_splitmix64(_splitmix64(seed & _MASK64) ^ purpose) ^ (index & _MASK64))
    return (h >> 11) * 2.0**-53


def distribution(logits: torch.Tensor, params: SamplingParams) -> torch.Tensor:
    """The float64 distribution actually sampled from, for one row of fp32 logits (V,)."""
    if params.greedy:
        probs = torch.zeros(logits.shape[-1], dtype=torch.float64)
        probs[int(torch.argmax(logits))] = 1.0
        return probs
    scores = logits.double() / params.temperature
    if params.top_k is not None and params.top_k < scores.numel():
        kth = torch.topk(scores, params.top_k).values[-1]
        scores = scores.masked_fill(scores < kth, float("-inf"))  # ties with the k-th are kept, as HF
    if params.top_p is not None and params.top_p < 1:
        ascending, order = torch.sort(scores, stable=True)
        cumulative = ascending.softmax(-1).cumsum(-1)
        remove = cumulative <= 1 - params.top_p
        remove[-1] = False  # keep at least the most likely token, as HF
        scores = scores.masked_fill(remove.scatter(0, order, remove), float("-inf"))
    return torch.softmax(scores, dim=-1)


def sample(probs: torch.Tensor, u: float) -> int:
    """Inverse-CDF draw: the first index whose cumulative mass exceeds u * total (never a zero-mass index)."""
    cdf = torch.cumsum(probs, dim=0)
    index = int(torch.searchsorted(cdf, torch.tensor([u * float(cdf[-1])], dtype=cdf.dtype), right=True))
    if index >= probs.numel():  # u * total rounded up to the total: take the last index with mass
        index = int(torch.nonzero(probs > 0)[-1])
    return index


def accepts(p: torch.Tensor, q: torch.Tensor, token: int, u: float) -> bool:
    """Accept a draft token drawn from q with probability min(1, p(x) / q(x)): u * q(x) < p(x)."""
    return u * float(q[token]) < float(p[token])


def residual(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """norm(max(0, p - q)): the law a rejected position is redrawn from."""
    r = torch.clamp(p - q, min=0)
    total = float(r.sum())
    if total <= 0:  # p == q: a rejection cannot happen; keep the function total anyway
        return p
    return r / total


def speculative_step(p: torch.Tensor, q: torch.Tensor, token: int, seed: int, index: int) -> tuple[int, bool]:
    """One verification: returns (committed token, accepted?) for draft `token` at generated index `index`."""
    if accepts(p, q, token, keyed_uniform(seed, ACCEPT, index)):
        return token, True
    return sample(residual(p, q), keyed_uniform(seed, RESIDUAL, index)), False


def draw(logits: torch.Tensor, params: SamplingParams, seed: int, purpose: int, index: int) -> tuple[int, torch.Tensor]:
    """Sample generated token `index` from `logits` under `params`; returns (token, the distribution used)."""
    probs = distribution(logits, params)
    return sample(probs, keyed_uniform(seed, purpose, index)), probs
