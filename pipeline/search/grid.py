"""The candidate grid: model × input size × MACs ratio × precision, every combination one candidate."""

from __future__ import annotations

from dataclasses import dataclass
from itertools import product
from pathlib import Path

from core.defaults import DEFAULT_IMGSZ
from core.errors import InputError
from core.letterbox import check_imgsz

# The input sizes searched when none are given: every one a multiple of the largest stride (32) of a
# YOLOv8 detector; from the usual 640 down to half of it, where the measurements found the
# unpruned model 3.4× faster for a few points of mAP.
DEFAULT_SIZES = (DEFAULT_IMGSZ, 512, 448, 384, 320)


@dataclass(frozen=True, order=True)
class Candidate:
    imgsz: int
    ratio: float  # MACs kept, 1.0 = the model as given
    precision: str
    model: str = ""  # the model's tag in a search of several models; "" when it searches one

    @property
    def label(self) -> str:
        what = f"{self.imgsz}px × {self.ratio:g} MACs, {self.precision}"
        return f"{self.model} {what}" if self.model else what


def model_tags(models: list[Path]) -> list[str]:
    """The name each searched model goes by: "" for a search of one model (its records read as before),
    else each file's stem, numbered where two share one ("best", "best-2")."""
    if len(models) < 2:
        return [""] * len(models)
    tags: list[str] = []
    for path in models:
        tag, n = path.stem, 1
        while tag in tags:
            n += 1
            tag = f"{path.stem}-{n}"
        tags.append(tag)
    return tags


def check_ratios(ratios: list[float]) -> list[float]:
    """MACs ratios, least pruned first, duplicates removed."""
    if not ratios:
        raise InputError("give at least one MACs ratio")
    bad = [r for r in ratios if not 0 < r <= 1]
    if bad:
        raise InputError(f"MACs ratios must be in (0, 1], got {bad[0]}")
    return sorted({round(float(r), 4) for r in ratios}, reverse=True)


def check_sizes(sizes: list[int]) -> list[int]:
    """Input sizes, largest first, each a multiple of 32."""
    if not sizes:
        raise InputError("give at least one input size")
    for size in sizes:
        try:
            check_imgsz(size)
        except InputError as exc:
            raise InputError(f"input size {size}: {exc}") from None
    return sorted(set(sizes), reverse=True)


def grid(
    sizes: list[int], ratios: list[float], precisions: list[str], models: tuple[str, ...] = ("",)
) -> list[Candidate]:
    """Every (model, size, ratio, precision), per model largest and least pruned first."""
    unique = list(dict.fromkeys(precisions))
    combos = product(models, check_sizes(sizes), check_ratios(ratios), unique)
    return [Candidate(s, r, p, m) for m, s, r, p in combos]
