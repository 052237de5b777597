"""Export a checkpoint to ONNX with Ultralytics' exporter, simplify and check it, and compare it with PyTorch.

The parity check runs both models on real images (the data set's val split, letterboxed as at inference)
and fails when boxes or scores differ by more than the tolerance: no ONNX is left behind then. An
end-to-end head's (YOLO26) final detections are matched by class and score, not by position.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydantic import Field
from rich.table import Table

from benchmarks.accuracy import end_to_end
from core import progress
from core.artifacts import Artifact, atomic_output, sha256_file
from core.checkpoints import count_params, gflops, load_detection_model, ultralytics_copy
from core.dataset import load_dataset
from core.defaults import DEFAULT_IMGSZ
from core.errors import CheckFailed
from core.families import family_of
from core.letterbox import preprocess
from pipeline.stages.base import Section, StageContext
from targets.engine_dir import META_CHECKPOINT_SHA256, META_FAMILY, META_GFLOPS, META_PARAMS, onnx_facts

log = logging.getLogger(__name__)


class ExportConfig(Section):
    opset: int = Field(17, ge=11, description="ONNX opset version")
    simplify: bool = Field(True, description="simplify the graph with onnxslim")
    dynamic_batch: bool = Field(
        False, description="make the batch dimension dynamic (height/width stay fixed)"
    )
    parity_tolerance: float = Field(
        1e-3, gt=0, description="largest allowed |ONNX - PyTorch| difference of a class score (0..1)"
    )
    parity_box_tolerance: float = Field(
        0.05, gt=0, description="largest allowed |ONNX - PyTorch| difference of a box coordinate, in pixels"
    )
    parity_images: int = Field(8, ge=1, description="images from the val split compared with PyTorch")


@dataclass(frozen=True)
class Parity:
    images: int
    source: str  # "coco128-val2017/val" or "synthetic noise (no --data given)"
    max_box_diff: float
    max_score_diff: float
    box_tolerance: float
    score_tolerance: float

    @property
    def passed(self) -> bool:
        return self.max_box_diff <= self.box_tolerance and self.max_score_diff <= self.score_tolerance

    def record(self) -> dict[str, object]:
        return {**self.__dict__, "passed": self.passed}

    def describe(self) -> str:
        return (
            f"ONNX vs PyTorch on {self.images} images ({self.source}): boxes {self.max_box_diff:.2e} px "
            f"(tolerance {self.box_tolerance:.0e}), scores {self.max_score_diff:.2e} (tolerance "
            f"{self.score_tolerance:.0e})"
        )


def export_onnx(
    checkpoint: Path,
    out_path: Path,
    imgsz: int = DEFAULT_IMGSZ,
    opset: int = 17,
    dynamic_batch: bool = False,
    simplify: bool = True,
) -> Path:
    """Write `out_path` (atomically) with Ultralytics' ONNX exporter plus edgepipe's metadata."""
    import onnx

    model = load_detection_model(checkpoint)  # clear errors for a wrong file before Ultralytics sees it
    facts = {
        META_PARAMS: count_params(model),
        META_GFLOPS: round(gflops(model, imgsz), 3),
        META_CHECKPOINT_SHA256: sha256_file(checkpoint),
        META_FAMILY: family_of(model),
    }
    with tempfile.TemporaryDirectory(prefix="edgepipe-export-") as tmp:
        exported = _ultralytics_export(Path(checkpoint), Path(tmp), imgsz, opset, dynamic_batch, simplify)
        graph = onnx.load(str(exported))
        if dynamic_batch:
            graph = _pin_image_size(graph, imgsz, simplify)
        for key, value in facts.items():
            graph.metadata_props.add(key=key, value=str(value))
        onnx.checker.check_model(graph)
        with atomic_output(Path(out_path)) as staged:
            onnx.save(graph, str(staged))
    return Path(out_path)


def _ultralytics_export(
    checkpoint: Path, work: Path, imgsz: int, opset: int, dynamic: bool, simplify: bool
) -> Path:
    from ultralytics import YOLO

    # The exporter writes beside its input (which may be read-only) and unpickles it fully: give it a copy
    # re-saved from the restricted load.
    local = ultralytics_copy(checkpoint, work / "model.pt")
    # nms=False: a YOLO26 head exports its end-to-end branch, (N, 300, 6) without NMS, as edgepipe loads
    # it (core.families); Ultralytics' default would export the one-to-many branch for an external NMS.
    exported = YOLO(str(local)).export(
        format="onnx",
        imgsz=imgsz,
        opset=opset,
        simplify=simplify,
        dynamic=dynamic,
        batch=1,
        device="cpu",
        nms=False,
    )
    return Path(exported)


def _pin_image_size(graph, imgsz: int, simplify: bool):
    """Ultralytics' `dynamic` frees height and width too; fix them so only the batch stays dynamic."""
    from onnx.tools.update_model_dims import update_inputs_outputs_dims

    channels = graph.graph.input[0].type.tensor_type.shape.dim[1].dim_value
    out_dims = graph.graph.output[0].type.tensor_type.shape.dim
    anchors = sum((imgsz // stride) ** 2 for stride in (8, 16, 32))
    last = 6 if out_dims[2].dim_value == 6 else anchors  # an end-to-end head's (N, 300, 6) keeps its rows
    graph = update_inputs_outputs_dims(
        graph,
        {graph.graph.input[0].name: ["batch", channels, imgsz, imgsz]},
        {graph.graph.output[0].name: ["batch", out_dims[1].dim_value or out_dims[1].dim_param, last]},
    )
    if simplify:
        import onnxslim

        graph = onnxslim.slim(graph)
    return graph


def parity_images(data: Path | None, count: int, imgsz: int) -> tuple[np.ndarray, str]:
    """Letterboxed val images (train when there is no val split), or seeded noise when no data is given."""
    if data is None:
        rng = np.random.default_rng(0)
        return rng.random((count, 3, imgsz, imgsz), dtype=np.float32), "synthetic noise (no --data given)"
    dataset = load_dataset(data)
    split = "val" if dataset.splits.get("val") else "train"
    images = dataset.images(split)[:count]
    return preprocess(images, imgsz)[0], f"{dataset.name}/{split}"


def check_parity(
    checkpoint: Path, onnx_path: Path, images: np.ndarray, source: str, score_tol: float, box_tol: float
) -> Parity:
    import onnxruntime as ort
    import torch

    model = load_detection_model(checkpoint)
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name
    box_diff = score_diff = 0.0
    for image in images:
        batch = image[None]
        with torch.inference_mode():
            expected = model(torch.from_numpy(batch))[0].numpy()
        actual = session.run(None, {input_name: batch})[0]
        if end_to_end(expected):
            boxes, scores = end_to_end_diffs(expected[0], actual[0], score_tol)
        else:
            boxes = float(np.abs(actual[:, :4] - expected[:, :4]).max())
            scores = float(np.abs(actual[:, 4:] - expected[:, 4:]).max())
        box_diff, score_diff = max(box_diff, boxes), max(score_diff, scores)
    return Parity(len(images), source, box_diff, score_diff, box_tol, score_tol)


def end_to_end_diffs(expected: np.ndarray, actual: np.ndarray, score_tol: float) -> tuple[float, float]:
    """(box, score) differences of two end-to-end outputs of one image, (max_det, 6) each, best first.

    Near-equal scores may come out in another order, so scores are compared sorted, and each expected
    detection is matched to the closest actual one of its class within `score_tol`. Detections within
    `score_tol` of the last kept score may fall either side of the top-k cut and are not matched.
    """
    scores = float(np.abs(np.sort(actual[:, 4]) - np.sort(expected[:, 4])).max())
    cut = expected[:, 4].min() + score_tol
    box = 0.0
    for row in expected[expected[:, 4] > cut]:
        same = actual[(actual[:, 5] == row[5]) & (np.abs(actual[:, 4] - row[4]) <= score_tol)]
        nearest = np.abs(same[:, :4] - row[:4]).max(1).min() if len(same) else np.inf
        box = max(box, float(nearest))
    return box, scores


def parity_table(parity: Parity):
    table = Table(title=f"ONNX vs PyTorch on {parity.images} images ({parity.source})")
    for column in ("output", "max |diff|", "tolerance", "result"):
        table.add_column(column)
    for name, diff, tol in (
        ("boxes (px)", parity.max_box_diff, parity.box_tolerance),
        ("scores", parity.max_score_diff, parity.score_tolerance),
    ):
        table.add_row(name, f"{diff:.2e}", f"{tol:.0e}", "[green]ok" if diff <= tol else "[red]FAILED")
    return table


def export_checked(
    checkpoint: Path, out_path: Path, imgsz: int, config: ExportConfig, data: Path | None
) -> tuple[Path, Parity]:
    """Export into a temp file, check parity, and move it to `out_path` only when parity holds."""
    out_path = Path(out_path)
    images, source = parity_images(data, config.parity_images, imgsz)
    with atomic_output(out_path) as staged:
        with progress.current().task(f"exporting {Path(checkpoint).name} to ONNX"):
            export_onnx(checkpoint, staged, imgsz, config.opset, config.dynamic_batch, config.simplify)
        parity = check_parity(
            checkpoint, staged, images, source, config.parity_tolerance, config.parity_box_tolerance
        )
        if not parity.passed:
            raise CheckFailed(
                f"ONNX output differs from PyTorch beyond tolerance (boxes {parity.max_box_diff:.2e} px, "
                f"scores {parity.max_score_diff:.2e}); no ONNX written",
                path=out_path,
                hint="try another --opset or --no-simplify; raise the tolerance only if expected",
            )
    return out_path, parity


def onnx_artifact(path: Path, imgsz: int, parity: Parity) -> Artifact:
    facts = onnx_facts(path)
    return Artifact.from_path(
        "onnx",
        path,
        imgsz=imgsz,
        batch=facts.batch,
        names=facts.names,
        params=facts.params,
        gflops=facts.gflops,
        parity=parity.record(),
    )


def run(config: ExportConfig, ctx: StageContext) -> dict[str, Artifact]:
    checkpoint = ctx.input("model").path
    data = ctx.settings.val or ctx.settings.data
    path, parity = export_checked(checkpoint, ctx.out_dir / "model.onnx", ctx.settings.imgsz, config, data)
    log.info(parity.describe())
    return {"onnx": onnx_artifact(path, ctx.settings.imgsz, parity)}
