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

Splits: a video is a pure function of (split, index); the three splits use disjoint seed streams.
Nothing is stored in the repository; `cache_split` renders a split into a gitignored uint8 npz.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

FRAMES = 8
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

QUESTION_TYPES = ("describe", "color", "shape", "size", "motion")
QUESTIONS = {
    "describe": "describe the video.",
    "color": "what color is the object?",
    "shape": "what shape is the object?",
    "size": "how big is the object?",
    "motion": "how does the object move?",
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
    """One question about one video, with its templated answer and the attributes the answer names."""

    video: VideoSpec
    qtype: str
    question: str
    answer: str
    asked: dict[str, object]


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


def render(spec: VideoSpec) -> np.ndarray:
    """(FRAMES, SIZE, SIZE, 3) uint8 RGB frames of `spec`."""
    background = _background(spec)
    frames = np.repeat(background[None], FRAMES, axis=0).copy()
    travel = SPEEDS[spec.speed] if spec.speed else 0
    dy, dx = _direction(spec.motion)
    color = np.array(COLORS[spec.color], dtype=np.uint8)
    bar = None
    if spec.occluded:  # a grey bar across the middle of the path, perpendicular to it
        my = spec.start[0] + dy * travel / 2
        mx = spec.start[1] + dx * travel / 2
        bar = np.zeros((SIZE, SIZE), dtype=bool)
        if dx:
            bar[:, int(mx) - 4 : int(mx) + 5] = True
        else:
            bar[int(my) - 4 : int(my) + 5, :] = True
    for t, mask in enumerate(object_masks(spec)):
        frames[t][mask] = color
        if bar is not None:
            frames[t][bar] = (128, 128, 128)
    return frames


def object_masks(spec: VideoSpec) -> np.ndarray:
    """(FRAMES, SIZE, SIZE) bool: the object's pixels in each frame (before any occluder is drawn)."""
    half = SIZES[spec.size]
    travel = SPEEDS[spec.speed] if spec.speed else 0
    dy, dx = _direction(spec.motion)
    masks = np.zeros((FRAMES, SIZE, SIZE), dtype=bool)
    for t in range(FRAMES):
        visible = not ((spec.motion == "appears" and t < FRAMES // 2) or
                       (spec.motion == "disappears" and t >= FRAMES // 2))
        if visible:
            frac = t / (FRAMES - 1)
            cy, cx = spec.start[0] + dy * travel * frac, spec.start[1] + dx * travel * frac
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


def example(split: str, index: int, qtype: str | None = None) -> Example:
    """Video `index` of `split` with one question. Without `qtype`: training draws one (half of them
    'describe'); val/test cycle through the question types by index."""
    spec = video_spec(split, index)
    if qtype is None:
        if split == "train":
            rng = np.random.default_rng(_seed(split, index, "question"))
            qtype = "describe" if rng.random() < 0.5 else str(rng.choice(QUESTION_TYPES[1:]))
        else:
            qtype = QUESTION_TYPES[index % len(QUESTION_TYPES)]
    answer, asked = answer_for(spec, qtype)
    return Example(spec, qtype, QUESTIONS[qtype], answer, asked)


def as_clip(frames: np.ndarray, name: str = "zoo"):
    """Frames as a hippo.video.VideoClip (8 frames at 4 fps), what `load_video` would return."""
    from hippo.video import VideoClip

    n = frames.shape[0]
    return VideoClip(frames, tuple(range(n)), 4.0, tuple(i / 4.0 for i in range(n)), n, name)


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


def attribute_breakdown(pairs) -> dict[str, float]:
    """attribute_accuracy per attribute (diagnostic only: which attribute a model gets wrong)."""
    right: dict[str, int] = {}
    total: dict[str, int] = {}
    for text, asked in pairs:
        for attribute, value in asked.items():
            total[attribute] = total.get(attribute, 0) + 1
            right[attribute] = right.get(attribute, 0) + attribute_correct(text, attribute, value)
    return {a: right[a] / total[a] for a in sorted(total)}


def spec_json(spec: VideoSpec) -> dict:
    return asdict(spec)


# ------------------------------------------------------------------------------------- caching

def default_cache_dir() -> Path:
    return Path(__file__).resolve().parents[2] / ".cache" / "zoo-data"


def cache_split(split: str, count: int | None = None, cache_dir: Path | None = None) -> Path:
    """Render `count` videos of `split` into `<cache_dir>/<split>-<count>.npz` (uint8), once."""
    count = SPLIT_SIZES[split] if count is None else count
    path = (cache_dir or default_cache_dir()) / f"{split}-{count}.npz"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        frames = np.stack([render(video_spec(split, i)) for i in range(count)])
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, frames=frames)
        tmp.replace(path)
    return path


def load_split_frames(split: str, count: int | None = None, cache_dir: Path | None = None) -> np.ndarray:
    """(count, FRAMES, SIZE, SIZE, 3) uint8 frames of `split`, rendered once and cached."""
    with np.load(cache_split(split, count, cache_dir)) as data:
        return data["frames"]
