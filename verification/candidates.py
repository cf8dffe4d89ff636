"""Candidates: the decoding implementations under audit, behind one small interface.

A candidate turns a case into generated tokens: `candidate.run(case, config) -> list[int]`.
Cases are either a TableCase (two table models, verification/tables.py) or a VideoCase (a target
and a draft checkpoint, a video, a prompt, a pruning spec). A candidate that cannot run a case says
why (`supports(case)` returns a reason), and the report records "not applicable", never "pass".

Built in: the reference (`ref-sd`, `ref-pearl`), the fast implementation (`fast-sd`, `fast-pearl`:
hippo_fast's loops on its own static-cache contexts, prefilled by hippo_fast's pipeline; on table
models through HostContext), its overlapped PEARL (`fast-pearl-streams`: two CUDA streams, serial on
a CPU; `fast-pearl-processes`: the draft in its own process), and HF assisted generation (`hf-assisted`,
`generate(..., assistant_model=draft)`, the first external client). Yours: `--candidate
module:function` where `function(target_context, draft_context, config)` follows the DecodeContext
protocol of hippo/adapters/base.py and returns token ids (or an object with `.tokens`).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from hippo.request import DecodeConfig, PruneSpec


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
    target_path: str | None = None  # the target's folder (the near-tie diagnosis reloads it in float64)
    _prepared: dict = field(default_factory=dict, repr=False)

    @property
    def label(self) -> str:
        p = self.prune
        return f"{self.pair_name}|{self.video.rsplit('/', 1)[-1]}|{p.method}@{p.ratio}/{p.positions}"

    def contexts(self, decoding: str, implementation: str = "ref", **options):
        """Fresh-enough prefilled target and draft contexts of `implementation` with `options` (prefilled
        once, then reused: every decode starts by rolling both caches back to the prompt)."""
        from hippo.generation import implementation as implementation_named
        from hippo.request import GenerationRequest

        key = (decoding, implementation, tuple(sorted(options.items())))
        if key not in self._prepared:
            request = GenerationRequest(self.video, self.prompt, self.clip.num_frames, decoding, self.prune)
            impl = implementation_named(implementation, **options)
            self._prepared[key] = impl.prepare_contexts(self.target, self.draft, request, self.clip)
        prepared = self._prepared[key]
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
    implementation: str = "ref"  # whose pipeline prefills its video contexts (hippo.generation.IMPLEMENTATIONS)
    # Draws its randomness from hippo's keyed uniforms (hippo_ref/sampling.py), so that with the same
    # seed it must commit the reference's very tokens (the seeded_equivalence check).
    keyed_uniforms: bool = False

    def supports(self, case) -> str | None:
        """None if this candidate can run `case`, else the reason it cannot."""
        return self.unavailable

    @property
    def decodes_contexts(self) -> bool:
        """Runs on any pair of decode contexts (table models, any precision), not only on HF models."""
        return self.decode is not None

    def run(self, case, config: DecodeConfig) -> list[int]:
        return self.run_with_stats(case, config).tokens

    def run_with_stats(self, case, config: DecodeConfig) -> RunResult:
        if isinstance(case, TableCase):
            target_context, draft_context = case.pair.contexts()
        else:
            target_context, draft_context = case.contexts(self.decoding, self.implementation)
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


class TwoProcessPEARL(Candidate):
    """hippo_fast's PEARL with the draft in its own process (hippo_fast/overlap/processes.py): this
    process runs the target's half, a spawned worker the draft's. Video cases: the worker loads the
    case's draft folder and prefills its pruned context; table cases: the draft table model is sent to
    the worker whole. One worker serves every case of a run."""

    def __init__(self):
        super().__init__("fast-pearl-processes", "pearl", implementation="fast", keyed_uniforms=True)
        self._tables: dict = {}  # id(table pair) -> (pair, its draft context in the worker)

    def supports(self, case) -> str | None:
        if isinstance(case, VideoCase) and not getattr(case.draft, "name", ""):
            return "the worker loads the draft from its folder, and this draft has none"
        return None

    @property
    def decodes_contexts(self) -> bool:
        return True

    def run_with_stats(self, case, config: DecodeConfig) -> RunResult:
        from hippo.generation import variant

        impl = variant("fast-processes")
        if isinstance(case, TableCase):
            target_context, draft_context = case.pair.contexts()
            key = id(case.pair)
            if key not in self._tables or self._tables[key][1].worker.closed:
                if len(self._tables) > 256:
                    self._tables.clear()
                self._tables[key] = (case.pair, impl.draft_in_worker(draft_context))
            remote = self._tables[key][1]
        else:
            target_context, remote = case.contexts("pearl", "fast", overlap="processes")
        return as_run_result(impl.decode("pearl", target_context, remote, config))


def builtin_candidates() -> dict[str, Candidate]:
    from hippo_fast.decoding import parallel as fast_parallel
    from hippo_fast.decoding import speculative as fast_speculative
    from hippo_ref.decoding.parallel import decode_parallel
    from hippo_ref.decoding.speculative import decode_speculative

    return {
        "ref-sd": Candidate("ref-sd", "sd", decode_speculative, keyed_uniforms=True),
        "ref-pearl": Candidate("ref-pearl", "pearl", decode_parallel, keyed_uniforms=True),
        "fast-sd": Candidate("fast-sd", "sd", _late_bound(fast_speculative, "decode_speculative"),
                             implementation="fast", keyed_uniforms=True),
        "fast-pearl": Candidate("fast-pearl", "pearl", _late_bound(fast_parallel, "decode_parallel"),
                                implementation="fast", keyed_uniforms=True),
        "fast-pearl-streams": Candidate("fast-pearl-streams", "pearl",
                                        _late_bound(fast_parallel, "decode_parallel", lanes=True),
                                        implementation="fast", keyed_uniforms=True, unavailable=_no_streams()),
        "fast-pearl-processes": TwoProcessPEARL(),
        "hf-assisted": HFAssisted(),
    }


def _no_streams() -> str | None:
    """Why the two-stream candidate is not audited here: without a GPU its lanes are no-ops and it runs
    fast-pearl's very calls (tests/test_overlap.py holds the two equal); None on a CUDA machine."""
    if torch.cuda.is_available():
        return None
    return ("not run: needs CUDA (on a CPU its two lanes are no-ops and it is fast-pearl's very calls, equal to "
            "it by construction: no audit of two streams)")


def _late_bound(module, name: str, **keywords) -> Callable:
    """module.name looked up at call time, so a mutant that patches it reaches the candidate."""
    return lambda *args: getattr(module, name)(*args, **keywords)


REFERENCE_OF = {"sd": "ref-sd", "pearl": "ref-pearl"}  # the reference schedule a candidate claims


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
