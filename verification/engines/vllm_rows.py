"""vLLM's requests and outputs as the audit's recorded-output rows (docs/VERIFICATION.md, 'Recorded outputs').

Standard library only: imported by the runner inside vLLM's own venv (verification/engines/vllm_runner.py,
with vLLM's transformers) and by the project's tests, so it must not import the package or torch.

One request of the plan (a prompt as its token ids, a sampling setting, a seed) becomes:
  vllm_sampling_kwargs  the keyword arguments of vllm.SamplingParams for it (greedy = temperature 0; top-k /
                        top-p left out mean "off", which vLLM writes as top_k 0 and top_p 1.0);
  recorded_row          the row `hippo verify --recorded` audits: the prompt (the target's chat template
                        renders it; the ids the engine read are kept in prompt_token_ids and checked against
                        that rendering), the tokens, the sampling setting, the seed, the EOS ids, and what
                        produced it: `implementation` (one report section each, never pooled with another's)
                        and `engine` (vLLM's version, the speculative method and its settings, a planted bug).
"""

from __future__ import annotations

SAMPLING_FIELDS = ("temperature", "top_k", "top_p")
METHODS = ("ar", "ngram", "draft_model")  # "ar": no speculative decoding (vLLM's plain decode)


def check_sampling(sampling: dict) -> dict:
    """{temperature, top_k, top_p} with the missing ones None; ValueError naming what is wrong."""
    if not isinstance(sampling, dict):
        raise ValueError(f"a sampling setting is an object {{temperature, top_k, top_p}}, got {sampling!r}")
    unknown = set(sampling) - set(SAMPLING_FIELDS)
    if unknown:
        raise ValueError(f"unknown sampling field(s) {', '.join(sorted(unknown))}; known: {', '.join(SAMPLING_FIELDS)}")
    out = {name: sampling.get(name) for name in SAMPLING_FIELDS}
    if out["temperature"] is None or out["temperature"] < 0:
        raise ValueError(f"temperature must be given and >= 0 (0 = greedy), got {out['temperature']!r}")
    if out["top_k"] is not None and (not isinstance(out["top_k"], int) or out["top_k"] < 1):
        raise ValueError(f"top_k must be a positive integer or null (off), got {out['top_k']!r}")
    if out["top_p"] is not None and not 0 < out["top_p"] <= 1:
        raise ValueError(f"top_p must be in (0, 1] or null (off), got {out['top_p']!r}")
    return out


def vllm_sampling_kwargs(sampling: dict, seed: int | None, max_tokens: int, eos_token_ids: list[int]) -> dict:
    """Keyword arguments of vllm.SamplingParams for one request. The EOS ids are stop ids (the engine reads
    no tokenizer: it is given token ids); the stop id is kept in the output, as the target's own decode keeps it."""
    s = check_sampling(sampling)
    kwargs = {"temperature": float(s["temperature"]), "max_tokens": int(max_tokens), "seed": seed,
              "stop_token_ids": list(eos_token_ids), "detokenize": False}
    if s["top_k"] is not None:
        kwargs["top_k"] = int(s["top_k"])
    if s["top_p"] is not None:
        kwargs["top_p"] = float(s["top_p"])
    return kwargs


def implementation_label(engine: dict) -> str:
    """The row's `implementation`: "vllm 0.32.0 ngram", with " fixed:<fix>" for a run-time fix of a vLLM bug and
    " planted:<bug>" for a negative control."""
    label = f"{engine['name']} {engine['version']} {engine['method']}"
    label += f" fixed:{engine['fix']}" if engine.get("fix") else ""
    return label + (f" planted:{engine['planted_bug']}" if engine.get("planted_bug") else "")


def engine_facts(version: str, method: str, speculative_config: dict | None, planted_bug: str | None,
                 settings: dict, fix: str | None = None) -> dict:
    """What produced a row: vLLM's version, the speculative method (METHODS) and its config, a planted bug
    (None for the engine as shipped), a run-time fix of a vLLM bug (None: as shipped) and the engine's settings
    (dtype, eager, threads, ...)."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; one of {', '.join(METHODS)}")
    return {"name": "vllm", "version": version, "method": method, "speculative_config": speculative_config,
            "planted_bug": planted_bug, "fix": fix, "settings": settings}


def recorded_row(prompt: str, prompt_token_ids: list[int], output_token_ids: list[int], sampling: dict,
                 seed: int | None, max_tokens: int, eos_token_ids: list[int], engine: dict, target: str,
                 draft: str | None = None, dtype: str = "float32") -> dict:
    """One recorded-output row (a text-only row: no video) of one vLLM output."""
    tokens = [int(t) for t in output_token_ids]
    if not tokens:
        raise ValueError("vLLM returned no tokens for a request: nothing to audit (max_tokens >= 1?)")
    return {"prompt": prompt, "prompt_token_ids": [int(t) for t in prompt_token_ids], "tokens": tokens,
            "sampling": check_sampling(sampling), "seed": seed, "max_new_tokens": int(max_tokens),
            "eos_token_ids": [int(t) for t in eos_token_ids], "dtype": dtype,
            "implementation": implementation_label(engine), "engine": engine, "target": target, "draft": draft}
