"""What every loader shares: reading the annotation files, checking fields, resolving videos, and the
error messages (hippo.errors.DatasetError) that name the benchmark, the file, the row and what was
expected. Rows of a JSON list or a parquet table are counted from 0; lines of a JSONL file from 1."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path

from hippo.errors import ConfigError, DatasetError
from paper.sweep.datasets.sample import LETTERS, PROMPT_MODES

PYARROW_PIN = "pyarrow==26.0.1"


def check_prompt_mode(prompt_mode: str) -> str:
    if prompt_mode not in PROMPT_MODES:
        raise ConfigError(f"unknown prompt mode {prompt_mode!r}; choose benchmark (the benchmark's own question) "
                          "or speed (SpecVLM's detailed-description protocol)")
    return prompt_mode


class Table:
    """The rows of one annotation file, with what the error messages need to name them."""

    def __init__(self, benchmark: str, rel: str, rows: list, expected: Sequence[str], doc: str, unit: str = "row"):
        self.benchmark, self.rel, self.rows, self.expected, self.doc, self.unit = benchmark, rel, rows, expected, doc, unit

    def where(self, index: int) -> str:
        number = index + 1 if self.unit == "line" else index
        return f"{self.benchmark}: {self.rel} {self.unit} {number}"

    def error(self, index: int, what: str) -> DatasetError:
        return DatasetError(f"{self.where(index)} {what} (expected fields: {', '.join(self.expected)}; "
                            f"see {self.doc})")

    def field(self, index: int, name: str, kind: str = "str", row: dict | None = None, optional: bool = False,
              at: str = ""):
        """Field `name` of row `index` (or of `row`, a record nested in it, named `at` in messages, e.g.
        "qa[2]"), checked to be of `kind`: str, number, int, str-list, options (a non-empty str-list) or
        any. A missing field raises DatasetError unless `optional` (then None)."""
        row = self.rows[index] if row is None else row
        at = f"{at} " if at else ""
        if not isinstance(row, dict):
            raise self.error(index, f"{at}is a {type(row).__name__}, not an object with fields")
        if name not in row or row[name] is None:
            if optional:
                return None
            raise self.error(index, f"{at}has no field {name!r}")
        value = row[name]
        ok = {
            "str": isinstance(value, str),
            "number": isinstance(value, (int, float)) and not isinstance(value, bool),
            "int": isinstance(value, int) and not isinstance(value, bool),
            "str-list": isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value),
            "options": isinstance(value, (list, tuple)) and bool(value) and all(isinstance(v, str) for v in value),
            "any": True,
        }[kind]
        if not ok:
            wanted = {"str": "a string", "number": "a number", "int": "an integer",
                      "str-list": "a list of strings", "options": "a non-empty list of option texts",
                      "any": "a value"}[kind]
            raise self.error(index, f"{at}field {name!r} is {value!r:.80}, expected {wanted}")
        return list(value) if kind in ("str-list", "options") else value


def missing_file(benchmark: str, rel: str, root: Path, hint: str) -> DatasetError:
    return DatasetError(f"{benchmark}: {rel} not found under {root}: {hint}")


def require(benchmark: str, root: Path, rel: str, hint: str) -> Path:
    path = root / rel
    if not path.is_file():
        raise missing_file(benchmark, rel, root, hint)
    return path


def check_root(benchmark: str, root) -> Path:
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{benchmark}: root folder {root} does not exist or is not a folder: point --root at "
                           "the folder the benchmark's download unpacks to")
    return root


def detect_layout(benchmark: str, root: Path, layouts: Sequence[tuple[str, bool, str]], hint: str) -> str:
    """The first of `layouts` (name, its files are under root, what they are) whose files are there."""
    for name, present, _ in layouts:
        if present:
            return name
    found = " nor ".join(what for _, _, what in layouts)
    raise DatasetError(f"{benchmark}: neither {found} found under {root}: {hint}")


def read_json_list(benchmark: str, root: Path, rel: str, expected, doc: str, hint: str) -> Table:
    path = require(benchmark, root, rel, hint)
    try:
        rows = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DatasetError(f"{benchmark}: {rel} is not valid JSON ({err}): re-download it") from None
    if not isinstance(rows, list):
        raise DatasetError(f"{benchmark}: {rel} holds a JSON {type(rows).__name__}, expected a list of rows "
                           f"(see {doc})")
    return Table(benchmark, rel, rows, expected, doc)


def read_jsonl(benchmark: str, root: Path, rel: str, expected, doc: str, hint: str) -> Table:
    path = require(benchmark, root, rel, hint)
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as err:
            raise DatasetError(f"{benchmark}: {rel} line {number} is not valid JSON ({err}): re-download it") from None
    return Table(benchmark, rel, rows, expected, doc, unit="line")


def read_parquet(benchmark: str, root: Path, rels: Sequence[str], expected, doc: str, hint: str) -> Table:
    """The rows of the parquet files `rels` (shards of one split, in order) as one Table."""
    for rel in rels:
        require(benchmark, root, rel, hint)
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise DatasetError(f"{benchmark}: reading {rels[0]} needs pyarrow: pip install {PYARROW_PIN}") from None
    rows: list = []
    for rel in rels:
        try:
            rows.extend(pq.read_table(root / rel).to_pylist())
        except Exception as err:  # pyarrow raises ArrowInvalid / OSError with its own text
            raise DatasetError(f"{benchmark}: {rel} is not a readable parquet file ({err}): re-download it") from None
    return Table(benchmark, rels[0] if len(rels) == 1 else f"{rels[0]} (+{len(rels) - 1} shards)", rows, expected, doc)


def glob_one_split(benchmark: str, root: Path, pattern: str, hint: str) -> list[str]:
    """The files matching `pattern` under root (relative, sorted), or a DatasetError naming the pattern."""
    rels = sorted(str(p.relative_to(root)) for p in root.glob(pattern) if p.is_file())
    if not rels:
        raise missing_file(benchmark, pattern, root, hint)
    return rels


def resolve_media(table: Table, index: int, tried: Sequence[Path], check: bool, folder: bool = False) -> Path:
    """The first of `tried` that exists (a folder when `folder`), or with check=False the first of them;
    with check=True and none existing, a DatasetError naming every path tried."""
    exists = Path.is_dir if folder else Path.is_file
    for path in tried:
        if not check or exists(path):
            return path
    kind = "frame folder" if folder else "video"
    raise DatasetError(f"{table.where(index)}: {kind} not found: tried {', '.join(str(p) for p in tried)} "
                       "(check the root folder and that the videos are unpacked there, or pass "
                       "check_videos=False to list the samples without their videos)")


def letter_of(table: Table, index: int, answer: str, candidates: Sequence[str], field: str = "answer") -> str:
    """The gold letter of an answer given as the TEXT of one of `candidates` (MVBench, MLVU original)."""
    try:
        return LETTERS[list(candidates).index(answer)]
    except ValueError:
        raise table.error(index, f"field {field!r} is {answer!r:.80}, which is not one of its candidates "
                                 f"{list(candidates)!r:.200}") from None


def letter_field(table: Table, index: int, value: str, num_choices: int | None, field: str = "answer") -> str:
    """A gold answer given as a letter ("B", "(B)", "B." are accepted), checked against the options."""
    letter = value.strip().strip("()").rstrip(".").strip()
    if len(letter) != 1 or letter not in LETTERS or (num_choices and LETTERS.index(letter) >= num_choices):
        span = f"A..{LETTERS[num_choices - 1]}" if num_choices else "A..Z"
        raise table.error(index, f"field {field!r} is {value!r:.80}, expected an option letter {span}")
    return letter


def options_block(choices: Iterable[str], style: str) -> str:
    """Lettered options, one a line: style "paren" gives "(A) text", "dot" gives "A. text"."""
    fmt = "({}) {}" if style == "paren" else "{}. {}"
    return "\n".join(fmt.format(LETTERS[i], c) for i, c in enumerate(choices))


def unique_ids(ids: Sequence[str]) -> list[str]:
    """`ids` with repeats made unique by "#2", "#3", ... in file order (computed over the whole file, so
    an id does not depend on which rows a task filter or a limit keeps)."""
    seen: dict[str, int] = {}
    out = []
    for sid in ids:
        seen[sid] = seen.get(sid, 0) + 1
        out.append(sid if seen[sid] == 1 else f"{sid}#{seen[sid]}")
    return out


def select_tasks(benchmark: str, tasks, known: Sequence[str] | None) -> tuple[str, ...] | None:
    """The task filter as a tuple (None: all), checked against the benchmark's task names when known."""
    if tasks is None:
        return None
    tasks = (tasks,) if isinstance(tasks, str) else tuple(tasks)
    if known is not None:
        unknown = [t for t in tasks if t not in known]
        if unknown:
            raise ConfigError(f"{benchmark}: unknown task(s) {', '.join(unknown)}; known: {', '.join(known)}")
    return tasks


def keep_rows(table: Table, tasks: tuple[str, ...] | None, task_sets: Sequence[Iterable[str]], field: str) -> list[int]:
    """The rows (or entries: LVBench's questions) whose tasks (`task_sets[i]`, the task names of entry i)
    meet the filter (all of them without one); a filter that keeps nothing raises DatasetError naming the tasks the file has."""
    if tasks is None:
        return list(range(len(task_sets)))
    keep = [i for i, names in enumerate(task_sets) if set(names) & set(tasks)]
    if not keep:
        present = sorted({t for names in task_sets for t in names})
        raise DatasetError(f"{table.benchmark}: no row of {table.rel} has {field} in {', '.join(tasks)}; "
                           f"present: {', '.join(present) or 'none'}")
    return keep
