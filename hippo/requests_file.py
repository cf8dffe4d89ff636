"""`hippo generate --requests FILE.jsonl`: many requests in one call, one model load, one draft worker.

A requests file has one JSON object per line: the request fields of a recorded-output row
(GenerationRequest.from_record: video, frames, prompt, decoding, prune, sampling, draft_sampling, seed,
gamma, max_new_tokens, eos_token_ids), each optional, the command line's flags for the rest. A row
`hippo generate --json` wrote is a request too (its result fields are ignored). The target, the draft,
the implementation, --dtype and --device are the command line's, for every line.

Each line gives one recorded-output row on stdout, in the order of the lines, with `line` (its number in
the file). A line that cannot run (not JSON, a wrong field, a missing video, a request that does not fit)
gives `{"line": N, "error": "..."}` instead, is said on stderr with its number, and the other lines
still run; the exit status is then 2. Blank lines are skipped.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from hippo.errors import ConfigError, HippoError
from hippo.request import GenerationRequest


@dataclass
class RequestLine:
    line: int
    request: GenerationRequest | None = None
    error: str | None = None  # why the line cannot run


def resolve_video(video: str, base: Path) -> str:
    """An absolute path as it is; a relative one against the requests file's folder, then the working
    folder; a zoo video's label ("zoo:test/3") as it is."""
    from hippo.zoo.dataset import is_video_label

    if is_video_label(video) or os.path.isabs(video):
        return video
    for root in (base, Path.cwd()):
        if (root / video).exists():
            return str((root / video).resolve())
    return str(base / video)  # loading it then says the file is missing, naming this path


def read_requests(path: str | Path, defaults: GenerationRequest, check=None) -> list[RequestLine]:
    """Every non-blank line of `path`, parsed: its request, or why it is not one (a HippoError of
    `check(request)`, the command's own refusals of a request it cannot run, included)."""
    from dataclasses import replace

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"--requests {path}: no such file (a JSONL file, one request per line)")
    base = path.resolve().parent
    lines = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for number, text in enumerate(f, start=1):
            if not text.strip():
                continue
            try:
                request = GenerationRequest.from_record(json.loads(text), defaults)
                if check is not None:
                    check(request)
                lines.append(RequestLine(number, replace(request, video=resolve_video(request.video, base))))
            except json.JSONDecodeError as err:
                lines.append(RequestLine(number, error=f"not valid JSON ({err.msg} at column {err.colno})"))
            except HippoError as err:
                lines.append(RequestLine(number, error=str(err)))
    if not lines:
        raise ConfigError(f"--requests {path}: the file has no request (one JSON object per line)")
    return lines


def load_clip(request: GenerationRequest):
    """The frames the request reads: decoded from its file, or a zoo video rendered in memory."""
    from hippo.video import load_video
    from hippo.zoo.dataset import is_video_label, labelled_clip

    if is_video_label(request.video):
        return labelled_clip(request.video, request.frames)
    return load_video(request.video, request.frames)


def run_requests(lines: list[RequestLine], run_one, progress: bool = True) -> int:
    """Run each line's request with `run_one(request, clip) -> row` (a recorded-output row), printing
    the rows (or error rows) in order. Returns the exit status: 0, or 2 when a line could not run."""
    from tqdm import tqdm

    failed = []
    bar = tqdm(total=len(lines), desc="hippo generate", unit="request", file=sys.stderr,
               disable=not progress or not sys.stderr.isatty(), dynamic_ncols=True)
    try:
        for entry in lines:
            row, error = None, entry.error
            if error is None:
                try:
                    row = run_one(entry.request, load_clip(entry.request))
                except HippoError as err:
                    error = str(err)
            if error is not None:
                failed.append(entry.line)
                bar.write(f"hippo: error: line {entry.line}: {error}", file=sys.stderr)
                row = {"error": error}
            print(json.dumps({"line": entry.line, **row}), flush=True)
            bar.update()
    finally:
        bar.close()
    if failed:
        print(f"hippo: error: {len(failed)} of {len(lines)} request(s) could not run (line(s) "
              f"{', '.join(map(str, failed))}); the others ran and their rows are printed", file=sys.stderr)
        return 2
    return 0
