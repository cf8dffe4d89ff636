"""Candidates: the decoding implementations under audit, behind one small interface.

A candidate turns a case into generated tokens: `candidate.run(case, config) -> list[int]`.
Cases are either a TableCase (two table models, verification/tables.py) or a VideoCase (a target
and a draft checkpoint, a video, a prompt, a pruning spec). A candidate that cannot run a case says
why (`supports(case)` returns a reason), and the report records "not applicable", never "pass".

Built in: the reference (`ref-sd`, `ref-pearl`), the fast implementation (`fast-sd`, `fast-pearl`,
"not available" until hippo_fast exists), and HF assisted generation (`hf-assisted`,
`generate(..., assistant_model=draft)`, the first external client). Yours: `--candidate
module:function` where `function(target_context, draft_context, config)` follows the DecodeContext
protocol of hippo/adapters/base.py and returns token ids (or an object with `.tokens`).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from hippo_ref.decoding.common import DecodeConfig
from hippo_ref.pruning.methods import PruneSpec


@dataclass
class TableCase:
    pair: object  # verification.tables.TablePair

    @property
    def label(self) -> str:
        return f"table:{self.pair.name}"


@dataclass
class VideoCase:
    pair_name: str
    target: object  # VideoLLMAdapter
    draft: object
    video: str
    clip: object  # hippo.video.VideoClip
    prompt: str
    prune: PruneSpec = field(default_factory=PruneSpec)
    _prepared: dict = field(default_factory=dict, repr=False)

    @property
    def label(self) -> str:
        p = self.prune
        return f"{self.pair_name}|{self.video.rsplit('/', 1)[-1]}|{p.method}@{p.ratio}/{p.positions}"

    def contexts(self, decoding: str):
        """Fresh-enough prefilled target and draft contexts (prefilled once, then reused: every decode
        starts by rolling both caches back to the prompt)."""
        from hippo_ref.pipeline import GenerationRequest, prepare_contexts

        if decoding not in self._prepared:
            request = GenerationRequest(self.video, self.prompt, self.clip.num_frames, decoding, self.prune)
            self._prepared[decoding] = prepare_contexts(self.target, self.draft, request, self.clip)
        prepared = self._prepared[decoding]
        return prepared.target_context, prepared.draft_context


@dataclass
class RunResult:
    tokens: list[int]
    stats: object | None = None  # hippo.stats.DecodeStats when the candidate reports it


def as_run_result(result) -> RunResult:
    if hasattr(result, "tokens"):
        return RunResult(list(result.tokens), getattr(result, "stats", None))
    return RunResult([int(t) for t in result])


@dataclass
class Candidate:
    name: str
    decoding: str  # "sd" or "pearl": the schedule it claims to implement (for the report)
    decode: Callable | None = None  # context-level: (target_context, draft_context, config) -> tokens
    unavailable: str | None = None

    def supports(self, case) -> str | None:
        """None if this candidate can run `case`, else the reason it cannot."""
        return self.unavailable

    def run(self, case, config: DecodeConfig) -> list[int]:
        return self.run_with_stats(case, config).tokens

    def run_with_stats(self, case, config: DecodeConfig) -> RunResult:
        if isinstance(case, TableCase):
            target_context, draft_context = case.pair.contexts()
        else:
            target_context, draft_context = case.contexts(self.decoding)
        return as_run_result(self.decode(target_context, draft_context, config))


class HFAssisted(Candidate):
    """HF assisted generation: the stock `generate(assistant_model=...)`. It has no pruned-draft
    context and its own randomness (torch's global RNG, seeded per sample with the case's seed)."""

    def __init__(self):
        super().__init__("hf-assisted", "sd")

    def supports(self, case) -> str | None:
        if isinstance(case, TableCase):
            return "runs on HF models only (no table models)"
        if case.prune.method != "none":
            return "has no pruned-draft context"
        return None

    def run_with_stats(self, case, config: DecodeConfig) -> RunResult:
        return RunResult(self.run(case, config))

    def run(self, case, config: DecodeConfig) -> list[int]:
        inputs = case.target.prepare(case.clip, case.prompt)
        kwargs = dict(
            max_new_tokens=config.max_new_tokens,
            num_assistant_tokens=config.gamma,
            num_assistant_tokens_schedule="constant",
            eos_token_id=list(config.eos_token_ids) or None,
            pad_token_id=0,
        )
        s = config.sampling
        if s.greedy:
            kwargs["do_sample"] = False
        else:
            kwargs.update(do_sample=True, temperature=s.temperature, top_k=s.top_k or 0, top_p=s.top_p or 1.0)
            torch.manual_seed(config.seed)
        out = case.target.model.generate(
            **case.target.hf_generate_inputs(inputs), assistant_model=case.draft.model, **kwargs
        )
        return out[0, inputs.num_tokens :].tolist()


def builtin_candidates() -> dict[str, Candidate]:
    from hippo_ref.decoding.parallel import decode_parallel
    from hippo_ref.decoding.speculative import decode_speculative

    fast_reason = "hippo_fast is not implemented yet (a later issue)"
    return {
        "ref-sd": Candidate("ref-sd", "sd", decode_speculative),
        "ref-pearl": Candidate("ref-pearl", "pearl", decode_parallel),
        "fast-sd": Candidate("fast-sd", "sd", unavailable=fast_reason),
        "fast-pearl": Candidate("fast-pearl", "pearl", unavailable=fast_reason),
        "hf-assisted": HFAssisted(),
    }


def load_candidate(spec: str) -> Candidate:
    """A built-in name, or `module:function[@sd|@pearl]` for a context-level decode function."""
    builtins = builtin_candidates()
    if spec in builtins:
        return builtins[spec]
    if ":" not in spec:
        from hippo.errors import ConfigError

        raise ConfigError(
            f"unknown candidate {spec!r}: use one of {', '.join(builtins)} or module:function[@sd|@pearl]"
        )
    target, _, decoding = spec.partition("@")
    module_name, _, function_name = target.partition(":")
    function = getattr(importlib.import_module(module_name), function_name)
    return Candidate(spec, decoding or "pearl", function)
