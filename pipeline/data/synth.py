"""A deterministic synthetic detection dataset: coloured shapes on textured backgrounds, in YOLO layout.

It lets the quickstart, the tests and CI train, prune and measure a detector without downloading data.
Each image is drawn from its own random stream seeded by (seed, index), so the same arguments always
write byte-identical files. Labels are the tight boxes of the visible pixels of each shape; a shape
that is more than 60% hidden (by later shapes or the image border) stays drawn but gets no label.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import yaml

from core.artifacts import atomic_output
from core.errors import InputError

CLASS_NAMES = ("circle", "square", "triangle", "star", "ring", "cross")
YAML_MARKER = "# edgepipe synthetic shapes"
MIN_VISIBLE_FRACTION = 0.4
MIN_BOX_PX = 3
MAX_OBJECTS = 7
JPEG_QUALITY = 92

LabelRow = tuple[int, float, float, float, float]  # class, cx, cy, w, h normalised to 0..1
Polygons = list[np.ndarray]  # float (K, 2) outlines in unit coordinates; later ones cut holes


def _regular(n: int, radius: float = 1.0, phase: float = -np.pi / 2) -> np.ndarray:
    angles = phase + np.arange(n) * 2 * np.pi / n
    return radius * np.stack([np.cos(angles), np.sin(angles)], axis=1)


def _star() -> np.ndarray:
    points = _regular(10)
    points[1::2] *= 0.45
    return points


def _cross(arm: float = 0.33) -> np.ndarray:
    a = arm
    quarter = np.array([[-a, -1], [a, -1], [a, -a]])  # one arm's end and the inner corner after it
    turn = np.array([[0, -1], [1, 0]])  # 90 degrees
    return np.concatenate([quarter @ np.linalg.matrix_power(turn, k).T for k in range(4)])


SHAPES: dict[str, Polygons] = {
    "circle": [_regular(64)],
    "square": [np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], dtype=float) * 0.85],
    "triangle": [_regular(3) + np.array([0, 0.25])],
    "star": [_star()],
    "ring": [_regular(64), _regular(64, radius=0.55)],
    "cross": [_cross()],
}


def _hsv_colour(
    rng: np.random.Generator, saturation: tuple[float, float], value: tuple[float, float]
) -> np.ndarray:
    hsv = np.array([[[rng.uniform(0, 180), rng.uniform(*saturation) * 255, rng.uniform(*value) * 255]]])
    return cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2BGR)[0, 0].astype(np.float32)


def _ramp(size: int, angle: float) -> np.ndarray:
    """Distance along `angle` of each pixel, in image widths."""
    steps = np.arange(size, dtype=np.float32) / size
    return steps[None, :] * np.float32(np.cos(angle)) + steps[:, None] * np.float32(np.sin(angle))


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A float32 (size, size, 3) texture: smooth clouds, a gradient, stripes or blurred blobs."""
    first, second = (_hsv_colour(rng, (0.0, 0.5), (0.15, 0.9)) for _ in range(2))
    style = rng.integers(4)
    if style == 0:  # low-frequency noise
        grid = rng.random((rng.integers(3, 9),) * 2).astype(np.float32)
        weight = cv2.resize(grid, (size, size), interpolation=cv2.INTER_CUBIC).clip(0, 1)
    elif style == 1:  # linear gradient at a random angle
        ramp = _ramp(size, rng.uniform(0, 2 * np.pi))
        weight = (ramp - ramp.min()) / (np.ptp(ramp) + 1e-6)
    elif style == 2:  # stripes, soft or hard
        angle, period = rng.uniform(0, np.pi), rng.uniform(0.04, 0.25)
        wave = np.sin(2 * np.pi * _ramp(size, angle) / period)
        weight = (wave > 0).astype(np.float32) if rng.random() < 0.5 else (wave + 1) / 2
    else:  # blurred blobs
        weight = np.zeros((size, size), np.float32)
        for _ in range(rng.integers(4, 12)):
            centre = (int(rng.integers(size)), int(rng.integers(size)))
            cv2.circle(weight, centre, int(rng.uniform(0.05, 0.25) * size), float(rng.uniform(0.3, 1)), -1)
        weight = cv2.GaussianBlur(weight, (0, 0), sigmaX=size * 0.04).clip(0, 1)
    return first + weight.astype(np.float32)[..., None] * (second - first)


def _shape_outlines(rng: np.random.Generator, shape: str, size: int) -> tuple[list[np.ndarray], float]:
    """Pixel outlines of one randomly placed, scaled, stretched and rotated shape, and its full area."""
    radius = rng.uniform(0.04, 0.18) * size
    stretch = np.exp(rng.uniform(-0.35, 0.35))
    angle = rng.uniform(0, 2 * np.pi)
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    centre = rng.uniform(0.05, 0.95, 2) * size
    scale = radius * np.array([stretch, 1 / stretch])
    outlines = [(poly * scale) @ rotation.T + centre for poly in SHAPES[shape]]
    areas = [cv2.contourArea(p.astype(np.float32)) for p in outlines]
    return [np.round(p).astype(np.int32) for p in outlines], areas[0] - sum(areas[1:])


def render_image(rng: np.random.Generator, size: int) -> tuple[np.ndarray, list[LabelRow]]:
    """One uint8 BGR image and its YOLO label rows (class, cx, cy, w, h), normalised."""
    image = _background(rng, size)
    owner = np.zeros((size, size), np.uint8)  # 0: background, k: the k-th shape drawn
    mask = np.zeros_like(owner)
    placed: list[tuple[int, float]] = []
    for number in range(1, int(rng.integers(1, MAX_OBJECTS + 1)) + 1):
        cls = int(rng.integers(len(CLASS_NAMES)))
        outlines, area = _shape_outlines(rng, CLASS_NAMES[cls], size)
        colour = _hsv_colour(rng, (0.45, 1.0), (0.4, 1.0))
        mask[:] = 0
        cv2.fillPoly(mask, outlines, 1)
        if np.abs(np.array(cv2.mean(image, mask)[:3]) - colour).sum() < 120:
            colour = 255 - colour  # keep every shape distinguishable from what lies under it
        cv2.fillPoly(image, outlines, colour.tolist())
        cv2.fillPoly(owner, outlines, number)
        placed.append((cls, area))
    image += rng.uniform(2, 12) * rng.standard_normal(image.shape, dtype=np.float32)
    return image.clip(0, 255).astype(np.uint8), visible_boxes(owner, placed)


def visible_boxes(owner: np.ndarray, placed: list[tuple[int, float]]) -> list[LabelRow]:
    """Label rows for the shapes in `owner` (pixel value k: the k-th of `placed` (class, full area)).

    Each box is the tight extent of the shape's visible pixels; shapes mostly hidden are left out.
    """
    height, width = owner.shape
    visible = np.bincount(owner.ravel(), minlength=len(placed) + 1)
    rows = []
    for number, (cls, area) in enumerate(placed, 1):
        if visible[number] < MIN_VISIBLE_FRACTION * area:
            continue
        x, y, w, h = cv2.boundingRect((owner == number).view(np.uint8))
        if min(w, h) < MIN_BOX_PX:
            continue
        rows.append((cls, (x + w / 2) / width, (y + h / 2) / height, w / width, h / height))
    return rows


def _split_sizes(images: int, val_fraction: float) -> tuple[int, int]:
    if images < 2:
        raise InputError(f"--images must be at least 2 (one train and one val image), got {images}")
    if not 0 < val_fraction < 1:
        raise InputError(f"val_fraction must lie strictly between 0 and 1, got {val_fraction}")
    val = min(images - 1, max(1, round(images * val_fraction)))
    return images - val, val


def _check_replaceable(out_dir: Path) -> None:
    """Only an empty folder or an earlier synthetic dataset may be replaced: never a user's files."""
    if not out_dir.exists():
        return
    if not out_dir.is_dir():
        raise InputError("exists and is not a directory", path=out_dir, hint="choose another -o")
    data_yaml = out_dir / "data.yaml"
    ours = data_yaml.is_file() and data_yaml.read_text().startswith(YAML_MARKER)
    if any(out_dir.iterdir()) and not ours:
        raise InputError(
            "folder is not empty and holds no edgepipe synthetic dataset; refusing to replace it",
            path=out_dir,
            hint="choose a new or empty folder for -o",
        )


def generate_dataset(
    out_dir: Path,
    images: int = 600,
    seed: int = 0,
    imgsz: int = 320,
    val_fraction: float = 0.2,
    *,
    on_image: Callable[[], None] | None = None,
) -> Path:
    """Write the dataset into `out_dir` (replaced as a whole once complete) and return its data.yaml."""
    if imgsz < 32:
        raise InputError(f"--imgsz must be at least 32 pixels, got {imgsz}")
    n_train, _ = _split_sizes(images, val_fraction)
    out_dir = Path(out_dir)
    _check_replaceable(out_dir)
    with atomic_output(out_dir) as tmp:
        for index in range(images):
            split = "train" if index < n_train else "val"
            image, rows = render_image(np.random.default_rng([seed, index]), imgsz)
            stem = f"{index:05d}"
            (tmp / "images" / split).mkdir(parents=True, exist_ok=True)
            (tmp / "labels" / split).mkdir(parents=True, exist_ok=True)
            jpeg_options = [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY]
            cv2.imwrite(str(tmp / "images" / split / f"{stem}.jpg"), image, jpeg_options)
            lines = "".join(f"{c} {x:.6f} {y:.6f} {w:.6f} {h:.6f}\n" for c, x, y, w, h in rows)
            (tmp / "labels" / split / f"{stem}.txt").write_text(lines)
            if on_image:
                on_image()
        spec = {"train": "images/train", "val": "images/val", "nc": len(CLASS_NAMES)}
        spec["names"] = dict(enumerate(CLASS_NAMES))
        header = (
            f"{YAML_MARKER}: edgepipe data synth --images {images} --seed {seed} --imgsz {imgsz}\n"
            "# no `path:` key: Ultralytics resolves train/val relative to this file's folder\n"
        )
        (tmp / "data.yaml").write_text(header + yaml.safe_dump(spec, sort_keys=False))
    return out_dir / "data.yaml"
