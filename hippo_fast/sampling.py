"""hippo_ref/sampling.py on the device, batched: the same keyed uniforms, distributions, draws and
accept / residual rule, computed with tensor ops so a decode needs no host sync per token.

Every function here equals its namesake in hippo_ref.sampling (the specification): the same float64
operations in the same order, row by row, so on the CPU the tokens are the same bits (tests hold
them to the reference; the audit's `seeded_equivalence` check does too).

keyed uniforms: splitmix64 over int64 tensors. torch's int64 add and multiply wrap like uint64, so
the hash is the same bits; its right shift is arithmetic (sign-extending), so a logical shift
masks the sign bits away (`logical_shift`).
"""

from __future__ import annotations

import torch

from hippo.request import SamplingParams
from hippo_ref.sampling import ACCEPT, DRAFT, RESIDUAL, TARGET, _splitmix64  # noqa: F401  (the purposes)

_MASK64 = (1 << 64) - 1


def _signed(value: int) -> int:
    """A uint64 constant as the int64 with the same bits."""
    value &= _MASK64
    return value - (1 << 64) if value >= 1 << 63 else value


_GOLDEN, _MIX1, _MIX2 = (_signed(c) for c in (0x9E3779B97F4A7C15, 0xBF58476D1CE4E5B9, 0x94D049BB133111EB))


def logical_shift(x: torch.Tensor, bits: int) -> torch.Tensor:
    """x >> bits as on uint64 (zeros shifted in), for int64 tensors."""
    return (x >> bits) & ((1 << (64 - bits)) - 1)


def splitmix64(x: torch.Tensor) -> torch.Tensor:
    x = x + _GOLDEN
    x = (x ^ logical_shift(x, 30)) * _MIX1
    x = (x ^ logical_shift(x, 27)) * _MIX2
    return x ^ logical_shift(x, 31)


def keyed_uniforms(seed: int, purpose: int, indices: torch.Tensor) -> torch.Tensor:
    """float64 keyed_uniform(seed, purpose, i) for every i of the int64 tensor `indices`."""
    key = _signed(_splitmix64(_splitmix64(seed & _MASK64) ^ purpose))  # the per-(seed, purpose) part, on the host
    h = splitmix64(indices.to(torch.int64) ^ key)
    return logical_shift(h, 11).to(torch.float64) * 2.0**-53


class UniformTable:
    """Every uniform a decode may use, computed once on the device: `table[purpose][index]` for
    index < size (a decode's size: hippo_fast.cache.request_capacity)."""

    def __init__(self, seed: int, size: int, device):
        indices = torch.arange(size, dtype=torch.int64, device=device)
        self.size = size
        self.rows = {p: keyed_uniforms(seed, p, indices) for p in (TARGET, DRAFT, ACCEPT, RESIDUAL)}

    def __getitem__(self, purpose: int) -> torch.Tensor:
        return self.rows[purpose]


def distributions(logits: torch.Tensor, params: SamplingParams) -> torch.Tensor:
    """hippo_ref.sampling.distribution for every row of fp32 logits (k, V): (k, V) float64."""
    if params.greedy:
        probs = torch.zeros(logits.shape, dtype=torch.float64, device=logits.device)
        return probs.scatter_(-1, torch.argmax(logits, dim=-1, keepdim=True), 1.0)
    scores = logits.double() / params.temperature
    if params.top_k is not None and params.top_k < scores.shape[-1]:
        kth = torch.topk(scores, params.top_k, dim=-1).values[..., -1:]
        scores = scores.masked_fill(scores < kth, float("-inf"))  # ties with the k-th are kept, as HF
    if params.top_p is not None and params.top_p < 1:
        ascending, order = torch.sort(scores, dim=-1, stable=True)
        cumulative = ascending.softmax(-1).cumsum(-1)
        remove = cumulative <= 1 - params.top_p
        remove[..., -1] = False  # keep at least the most likely token, as HF
        scores = scores.masked_fill(remove.scatter(-1, order, remove), float("-inf"))
    return torch.softmax(scores, dim=-1)


def sample_rows(probs: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """hippo_ref.sampling.sample for every row: probs (k, V), u (k,) -> (k,) int64 token ids."""
    cdf = torch.cumsum(probs, dim=-1)
    index = torch.searchsorted(cdf, (u * cdf[:, -1])[:, None], right=True)[:, 0]
    vocab = probs.shape[-1]
    last_with_mass = vocab - 1 - torch.argmax((probs > 0).flip(-1).to(torch.int8), dim=-1)
    return torch.where(index >= vocab, last_with_mass, index)


def draw(logits: torch.Tensor, params: SamplingParams, uniforms: UniformTable, purpose: int, index: int):
    """Token `index` drawn from one row of logits (V,) under `params`: (0-d int64 token on the device,
    the float64 distribution drawn from). Greedy is the argmax (the one-hot distribution's only draw)."""
    if params.greedy:
        token = torch.argmax(logits)
        return token, None
    probs = distributions(logits[None], params)
    return sample_rows(probs, uniforms[purpose][index : index + 1])[0], probs[0]


def one_hot(tokens: torch.Tensor, vocab: int) -> torch.Tensor:
    """The distribution a greedy draw was drawn from: (k, V) float64 one-hot rows."""
    rows = torch.zeros(tokens.shape[0], vocab, dtype=torch.float64, device=tokens.device)
    return rows.scatter_(-1, tokens[:, None], 1.0)


def pick(values: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """values[index] for a 0-d device index, as a 0-d tensor without a host sync (indexing with a 0-d
    tensor calls .item() to make it an int)."""
    return values.gather(0, index.reshape(1)).reshape(())


def accepted_count(p: torch.Tensor, q: torch.Tensor, candidates: torch.Tensor, uniforms: UniformTable,
                   first_index: int) -> torch.Tensor:
    """How many candidates in a row pass u * q(x) < p(x) (hippo_ref's accept test), a 0-d device tensor;
    p, q (c + ..., V) float64 rows of the candidates' positions."""
    c = candidates.shape[0]
    rows = torch.arange(c, device=p.device)
    px, qx = p[rows, candidates], q[rows, candidates]
    u = uniforms[ACCEPT][first_index : first_index + c]
    return torch.cumprod((u * qx < px).to(torch.int64), 0).sum()


def verify(target_logits: torch.Tensor, candidates: torch.Tensor, qs: torch.Tensor | None, params: SamplingParams,
           uniforms: UniformTable, first_index: int, bonus: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """hippo_ref's verify_in_order (+ the bonus draw of verify_block when `bonus`) for all candidates at
    once. target_logits (c + bonus, V) rows for generated indices first_index..; candidates (c,) drawn
    from qs (c, V) float64 (None: a greedy draft, one-hot q). Returns device tensors (accepted count a,
    token after them): the residual draw at row a if a < c, else the bonus (or -1 without bonus)."""
    c = candidates.shape[0]
    if params.greedy and qs is None:
        # One-hot p and q: accept while the draft token is the target's argmax; the residual of a
        # rejection and the bonus are both that argmax (hippo_ref.sampling docstring).
        best = torch.argmax(target_logits, dim=-1)
        accepted = torch.cumprod((candidates == best[:c]).to(torch.int64), 0).sum()
        after = pick(best, torch.clamp(accepted, max=best.shape[0] - 1))
        if not bonus:
            after = torch.where(accepted < c, after, torch.full_like(after, -1))
        return accepted, after
    vocab = target_logits.shape[-1]
    p = distributions(target_logits, params)
    q = one_hot(candidates, vocab) if qs is None else qs
    accepted = accepted_count(p, q, candidates, uniforms, first_index)
    residual = torch.clamp(p[:c] - q, min=0)
    total = residual.sum(-1, keepdim=True)
    residual = torch.where(total > 0, residual / torch.where(total > 0, total, 1), p[:c])  # p == q: keep p
    redraw = sample_rows(residual, uniforms[RESIDUAL][first_index : first_index + c])
    if bonus:
        extra = sample_rows(p[c : c + 1], uniforms[TARGET][first_index + c : first_index + c + 1])
    else:
        extra = torch.full((1,), -1, dtype=torch.int64, device=p.device)
    after = pick(torch.cat([redraw, extra]), accepted)
    return accepted, after
