"""The work of one matrix cell on the device Ray placed it on: build the engine there, benchmark it.

The driver ships the ONNX and the images (calibration sample, val split) as plain bytes through Ray's
object store, so a device needs no shared file system; `unpack_dataset` lays them out again as a small
YOLO dataset whose calibration hash equals the driver's (same files, same order).
"""

from __future__ import annotations

import os
import platform
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from core.dataset import label_path, load_dataset
from pipeline.stages.benchmark import BenchConfig, bench_artifact
from pipeline.stages.build import BuildEntry, build_engine

if TYPE_CHECKING:
    from benchmarks.results import Result


@dataclass(frozen=True)
class DatasetBundle:
    """The images (and labels) of one split of a dataset, as bytes, under the dataset's own name."""

    name: str
    names: dict[int, str]
    split: str
    images: dict[str, bytes] = field(repr=False)  # file name -> content, in the original sorted order
    labels: dict[str, bytes] = field(repr=False)  # label file name -> content


def pack_dataset(data_yaml: Path, split: str, files: list[Path] | None = None) -> DatasetBundle:
    """`files` (default: the whole split) with their labels; names are prefixed to keep their order."""
    dataset = load_dataset(data_yaml)
    chosen = sorted(files) if files is not None else dataset.images(split)
    images: dict[str, bytes] = {}
    labels: dict[str, bytes] = {}
    for index, image in enumerate(chosen):
        name = f"{index:06d}_{image.name}"
        images[name] = image.read_bytes()
        label = label_path(image)
        if label.is_file():
            labels[Path(name).with_suffix(".txt").name] = label.read_bytes()
    return DatasetBundle(dataset.name, dataset.names, split, images, labels)


def unpack_dataset(bundle: DatasetBundle, parent: Path) -> Path:
    """Write the bundle as `parent/<name>/data.yaml` with images/<split> and labels/<split>."""
    root = parent / bundle.name
    for folder, files in (("images", bundle.images), ("labels", bundle.labels)):
        directory = root / folder / bundle.split
        directory.mkdir(parents=True, exist_ok=True)
        for name, content in files.items():
            (directory / name).write_bytes(content)
    data_yaml = root / "data.yaml"
    data_yaml.write_text(yaml.safe_dump({"names": bundle.names, bundle.split: f"images/{bundle.split}"}))
    return data_yaml


@dataclass(frozen=True)
class CellJob:
    """Everything a cell needs besides the shipped bytes (which Ray passes as separate arguments)."""

    cell_key: str
    model: str
    kind: str
    build: BuildEntry
    bench: BenchConfig
    onnx_name: str
    source: dict[str, Any]  # recorded in each result: the model's file and sha256 on the driver


def run_cell(
    job: CellJob,
    onnx: bytes,
    calibration: DatasetBundle | Path | None,
    data: DatasetBundle | Path | None,
) -> dict[str, Any]:
    """Build and benchmark on this node; return the Result records (as JSON dicts) and where/when it ran.

    An exception of the build or benchmark comes back as `error` with the node it happened on; only a
    dying worker or node raises (Ray then retries the task itself).
    """
    import ray

    context = ray.get_runtime_context()
    node = {
        "node_id": context.get_node_id(),
        "hostname": platform.node(),
        "pid": os.getpid(),
        "assigned": context.get_assigned_resources(),
    }
    started = time.time()
    try:
        results = build_and_bench(job, onnx, calibration, data)
    except Exception as exc:  # an application error comes back as data, so the driver can retry elsewhere
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        return {"error": f"{type(exc).__name__}: {message}", **node, "started": started, "ended": time.time()}
    ended = time.time()
    fleet = {"cell": job.cell_key, "kind": job.kind, "source": job.source, "started": started, "ended": ended}
    records = []
    for result in results:
        record = result.model_dump(mode="json")
        record["device"].update(kind=job.kind, node_id=node["node_id"])
        record["fleet"] = {**fleet, "node_id": node["node_id"]}
        records.append(record)
    return {"results": records, **node, "started": started, "ended": ended}


def build_and_bench(
    job: CellJob, onnx: bytes, calibration: DatasetBundle | Path | None, data: DatasetBundle | Path | None
) -> list[Result]:
    with tempfile.TemporaryDirectory(prefix="edgepipe-fleet-") as scratch:
        work = Path(scratch)
        onnx_path = work / job.onnx_name
        onnx_path.write_bytes(onnx)
        calib_yaml = materialize(calibration, work / "calib")
        data_yaml = materialize(data, work / "data")
        engine = build_engine(
            job.build,
            work / "engine",
            onnx=onnx_path,
            checkpoint=None,
            calib_data=calib_yaml,
            val_data=data_yaml,
        )
        return bench_artifact(engine.path, data_yaml if job.bench.accuracy else None, job.bench, job.model)


def materialize(dataset: DatasetBundle | Path | None, parent: Path) -> Path | None:
    """A shipped bundle laid out under `parent`; a shared path as it is."""
    return unpack_dataset(dataset, parent) if isinstance(dataset, DatasetBundle) else dataset
