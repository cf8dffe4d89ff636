"""Measure the zoo pairs: parameters, per-token CPU latency, accuracy on the test split, greedy MAT per
pruning method and ratio. `zoo_table()` renders the README table from these numbers.

Definitions (one each):
- accuracy: hippo.zoo.dataset.attribute_accuracy of the model's greedy answer (max 48 new tokens) over
  the first `n` test examples: asked attributes named exactly right / asked attributes.
- facts right (detailed captions): hippo.zoo.dataset.fact_accuracy of the model's greedy answer to
  DETAIL_PROMPT (max DETAIL_MAX_NEW_TOKENS new tokens) over the first `n` videos of a split.
- PEARL run length (detailed captions): hippo.stats.DecodeStats.mean_run_length of greedy PEARL
  (gamma 5) pooled over the examples: total committed tokens / total runs (`pooled_run_length`).
- answer length: `answer_length`, the tokens a model generates before its end-of-turn token (the
  whole output when it stops at the token limit); a mean over answers.
- per-token latency: median time of one single-token decode step (DecodeContext.step) after a
  prefill of a test video, fp32, batch 1: CPU time of the decoding thread with 1 torch thread (immune
  to other processes on a shared machine), wall time with more; target and draft steps interleaved.
- MAT: hippo.stats.DecodeStats.mat (tokens committed per target forward, bonus included) of greedy
  speculative decoding (`sd`, gamma 5), pooled over the test examples (total committed tokens / total
  rounds). The target is unchanged by pruning, so its output (and accuracy) is the same in every
  column; only the draft's context changes.
"""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import dataclass, field

import torch

from hippo.checkpoint import load_adapter
from hippo.stats import paired_mat_difference, pooled_mat, pooled_run_length
from hippo.zoo import dataset
from hippo.zoo.registry import PAIRS, pair_frames

RATIOS = (0.5, 0.75, 0.9)
MAX_NEW_TOKENS = 48
DETAIL_MAX_NEW_TOKENS = 192  # detailed captions are 89-133 zoo tokens (tests/test_zoo.py bounds them by 60-150)


@dataclass
class PairReport:
    pair: str
    family: str
    target_params: int
    draft_params: int
    target_ms: float
    draft_ms: float
    target_accuracy: float
    draft_accuracy: float
    examples: int
    mat: dict[str, float] = field(default_factory=dict)  # "none" or "method@ratio" -> MAT
    threads: int = 1
    # "none" or "method@ratio" -> [committed, rounds] per example (for paired confidence intervals)
    per_example: dict[str, list[list[int]]] = field(default_factory=dict)
    target_attributes: dict[str, float] = field(default_factory=dict)  # dataset.attribute_breakdown
    draft_attributes: dict[str, float] = field(default_factory=dict)

    def mat_change(self, key: str) -> tuple[float, float, float]:
        """MAT of `key` minus MAT without pruning, with its 95% paired bootstrap interval."""
        return paired_mat_difference(self.per_example["none"], self.per_example[key])

    @property
    def latency_ratio(self) -> float:
        return self.target_ms / self.draft_ms


def _params(adapter) -> int:
    return sum(p.numel() for p in adapter.model.parameters())


def step_latency_ms(adapters, clip, repeats: int = 60) -> list[float]:
    """Per adapter, the median CPU time (ms) of one single-token decode step after a prefill of `clip`.
    CPU time of this thread (time.thread_time) when torch runs on 1 thread, so that other processes on
    a shared machine (which preempt a 2 ms step for a whole scheduler slice) do not inflate it; wall
    time otherwise. The adapters' steps are interleaved; the first 5 of each are warm-up."""
    clock = time.thread_time if torch.get_num_threads() == 1 else time.perf_counter
    contexts = [a.prefill(a.prepare(clip, dataset.QUESTIONS["describe"])) for a in adapters]
    tokens = [int(c.last_logits.argmax()) for c in contexts]
    times = [[] for _ in adapters]
    for i in range(repeats):
        for context, token, out in zip(contexts, tokens, times, strict=True):
            t0 = clock()
            context.step([token], i % 16)  # cache stays short: rows >= i % 16 are rolled back first
            out.append(clock() - t0)
    return [1000 * statistics.median(t[5:]) for t in times]


def answer_length(tokens, eos_token_ids) -> int:
    """THE answer length: generated tokens before the first end-of-turn token (all of them if none)."""
    for i, token in enumerate(tokens):
        if token in eos_token_ids:
            return i
    return len(tokens)


def greedy_decode(adapter, clip, question: str, max_new_tokens: int = MAX_NEW_TOKENS) -> tuple[str, int]:
    """The model's greedy answer to `question` about `clip`, and its answer_length."""
    from hippo.generation import implementation
    from hippo.request import DecodeConfig

    context = adapter.prefill(adapter.prepare(clip, question))
    config = DecodeConfig(max_new_tokens=max_new_tokens, eos_token_ids=adapter.eos_token_ids)
    tokens = implementation("ref").decode("ar", context, None, config).tokens
    return adapter.tokenizer.decode(tokens, skip_special_tokens=True), answer_length(tokens, adapter.eos_token_ids)


def greedy_answer(adapter, clip, question: str, max_new_tokens: int = MAX_NEW_TOKENS) -> str:
    return greedy_decode(adapter, clip, question, max_new_tokens)[0]


def detail_scores(adapter, split: str = "val", n: int = 100, frames: int = dataset.FRAMES) -> dict:
    """Greedy detailed captions of the first `n` videos of `split` rendered at `frames` frames:
    fact_accuracy, fact_breakdown and the mean answer_length (with min and max)."""
    pairs, lengths = [], []
    for i in range(n):
        ex = dataset.example(split, i, dataset.DETAIL, frames=frames)
        text, length = greedy_decode(adapter, dataset.as_clip(dataset.render(ex.video, frames)), ex.question,
                                     DETAIL_MAX_NEW_TOKENS)
        pairs.append((text, ex.facts))
        lengths.append(length)
    return {"fact_accuracy": dataset.fact_accuracy(pairs), "facts": dataset.fact_breakdown(pairs),
            "mean_tokens": statistics.fmean(lengths) if lengths else 0.0,
            "min_tokens": min(lengths, default=0), "max_tokens": max(lengths, default=0), "n": n,
            "example": pairs[0][0] if pairs else ""}


def prune_configs(methods=None, ratios=RATIOS) -> list[tuple[str, float]]:
    from hippo.request import PRUNING_METHOD_NAMES

    methods = sorted(m for m in (methods or PRUNING_METHOD_NAMES) if m != "none")
    return [("none", 0.0)] + [(m, r) for m in methods for r in ratios]


def evaluate_pair(pair: str, n: int = 50, methods=None, ratios=RATIOS, gamma: int = 5, log=None,
                  frames: int | None = None) -> PairReport:
    """Every number of the README table for zoo pair `pair`, on the first `n` test examples rendered at
    `frames` frames (default: the pair's, registry.pair_frames)."""
    from hippo.generation import generate, implementation
    from hippo.request import DecodeConfig, GenerationRequest, PruneSpec

    target_name, draft_name = PAIRS[pair]
    frames = frames or pair_frames(pair)
    target, draft = load_adapter(f"zoo:{target_name}"), load_adapter(f"zoo:{draft_name}")
    examples = [dataset.example("test", i) for i in range(n)]
    clips = [dataset.as_clip(dataset.render(ex.video, frames), f"test/{i}") for i, ex in enumerate(examples)]
    target_ms, draft_ms = step_latency_ms([target, draft], clips[0])
    draft_pairs = [(greedy_answer(draft, c, ex.question), ex.asked) for ex, c in zip(examples, clips, strict=True)]
    report = PairReport(pair, target.family, _params(target), _params(draft), target_ms, draft_ms, 0.0,
                        dataset.attribute_accuracy(draft_pairs), n, threads=torch.get_num_threads(),
                        draft_attributes=dataset.attribute_breakdown(draft_pairs))
    for method, ratio in prune_configs(methods, ratios):
        per_example: list[list[int]] = []
        texts = []
        for ex, clip in zip(examples, clips, strict=True):
            request = GenerationRequest(
                video=clip.path, prompt=ex.question, frames=frames, decoding="sd",
                prune=PruneSpec(method, ratio, "keep"),
                config=DecodeConfig(max_new_tokens=MAX_NEW_TOKENS, gamma=gamma),
            )
            try:
                # hippo_fast: the same tokens and rounds as hippo_ref (the audit holds it to that), faster
                result = generate(implementation("fast"), target, draft, request, clip=clip)
            except Exception as err:  # a pruning method under development must not sink the whole table
                if log:
                    log(f"{pair} {method}@{ratio}: failed ({type(err).__name__}: {err})")
                per_example = []
                break
            rounds = result.stats.decode.accepted_per_round
            per_example.append([sum(rounds), len(rounds)])
            texts.append(result.text)
        key = "none" if method == "none" else f"{method}@{ratio}"
        report.mat[key] = pooled_mat(per_example)
        if per_example:
            report.per_example[key] = per_example
        if method == "none":
            target_pairs = [(t, ex.asked) for t, ex in zip(texts, examples, strict=True)]
            report.target_accuracy = dataset.attribute_accuracy(target_pairs)
            report.target_attributes = dataset.attribute_breakdown(target_pairs)
        if log:
            log(f"{pair} {key}: MAT {report.mat[key]:.3f}")
    return report


@dataclass
class DetailReport:
    """The detailed-caption numbers of one pair (`evaluate_detail`): facts right, answer length, greedy
    MAT of `sd` and PEARL's mean run length, without pruning and per "method@ratio"."""

    pair: str
    examples: int
    target_facts: float  # dataset.fact_accuracy of the target's greedy captions
    draft_facts: float
    target_tokens: float  # mean answer_length
    draft_tokens: float
    mat: dict[str, float] = field(default_factory=dict)  # sd, gamma 5
    run_length: dict[str, float] = field(default_factory=dict)  # pearl, gamma 5
    per_example: dict[str, list[list[int]]] = field(default_factory=dict)  # sd: [committed, rounds]
    per_example_runs: dict[str, list[list[int]]] = field(default_factory=dict)  # pearl: [committed, runs]
    target_fact_kinds: dict[str, float] = field(default_factory=dict)  # dataset.fact_breakdown
    draft_fact_kinds: dict[str, float] = field(default_factory=dict)
    frames: int = dataset.FRAMES  # the clip length the videos were rendered at
    first: int = 0  # the first test video's index

    def mat_change(self, key: str) -> tuple[float, float, float]:
        """MAT of `key` minus MAT without pruning, with its 95% paired bootstrap interval."""
        return paired_mat_difference(self.per_example["none"], self.per_example[key])


def evaluate_detail(pair: str, n: int = 200, methods=None, ratios=RATIOS, gamma: int = 5, log=None,
                    target=None, draft=None, pearl: bool = True, frames: int | None = None,
                    first: int = 0) -> DetailReport:
    """The detailed-caption numbers of zoo pair `pair` on test videos first..first+n-1 (DETAIL_PROMPT,
    up to DETAIL_MAX_NEW_TOKENS) rendered at `frames` frames (default: the pair's,
    registry.pair_frames). `target` / `draft`: checkpoint folders to measure instead of the shipped pair
    (e.g. exported from a training state before they replace the shipped ones)."""
    from hippo.generation import generate, implementation
    from hippo.request import DecodeConfig, GenerationRequest, PruneSpec

    target_name, draft_name = PAIRS[pair]
    frames = frames or pair_frames(pair)
    target = load_adapter(str(target) if target is not None else f"zoo:{target_name}")
    draft = load_adapter(str(draft) if draft is not None else f"zoo:{draft_name}")
    examples = [dataset.example("test", i, dataset.DETAIL, frames=frames) for i in range(first, first + n)]
    clips = [dataset.as_clip(dataset.render(ex.video, frames), f"test/{i}")
             for i, ex in zip(range(first, first + n), examples, strict=True)]
    draft_out = [greedy_decode(draft, c, ex.question, DETAIL_MAX_NEW_TOKENS) for ex, c in zip(examples, clips, strict=True)]
    draft_pairs = [(text, ex.facts) for (text, _), ex in zip(draft_out, examples, strict=True)]
    report = DetailReport(pair, n, 0.0, dataset.fact_accuracy(draft_pairs), 0.0,
                          statistics.fmean(length for _, length in draft_out),
                          draft_fact_kinds=dataset.fact_breakdown(draft_pairs), frames=frames, first=first)
    for method, ratio in prune_configs(methods, ratios):
        key = "none" if method == "none" else f"{method}@{ratio}"
        for decoding in ("sd", "pearl") if pearl else ("sd",):
            counts, texts, lengths = [], [], []
            for ex, clip in zip(examples, clips, strict=True):
                request = GenerationRequest(
                    video=clip.path, prompt=ex.question, frames=frames, decoding=decoding,
                    prune=PruneSpec(method, ratio, "keep"),
                    config=DecodeConfig(max_new_tokens=DETAIL_MAX_NEW_TOKENS, gamma=gamma),
                )
                # hippo_fast: the same tokens and rounds as hippo_ref (the audit holds it to that), faster
                result = generate(implementation("fast"), target, draft, request, clip=clip)
                stats = result.stats.decode
                committed = sum(stats.accepted_per_round)
                counts.append([committed, len(stats.accepted_per_round) if decoding == "sd" else stats.runs])
                texts.append(result.text)
                lengths.append(answer_length(result.tokens, target.eos_token_ids))
            if decoding == "sd":
                report.per_example[key], report.mat[key] = counts, pooled_mat(counts)
            else:
                report.per_example_runs[key], report.run_length[key] = counts, pooled_run_length(counts)
            if method == "none" and decoding == "sd":  # the target's output: the same under every pruning
                target_pairs = [(t, ex.facts) for t, ex in zip(texts, examples, strict=True)]
                report.target_facts = dataset.fact_accuracy(target_pairs)
                report.target_fact_kinds = dataset.fact_breakdown(target_pairs)
                report.target_tokens = statistics.fmean(lengths)
        if log:
            log(f"{pair} detail {key}: MAT {report.mat[key]:.3f}"
                + (f", PEARL run length {report.run_length[key]:.3f}" if pearl else ""))
    return report


def render_table(reports: list[PairReport]) -> str:
    """The README table (markdown) of `reports`."""
    methods = sorted({k.split("@")[0] for r in reports for k in r.mat if k != "none"})
    lines = [
        "| pair (family) | params target / draft | ms/token target / draft (ratio) | accuracy target / draft "
        "| MAT no pruning | " + " | ".join(f"MAT {m} 0.5 / 0.75 / 0.9" for m in methods) + " |",
        "|---" * (5 + len(methods)) + "|",
    ]
    for r in reports:
        cells = [
            f"{r.pair} ({r.family})",
            f"{r.target_params / 1e6:.2f}M / {r.draft_params / 1e6:.2f}M",
            f"{r.target_ms:.2f} / {r.draft_ms:.2f} ({r.latency_ratio:.1f}x)",
            f"{100 * r.target_accuracy:.1f}% / {100 * r.draft_accuracy:.1f}%",
            f"{r.mat.get('none', float('nan')):.2f}",
        ]
        for m in methods:
            cells.append(" / ".join(f"{r.mat[f'{m}@{x}']:.2f}" if f"{m}@{x}" in r.mat else "-" for x in RATIOS))
        lines.append("| " + " | ".join(cells) + " |")
    n = reports[0].examples if reports else 0
    lines.append("")
    lines.append(f"Greedy speculative decoding (`sd`), gamma 5, first {n} test-split examples, fp32 CPU, "
                 f"{reports[0].threads if reports else 1} thread(s); pruning positions `keep`. "
                 "Regenerate with `hippo zoo table`.")
    changes = [(r, m) for r in reports for m in methods if r.per_example.get(f"{m}@{RATIOS[-1]}")
               and r.per_example.get("none")]
    if changes:
        lines += ["", f"MAT change at ratio {RATIOS[-1]} against no pruning, with its 95% paired bootstrap interval "
                  "over the examples (2000 resamples, seed 0):", "",
                  "| pair | " + " | ".join(methods) + " |", "|---" * (1 + len(methods)) + "|"]
        lines += mat_change_rows(reports, methods)
    return "\n".join(lines)


def mat_change_rows(reports, methods) -> list[str]:
    """Table rows: per pair, each method's MAT change at the last ratio with its paired interval."""
    rows = []
    for r in reports:
        cells = []
        for m in methods:
            key = f"{m}@{RATIOS[-1]}"
            if r.per_example.get(key) and r.per_example.get("none"):
                diff, low, high = r.mat_change(key)
                cells.append(f"{diff:+.2f} [{low:+.2f}, {high:+.2f}]")
            else:
                cells.append("-")
        rows.append(f"| {r.pair} | " + " | ".join(cells) + " |")
    return rows


START, END = "<!-- zoo-table:start -->", "<!-- zoo-table:end -->"
DETAIL_START, DETAIL_END = "<!-- zoo-detail:start -->", "<!-- zoo-detail:end -->"


def write_table(markdown: str, path, start: str = START, end: str = END) -> None:
    """Replace the text between the markers `start` ... `end` of `path` with `markdown`."""
    from pathlib import Path

    path = Path(path)
    text = path.read_text()
    if start not in text or end not in text:
        raise ValueError(f"{path} has no {start} ... {end} markers")
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    path.write_text(f"{head}{start}\n{markdown}\n{end}{tail}")


def _fact_counts(first: int, examples: int, frames: int) -> dict[str, int]:
    """How many reference facts of each kind (and "all") test videos first..first+examples-1 have at
    `frames` frames: the weights that pool fact accuracies of parts exactly (fact_accuracy pools facts)."""
    counts: dict[str, int] = {"all": 0}
    for i in range(first, first + examples):
        for fact in dataset.caption_facts(dataset.video_spec("test", i), frames):
            kind = fact.split(".")[-1]
            counts[kind] = counts.get(kind, 0) + 1
            counts["all"] += 1
    return counts


def _pool_ranges(a: DetailReport, b: DetailReport) -> DetailReport:
    """Two parts of one pair measured on consecutive test videos (`--first`), as one report: facts pooled
    over the facts of each part, lengths over its videos, per-example counts joined and MAT / run length
    pooled again from them. Both parts must have measured the same keys."""
    if a.frames != b.frames or a.first + a.examples != b.first or set(a.mat) != set(b.mat) \
            or set(a.run_length) != set(b.run_length):
        raise ValueError(f"{a.pair}: parts on videos {a.first}..{a.first + a.examples - 1} and {b.first}.."
                         f"{b.first + b.examples - 1} (frames {a.frames} / {b.frames}, keys {sorted(a.mat)} / "
                         f"{sorted(b.mat)}) cannot be pooled: measure consecutive ranges with the same "
                         "--methods, --ratios and --frames")
    wa, wb = _fact_counts(a.first, a.examples, a.frames), _fact_counts(b.first, b.examples, b.frames)

    def facts(x: float, y: float, kind: str = "all") -> float:
        return (x * wa.get(kind, 0) + y * wb.get(kind, 0)) / (wa.get(kind, 0) + wb.get(kind, 0))

    n = a.examples + b.examples
    per_example = {k: a.per_example[k] + b.per_example[k] for k in a.per_example}
    per_runs = {k: a.per_example_runs[k] + b.per_example_runs[k] for k in a.per_example_runs}
    return DetailReport(
        a.pair, n, facts(a.target_facts, b.target_facts), facts(a.draft_facts, b.draft_facts),
        (a.target_tokens * a.examples + b.target_tokens * b.examples) / n,
        (a.draft_tokens * a.examples + b.draft_tokens * b.examples) / n,
        mat={k: pooled_mat(v) for k, v in per_example.items()},
        run_length={k: pooled_run_length(v) for k, v in per_runs.items()},
        per_example=per_example, per_example_runs=per_runs,
        target_fact_kinds={k: facts(v, b.target_fact_kinds[k], k) for k, v in a.target_fact_kinds.items()},
        draft_fact_kinds={k: facts(v, b.draft_fact_kinds[k], k) for k, v in a.draft_fact_kinds.items()},
        frames=a.frames, first=a.first)


def merge_detail(reports: list[DetailReport]) -> list[DetailReport]:
    """One DetailReport per pair from reports of the same pair measured in parts: parts on the same videos
    with disjoint --methods (each with its own "none" baseline: the first part's stands), or parts on
    consecutive ranges of videos (--first; pooled exactly, _pool_ranges)."""
    merged: dict[str, DetailReport] = {}
    for r in sorted(reports, key=lambda r: r.first):
        if r.pair not in merged:
            merged[r.pair] = r
            continue
        base = merged[r.pair]
        if base.first + base.examples == r.first:
            merged[r.pair] = _pool_ranges(base, r)
            continue
        if (base.first, base.examples) != (r.first, r.examples):
            raise ValueError(f"{r.pair}: parts on videos {base.first}..{base.first + base.examples - 1} and "
                             f"{r.first}..{r.first + r.examples - 1} neither share their videos nor follow each "
                             "other: merge parts of the same videos, or of consecutive ranges")
        for name in ("mat", "run_length", "per_example", "per_example_runs"):
            for key, value in getattr(r, name).items():
                getattr(base, name).setdefault(key, value)
    return list(merged.values())


def render_detail_table(reports: list[DetailReport]) -> str:
    """The README / ZOO.md table of the detailed captions (markdown) of `reports`."""
    methods = sorted({k.split("@")[0] for r in reports for k in r.mat if k != "none"})
    header = ["pair", "facts right target / draft", "tokens target / draft", "MAT / run length, no pruning",
              *(f"{m}: MAT 0.5 / 0.75 / 0.9 (run length)" for m in methods)]
    lines = ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"]

    def cell(values: dict, key: str, digits: int) -> str:  # "-": not measured (e.g. PEARL under --no-pearl)
        return f"{values[key]:.{digits}f}" if key in values else "-"

    for r in reports:
        cells = [r.pair, f"{100 * r.target_facts:.1f}% / {100 * r.draft_facts:.1f}%",
                 f"{r.target_tokens:.1f} / {r.draft_tokens:.1f}",
                 f"{cell(r.mat, 'none', 2)} / {cell(r.run_length, 'none', 1)}"]
        for m in methods:
            mats = " / ".join(f"{r.mat[f'{m}@{x}']:.2f}" if f"{m}@{x}" in r.mat else "-" for x in RATIOS)
            runs = " / ".join(f"{r.run_length[f'{m}@{x}']:.1f}" if f"{m}@{x}" in r.run_length else "-" for x in RATIOS)
            cells.append(f"{mats} ({runs})")
        lines.append("| " + " | ".join(cells) + " |")
    n = reports[0].examples if reports else 0
    lines += ["", f"The detailed caption (\"{dataset.DETAIL_PROMPT}\"), first {n} test-split videos, greedy, gamma 5, "
              "fp32 CPU: facts right = dataset.fact_accuracy of the greedy captions; tokens = mean answer length; MAT "
              "of `sd`; run length = PEARL's mean run length (tokens between rejections). Regenerate with `hippo zoo "
              "detail PAIR --json F` per pair, then `hippo zoo detail-table F ... --write README.md`."]
    if methods:
        lines += ["", f"MAT change at ratio {RATIOS[-1]} against no pruning, 95% paired bootstrap interval over the "
                  "videos (2000 resamples, seed 0):", "", "| pair | " + " | ".join(methods) + " |",
                  "|---" * (1 + len(methods)) + "|"]
        lines += mat_change_rows(reports, methods)
    return "\n".join(lines)


def detail_reports_from_json(paths) -> list[DetailReport]:
    """DetailReports written by `hippo zoo detail --json`, merged per pair."""
    from pathlib import Path

    return merge_detail([DetailReport(**json.loads(Path(p).read_text())) for p in paths])


def reports_json(reports: list[PairReport]) -> str:
    """Indented JSON, except that lists of numbers (the per-example counts) stay on one line each."""
    import re
    from dataclasses import asdict

    text = json.dumps([{**asdict(r), "latency_ratio": r.latency_ratio} for r in reports], indent=2)
    return re.sub(r"\[[\d\s,.\[\]eE+-]*\]", lambda m: re.sub(r"\s+", " ", m.group(0)).replace("[ ", "[").replace(" ]", "]"),
                  text)


def reports_from_json(path) -> list[PairReport]:
    """PairReports written by `reports_json` (to re-render a table without measuring again)."""
    from pathlib import Path

    out = []
    for item in json.loads(Path(path).read_text()):
        item.pop("latency_ratio", None)
        out.append(PairReport(**item))
    return out
