"""The zoo's synthetic video-understanding dataset, generated deterministically from (split, index).

Each video is 8 RGB frames of 112x112 with ONE informative object (a saturated colour, a shape, a
size, a motion) over a background that is either a low-contrast texture or clutter made of small
grey shapes, optionally with a grey occluder bar the object passes behind. Questions ask about the
object; the answers are templates whose words name the object's attributes, so a model that reads
the wrong visual tokens says the wrong words (and a draft that lost them drafts wrong tokens).

Attributes (the words the accuracy metric looks for):
    color      red green blue yellow purple orange
    shape      circle square triangle
    size       small large
    motion     left right up down still appears disappears
    speed      slowly quickly            (only for moving objects)
    occlusion  "behind a gray bar"      (only for moving objects; boolean)
    background textured cluttered

`central` videos (half of all videos) keep the object away from the frame borders, so the
position-bias claim about boundary tokens can be tested: the object's centre stays inside the central
band [0.2, 0.8] x SIZE on both axes for the whole clip, and so does its whole extent unless the path
plus the object is longer than the band (a large object moving quickly); the path is then centred
on the band, leaving at least 15 free pixels to every border. Other videos may put the object anywhere, borders included.

The detailed caption (question DETAIL_PROMPT, type "detail"; `caption_facts`, `detail_answer`) states
every fact of the ground truth in fixed sentences: the attributes and background, then for each of
four temporal segments (frames 1-2, 3-4, 5-6, 7-8) whether the object is visible, behind the bar, not
there yet or gone, where its centre is on a 3 x 3 grid, and how it moves; then its motion over the
clip. `fact_accuracy` scores generated captions against those facts.

Splits: a video is a pure function of (split, index); the three splits use disjoint seed streams.
Nothing is stored in the repository: a video is rendered when it is asked for.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field

import numpy as np

FRAMES = 8  # the default clip length (the first zoo pairs'); any multiple of SEGMENTS renders
SEGMENTS = 4  # the caption's temporal segments: quarters of the clip (at 8 frames: frames 1-2, 3-4, 5-6, 7-8,
# Qwen2.5-VL's temporal groups)
SIZE = 112
SPLITS = {"train": 0, "val": 1, "test": 2}
SPLIT_SIZES = {"train": 20000, "val": 200, "test": 200}

COLORS = {
    "red": (220, 30, 30),
    "green": (30, 190, 40),
    "blue": (40, 70, 230),
    "yellow": (235, 215, 30),
    "purple": (150, 40, 200),
    "orange": (245, 130, 20),
}
SHAPES = ("circle", "square", "triangle")
SIZES = {"small": 12, "large": 19}  # half-extent in pixels (objects span 2-3 patches of 14: see docs/ZOO.md)
MOTIONS = ("left", "right", "up", "down", "still", "appears", "disappears")
MOVING = ("left", "right", "up", "down")
SPEEDS = {"slowly": 18, "quickly": 42}  # total displacement over the clip in pixels
BACKGROUNDS = ("textured", "cluttered")

# Each attribute's value words, as they appear in answers (the metric's vocabulary).
ATTRIBUTE_WORDS: dict[str, tuple[str, ...]] = {
    "color": tuple(COLORS),
    "shape": SHAPES,
    "size": tuple(SIZES),
    "motion": MOTIONS,
    "speed": tuple(SPEEDS),
    "background": BACKGROUNDS,
}

# The five short-answer question types (scored by attribute_accuracy). val / test examples cycle
# through these by index, as they always have, so the existing accuracy numbers keep their meaning.
QUESTION_TYPES = ("describe", "color", "shape", "size", "motion")
# The long-answer question type: a detailed caption of 60-150 zoo-tokenizer tokens whose every fact is
# ground truth (scored by fact_accuracy). Asked for explicitly (example(..., "detail")) or mixed into a
# training stage with Stage.detail_fraction; the speed benchmarks default to it (detail_requests).
DETAIL = "detail"
DETAIL_PROMPT = "describe the video in detail."
ALL_QUESTION_TYPES = QUESTION_TYPES + (DETAIL,)
QUESTIONS = {
    "describe": "describe the video.",
    "color": "what color is the object?",
    "shape": "what shape is the object?",
    "size": "how big is the object?",
    "motion": "how does the object move?",
    DETAIL: DETAIL_PROMPT,
}


@dataclass(frozen=True)
class VideoSpec:
    """Everything that determines one video and its answers."""

    split: str
    index: int
    color: str
    shape: str
    size: str
    motion: str
    speed: str | None
    occluded: bool
    background: str
    central: bool
    start: tuple[float, float]  # object centre (y, x) in the first frame
    seed: int  # background / clutter seed

    def attributes(self) -> dict[str, object]:
        """Attribute -> value; speed and occlusion only for moving objects."""
        out: dict[str, object] = {"color": self.color, "shape": self.shape, "size": self.size,
                                  "motion": self.motion, "background": self.background}
        if self.motion in MOVING:
            out["speed"] = self.speed
            out["occlusion"] = self.occluded
        return out


@dataclass(frozen=True)
class Example:
    """One question about one video, with its templated answer and what the answer states: `asked`,
    the attributes a short answer names (attribute_accuracy); `facts`, for the "detail" question type
    only, the caption's facts (caption_facts, scored by fact_accuracy; `asked` is then empty)."""

    video: VideoSpec
    qtype: str
    question: str
    answer: str
    asked: dict[str, object]
    facts: dict[str, str] = field(default_factory=dict)


def _seed(split: str, index: int, purpose: str = "") -> int:
    key = f"hippo-zoo/{split}/{index}/{purpose}".encode()
    return int.from_bytes(hashlib.sha256(key).digest()[:8], "little")


def video_spec(split: str, index: int) -> VideoSpec:
    """The video number `index` of `split` (a pure function)."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    rng = np.random.default_rng(_seed(split, index))
    color = str(rng.choice(list(COLORS)))
    shape = str(rng.choice(SHAPES))
    size = str(rng.choice(list(SIZES)))
    motion = str(rng.choice(MOTIONS, p=[0.16, 0.16, 0.16, 0.16, 0.12, 0.12, 0.12]))
    moving = motion in MOVING
    speed = str(rng.choice(list(SPEEDS))) if moving else None
    occluded = bool(moving and rng.random() < 0.3)
    background = str(rng.choice(BACKGROUNDS))
    central = bool(rng.random() < 0.5)
    half = SIZES[size]
    travel = SPEEDS[speed] if moving else 0
    dy, dx = _direction(motion)
    lo, hi = (0.2 * SIZE + half, 0.8 * SIZE - half) if central else (half + 1, SIZE - half - 2)
    # The whole path stays inside [lo, hi] on both axes; a path longer than that is centred on it.
    start = tuple(_start_on_axis(rng, lo, hi, d * travel) for d in (dy, dx))
    return VideoSpec(split, index, color, shape, size, motion, speed, occluded, background, central,
                     start, int(rng.integers(0, 2**31)))


def _start_on_axis(rng, lo: float, hi: float, shift: float) -> float:
    """A start coordinate whose path [start, start + shift] lies in [lo, hi], or is centred on it."""
    first, last = lo - min(0.0, shift), hi - max(0.0, shift)
    if last < first:
        return float((lo + hi - shift) / 2)
    return float(rng.uniform(first, last))


def _direction(motion: str) -> tuple[int, int]:
    return {"left": (0, -1), "right": (0, 1), "up": (-1, 0), "down": (1, 0)}.get(motion, (0, 0))


def _background(spec: VideoSpec) -> np.ndarray:
    rng = np.random.default_rng(spec.seed)
    if spec.background == "textured":
        coarse = rng.uniform(70, 150, size=(8, 8))
        tex = np.kron(coarse, np.ones((14, 14)))
        tex = tex + rng.normal(0, 10, size=(SIZE, SIZE))
        tint = rng.uniform(-12, 12, size=3)
        img = tex[:, :, None] + tint[None, None, :]
    else:
        img = np.full((SIZE, SIZE, 3), rng.uniform(90, 130), dtype=np.float64)
        for _ in range(28):
            h, w = rng.integers(3, 11, size=2)
            y, x = rng.integers(0, SIZE - h), rng.integers(0, SIZE - w)
            img[y : y + h, x : x + w] = rng.uniform(40, 210)
    return np.clip(img, 0, 255).astype(np.uint8)


def _shape_mask(shape: str, cy: float, cx: float, half: int) -> np.ndarray:
    yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(np.float64)
    if shape == "circle":
        return (yy - cy) ** 2 + (xx - cx) ** 2 <= half**2
    if shape == "square":  # full extent: circle and triangle cover 79% and 50% of its area
        return (np.abs(yy - cy) <= half) & (np.abs(xx - cx) <= half)
    # triangle pointing up: inside if below the apex lines and above the base
    top, bottom = cy - half, cy + half
    rel = (yy - top) / (2 * half)
    return (yy >= top) & (yy <= bottom) & (np.abs(xx - cx) <= rel * half)


def check_frames(frames: int) -> int:
    """A clip length the generator renders: a multiple of the caption's 4 segments, 4..64."""
    if not isinstance(frames, int) or frames % SEGMENTS or not SEGMENTS <= frames <= 64:
        raise ValueError(f"zoo videos have a multiple of {SEGMENTS} frames (the caption's segments), "
                         f"{SEGMENTS}..64, not {frames!r}")
    return frames


def render(spec: VideoSpec, frames: int = FRAMES) -> np.ndarray:
    """(frames, SIZE, SIZE, 3) uint8 RGB frames of `spec`: the same motion over the same clip, sampled
    at `frames` evenly spaced instants (the first at the start, the last at the end)."""
    background = _background(spec)
    out = np.repeat(background[None], check_frames(frames), axis=0).copy()
    color = np.array(COLORS[spec.color], dtype=np.uint8)
    bar = bar_mask(spec)
    for t, mask in enumerate(object_masks(spec, frames)):
        out[t][mask] = color
        if bar is not None:
            out[t][bar] = (128, 128, 128)
    return out


def _bar_span(spec: VideoSpec) -> tuple[str, int, int] | None:
    """The occluder bar of `spec` as (axis, first, last + 1): a 9-pixel band of columns ("x") or rows
    ("y") across the middle of the path, perpendicular to it; None when the object is not occluded."""
    if not spec.occluded:
        return None
    travel = SPEEDS[spec.speed] if spec.speed else 0
    dy, dx = _direction(spec.motion)
    if dx:
        mx = spec.start[1] + dx * travel / 2
        return "x", int(mx) - 4, int(mx) + 5
    my = spec.start[0] + dy * travel / 2
    return "y", int(my) - 4, int(my) + 5


def bar_mask(spec: VideoSpec) -> np.ndarray | None:
    """(SIZE, SIZE) bool: the grey occluder bar's pixels (drawn over the object), or None."""
    span = _bar_span(spec)
    if span is None:
        return None
    axis, first, stop = span
    bar = np.zeros((SIZE, SIZE), dtype=bool)
    if axis == "x":
        bar[:, first:stop] = True
    else:
        bar[first:stop, :] = True
    return bar


def present(spec: VideoSpec, t: int, frames: int = FRAMES) -> bool:
    """Whether the object is in frame `t` of `frames` at all (appearing objects come in the second half
    of the clip, disappearing ones leave after the first)."""
    return not ((spec.motion == "appears" and t < frames // 2) or
                (spec.motion == "disappears" and t >= frames // 2))


def object_centres(spec: VideoSpec, frames: int = FRAMES) -> list[tuple[float, float]]:
    """The object's centre (y, x) in pixels in each of `frames` frames (where it would be, also when not
    present)."""
    travel = SPEEDS[spec.speed] if spec.speed else 0
    dy, dx = _direction(spec.motion)
    out = []
    for t in range(frames):
        frac = t / (frames - 1)
        out.append((spec.start[0] + dy * travel * frac, spec.start[1] + dx * travel * frac))
    return out


def object_masks(spec: VideoSpec, frames: int = FRAMES) -> np.ndarray:
    """(frames, SIZE, SIZE) bool: the object's pixels in each frame (before any occluder is drawn)."""
    half = SIZES[spec.size]
    masks = np.zeros((frames, SIZE, SIZE), dtype=bool)
    for t, (cy, cx) in enumerate(object_centres(spec, frames)):
        if present(spec, t, frames):
            masks[t] = _shape_mask(spec.shape, cy, cx, half)
    return masks


def answer_for(spec: VideoSpec, qtype: str) -> tuple[str, dict[str, object]]:
    """The templated answer to question type `qtype` and the attributes it names."""
    attrs = spec.attributes()
    if qtype == "describe":
        if spec.motion in MOVING:
            move = f"moves {spec.motion} {spec.speed}"
            if spec.occluded:
                move += " behind a gray bar"
        elif spec.motion == "still":
            move = "stays still"
        else:
            move = spec.motion
        text = f"a {spec.size} {spec.color} {spec.shape} {move} on a {spec.background} background."
        return text, attrs
    if qtype == "color":
        return f"the object is {spec.color}.", {"color": spec.color}
    if qtype == "shape":
        return f"the object is a {spec.shape}.", {"shape": spec.shape}
    if qtype == "size":
        return f"the object is {spec.size}.", {"size": spec.size}
    if qtype == "motion":
        if spec.motion in MOVING:
            return f"it moves {spec.motion} {spec.speed}.", {"motion": spec.motion, "speed": spec.speed}
        text = "it stays still." if spec.motion == "still" else f"it {spec.motion}."
        return text, {"motion": spec.motion}
    raise ValueError(f"unknown question type {qtype!r}; choose one of {', '.join(QUESTION_TYPES)}")


def example(split: str, index: int, qtype: str | None = None, detail_fraction: float = 0.0,
            frames: int = FRAMES) -> Example:
    """Video `index` of `split` with one question. Without `qtype`: training draws one (with probability
    `detail_fraction` the detailed caption, else half of them 'describe' and half one of the other four
    short questions, the draw every earlier stage used); val/test cycle through the five short question
    types by index (ask for "detail" explicitly). `frames`: the clip length the video is rendered at,
    which the detailed caption's facts and wording follow (caption_facts); short answers do not depend
    on it."""
    spec = video_spec(split, index)
    if qtype is None:
        if split == "train":
            detail = np.random.default_rng(_seed(split, index, "detail")).random() < detail_fraction
            rng = np.random.default_rng(_seed(split, index, "question"))
            if detail:
                qtype = DETAIL
            else:
                qtype = "describe" if rng.random() < 0.5 else str(rng.choice(QUESTION_TYPES[1:]))
        else:
            qtype = QUESTION_TYPES[index % len(QUESTION_TYPES)]
    if qtype == DETAIL:
        return Example(spec, qtype, DETAIL_PROMPT, detail_answer(spec, frames), {}, caption_facts(spec, frames))
    answer, asked = answer_for(spec, qtype)
    return Example(spec, qtype, QUESTIONS[qtype], answer, asked)


def detail_requests(split: str = "test", count: int | None = None, frames: int = FRAMES) -> list[tuple[object, str]]:
    """(VideoClip, DETAIL_PROMPT) for the first `count` videos of `split` (default: all of it), rendered
    at `frames` frames: the detailed-caption requests the speed benchmarks run on the zoo (as SpecVLM
    runs its benchmarks with a captioning prompt). The reference facts are
    `example(split, i, DETAIL, frames=frames).facts`."""
    count = SPLIT_SIZES[split] if count is None else count
    return [(as_clip(render(video_spec(split, i), frames), f"{split}/{i}"), DETAIL_PROMPT) for i in range(count)]


# ------------------------------------------------------------------------------ the detailed caption

SEGMENT_FRAMES = FRAMES // SEGMENTS
# The coarse grid, by the object's centre: the outer ring of 28-pixel cells (the token grid's border row
# or column for both families: Qwen2.5-VL's merged 4 x 4 and LLaVA-OneVision's pooled 4 x 4) and the
# middle. Central videos (centre within 34..78 px) are never within 6 px of an edge, so their positions
# are unambiguous; with thirds of the frame (37 / 75 px), 38% of positions were within 4 px of an edge.
ROWS = ("top", "middle", "bottom")
COLUMNS = ("left", "center", "right")
GRID_EDGES = (28.0, 84.0)  # cell boundaries in pixels, the same on both axes
# A segment's state: "visible"; "hidden" (the bar covers the object's centre in one of its frames);
# "absent" (an appearing object, not there yet); "gone" (a disappearing one, after it left).
STATES = ("visible", "hidden", "absent", "gone")
_NUMBERS = ("one", "two", "three", "four", "five", "six", "seven", "eight")
# How a caption names its segments. At 8 frames by their frame numbers ("in frames one and two,"), the
# wording the first zoo pairs were trained on; at any other length by quarters of the clip ("in the
# first quarter,"), which does not change with the clip's length, so a model trained on short clips
# says the same words on long ones (the pretrained pair: docs/ZOO.md).
_QUARTERS = ("first", "second", "third", "last")


def _segment_frames(k: int, frames: int = FRAMES) -> range:
    per = check_frames(frames) // SEGMENTS
    return range(k * per, (k + 1) * per)


def segment_lead(k: int, frames: int = FRAMES) -> str:
    """The opening words of segment k's sentence in a caption of a `frames`-frame clip."""
    if frames == FRAMES:
        return f"in frames {_NUMBERS[k * SEGMENT_FRAMES]} and {_NUMBERS[(k + 1) * SEGMENT_FRAMES - 1]},"
    return f"in the {_QUARTERS[k]} quarter,"


def _centre_hidden(spec: VideoSpec, centre: tuple[float, float]) -> bool:
    """Whether the bar covers the pixel at the object's centre (the pixel grid of the renderer)."""
    span = _bar_span(spec)
    if span is None:
        return False
    axis, first, stop = span
    value = centre[1] if axis == "x" else centre[0]
    return first <= round(value) < stop


def caption_facts(spec: VideoSpec, frames: int = FRAMES) -> dict[str, str]:
    """Every fact of the detailed caption of `spec` rendered at `frames` frames, from the generator's
    ground truth, in caption order: colour, shape, size, background; per segment k = 1..4 (the k-th
    quarter of the frames; at 8 frames frames 2k-1, 2k) its state (STATES),
    and, where the object is there, its position (the GRID_EDGES cell "ROW COLUMN" of its mean
    centre over the segment's frames) and move (a direction or "still"); then the clip's motion and (moving
    objects) speed."""
    facts = {"color": spec.color, "shape": spec.shape, "size": spec.size, "background": spec.background}
    centres = object_centres(spec, frames)
    for k in range(SEGMENTS):
        segment = _segment_frames(k, frames)
        key = f"segment{k + 1}"
        if not any(present(spec, t, frames) for t in segment):
            facts[f"{key}.state"] = "absent" if spec.motion == "appears" else "gone"
            continue
        hidden = any(_centre_hidden(spec, centres[t]) for t in segment)
        facts[f"{key}.state"] = "hidden" if hidden else "visible"
        cy = sum(centres[t][0] for t in segment) / len(segment)
        cx = sum(centres[t][1] for t in segment) / len(segment)
        row, col = (sum(c >= edge for edge in GRID_EDGES) for c in (cy, cx))
        facts[f"{key}.position"] = f"{ROWS[row]} {COLUMNS[col]}"
        facts[f"{key}.move"] = spec.motion if spec.motion in MOVING else "still"
    facts["motion"] = spec.motion
    if spec.motion in MOVING:
        facts["speed"] = spec.speed
    return facts


def caption_from_facts(facts: dict[str, str], frames: int = FRAMES) -> str:
    """The detailed caption that states `facts` (caption_facts' layout), one sentence per segment,
    worded for a `frames`-frame clip (segment_lead)."""
    parts = [f"the video shows a {facts['size']} {facts['color']} {facts['shape']} on a "
             f"{facts['background']} background."]
    for k in range(SEGMENTS):
        key = f"segment{k + 1}"
        state = facts[f"{key}.state"]
        lead = segment_lead(k, frames)
        if state == "absent":
            parts.append(f"{lead} it is not there yet.")
        elif state == "gone":
            parts.append(f"{lead} it is gone.")
        else:
            where = ("it is behind the bar in the " if state == "hidden" else "it is in the ") + facts[f"{key}.position"]
            move = "stays still" if facts[f"{key}.move"] == "still" else f"moves {facts[f'{key}.move']}"
            parts.append(f"{lead} {where} and {move}.")
    motion = facts["motion"]
    if motion in MOVING:
        parts.append(f"overall it moves {motion} {facts['speed']}.")
    elif motion == "still":
        parts.append("overall it stays still.")
    else:
        parts.append(f"overall it {motion}.")
    return " ".join(parts)


def detail_answer(spec: VideoSpec, frames: int = FRAMES) -> str:
    """The templated answer to DETAIL_PROMPT at `frames` frames: caption_from_facts(caption_facts(...))."""
    return caption_from_facts(caption_facts(spec, frames), frames)


# Either wording of a segment's lead: group 1 the first frame's number word, or group 2 the quarter.
_SEGMENT = re.compile(r"in (?:frames ([a-z]+) and [a-z]+|the (" + "|".join(_QUARTERS) + r") quarter),([^.]*)")
_POSITION = re.compile(r"in the (" + "|".join(ROWS) + r") (" + "|".join(COLUMNS) + r")\b")
_MOVE = re.compile(r"\bmoves (left|right|up|down)\b|\bstays (still)\b")


def stated_facts(text: str) -> dict[str, set[str]]:
    """What a caption states, fact by fact (caption_facts' keys -> the set of values it states; a fact
    stated twice with different values has two). The caption is read in caption_from_facts' layout:
    a header (everything before the first segment sentence, "in frames X and Y," or "in the Q quarter,")
    that names colour, shape, size and background; one sentence per segment, found by its first
    frame's number word or its quarter, that
    states the segment's state ("not there yet", "gone", "behind", or only a position: visible), its
    position ("in the ROW COLUMN") and its move ("moves DIRECTION" / "stays still"); and a summary
    (everything after the last segment sentence) that names the motion and speed. Text outside those
    places states nothing."""
    text = text.lower()
    segments = list(_SEGMENT.finditer(text))
    header = text[: segments[0].start()] if segments else text
    summary = text[segments[-1].end():] if segments else ""
    out: dict[str, set[str]] = {}
    header_words = set(_WORD.findall(header))
    for attribute in ("color", "shape", "size", "background"):
        out[attribute] = header_words & set(ATTRIBUTE_WORDS[attribute])
    first_frames = {_NUMBERS[k * SEGMENT_FRAMES]: k + 1 for k in range(SEGMENTS)}
    first_frames.update({q: k + 1 for k, q in enumerate(_QUARTERS)})
    for match in segments:
        k = first_frames.get(match.group(1) or match.group(2))
        if k is None:
            continue
        body = match.group(3)
        words = set(_WORD.findall(body))
        positions = {f"{r} {c}" for r, c in _POSITION.findall(body)}
        states = set()
        if "not there yet" in body:
            states.add("absent")
        if "gone" in words:
            states.add("gone")
        if "behind" in words:
            states.add("hidden")
        elif positions:
            states.add("visible")
        moves = {a or b for a, b in _MOVE.findall(body)}
        for fact, values in (("state", states), ("position", positions), ("move", moves)):
            out.setdefault(f"segment{k}.{fact}", set()).update(values)
    summary_words = set(_WORD.findall(summary))
    out["motion"] = summary_words & set(MOTIONS)
    out["speed"] = summary_words & set(SPEEDS)
    return out


def as_clip(frames: np.ndarray, name: str = "zoo"):
    """Frames as a hippo.video.VideoClip (at 4 fps, whatever their number), what `load_video` would return."""
    from hippo.video import VideoClip

    n = frames.shape[0]
    return VideoClip(frames, tuple(range(n)), 4.0, tuple(i / 4.0 for i in range(n)), n, name)


VIDEO_LABEL_PREFIX = "zoo:"  # how rows recorded on zoo videos name them: "zoo:test/3" (rendered, not a file)


def is_video_label(video: str) -> bool:
    return str(video).startswith(VIDEO_LABEL_PREFIX)


def video_label(split: str, index: int, frames: int = FRAMES) -> str:
    """The label of a zoo video rendered at `frames` frames: "zoo:test/3" (8 frames) or "zoo:test/3@16"."""
    return f"{VIDEO_LABEL_PREFIX}{split}/{index}" + ("" if frames == FRAMES else f"@{check_frames(frames)}")


def labelled_clip(label: str, num_frames: int | None = None, indices=None):
    """The zoo video a recorded row names ("zoo:<split>/<index>", 8 frames, or "zoo:<split>/<index>@<F>",
    the same video rendered at F frames), in memory, with the frames hippo.video.load_video would read
    from a file of it: `indices` when given, else `num_frames` by its uniform formula (all of them when
    None). VideoError naming the label when it is not a zoo video."""
    from hippo.errors import VideoError
    from hippo.video import VideoClip, sample_frame_indices

    name, _, length = str(label)[len(VIDEO_LABEL_PREFIX):].partition("@")
    split, _, index = name.partition("/")
    bad_length = bool(length) and not (length.isdigit() and int(length) % SEGMENTS == 0 and 0 < int(length) <= 64)
    if (not is_video_label(label) or split not in SPLIT_SIZES or not index.isdigit() or int(index) >= SPLIT_SIZES[split]
            or bad_length):
        raise VideoError(f"{label!r} is not a zoo video: zoo videos are named zoo:<split>/<index>[@<frames>] with split "
                         f"one of {', '.join(f'{k} (0..{v - 1})' for k, v in SPLIT_SIZES.items())} and frames a "
                         f"multiple of {SEGMENTS} up to 64 (default {FRAMES})")
    clip = as_clip(render(video_spec(split, int(index)), int(length) if length else FRAMES), f"{split}/{index}")
    picks = tuple(indices) if indices is not None else (
        clip.frame_indices if num_frames in (None, clip.num_frames) else sample_frame_indices(clip.num_frames, num_frames))
    if any(not 0 <= i < clip.num_frames for i in picks):
        raise VideoError(f"{label}: frame indices {list(picks)} outside its {clip.num_frames} frames")
    if picks == clip.frame_indices:
        return clip
    return VideoClip(clip.frames[list(picks)], picks, clip.native_fps, tuple(i / clip.native_fps for i in picks),
                     clip.num_source_frames, clip.path)


# ------------------------------------------------------------------------------------- the metric

_WORD = re.compile(r"[a-z]+")


def attribute_correct(text: str, attribute: str, value: object) -> bool:
    """One attribute of one answer: right iff the text names the correct value and no other value of
    that attribute (occlusion: 'behind' is said iff the object is occluded)."""
    words = set(_WORD.findall(text.lower()))
    if attribute == "occlusion":
        return ("behind" in words) == bool(value)
    named = words & set(ATTRIBUTE_WORDS[attribute])
    return named == {value}


def attribute_accuracy(pairs) -> float:
    """THE zoo accuracy metric: over (generated text, asked attributes) pairs, the fraction of asked
    attributes the text gets right (attribute_correct). 1.0 = every attribute named exactly right."""
    total = right = 0
    for text, asked in pairs:
        for attribute, value in asked.items():
            total += 1
            right += attribute_correct(text, attribute, value)
    return right / total if total else 0.0


def fact_accuracy(pairs) -> float:
    """THE zoo detailed-caption metric: over (generated caption, reference facts) pairs (facts: the
    Example.facts of a "detail" example, caption_facts), the fraction of reference facts the caption
    states correctly, pooled over facts: a fact is right iff the caption states its value and no other
    value for it, in its place (stated_facts). 1.0 = every fact stated exactly right; facts a caption
    leaves out count as wrong, facts it adds are not counted."""
    total = right = 0
    for text, facts in pairs:
        stated = stated_facts(text)
        for fact, value in facts.items():
            total += 1
            right += stated.get(fact) == {value}
    return right / total if total else 0.0


def fact_breakdown(pairs) -> dict[str, float]:
    """fact_accuracy per kind of fact (diagnostic only): color, shape, size, background, state,
    position, move (per segment, pooled over segments), motion, speed."""
    right: dict[str, int] = {}
    total: dict[str, int] = {}
    for text, facts in pairs:
        stated = stated_facts(text)
        for fact, value in facts.items():
            kind = fact.split(".")[-1]
            total[kind] = total.get(kind, 0) + 1
            right[kind] = right.get(kind, 0) + (stated.get(fact) == {value})
    return {k: right[k] / total[k] for k in total}


def attribute_breakdown(pairs) -> dict[str, float]:
    """attribute_accuracy per attribute (diagnostic only: which attribute a model gets wrong)."""
    right: dict[str, int] = {}
    total: dict[str, int] = {}
    for text, asked in pairs:
        for attribute, value in asked.items():
            total[attribute] = total.get(attribute, 0) + 1
            right[attribute] = right.get(attribute, 0) + attribute_correct(text, attribute, value)
    return {a: right[a] / total[a] for a in sorted(total)}
