"""The one report of paper/measure/'s benchmarks: per-row summaries from the timed runs (definitions in
paper/measure/protocol.py), the JSON written for the figures, and the Markdown tables (`hippo bench perf`'s
whole report here; the systems benchmark's per-case sections reuse its tables)."""

from __future__ import annotations

import json
import re
from pathlib import Path

from hippo.stats import pooled_mat, pooled_run_length

MIB = 1 << 20


def _ratio(a, b):
    return a / b if a is not None and b else None


def summarize(row) -> dict:
    """Pooled numbers of one row's timed runs."""
    runs = [r for _, _, r in row.runs]
    tokens = sum(len(r.tokens) for r in runs)
    total_s = sum(r.total_s for r in runs)
    decode_s = sum(r.decode_s for r in runs)
    stats = [r.stats for r in runs if r.stats is not None]
    mat = run_length = None
    if stats and row.spec.decoding != "ar":
        mat = pooled_mat([(sum(s.accepted_per_round), len(s.accepted_per_round)) for s in stats])
        run_length = pooled_run_length([(sum(s.accepted_per_round), s.runs) for s in stats])
    elif stats:
        mat = pooled_mat([(sum(s.accepted_per_round), len(s.accepted_per_round)) for s in stats])
    peaks = [r.peak_bytes for r in runs if r.peak_bytes is not None]
    increments = [r.increment_bytes for r in runs if r.increment_bytes is not None]
    return {
        "runs": len(runs), "generated_tokens": tokens, "total_s": total_s, "decode_s": decode_s,
        "tokens_per_s": tokens / total_s if total_s else None,
        "decode_tokens_per_s": tokens / decode_s if decode_s else None,
        "mat": mat, "mean_run_length": run_length,
        "peak_memory_bytes": max(peaks) if peaks else None,
        "peak_increment_bytes": max(increments) if increments else None,
        "compiles_in_timed_runs": sum(r.compiles for r in runs),
        "median_total_s": sorted(r.total_s for r in runs)[len(runs) // 2] if runs else None,
    }


def ideal_speedups(spec, stats, costs) -> dict:
    """The decode speedups over AR implied by the row's measured rounds (`stats`: its runs' DecodeStats)
    and per-forward costs (definitions in paper/measure/protocol.py)."""
    setting = costs.get(spec.setting)
    if spec.impl != "fast" or spec.decoding == "ar" or not setting or spec.id not in setting["rows"] or not stats:
        return {}
    t_target = setting["target_step"]["median_ms"]
    row = setting["rows"][spec.id]
    t_verify, t_draft = row["verify"]["median_ms"], row["draft_step"]["median_ms"]
    gamma = row["verify"]["tokens"] - (1 if spec.decoding == "sd" else 0)
    committed, serial, overlap = 0, 0.0, 0.0
    for s in stats:
        for j, count in enumerate(s.accepted_per_round):
            # PEARL: the first round and every round after a rejection pre-verify (a one-token target forward)
            pre_verify = spec.decoding == "pearl" and (j == 0 or s.rejected_per_round[j - 1])
            t_forward = t_target if pre_verify else t_verify
            committed += count
            serial += gamma * t_draft + t_forward
            overlap += max(gamma * t_draft, t_forward)
    if not committed:
        return {}
    out = {"t_target_ms": t_target, "t_verify_ms": t_verify, "t_draft_ms": t_draft, "gamma": gamma,
           "ideal_serial": committed * t_target / serial}
    if spec.decoding == "pearl":
        out["ideal_overlap"] = committed * t_target / overlap
    return out


def row_entries(rows, names: list[str], costs: dict, prune_of) -> list[dict]:
    """Per row (protocol.RowState): its spec, status, and when measured its pooled summary with x HF and x
    fast AR (same compile setting), its ideal speedups and its runs. `prune_of(spec)`: (method, ratio)."""
    summaries = {r.spec.id: summarize(r) for r in rows if r.skipped is None}
    hf = summaries.get("hf-generate")
    fast_ar = {s: summaries.get(f"fast-ar/{s}") for s in ("eager", "compiled")}
    out = []
    for row in rows:
        spec = row.spec
        prune, ratio = prune_of(spec)
        entry = {"id": spec.id, "name": spec.name, "description": spec.description, "kind": spec.kind,
                 "implementation": spec.impl, "decoding": spec.decoding, "compile": spec.compile, "prune": prune,
                 "overlap": spec.overlap, "ratio": ratio, "status": "skipped" if row.skipped else "ok",
                 "skip_reason": row.skipped, "warmup_s": row.warmup_s}
        if row.skipped is None:
            s = summaries[spec.id]
            ar = fast_ar[spec.setting]
            s.update(
                speedup_hf=_ratio(s["tokens_per_s"], hf and hf["tokens_per_s"]),
                speedup_hf_decode=_ratio(s["decode_tokens_per_s"], hf and hf["decode_tokens_per_s"]),
                speedup_fast_ar=_ratio(s["tokens_per_s"], ar and ar["tokens_per_s"]),
                speedup_fast_ar_decode=_ratio(s["decode_tokens_per_s"], ar and ar["decode_tokens_per_s"]),
            )
            ideal = ideal_speedups(spec, [r.stats for _, _, r in row.runs if r.stats is not None], costs)
            if ideal:
                ideal["achieved"] = s["speedup_fast_ar_decode"]
            entry.update(summary=s, ideal=ideal, runs=[run_json(names[i], rep, r) for i, rep, r in row.runs])
        out.append(entry)
    return out


def build_report(*, args, rows, inputs, costs, bandwidth, bandwidth_at_size, memory_method, profiles, environment,
                 target_path, draft_path, greedy, command) -> dict:
    """`hippo bench perf`'s report."""

    def prune_of(spec):
        return (args.prune if spec.name.startswith("fast-hippo") else spec.prune,
                args.ratio if spec.prune != "none" else 0.0)

    out_rows = row_entries(rows, [i.name for i in inputs], costs, prune_of)
    summaries = {r["id"]: r["summary"] for r in out_rows if r["status"] == "ok"}
    winners = []
    for name in dict.fromkeys(r.spec.name for r in rows if r.spec.impl == "fast"):
        eager, compiled = summaries.get(f"{name}/eager"), summaries.get(f"{name}/compiled")
        if eager and compiled:
            winners.append({"row": name, "eager_tokens_per_s": eager["tokens_per_s"],
                            "compiled_tokens_per_s": compiled["tokens_per_s"],
                            "eager_decode_tokens_per_s": eager["decode_tokens_per_s"],
                            "compiled_decode_tokens_per_s": compiled["decode_tokens_per_s"],
                            "winner": "compiled" if compiled["tokens_per_s"] > eager["tokens_per_s"] else "eager",
                            "winner_decode": "compiled" if compiled["decode_tokens_per_s"] > eager["decode_tokens_per_s"]
                            else "eager"})
    generated = [len(r.tokens) for row in rows for _, _, r in row.runs]
    return {
        "command": command,
        "note": args.note,
        "environment": environment,
        "config": {
            "pair": None if args.target else args.pair, "target": target_path, "draft": draft_path,
            "inputs": len(inputs), "prompt_mode": args.prompt_mode,
            "prompts": sorted({i.prompt for i in inputs}), "max_new_tokens": args.max_new_tokens,
            "gamma": args.gamma, "ratio": args.ratio, "prune": args.prune, "temperature": args.temperature,
            "seed": args.seed, "frames": args.frames, "dtype": args.dtype, "device": args.device,
            "threads": args.threads, "compile": args.compile, "repeats": args.repeats, "rows": args.rows,
        },
        "gate": {"mode": "greedy" if greedy else "sampling", "passed": True,
                 "reference": "HF generate() greedy tokens, every run" if greedy else
                 "hippo_ref with the same request and seed, every fast run (HF rows not compared)"},
        "bandwidth": bandwidth, "bandwidth_at_size": bandwidth_at_size, "memory_method": memory_method,
        "generated_tokens": {"mean": sum(generated) / len(generated) if generated else 0,
                             "min": min(generated, default=0), "max": max(generated, default=0)},
        "inputs": [{"name": i.name, "prompt": i.prompt} for i in inputs],
        "rows": out_rows, "forward_costs": costs, "compile": winners, "profile": profiles,
        "timeline": request_timeline(rows, inputs),
    }


def timeline_summary(timeline) -> dict:
    """Busy seconds of each lane of one overlapped decode, and how long target and draft overlapped."""
    rounds = len({r for lane, r, _, _ in timeline.spans if lane == "target"})
    return {"rounds": rounds, "target_busy_s": timeline.busy_s("target"), "draft_busy_s": timeline.busy_s("draft"),
            "verify_busy_s": timeline.busy_s("verify"), "overlap_s": timeline.overlap_s("target", "draft")}


def request_timeline(rows, inputs) -> dict | None:
    """The measured timeline of one request (the figures' Gantt chart): the first overlapped row's last
    timed run on the first input (HIPPO's row when it ran)."""
    overlapped = sorted((r for r in rows if r.skipped is None and r.spec.overlap != "off"),
                        key=lambda r: not r.spec.name.startswith("fast-hippo"))
    for row in overlapped:
        runs = [r for i, _, r in row.runs if i == 0 and "timeline" in r.extra]
        if runs:
            run = runs[-1]
            return {"row": row.spec.id, "input": inputs[0].name, "decode_s": run.decode_s,
                    "generated": len(run.tokens), **timeline_summary(run.extra["timeline"]),
                    "spans": run.extra["timeline"].as_json()}
    return None


def run_json(name: str, repeat: int, r) -> dict:
    """One timed run (rows.Run) on the input `name`."""
    out = {"input": name, "repeat": repeat, "generated": len(r.tokens), "total_s": r.total_s,
           "decode_s": r.decode_s, "prefill_s": r.prefill_s, "peak_memory_bytes": r.peak_bytes,
           "peak_increment_bytes": r.increment_bytes, "compiles": r.compiles,
           "visual_tokens": r.visual_tokens, "kept_visual_tokens": r.kept_visual_tokens, "tokens": r.tokens}
    if r.stats is not None:
        s = r.stats
        out.update(mat=s.mat, mean_run_length=s.mean_run_length, accepted_per_round=s.accepted_per_round,
                   rounds=len(s.accepted_per_round), rejected_rounds=sum(s.rejected_per_round),
                   target_forwards=s.target_forwards, draft_forwards=s.draft_forwards)
    out.update({k: v for k, v in r.extra.items() if k != "timeline"})
    if "timeline" in r.extra:
        out["timeline"] = timeline_summary(r.extra["timeline"])
    return out


def write(report: dict, markdown: str, json_path: str | None, markdown_path: str | None) -> None:
    """Write the JSON and the Markdown where asked; print the Markdown."""
    for path, text in ((json_path, to_json(report)), (markdown_path, markdown)):
        if path:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            Path(path).write_text(text)
    print(markdown, end="")


def to_json(report: dict) -> str:
    """Indented JSON; lists of numbers (tokens, rounds) stay on one line each."""
    text = json.dumps(report, indent=2)
    return re.sub(r"\[[\d\s,.eE+-]*\]", lambda m: re.sub(r"\s+", " ", m.group(0)).replace("[ ", "[").replace(" ]", "]"),
                  text) + "\n"


# ---- Markdown -------------------------------------------------------------------------------------------
def _f(x, digits=2, suffix=""):
    return "-" if x is None else f"{x:.{digits}f}{suffix}"


def _mib(x):
    return "-" if x is None else f"{x / MIB:.0f}"


def _placement(env: dict) -> str:
    """Where the rows ran: torch threads and cores of each process (older reports: the thread count)."""
    record = env.get("placement")
    if not record:
        return f"{env['threads']} torch thread(s)"

    def one(entry: dict) -> str:
        return (f"{entry['role']} on core(s) {','.join(map(str, entry['cores']))} with {entry['threads']} torch "
                f"thread(s) ({entry['interop_threads']} inter-op)")

    text = "one-process rows: " + one(record["one_process"])
    if record.get("two_processes"):
        text += "; two-process rows: " + ", ".join(one(e) for e in record["two_processes"])
    return text


def rows_table(rows: list[dict]) -> list[str]:
    """The rows' tok/s, speedups, MAT, run length, peak memory and warm-up (report.row_entries' rows)."""
    lines = ["", "| row | tok/s e2e | tok/s decode | x HF e2e | x HF decode | x fast AR e2e | x fast AR decode | MAT "
             "| run length | peak MiB (+run) | warm-up s |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for row in rows:
        if row["status"] != "ok":
            why = str(row["skip_reason"]).replace("|", "\\|")
            lines.append(f"| {row['id']} | not measured: {why} |" + " |" * 9)
            continue
        s = row["summary"]
        lines.append(
            f"| {row['id']} | {_f(s['tokens_per_s'], 1)} | {_f(s['decode_tokens_per_s'], 1)} | {_f(s['speedup_hf'])} "
            f"| {_f(s['speedup_hf_decode'])} | {_f(s['speedup_fast_ar'])} | {_f(s['speedup_fast_ar_decode'])} "
            f"| {_f(s['mat'])} | {_f(s['mean_run_length'])} | {_mib(s['peak_memory_bytes'])} "
            f"(+{_mib(s['peak_increment_bytes'])}) | {_f(row['warmup_s'], 1)} |")
    return lines


def costs_table(rows: list[dict], costs: dict, bw: dict, at: dict | None, llc: str | None) -> list[str]:
    """Per fast row: the per-forward costs with their bandwidth floors (at the DRAM read bandwidth `bw`, and
    at the working-set bandwidth `at` when measured), the ideal and achieved decode speedups over fast AR;
    then the bytes one target forward reads and the bandwidths."""
    if not costs:
        return []
    floors = "at the DRAM read bandwidth / at the working-set bandwidth" if at else "at the measured read bandwidth"
    lines = ["", f"Per-forward cost, ms: median (bandwidth floor {floors}), on the first input's static contexts; "
             "ideal and achieved decode speedups over fast AR.",
             "", "| row | target step | target verify [tokens] | draft step | ideal serial | ideal overlap | achieved |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for row in rows:
        if row["status"] != "ok" or row["implementation"] != "fast":
            continue
        setting = costs.get("compiled" if row["compile"] else "eager")
        if not setting:
            continue
        cells = [row["id"], _cost(setting["target_step"], at)]
        r = setting["rows"].get(row["id"])
        if r:
            cells += [f"{_cost(r['verify'], at)} [{r['verify']['tokens']}]", _cost(r["draft_step"], at)]
        else:
            cells += ["-", "-"]
        ideal = row.get("ideal") or {}
        cells += [_f(ideal.get("ideal_serial")), _f(ideal.get("ideal_overlap")),
                  _f(ideal.get("achieved") if ideal else row["summary"]["speedup_fast_ar_decode"])]
        lines.append("| " + " | ".join(cells) + " |")
    step = next(iter(costs.values()))["target_step"]
    at_size = (f", {at['read_gbs']:.1f} GB/s at the target's parameter size ({at['bytes'] / 1e6:.1f} MB; "
               f"last-level cache {llc or 'unknown'})") if at else ""
    lines += ["", f"Bytes per forward: target {step['parameter_bytes'] / 1e6:.2f} MB of parameters + "
              f"{step['kv_bytes'] / 1e6:.2f} MB of KV ({step['context_rows']} rows). Measured read bandwidth "
              f"{bw['read_gbs']:.1f} GB/s over {bw['bytes'] >> 20} MiB (copy {bw['copy_gbs']:.1f} GB/s){at_size}."]
    return lines


def notes(memory_method: str) -> list[str]:
    """What the tables' columns measure (every benchmark's, under its tables; definitions: protocol.py)."""
    return ["", "Notes:",
            "- e2e: from the decoded frames to the last token (preprocessing, encoders, scoring, pruning, "
            "prefills, decode); decode: after both prefills. tok/s pooled over the timed runs.",
            "- HF rows: generate() does not separate prefill from decode; their decode-only time is end-to-end "
            "minus the preprocessing and one stock forward of the prompt per model it prefills, timed after the run.",
            "- x fast AR: against fast-ar with the same compile setting (HF and ref rows: fast-ar/eager).",
            "- ideal serial = MAT x t_target / (gamma x t_draft + t_verify); ideal overlap (PEARL rows) = "
            "MAT x t_target / max(gamma x t_draft, t_verify), PEARL's pre-verify rounds (the first, and each "
            "after a rejection) counted with their one-token target forward (t_target) instead of t_verify; "
            "achieved = decode-only x fast AR (definitions: paper/measure/protocol.py). Achieved can exceed ideal: fast "
            "AR pays its loop's per-token work (sampling, the host sync) on top of t_target at every token, SD "
            "and PEARL once per round.",
            f"- peak memory: {memory_method}; the largest over the row's timed runs (+ its increment over the "
            "run's start)."]


def compiles_note(rows: list[dict]) -> list[str]:
    """A line naming the rows whose timed runs compiled graphs (their compile time is in those runs)."""
    compiles = {r["id"]: r["summary"]["compiles_in_timed_runs"] for r in rows
                if r["status"] == "ok" and r["summary"]["compiles_in_timed_runs"]}
    return ["- torch.compile captured graphs inside timed runs (compile time included there): "
            + ", ".join(f"{k} {v}" for k, v in compiles.items()) + "."] if compiles else []


def render_markdown(report: dict) -> str:
    env, cfg = report["environment"], report["config"]
    lines = [f"# hippo bench perf: {cfg['pair'] or cfg['target']}", "", "```", report["command"], "```", ""]
    if report.get("note"):
        lines += [report["note"], ""]
    gen = report["generated_tokens"]
    sampling = "greedy" if cfg["temperature"] == 0 else f"temperature {cfg['temperature']}, seed {cfg['seed']}"
    lines += [
        f"{cfg['inputs']} inputs ({cfg['prompt_mode']} prompt: {' | '.join(repr(p) for p in cfg['prompts'][:3])}"
        f"{' ...' if len(cfg['prompts']) > 3 else ''}), max {cfg['max_new_tokens']} new tokens, gamma {cfg['gamma']}, "
        f"pruning ratio {cfg['ratio']} (SpecVLM row: specvlm; HIPPO row: {cfg['prune']}), "
        f"{sampling}, "
        f"{cfg['dtype']} on {env['device']} ({env['device_name']}), {_placement(env)}, "
        f"{cfg['repeats']} timed pass(es). Generated tokens per request: mean {gen['mean']:.1f} "
        f"(min {gen['min']}, max {gen['max']}).{_visual(report)}",
        "",
        f"Equality gate ({report['gate']['mode']}): passed: {report['gate']['reference']}.",
    ]
    lines += rows_table(report["rows"])
    lines += costs_table(report["rows"], report["forward_costs"], report["bandwidth"], report["bandwidth_at_size"],
                         env["last_level_cache"])
    if report["compile"]:
        lines += ["", "| fast row | eager tok/s e2e | compiled tok/s e2e | eager tok/s decode | compiled tok/s decode "
                  "| wins e2e | wins decode |", "|---|---:|---:|---:|---:|---|---|"]
        for w in report["compile"]:
            lines.append(f"| {w['row']} | {_f(w['eager_tokens_per_s'], 1)} | {_f(w['compiled_tokens_per_s'], 1)} "
                         f"| {_f(w['eager_decode_tokens_per_s'], 1)} | {_f(w['compiled_decode_tokens_per_s'], 1)} "
                         f"| {w['winner']} | {w['winner_decode']} |")
    lines += notes(report["memory_method"]) + [
              f"- environment: torch {env['torch']}, transformers {env['transformers']}, git {env['git_revision']}"
              f"{' (modified files: ' + str(len(env['git_modified_files'])) + ')' if env['git_modified_files'] else ''}, "
              f"CPU affinity {env['affinity']}, OMP_NUM_THREADS={env['omp_num_threads']}, load average at start "
              f"{_load(env['load_average_start'])}, at end {_load(env['load_average_end'])}, {env['date']}."]
    if env.get("other_load_share") is not None:
        lines.append(f"- other processes' CPU time on the benchmark's CPU(s) {env['affinity']} during the timed runs: "
                     f"{100 * env['other_load_share']:.1f}% of their capacity (/proc/stat busy time minus this "
                     f"process's own; 0% = the CPUs to itself).")
    if env.get("inductor_cache_dir"):
        lines.append(f"- torch.compile's on-disk cache: TORCHINDUCTOR_CACHE_DIR={env['inductor_cache_dir']} "
                     "(compiled rows' warm-up includes compilation unless that cache already held the graphs).")
    lines += compiles_note(report["rows"])
    t = report.get("timeline")
    if t:
        lines += ["", f"## Timeline of one request ({t['row']}, {t['input']})", "",
                  f"{t['generated']} tokens in {t['rounds']} rounds, decode {t['decode_s']:.3f} s: the target was busy "
                  f"{t['target_busy_s']:.3f} s (forwards) + {t['verify_busy_s']:.3f} s (verification), the draft "
                  f"{t['draft_busy_s']:.3f} s, both at once {t['overlap_s']:.3f} s "
                  f"({100 * t['overlap_s'] / max(t['draft_busy_s'], 1e-9):.0f}% of the draft's time). The spans "
                  "(lane, round, start, end) are in the JSON report's `timeline`."]
    if report["profile"]:
        lines += ["", "## Profile (torch.profiler, one decode on the first input)", ""]
        for p in report["profile"]:
            if "error" in p:
                lines.append(f"- {p['row']}: not profiled: {p['error']}")
                continue
            share = p["share"]
            top = ", ".join(f"{_short(t['op'])} {100 * t['share']:.0f}%" for t in p["top"][:4])
            parts = [f"GEMMs (weights read) {100 * share['gemm']:.0f}%", f"attention {100 * share['attention']:.0f}%"]
            if share["compiled_graph"] or share["compile_runtime"]:
                parts += [f"compiled graphs (their kernels, GEMMs included) {100 * share['compiled_graph']:.0f}%",
                          f"torch.compile runtime (guard checks, pre-graph bytecode) {100 * share['compile_runtime']:.0f}%"]
            parts += [f"other ops {100 * share['other_ops']:.0f}%",
                      f"outside any op (Python, HF module code, dispatch) {100 * share['outside_ops']:.0f}%"]
            per_call = 1000 * p["wall_ms"] / max(1, p["op_calls"])
            lines.append(f"- {p['row']}: {p['tokens']} tokens, {p['ms_per_token']:.2f} ms/token under the profiler, "
                         f"{p['op_calls_per_token']:.0f} op calls per token ({per_call:.1f} us of wall time per call); "
                         + ", ".join(parts)
                         + f". Top self time: {top}.")
    return "\n".join(lines) + "\n"


def _cost(c, at) -> str:
    if not at:
        return f"{c['median_ms']:.3f} ({c['floor_ms']:.3f})"
    at_floor = 1000 * (c["parameter_bytes"] + c["kv_bytes"]) / (at["read_gbs"] * 1e9)
    return f"{c['median_ms']:.3f} ({c['floor_ms']:.3f} / {at_floor:.3f})"


def _load(values) -> str:
    return "-" if not values else ", ".join(f"{v:.2f}" for v in values)


def _short(op: str) -> str:
    parts = op.split()
    return f"compiled graph {parts[3][:8]}" if op.startswith("## Call CompiledFxGraph") and len(parts) > 3 else op


def _visual(report) -> str:
    """' Visual tokens: ...' from the first run of each row kind (the target's, and each pruned draft's)."""
    seen = {}
    for row in report["rows"]:
        runs = row.get("runs") or []
        if runs and runs[0].get("visual_tokens") is not None:
            seen.setdefault("target", runs[0]["visual_tokens"])
            if row["prune"] != "none":
                seen.setdefault(f"{row['prune']} draft", runs[0]["kept_visual_tokens"])
    if not seen:
        return ""
    return " Visual tokens (first input): " + ", ".join(f"{k} {v}" for k, v in seen.items()) + "."
