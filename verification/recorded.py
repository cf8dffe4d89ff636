"""The audit of outputs recorded elsewhere: `hippo verify --recorded FILE.jsonl --target DIR`.

An implementation that is not a Python function we can call (a published repository, a serving
engine) writes one JSON object per line: what it was asked and what it produced. The row format is
documented in docs/VERIFICATION.md ("Recorded outputs"); `hippo generate --json` writes such rows
(GenerationRequest.as_record + GenerationResult.as_json), and so will `hippo bench sweep`.

Three checks; the first two against the STOCK target loaded from DIR:
  recorded_greedy   a greedy row (temperature 0) must be the target's own greedy tokens, token for
                    token; a mismatch passes only if the near-tie diagnosis (float64 logits at the
                    first divergent step, checks.diagnose_divergence) calls it a numerical near-tie
                    at the row's precision.
  recorded_sampled  sampled rows with the same input (video, frames, prompt) and the same sampling
                    parameters are pooled; their first k tokens are tested against the target's exact
                    law over its first k tokens (chi-square, cells fixed before looking at the rows,
                    see `exact_law_cells`), Holm-corrected as one family, with the minimal detectable
                    TV stated. An output the target cannot produce (probability 0) fails at once.
  recorded_metrics  a row that carries its per-round counts (stats.accepted_per_round) must state the MAT
                    and mean run length that hippo.stats' definitions give from them, and its rounds must
                    commit exactly its tokens after the first (the prefill commits token 0; DecodeStats).
                    A disagreement is a metric finding (an inflated speedup), not a losslessness failure.
A line that is not a valid row is reported with its line number (verdict "error"); the rest of the
file is still audited.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from hippo.checkpoint import TEXT_FAMILIES
from hippo.errors import ConfigError, HippoError
from hippo.request import SamplingParams
from verification import statistics
from verification.checks import CheckResult, _first_mismatch, diagnose_divergence, settle_statistical

OTHER = ("other",)  # the cell of every output outside the enumerated ones (a tuple: never a token sequence of ints)
REQUIRED = ("prompt", "tokens")  # and, for a video row, video with frames or frame_indices


@dataclass(frozen=True)
class RecordedRow:
    """One recorded output, validated."""

    line: int
    video: str | None  # None: a text-only row (a text target, e.g. a serving engine's LlamaForCausalLM)
    prompt: str
    tokens: tuple[int, ...]
    frames: int | None = None
    frame_indices: tuple[int, ...] | None = None
    sampling: SamplingParams = field(default_factory=SamplingParams)
    seed: int | None = None
    eos_token_ids: tuple[int, ...] | None = None  # None: the target's own (generation_config)
    dtype: str | None = None  # the precision it ran in (for the near-tie diagnosis)
    mat: float | None = None  # what the implementation reported, shown beside the verdict
    mean_run_length: float | None = None  # PEARL's measure as reported (stats.mean_run_length)
    rounds: tuple[int, ...] | None = None  # stats.accepted_per_round: tokens committed by each round
    rejections: tuple[bool, ...] | None = None  # stats.rejected_per_round: did each round end in a rejection
    implementation: str | None = None  # what produced the row ("fast", "vllm 0.32.0 ngram", ...): its own report section
    prompt_token_ids: tuple[int, ...] | None = None  # what the engine read, checked against the target's rendering

    @property
    def input_key(self) -> tuple:
        """Rows with the same key read the same target input."""
        return (self.video, self.frames, self.frame_indices, self.prompt)

    @property
    def label(self) -> str:
        return f"line {self.line}"

    @property
    def text_only(self) -> bool:
        return self.video is None


def _resolve_video(video: str, base: Path) -> str:
    """Absolute paths as they are; relative ones against the JSONL's folder, then the working folder;
    a zoo video's label ("zoo:test/3", rendered in memory by hippo.zoo.dataset.labelled_clip) as it is."""
    from hippo.zoo.dataset import is_video_label

    if is_video_label(video):
        return video
    if os.path.isabs(video):
        return video
    for root in (base, Path.cwd()):
        if (root / video).exists():
            return str((root / video).resolve())
    return str(base / video)  # load_video then says the file is missing, naming this path


def _is_token_ids(value) -> bool:
    """A JSON list of non-negative integer token ids (booleans are not ids)."""
    return isinstance(value, list) and all(isinstance(t, int) and not isinstance(t, bool) and t >= 0 for t in value)


def parse_row(obj, line: int, base: Path) -> RecordedRow:
    """A RecordedRow from one decoded JSON line, or ConfigError saying which field is wrong."""
    if not isinstance(obj, dict):
        raise ConfigError(f"a row is a JSON object, got {type(obj).__name__}")
    missing = [k for k in REQUIRED if k not in obj]
    if missing:
        raise ConfigError(f"missing field(s) {', '.join(missing)} (a row needs {', '.join(REQUIRED)}; a video row also "
                          "video and frames or frame_indices)")
    tokens = obj["tokens"]
    if not _is_token_ids(tokens):
        raise ConfigError("tokens must be a list of non-negative integer token ids")
    if not tokens:
        raise ConfigError("tokens is empty: nothing to audit")
    frames, indices = obj.get("frames"), obj.get("frame_indices")
    video = obj.get("video")
    if video is None and (frames is not None or indices is not None):
        raise ConfigError("frames / frame_indices without a video: give the video, or drop them for a text-only row")
    if video is None:
        frames = indices = None
    elif frames is None and indices is None:
        raise ConfigError("give frames (uniformly sampled, the formula of hippo.video) or frame_indices")
    if indices is not None:
        if not isinstance(indices, list) or not all(isinstance(i, int) for i in indices):
            raise ConfigError("frame_indices must be a list of integers")
        indices = tuple(indices)
        if frames is not None and frames != len(indices):
            frames = None  # the indices say exactly what was read; a stale count is not an error
    if frames is not None and (not isinstance(frames, int) or isinstance(frames, bool) or frames < 1):
        raise ConfigError(f"frames must be a positive integer, got {frames!r}")
    sampling_fields = obj.get("sampling") or {}
    if not isinstance(sampling_fields, dict):
        raise ConfigError("sampling must be an object {temperature, top_k, top_p}")
    unknown = set(sampling_fields) - {"temperature", "top_k", "top_p"}
    if unknown:
        raise ConfigError(f"unknown sampling field(s) {', '.join(sorted(unknown))}; known: temperature, top_k, top_p")
    params = SamplingParams(**sampling_fields)
    eos = obj.get("eos_token_ids")
    if eos is not None and (not isinstance(eos, list) or not all(isinstance(t, int) for t in eos)):
        raise ConfigError("eos_token_ids must be a list of integers")
    stats = obj.get("stats") if isinstance(obj.get("stats"), dict) else {}
    mat = obj.get("mat", stats.get("mat"))
    run_length = obj.get("mean_run_length", stats.get("mean_run_length"))
    rounds, rejections = stats.get("accepted_per_round"), stats.get("rejected_per_round")
    if rounds is not None and (not isinstance(rounds, list) or not all(
            isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in rounds)):
        raise ConfigError("stats.accepted_per_round must be a list of non-negative integers (tokens per round)")
    if rejections is not None and (not isinstance(rejections, list) or not all(
            isinstance(r, bool) or r in (0, 1) for r in rejections)):
        raise ConfigError("stats.rejected_per_round must be a list of booleans (one per round)")
    prompt_ids = obj.get("prompt_token_ids")
    if prompt_ids is not None and not _is_token_ids(prompt_ids):
        raise ConfigError("prompt_token_ids must be a list of non-negative integer token ids")
    implementation = obj.get("implementation")
    if implementation is not None and not isinstance(implementation, str):
        raise ConfigError(f"implementation must be a string naming what produced the row, got {implementation!r}")
    return RecordedRow(
        line=line, video=None if video is None else _resolve_video(str(video), base), prompt=str(obj["prompt"]),
        tokens=tuple(tokens),
        frames=None if indices is not None else frames, frame_indices=indices, sampling=params,
        seed=obj.get("seed"), eos_token_ids=None if eos is None else tuple(eos), dtype=obj.get("dtype"),
        mat=float(mat) if isinstance(mat, (int, float)) else None,
        mean_run_length=float(run_length) if isinstance(run_length, (int, float)) else None,
        rounds=None if rounds is None else tuple(rounds),
        rejections=None if rejections is None else tuple(bool(r) for r in rejections),
        implementation=implementation, prompt_token_ids=None if prompt_ids is None else tuple(prompt_ids),
    )


def read_rows(path: Path) -> tuple[list[RecordedRow], list[CheckResult]]:
    """The valid rows of a JSONL file, and an "error" result for each line that is not one (with its
    number and what is wrong). Blank lines are skipped."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"--recorded {path}: no such file (a JSONL file, one output per line; "
                          "docs/VERIFICATION.md describes the rows)")
    rows, problems = [], []
    with open(path, encoding="utf-8", errors="replace") as f:
        for line, text in enumerate(f, start=1):
            if not text.strip():
                continue
            try:
                rows.append(parse_row(json.loads(text), line, path.resolve().parent))
            except json.JSONDecodeError as err:
                problems.append(_bad_line(path, line, f"not valid JSON ({err.msg} at column {err.colno})"))
            except (ConfigError, TypeError, ValueError) as err:
                problems.append(_bad_line(path, line, str(err)))
    return rows, problems


def _bad_line(path: Path, line: int, reason: str) -> CheckResult:
    return CheckResult("recorded_row", f"recorded_row|line {line}", "error", {"file": str(path), "line": line},
                       {"error": f"{path}:{line}: {reason}; the line was skipped, the other rows were audited"})


class TargetInputs:
    """The target's prepared input per distinct (video, frames, prompt), loaded once."""

    def __init__(self, target):
        self.target = target
        self._clips, self._inputs = {}, {}

    def clip(self, row: RecordedRow):
        from hippo.video import load_video

        if row.text_only:
            return None
        key = (row.video, row.frames, row.frame_indices)
        if key not in self._clips:
            from hippo.zoo.dataset import is_video_label, labelled_clip

            read = labelled_clip if is_video_label(row.video) else load_video
            self._clips[key] = read(row.video, row.frames, indices=row.frame_indices)
        return self._clips[key]

    def inputs_of(self, row: RecordedRow, adapter=None):
        adapter = adapter or self.target
        if row.text_only and adapter.family not in TEXT_FAMILIES:
            raise ConfigError(f"{row.label} is a text-only row (no video), the target {adapter.name} is a video LLM "
                              f"({adapter.family}): give --target a text model ({', '.join(sorted(TEXT_FAMILIES))})")
        if adapter is not self.target:
            return adapter.prepare(self.clip(row), row.prompt)
        if row.input_key not in self._inputs:
            self._inputs[row.input_key] = adapter.prepare(self.clip(row), row.prompt)
        inputs = self._inputs[row.input_key]
        check_prompt_ids(row, inputs.input_ids.tolist())
        return inputs


def check_prompt_ids(row: RecordedRow, rendered: list[int]) -> None:
    """A row that states the prompt ids it read must have read the target's own rendering of its prompt
    (the chat template, tokenized): otherwise its tokens answer another input and comparing them means nothing."""
    if row.prompt_token_ids is None or list(row.prompt_token_ids) == rendered:
        return
    stated = list(row.prompt_token_ids)
    first = next((i for i, (a, b) in enumerate(zip(stated, rendered, strict=False)) if a != b),
                 min(len(stated), len(rendered)))
    raise ConfigError(f"{row.label}: its prompt_token_ids ({len(stated)} ids) differ from the target's rendering of the "
                      f"prompt ({len(rendered)} ids) from position {first}: the engine read another input; render the "
                      "prompt with the target's chat template (hippo.adapters.text.TextLLMAdapter.prompt_ids)")


def _eos(row: RecordedRow, target) -> tuple[int, ...]:
    return target.eos_token_ids if row.eos_token_ids is None else row.eos_token_ids


def _dtype_of(row: RecordedRow, default: torch.dtype) -> torch.dtype:
    from hippo.checkpoint import DTYPES

    return DTYPES.get(row.dtype, default) if row.dtype else default


def check_recorded_greedy(target, target_path: str, rows: list[RecordedRow], dtype: torch.dtype) -> list[CheckResult]:
    """Each greedy row == the target's own greedy tokens (stopping at the row's EOS ids), token for token;
    a mismatch is diagnosed at its first divergent step and passes only as a numerical near-tie."""
    from hippo_ref.decoding.autoregressive import decode_autoregressive
    from hippo_ref.decoding.common import DecodeConfig

    inputs = TargetInputs(target)
    results, greedy_of = [], {}
    for row in rows:
        name = f"recorded_greedy|{row.label}"
        facts = {"line": row.line, "video": row.video, "prompt": row.prompt, "tokens": len(row.tokens),
                 "implementation": row.implementation}
        try:
            key = (row.input_key, _eos(row, target))
            need = len(row.tokens)
            if key not in greedy_of or len(greedy_of[key]) < need and not _stopped(greedy_of[key], key[1]):
                cfg = DecodeConfig(max_new_tokens=need, eos_token_ids=key[1])
                greedy_of[key] = decode_autoregressive(target.prefill(inputs.inputs_of(row)), cfg).tokens
            reference = _until_eos(greedy_of[key], key[1])[:need]
            i = _first_mismatch(list(row.tokens), reference)
            numbers = {"first_mismatch": i, "reported_mat": row.mat}
            verdict = "pass"
            if i is not None:
                numbers["expected"] = reference[i] if i < len(reference) else "(the target stopped at its EOS)"
                numbers["recorded"] = row.tokens[i] if i < len(row.tokens) else "(the row ends)"
                if i < len(reference) and i < len(row.tokens):
                    diagnosis = diagnose_divergence(target_path, lambda a, row=row: inputs.inputs_of(row, a),
                                                    reference[:i], reference[i], row.tokens[i], _dtype_of(row, dtype))
                    numbers["diagnosis"] = diagnosis
                    verdict = "pass" if diagnosis["classification"] == "numerical near-tie" else "fail"
                else:
                    verdict = "fail"
                numbers["message"] = (f"line {row.line}: step {i}: the target's greedy token is {numbers['expected']}, "
                                      f"the row has {numbers['recorded']}")
        except HippoError as err:
            results.append(CheckResult("recorded_greedy", name, "error", facts,
                                       {"error": f"line {row.line}: {err}"}))
            continue
        results.append(CheckResult("recorded_greedy", name, verdict, facts, numbers))
    return results


def _until_eos(tokens: list[int], eos: tuple[int, ...]) -> list[int]:
    for i, t in enumerate(tokens):
        if t in eos:
            return tokens[: i + 1]
    return tokens


def _stopped(tokens: list[int], eos: tuple[int, ...]) -> bool:
    return any(t in eos for t in tokens)


# ---- sampled rows: the target's exact law over its first k tokens --------------------------------------
def exact_law_cells(next_distribution, samples: int, k: int, eos: tuple[int, ...],
                    min_expected: float = statistics.MIN_EXPECTED) -> dict:
    """The target's law over its first k tokens, coarsened into cells chosen before looking at any
    row: a prefix is expanded while its expected count (samples x probability) is at least
    `min_expected`; a sequence stops at EOS (the decode ends there). Returns {sequence: probability}
    for the enumerated sequences and OTHER for the rest of the mass (so the test stays exact: the
    coarsened law is the image of the exact one). `next_distribution(prefix)` -> float64 p (V,)."""
    law, stack = {}, [((), 1.0)]
    while stack:
        prefix, mass = stack.pop()
        p = next_distribution(prefix)
        listed = 0.0
        for token in torch.nonzero(p * mass * samples >= min_expected).flatten().tolist():
            sequence, prob = (*prefix, token), mass * float(p[token])
            listed += prob
            if len(sequence) == k or token in eos:
                law[sequence] = law.get(sequence, 0.0) + prob
            else:
                stack.append((sequence, prob))
        rest = mass - listed  # the prefix's mass in tokens too rare to list
        if rest > 1e-15:
            law[OTHER] = law.get(OTHER, 0.0) + rest
    return law


def outcome_probability(next_distribution, sequence: tuple[int, ...]) -> float:
    """The target's probability of producing exactly `sequence` as its first tokens."""
    prob = 1.0
    for i, token in enumerate(sequence):
        prob *= float(next_distribution(sequence[:i])[token])
        if prob == 0.0:
            break
    return prob


def _outcome(row: RecordedRow, k: int, eos: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(_until_eos(list(row.tokens[:k]), eos))


class TargetLaw:
    """p(next token | prefix) of the target on one input, float64, memoised per prefix."""

    def __init__(self, target, inputs, params: SamplingParams):
        from hippo_ref.decoding.common import Track

        self.context = target.prefill(inputs)
        self.track = Track(self.context, "target")
        self.params = params
        self._cache = {}

    def __call__(self, prefix: tuple[int, ...]) -> torch.Tensor:
        from hippo_ref import sampling

        if prefix not in self._cache:
            logits = self.context.last_logits if not prefix else self.track.logits_after(list(prefix), len(prefix) - 1)[-1]
            self._cache[prefix] = sampling.distribution(logits, self.params).double()
        return self._cache[prefix]


def check_recorded_sampled(target, rows: list[RecordedRow], k: int, alpha: float) -> list[CheckResult]:
    """Pool sampled rows by (input, sampling parameters, EOS ids) and test their first k tokens against
    the target's exact law (pending verdicts: `settle_statistical` sets them as one family)."""
    inputs = TargetInputs(target)
    groups: dict[tuple, list[RecordedRow]] = {}
    for row in rows:  # each implementation's rows are a claim of their own: never pooled with another's
        groups.setdefault((row.input_key, row.sampling, _eos(row, target), row.implementation), []).append(row)
    results, laws = [], {}
    for (key, params, eos, implementation), group in groups.items():
        lines = [r.line for r in group]
        where = "text" if group[0].text_only else group[0].video.rsplit('/', 1)[-1]
        name = f"recorded_sampled|{implementation or '-'}|{where}|lines {lines[0]}..{lines[-1]}"
        facts = {"video": key[0], "prompt": key[3], "frames": key[1], "frame_indices": key[2],
                 "sampling": asdict(params), "rows": len(group), "lines": lines, "implementation": implementation}
        # A row shorter than k that did not end at EOS (its max_new_tokens was smaller) bounds the depth.
        short = [len(r.tokens) for r in group if len(r.tokens) < k and r.tokens[-1] not in eos]
        depth = min([k, *short])
        facts["tokens_compared"] = depth
        try:
            for r in group:
                inputs.inputs_of(r)  # each row's prompt ids, if stated, are the target's rendering
            if (key, params) not in laws:  # one law per input and parameters, whatever the implementation
                laws[key, params] = TargetLaw(target, inputs.inputs_of(group[0]), params)
            law_of = laws[key, params]
            cells = exact_law_cells(law_of, len(group), depth, eos)
            samples = []
            for r in group:
                outcome = _outcome(r, depth, eos)
                if outcome in cells:
                    samples.append(outcome)
                elif outcome_probability(law_of, outcome) == 0.0:
                    samples.append(outcome)  # not in `cells`: goodness_of_fit counts it as impossible
                else:
                    samples.append(OTHER)
            gof = statistics.goodness_of_fit(samples, cells)
        except HippoError as err:
            results.append(CheckResult("recorded_sampled", name, "error", facts, {"error": str(err)}))
            continue
        numbers = gof.as_json()
        numbers["enumerated_cells"] = len(cells)
        numbers["min_detectable_tv"] = statistics.min_detectable_tv(gof.n, max(gof.cells, 2), alpha)
        numbers["min_detectable_tv_power"] = 0.8
        if gof.impossible:
            bad = [r.line for r, s in zip(group, samples, strict=True) if s not in cells and s != OTHER]
            numbers["message"] = (f"line(s) {bad[:10]}: output the target gives probability 0 under "
                                  f"{asdict(params)}")
        results.append(CheckResult("recorded_sampled", name, "pending", facts, numbers, p_value=gof.p_value))
    settle_statistical(results, alpha)
    return results


# ---- metrics: what a row says it measured --------------------------------------------------------------
METRIC_TOLERANCE = 1e-9  # relative: a stated MAT / run length is a ratio of integers, written as a float


def check_recorded_metrics(rows: list[RecordedRow]) -> list[CheckResult]:
    """Each row carrying its per-round counts: the rounds commit exactly its tokens after the first (the
    prefill commits token 0 and is no round: hippo.stats.DecodeStats), and its stated MAT and mean run
    length are DecodeStats.mat / .mean_run_length of those counts. A disagreement is a metric finding:
    the tokens may be right while the reported speedup is inflated (verdict "fail", kind "metric")."""
    from hippo.stats import DecodeStats

    results = []
    for row in rows:
        if row.rounds is None:
            continue
        name = f"recorded_metrics|{row.label}"
        facts = {"line": row.line, "rounds": len(row.rounds), "tokens": len(row.tokens), "kind": "metric"}
        stats = DecodeStats(accepted_per_round=list(row.rounds),
                            rejected_per_round=list(row.rejections) if row.rejections is not None
                            else [False] * len(row.rounds))
        findings = []
        if sum(row.rounds) != len(row.tokens) - 1:
            findings.append(f"its rounds commit {sum(row.rounds)} tokens, the row has {len(row.tokens) - 1} after "
                            "the first (which the prefill commits)")
        if row.rejections is not None and len(row.rejections) != len(row.rounds):
            findings.append(f"{len(row.rejections)} rejection flags for {len(row.rounds)} rounds")
        stated = {"mat": row.mat, "mean_run_length": row.mean_run_length if row.rejections is not None else None}
        recomputed = {"mat": stats.mat, "mean_run_length": stats.mean_run_length}
        for metric, value in stated.items():
            if value is not None and abs(value - recomputed[metric]) > METRIC_TOLERANCE * max(1.0, abs(value)):
                findings.append(f"stated {metric} {value:.6g}, its rounds give {recomputed[metric]:.6g}")
        numbers = {"stated": stated, "recomputed": recomputed, "committed_by_rounds": sum(row.rounds),
                   "findings": findings}
        if findings:
            numbers["message"] = f"line {row.line}: " + "; ".join(findings)
        results.append(CheckResult("recorded_metrics", name, "fail" if findings else "pass", facts, numbers))
    return results


def record_rows(candidate, case, params: SamplingParams, count: int, seed_base: int, path: Path,
                max_new_tokens: int = 2, gamma: int = 2) -> Path:
    """`count` seeded decodes (seeds seed_base, seed_base + 1, ...) of `candidate` on a video case, written
    as the rows `hippo generate --json` writes (the request's fields, the frames read, the tokens and the
    decode's stats): what the negative controls feed to the recorded checks."""
    from dataclasses import asdict as fields_of

    from hippo.request import DecodeConfig

    path = Path(path)
    with open(path, "w", encoding="utf-8") as f:
        for seed in range(seed_base, seed_base + count):
            cfg = DecodeConfig(max_new_tokens=max_new_tokens, gamma=gamma, sampling=params, seed=seed)
            result = candidate.run_with_stats(case, cfg)
            row = {"video": case.video, "frame_indices": list(case.clip.frame_indices), "prompt": case.prompt,
                   "sampling": fields_of(params), "seed": seed, "eos_token_ids": [], "tokens": result.tokens}
            if result.stats is not None:
                s = result.stats
                row["stats"] = {"accepted_per_round": s.accepted_per_round, "rejected_per_round": s.rejected_per_round,
                                "mat": s.mat, "mean_run_length": s.mean_run_length}
            f.write(json.dumps(row) + "\n")
    return path


def audit_recorded(path: Path, target, target_path: str, k: int = 2, alpha: float = 0.01,
                   dtype: torch.dtype = torch.float32, log=print) -> list[CheckResult]:
    """Every check of a recorded file: malformed lines, greedy rows, pooled sampled rows."""
    rows, problems = read_rows(path)
    greedy = [r for r in rows if r.sampling.greedy]
    sampled = [r for r in rows if not r.sampling.greedy]
    log(f"recorded {path}: {len(rows)} rows ({len(greedy)} greedy, {len(sampled)} sampled), "
        f"{len(problems)} malformed line(s)")
    for p in problems:
        log(f"  {p.numbers['error']}")
    results = list(problems)
    results += check_recorded_greedy(target, target_path, greedy, dtype)
    results += check_recorded_sampled(target, sampled, k, alpha)
    results += check_recorded_metrics(rows)
    failed = [r for r in results if r.failed]
    log(f"  recorded: {len(failed)} failed of {len(results)}")
    for r in failed[:20]:
        log(f"    {r.name}: {r.numbers.get('message') or r.numbers.get('error') or ''}")
    return results
