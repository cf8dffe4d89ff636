"""The vLLM audit's one report (`nox -s vllm` writes it): per vLLM run, the audit's verdict from `hippo verify
--recorded`'s report.json, the negative control, and the speed at batch 1 beside hippo_fast's AR / SD / PEARL on
the same target, draft, prompts, thread count and token budget; tokens are compared before any time is shown.

    python -m verification.engines.vllm_report --work DIR --out docs/vllm-audit

DIR holds what the session wrote: plan.json, times/<run>.json (verification/engines/vllm_runner.py) and
audit/report.json (hippo verify --recorded over every run's rows). Writes report.json and report.md.

Speed is one request at a time, prompt to last token (prefill included, model load and a warm-up request
excluded), tokens per second = generated tokens / that wall time, for vLLM (`LLM.generate` of one request) and
hippo_fast (static-cache prefill + decode) alike. The machine's load average is recorded before and after each
side; a 1-minute load above the thread count marks the times as taken on a busy machine.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from verification.checks import CheckResult
from verification.report import recorded_by_implementation

FAST_METHODS = ("ar", "sd", "pearl")


def hippo_fast_speed(plan: dict, threads: int) -> dict:
    """hippo_fast's greedy AR / SD / PEARL on the plan's prompts: tokens and wall seconds per request."""
    import torch

    from hippo.checkpoint import load_adapter
    from hippo.request import DecodeConfig
    from hippo_fast.cache import request_capacity, static_prefill
    from hippo_fast.decoding.autoregressive import decode_autoregressive
    from hippo_fast.decoding.parallel import decode_parallel
    from hippo_fast.decoding.speculative import decode_speculative

    torch.set_num_threads(threads)
    target, draft = load_adapter(plan["target"]), load_adapter(plan["draft"])
    cfg = DecodeConfig(max_new_tokens=int(plan["greedy_max_tokens"]), gamma=int(plan["num_speculative_tokens"]),
                       eos_token_ids=tuple(plan["eos_token_ids"]))

    def run(method: str, prompt: str) -> tuple[list[int], float]:
        started = time.perf_counter()
        capacity = request_capacity(cfg, method)
        t = static_prefill(target, target.prepare(None, prompt), capacity)
        if method == "ar":
            result = decode_autoregressive(t, cfg)
        else:
            d = static_prefill(draft, draft.prepare(None, prompt), capacity)
            result = (decode_speculative if method == "sd" else decode_parallel)(t, d, cfg)
        return result.tokens, time.perf_counter() - started

    load = [os.getloadavg()[0]]
    out = {}
    for method in FAST_METHODS:
        run(method, plan["prompts"][0]["text"])  # warm-up, not timed
        out[method] = [dict(zip(("tokens", "seconds"), run(method, p["text"]), strict=True)) | {"prompt": p["text"]}
                       for p in plan["prompts"]]
    load.append(os.getloadavg()[0])
    return {"requests": out, "load_average_1min": load, "threads": threads}


def _results(report: dict) -> list[CheckResult]:
    return [CheckResult(**c) for c in report["checks"]]


def coupled_difference(planted: list[dict], twin: list[dict], tokens: int) -> dict:
    """How far a planted bug moves vLLM's sampled law, measured by coupling: the planted run and its twin draw
    with the same seeds, so in each pool (prompt, sampling setting) the fraction of seeds whose first `tokens`
    tokens differ bounds the total variation between the two runs' laws of those tokens from above
    (TV <= P(X != Y) for any coupling). `max_bound` is the largest over the pools; None when no seed pairs."""
    def key(r):
        return r["prompt"], json.dumps(r["sampling"], sort_keys=True), r["seed"]

    others = {key(r): r["tokens"][:tokens] for r in twin if r.get("seed") is not None}
    pools: dict[tuple, list[int]] = {}
    for r in planted:
        if r.get("seed") is None or key(r) not in others:
            continue
        pools.setdefault(key(r)[:2], []).append(int(r["tokens"][:tokens] != others[key(r)]))
    bounds = {f"{prompt[:40]} {sampling}": sum(d) / len(d) for (prompt, sampling), d in pools.items()}
    return {"pools": bounds, "pairs": sum(len(d) for d in pools.values()),
            "changed": sum(sum(d) for d in pools.values()), "max_bound": max(bounds.values()) if bounds else None}


def negative_controls(table: dict, rows: dict[str, list[dict]] | None = None, tokens: int = 3) -> list[dict]:
    """Each planted run against its twin without the bug (the same label before " planted:"): caught when the
    planted run fails and the twin passes. Where both runs' rows are given, the TV the bug induces is bounded by
    coupling (`coupled_difference`); a bug not caught whose bound lies below the run's minimal detectable TV is
    "below detectability": the audit lacked the power to see it, which is reported, not hidden."""
    rows = rows or {}
    out = []
    for name, s in table.items():
        if " planted:" not in name:
            continue
        twin = name.split(" planted:")[0]
        twin_verdict = table.get(twin, {}).get("verdict")
        caught = s["verdict"] == "fail" and twin_verdict == "pass"
        coupling = coupled_difference(rows[name], rows[twin], tokens) if name in rows and twin in rows else None
        bound, power = (coupling or {}).get("max_bound"), s.get("min_detectable_tv")
        below = not caught and bound is not None and power is not None and bound < power
        out.append({"planted": name, "verdict": s["verdict"], "twin": twin, "twin_verdict": twin_verdict,
                    "caught": caught, "coupling": coupling, "min_detectable_tv": power,
                    "outcome": "caught" if caught else "below detectability" if below else "NOT CAUGHT"})
    return out


def speed_rows(times: list[dict], fast: dict) -> list[dict]:
    """One row per (engine, method): tokens equal to the first vLLM run's greedy tokens on every prompt, and
    only then tokens/s; a mismatch shows no time."""
    reference = {g["prompt"]: g["tokens"] for g in times[0]["greedy"]} if times else {}
    rows = []
    entries = [(t["implementation"], t["greedy"]) for t in times]
    entries += [(f"hippo_fast {m}", fast["requests"][m]) for m in FAST_METHODS]
    for name, requests in entries:
        same = all(r["tokens"] == reference.get(r["prompt"]) for r in requests)
        tokens = sum(len(r["tokens"]) for r in requests)
        seconds = sum(r["seconds"] for r in requests)
        rows.append({"implementation": name, "requests": len(requests), "tokens": tokens, "tokens_identical": same,
                     "seconds": seconds if same else None, "tokens_per_s": tokens / seconds if same else None})
    return rows


def build(work: Path, threads: int) -> dict:
    plan = json.loads((work / "plan.json").read_text())
    times = [json.loads(p.read_text()) for p in sorted((work / "times").glob("*.json"))]
    audit = json.loads((work / "audit" / "report.json").read_text())
    table = recorded_by_implementation(_results(audit))
    rows: dict[str, list[dict]] = {}
    for path in sorted((work / "rows").glob("*.jsonl")):
        for line in path.read_text().splitlines():
            if line.strip():
                row = json.loads(line)
                rows.setdefault(row["implementation"], []).append(row)
    fast = hippo_fast_speed(plan, threads)
    shipped = [t for t in times if not t["engine"].get("fix") and not t["engine"].get("planted_bug")]
    loads = [x for t in times for x in t["load_average_1min"]] + fast["load_average_1min"]
    return {
        "vllm": times[0]["engine"]["version"] if times else None,
        "target": plan["target"], "draft": plan["draft"], "threads": threads,
        "prompts": len(plan["prompts"]), "greedy_max_tokens": plan["greedy_max_tokens"], "sampled": plan["sampled"],
        "audit": {"verdict": audit["certificate"]["verdict"], "command": "hippo verify --recorded",
                  "per_implementation": table, "revision": audit["certificate"].get("revision")},
        "negative_controls": negative_controls(table, rows, int(plan["sampled"]["max_tokens"])),
        "refused": [{"implementation": t["implementation"], **r} for t in times for r in t.get("refused", [])],
        "runs": [{k: t[k] for k in ("implementation", "load_s", "sampled", "load_average_1min", "torch_threads",
                                    "torch", "transformers")} for t in times],
        "video_pair": json.loads((work / "video.json").read_text()) if (work / "video.json").is_file() else None,
        "speed": speed_rows(shipped, fast),
        "load_average_1min": {"max": max(loads) if loads else None, "busy": bool(loads) and max(loads) > threads},
    }


def markdown(report: dict) -> str:
    def num(x, fmt=".3g"):
        return "-" if x is None else format(x, fmt)

    sampled = report["sampled"]
    lines = [f"# vLLM {report['vllm']} (CPU build) audited: speculative decoding on SmolLM2-135M-Instruct", "",
             f"Target `{Path(report['target']).name}` (fp32 safetensors, stock LlamaForCausalLM), draft "
             f"`{Path(report['draft']).name}`; {report['threads']} thread(s). Greedy: {report['prompts']} "
             f"prompts x {report['greedy_max_tokens']} tokens, batch 1, token for token against the target in "
             f"transformers. Sampled: {sampled['rows_per_pool']} seeds per prompt and setting "
             f"({', '.join(json.dumps(s) for s in sampled['settings'])}), first tokens against the target's exact law.",
             "", f"## Audit (`hippo verify --recorded`): overall {report['audit']['verdict']}", "",
             "| vLLM run | verdict | greedy rows identical | sampled rows (pools) | min p | max TV | "
             "min detectable TV (worst pool, power 0.8) |", "|---|---|---|---|---|---|---|"]
    for name, s in report["audit"]["per_implementation"].items():
        lines.append(f"| {name} | **{s['verdict'].upper()}** | {s['greedy_identical']}/{s['greedy_rows']} | "
                     f"{s['sampled_rows']} ({s['sampled_pools']}) | {num(s['min_p'])} | {num(s['max_tv'])} | "
                     f"{num(s['min_detectable_tv'])} |")
    if report["refused"]:
        lines += ["", "What vLLM refused or crashed on (no rows for these settings):", ""]
        lines += [f"- {r['implementation']}, sampling {json.dumps(r['sampling'])}: `{r['error'][:300]}`"
                  for r in report["refused"]]
    lines += ["", "## Negative control (a bug planted in vLLM's rejection sampler at run time)", ""]
    for c in report["negative_controls"]:
        line = (f"- `{c['planted']}`: {c['verdict'].upper()}; without the bug (`{c['twin']}`): "
                f"{(c['twin_verdict'] or 'not run').upper()}: **{c['outcome']}**")
        if c.get("coupling") and c["coupling"]["max_bound"] is not None:
            k = c["coupling"]
            line += (f". Same seeds with and without the bug: {k['changed']} of {k['pairs']} sampled rows changed "
                     f"(largest pool {k['max_bound']:.3f}), so the bug moves the law of the first "
                     f"{report['sampled']['max_tokens']} tokens by TV <= {k['max_bound']:.3f}; the audit's minimal "
                     f"detectable TV for this run is {num(c['min_detectable_tv'])}")
        lines.append(line)
    video = report.get("video_pair")
    if video:
        lines += ["", f"## The pretrained video pair (`zoo:smol-target`, {video['class']}) in vLLM", ""]
        if video["runs"]:
            lines.append(f"vLLM {video['version']} runs it: greedy {len(video['tokens'])} tokens on a "
                         f"{video['frames']}-frame clip ({video['tokens']}).")
        else:
            lines.append(f"vLLM {video['version']} does not run it here: refused at {video['stage']} "
                         f"(`{video['error'][:300]}`); its own LLaVA-OneVision implementation: "
                         f"`{video.get('native_implementation', 'not probed')}`. No video rows, so vLLM's "
                         "speculative decoding is audited on the text target only.")
    lines += ["", "## Speed at batch 1 (greedy; tokens compared first, time shown only where identical)", ""]
    if report["load_average_1min"]["busy"]:
        lines += [f"**Busy machine: the 1-minute load average reached {report['load_average_1min']['max']:.2f} "
                  f"with {report['threads']} thread(s) in use; these times are not a measurement of the engines. "
                  "Rerun on a quiet machine.**", ""]
    lines += ["| implementation | requests | tokens | identical to vLLM AR | seconds | tokens/s |", "|---|---|---|---|---|---|"]
    for r in report["speed"]:
        lines.append(f"| {r['implementation']} | {r['requests']} | {r['tokens']} | {'yes' if r['tokens_identical'] else 'NO'} "
                     f"| {num(r['seconds'], '.2f')} | {num(r['tokens_per_s'], '.1f')} |")
    lines += ["", "Per run: " + "; ".join(f"{r['implementation']}: load {r['load_s']:.1f} s, torch "
                                           f"{r['torch']}, transformers {r['transformers']}, 1-min load "
                                           f"{'/'.join(f'{x:.2f}' for x in r['load_average_1min'])}"
                                           for r in report["runs"]) + "."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="the vLLM audit's report (verification/engines/vllm_report.py)")
    parser.add_argument("--work", required=True, help="the session's folder (plan.json, times/, audit/)")
    parser.add_argument("--out", required=True, help="where report.json and report.md go")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    work = Path(args.work)
    for need in ("plan.json", "times", "audit/report.json"):
        if not (work / need).exists():
            print(f"{work / need} is missing: run the vLLM runs and `hippo verify --recorded` first (nox -s vllm)",
                  file=sys.stderr)
            return 2
    report = build(work, args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(report, indent=1))
    (out / "report.md").write_text(markdown(report))
    print(markdown(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
