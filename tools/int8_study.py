"""INT8 study: mAP50-95 of every INT8 calibration choice against FP32, on one model and val set.

    python -m tools.int8_study --onnx yolov8n.onnx --data coco128/data.yaml \
        --val coco128-val2017/data.yaml --out study.json [--rows ort,openvino,qdq,fallback]

Rows (each built through `edgepipe build`'s own code, unchecked unless it says "fallback"):
  ort       ONNX Runtime fp32, INT8 with MinMax (moving average), Entropy and Percentile calibration
  openvino  OpenVINO fp32, NNCF INT8 with the mixed and performance presets
  qdq       TensorRT's Q/DQ ONNX, measured with ONNX Runtime: ModelOpt entropy and max, and the hand-built
            one (onnxruntime.quantization, symmetric MinMax) that ModelOpt replaced
  fallback  the ModelOpt Q/DQ (entropy) and the hand-built one, checked with a `--max-map-drop` bound

Every figure is measured here and now; nothing is remembered. The docs quote its output (docs/int8.md).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from benchmarks.accuracy import evaluate
from core.artifacts import Artifact, sha256_path
from core.calibration import CalibrationSet
from core.engine_record import read_artifact_dir
from pipeline.stages.build import BuildEntry, build_engine
from targets.accuracy_bound import AccuracyBound
from targets.accuracy_int8 import quantize_within_map_drop
from targets.base import RunOptions, get_target
from targets.onnxruntime_runner import OnnxRuntimeRunner
from targets.qdq import quantize_qdq
from targets.tensorrt.qdq_source import TENSORRT_QDQ

ROWS = ("ort", "openvino", "qdq", "fallback")


def engine_map(directory: Path, val: Path, imgsz: int) -> tuple[float, float]:
    meta = read_artifact_dir(directory)
    artifact = Artifact(kind="engine", path=directory, sha256=sha256_path(directory), metadata=meta)
    with get_target(meta["target"]).load(artifact, RunOptions()) as runner:
        accuracy = evaluate(runner, val, imgsz)
    return accuracy.map50_95, accuracy.map50


def onnx_map(path: Path, val: Path, imgsz: int) -> tuple[float, float]:
    accuracy = evaluate(OnnxRuntimeRunner(path, "int8", RunOptions()), val, imgsz)
    return accuracy.map50_95, accuracy.map50


class Study:
    def __init__(self, args: argparse.Namespace, work: Path):
        self.args, self.work = args, work
        self.rows: list[dict[str, Any]] = []
        self.console = Console(stderr=True)

    def build(self, name: str, target: str, precision: str, **entry: Any) -> Path:
        out = self.work / name
        build_engine(
            BuildEntry(target=target, precision=precision, calib_images=self.args.calib_size, **entry),
            out,
            onnx=self.args.onnx,
            checkpoint=None,
            calib_data=self.args.data,
            val_data=self.args.val,
        )
        return out

    def row(self, group: str, name: str, make: Callable[[], tuple[float, float, dict[str, Any]]]) -> None:
        self.console.log(f"{group}: {name}")
        started = time.perf_counter()
        map50_95, map50, extra = make()
        self.rows.append(
            {"group": group, "name": name, "map50_95": map50_95, "map50": map50,
             "seconds": time.perf_counter() - started, **extra}
        )  # fmt: skip
        self.console.log(f"{group}: {name}: mAP50-95 {map50_95:.4f}, mAP50 {map50:.4f}")

    def engine_row(self, group: str, name: str, target: str, precision: str, **entry: Any) -> None:
        def make() -> tuple[float, float, dict[str, Any]]:
            out = self.build(f"{group}-{name}", target, precision, **entry)
            return (*engine_map(out, self.args.val, self.imgsz), {})

        self.row(group, name, make)

    @property
    def imgsz(self) -> int:
        return int(self.args.imgsz)

    def ort(self) -> None:
        self.engine_row("onnxruntime", "fp32", "onnxruntime", "fp32")
        for method in ("MinMax", "Entropy", "Percentile"):
            self.engine_row("onnxruntime", f"int8 {method}", "onnxruntime", "int8", verify=False,
                            options={"method": method})  # fmt: skip

    def openvino(self) -> None:
        self.engine_row("openvino", "fp32", "openvino", "fp32")
        for preset in ("mixed", "performance"):
            self.engine_row("openvino", f"int8 {preset}", "openvino", "int8", verify=False,
                            options={"preset": preset})  # fmt: skip

    def qdq(self) -> None:
        for method in ("entropy", "max"):
            self.engine_row("tensorrt q/dq", f"modelopt {method}", "tensorrt", "int8", verify=False,
                            options={"qdq_only": True, "calibration_method": method})  # fmt: skip

        def hand_built() -> tuple[float, float, dict[str, Any]]:
            out = self.work / "hand-built.qdq.onnx"
            quantize_qdq(self.args.onnx, out, self.calibration(), TENSORRT_QDQ)
            return (*onnx_map(out, self.args.val, self.imgsz), {})

        self.row("tensorrt q/dq", "hand-built (ORT symmetric MinMax)", hand_built)

    def fallback(self) -> None:
        drop = self.args.max_map_drop

        def modelopt() -> tuple[float, float, dict[str, Any]]:
            out = self.build("fallback-modelopt", "tensorrt", "int8", max_drop_vs_fp32=drop,
                             options={"qdq_only": True})  # fmt: skip
            control = read_artifact_dir(out)["accuracy_control"]
            return control["final"]["map50_95"], control["final"]["map50"], summary(control)

        def hand_built() -> tuple[float, float, dict[str, Any]]:
            control = quantize_within_map_drop(
                self.args.onnx, self.work / "fallback-hand-built.onnx", self.calibration(), TENSORRT_QDQ,
                val_data=self.args.val, bound=AccuracyBound(drop),
            ).record  # fmt: skip
            return control["final"]["map50_95"], control["final"]["map50"], summary(control)

        self.row("fallback", f"modelopt entropy, max drop {drop}", modelopt)
        self.row("fallback", f"hand-built, max drop {drop}", hand_built)

    def calibration(self) -> CalibrationSet:
        return CalibrationSet.from_dataset(self.args.data, self.imgsz, self.args.calib_size)


def summary(control: dict[str, Any]) -> dict[str, Any]:
    return {
        "met": control["met"],
        "steps": len(control["steps"]),
        "float_layers": len(control["float_layers"]),
        "fp32": control["fp32"]["map50_95"],
    }


def table(rows: list[dict[str, Any]]) -> Table:
    out = Table(title="INT8 study: mAP50-95 vs FP32 (square letterbox, batch 1)")
    for column in ("group", "what", "mAP50-95", "mAP50", "% of fp32", "fallback", "s"):
        out.add_column(column, justify="left" if column in ("group", "what", "fallback") else "right")
    reference = {r["group"]: r["map50_95"] for r in rows if r["name"] == "fp32"}
    fp32 = reference.get("onnxruntime")
    for row in rows:
        base = reference.get(row["group"], row.get("fp32", fp32))
        share = f"{100 * row['map50_95'] / base:.1f}%" if base else ""
        fell = f"met={row['met']}, {row['steps']} steps, {row['float_layers']} float" if "met" in row else ""
        out.add_row(row["group"], row["name"], f"{row['map50_95']:.4f}", f"{row['map50']:.4f}", share, fell,
                    f"{row['seconds']:.0f}")  # fmt: skip
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--onnx", type=Path, required=True)
    parser.add_argument("--data", type=Path, required=True, help="data.yaml whose train split calibrates")
    parser.add_argument("--val", type=Path, required=True, help="data.yaml whose val split scores")
    parser.add_argument("--imgsz", type=int, default=640)
    parser.add_argument("--calib-size", type=int, default=300)
    parser.add_argument("--max-map-drop", type=float, default=0.005)
    parser.add_argument("--rows", default=",".join(ROWS), help=f"comma-separated, of {', '.join(ROWS)}")
    parser.add_argument("--out", type=Path, help="write the rows as JSON here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="edgepipe-int8-study-") as tmp:
        study = Study(args, Path(tmp))
        for name in args.rows.split(","):
            if name not in ROWS:
                parser.error(f"unknown row {name!r}; choose from {', '.join(ROWS)}")
            getattr(study, name)()
            if args.out:
                args.out.write_text(json.dumps(study.rows, indent=2))
    Console(width=160).print(table(study.rows))


if __name__ == "__main__":
    main()
