"""Load an Ultralytics detection `data.yaml` and check it, with errors that name the file and the fix."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from core.errors import InputError
from core.yamlfile import read_yaml_mapping

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}


@dataclass(frozen=True)
class DetectionDataset:
    yaml_path: Path
    root: Path
    names: dict[int, str]
    splits: dict[str, list[Path]]  # split name -> image paths, sorted

    @property
    def nc(self) -> int:
        return len(self.names)

    @property
    def name(self) -> str:
        return self.root.name

    def images(self, split: str) -> list[Path]:
        if split not in self.splits or not self.splits[split]:
            raise InputError(f"dataset has no images in split {split!r}", path=self.yaml_path)
        return self.splits[split]


def label_path(image: Path) -> Path:
    """YOLO layout: .../images/x.jpg -> .../labels/x.txt (the last `images` folder is swapped)."""
    parts = list(image.parts)
    for i in range(len(parts) - 1, -1, -1):
        if parts[i] == "images":
            parts[i] = "labels"
            break
    return Path(*parts).with_suffix(".txt")


def read_labels(image: Path) -> list[tuple[int, float, float, float, float]]:
    """Rows (class, cx, cy, w, h) normalised to 0..1; an image without a label file has no objects."""
    path = label_path(image)
    if not path.is_file():
        return []
    rows: list[tuple[int, float, float, float, float]] = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 5:
            raise InputError(f"line {number}: expected 'class cx cy w h', got {line!r}", path=path)
        try:
            cls, cx, cy, w, h = int(fields[0]), *map(float, fields[1:])
        except ValueError as exc:
            raise InputError(f"line {number}: {exc}", path=path) from exc
        rows.append((cls, cx, cy, w, h))
    return rows


def _list_images(source: Path, yaml_path: Path) -> list[Path]:
    if source.is_dir():
        return sorted(p for p in source.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if source.is_file() and source.suffix == ".txt":
        base = source.parent
        lines = [ln.strip() for ln in source.read_text().splitlines() if ln.strip()]
        return sorted((base / ln).resolve() if not Path(ln).is_absolute() else Path(ln) for ln in lines)
    raise InputError(f"split source {source} does not exist", path=yaml_path)


def load_dataset(yaml_path: Path | str) -> DetectionDataset:
    yaml_path = Path(yaml_path)
    raw = read_yaml_mapping(yaml_path, "dataset YAML", "a detection dataset mapping (names, train, val)")
    if "names" not in raw:
        raise InputError("not a detection dataset: no 'names' key", path=yaml_path)
    names = raw["names"]
    names = dict(enumerate(names)) if isinstance(names, list) else {int(k): str(v) for k, v in names.items()}
    # Ultralytics resolves train/val relative to `path`, and to the YAML's folder when `path` is absent.
    root = Path(raw["path"]) if raw.get("path") else yaml_path.parent
    if not root.is_absolute():
        root = (yaml_path.parent / root).resolve() if raw.get("path") else root.resolve()
    splits: dict[str, list[Path]] = {}
    for split in ("train", "val", "test"):
        value = raw.get(split)
        if not value:
            continue
        sources = value if isinstance(value, list) else [value]
        splits[split] = sorted({img for src in sources for img in _list_images(root / src, yaml_path)})
    if not splits.get("val") and not splits.get("train"):
        raise InputError("dataset lists neither a 'train' nor a 'val' split with images", path=yaml_path)
    return DetectionDataset(yaml_path=yaml_path.resolve(), root=root, names=names, splits=splits)


def check_fits_model(
    yaml_path: Path | str, model_classes: int, splits: Iterable[str] = ("train", "val")
) -> None:
    """Fail when the dataset cannot score this model: `names` of another length, or a label whose class id
    the model does not have (mAP would silently count it as missed). Names the first label file and id."""
    dataset = load_dataset(yaml_path)
    if dataset.nc != model_classes:
        raise InputError(
            f"names lists {dataset.nc} classes but the model predicts {model_classes}",
            path=dataset.yaml_path,
            hint="use the dataset the model was trained on, or one with the same class list",
        )
    for split in splits:
        for image in dataset.splits.get(split, []):
            for number, (cls, *_) in enumerate(read_labels(image), 1):
                if not 0 <= cls < model_classes:
                    raise InputError(
                        f"line {number}: class id {cls} is outside the model's {model_classes} classes "
                        f"(0..{model_classes - 1})",
                        path=label_path(image),
                        hint="fix the labels, or use a data.yaml that fits the model",
                    )
