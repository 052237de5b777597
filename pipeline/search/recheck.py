"""The winner's mAP on the whole val split beside the partial one the search ranked it by.

A search that scores its candidates on the first `--map-images` images of the split ranks them on a
sample; the winner's own run (search.yaml) measures its mAP on the whole split. When that full mAP is
below another feasible candidate's partial one, the sample may have ranked them wrongly, and the search
flags it. Pure functions on search.json's dicts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Recheck:
    partial_map50_95: float
    full_map50_95: float
    map_images: int
    total_images: int
    rival: dict[str, Any] | None  # the best feasible candidate whose partial mAP is above the full one

    def as_dict(self) -> dict[str, Any]:
        return {
            "partial_map50_95": self.partial_map50_95,
            "full_map50_95": self.full_map50_95,
            "map_images": self.map_images,
            "total_images": self.total_images,
            "rival": _name(self.rival) if self.rival else None,
        }

    def line(self) -> str:
        whole = f"{self.total_images} images"
        return (
            f"winner's mAP50-95 on the whole val split ({whole}): {self.full_map50_95:.4f}; on the "
            f"{self.map_images} images the search ranked by: {self.partial_map50_95:.4f}"
        )

    def warning(self) -> str | None:
        if self.rival is None:
            return None
        return (
            f"{_name(self.rival)} also meets the budget and scored {_score(self.rival):.4f} on the "
            f"{self.map_images} images, above the winner's {self.full_map50_95:.4f} on the whole split: the "
            "partial mAP may have ranked them wrongly; search again with more --map-images (or all of them)"
        )


def _score(row: dict[str, Any]) -> float | None:
    tuned = row.get("finetuned_map50_95")
    return row.get("map50_95") if tuned is None else tuned


def _name(row: dict[str, Any]) -> str:
    return f"{row['imgsz']}px × {row['ratio']:g} MACs, {row['precision']}"


def recheck(search: dict[str, Any], full_map50_95: float) -> Recheck | None:
    """The winner's full mAP against the partial ones, or None when the search scored on the whole split."""
    chosen = search["chosen"]
    images, total, partial = chosen.get("map_images"), chosen.get("map_total_images"), _score(chosen)
    if images is None or total is None or images >= total or partial is None:
        return None
    keys = ("imgsz", "ratio", "precision")
    rivals = [
        row
        for row in search["candidates"]
        if row["meets"] and any(row[k] != chosen[k] for k in keys) and (_score(row) or 0.0) > full_map50_95
    ]
    rival = max(rivals, key=lambda row: _score(row) or 0.0, default=None)
    return Recheck(partial, full_map50_95, images, total, rival)
