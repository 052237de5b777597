"""`edgepipe data synth`: write the synthetic shapes dataset."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from rich.progress import Progress
from rich.table import Table

from core.dataset import load_dataset, read_labels
from pipeline.cli.console import console
from pipeline.data.synth import generate_dataset


def command(
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder to write the dataset into.")],
    images: Annotated[int, typer.Option(help="Number of images, train and val together.")] = 600,
    seed: Annotated[int, typer.Option(help="Random seed: the same seed writes byte-identical files.")] = 0,
    imgsz: Annotated[int, typer.Option(help="Square image size in pixels.")] = 320,
    val_fraction: Annotated[float, typer.Option(help="Share of the images kept for the val split.")] = 0.2,
) -> None:
    """Generate a synthetic shapes detection dataset in YOLO layout (no download needed)."""
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("drawing images", total=images)
        data_yaml = generate_dataset(
            out, images, seed, imgsz, val_fraction, on_image=lambda: progress.advance(task)
        )
    dataset = load_dataset(data_yaml)
    table = Table(title=f"synthetic dataset {data_yaml}")
    table.add_column("class")
    for split in dataset.splits:
        table.add_column(split, justify="right")
    counts = {
        split: np.bincount([row[0] for img in paths for row in read_labels(img)], minlength=dataset.nc)
        for split, paths in dataset.splits.items()
    }
    table.add_row("images", *(str(len(paths)) for paths in dataset.splits.values()), end_section=True)
    for cls, name in dataset.names.items():
        table.add_row(name, *(str(counts[split][cls]) for split in dataset.splits))
    console.print(table)
