"""Where the time goes: checkpoints timed side by side on OpenVINO, per precision and input size, with
each stage of the network's share of the convolution time against its share of the MACs.

Every (checkpoint, engine, size) is compiled once; then `--rounds` rounds time each of them in turn, so a
change in machine load hits all alike. The speed-up column is against the first checkpoint.

    python -m tools.latency_study --model ../shared/models/yolov8n.pt --model pruned.pt \\
        --engine openvino/bf16,openvino/int8 --imgsz 640,384 --threads 1 \\
        --calib ../shared/datasets/coco128/data.yaml
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import numpy as np
import typer

from pipeline.cli.console import console


@dataclass
class Config:
    model: Path
    engine: str
    imgsz: int
    compiled: object
    stage_of: dict[str, str]
    macs: dict[str, float]
    times: list[float]


def main(
    model: Annotated[list[Path], typer.Option(help="checkpoint (repeatable); the first is the reference")],
    engine: Annotated[str, typer.Option(help="comma-separated openvino/fp32|bf16|int8")] = "openvino/bf16",
    imgsz: Annotated[str, typer.Option(help="comma-separated input sizes")] = "640",
    threads: Annotated[int, typer.Option(help="inference threads (0: OpenVINO's default)")] = 1,
    rounds: Annotated[int, typer.Option(help="interleaved rounds")] = 5,
    runs: Annotated[int, typer.Option(help="timed inferences per configuration and round")] = 20,
    calib: Annotated[Path | None, typer.Option(help="data.yaml whose train images calibrate INT8")] = None,
) -> None:
    import pipeline  # noqa: F401  (offline Ultralytics)
    from core.calibration import CalibrationSet
    from core.checkpoints import load_detection_model
    from pipeline.pruning.engine_timing import CompiledEngine, deployment_onnx, macs_by_conv, stages

    configs: list[Config] = []
    for size in (int(s) for s in imgsz.split(",")):
        images: list[np.ndarray] = []
        if calib is not None:
            images = list(CalibrationSet.from_dataset(calib, size, size=32).batches(1))
        for path in model:
            net = load_detection_model(path).eval()
            onnx = deployment_onnx(net, size)
            for name in engine.split(","):
                console.print(f"compiling {path.name} {name} @{size}")
                compiled = CompiledEngine(onnx, name, size, threads or None, images)
                configs.append(
                    Config(path, name, size, compiled, stages(net, size), macs_by_conv(net, size), [])
                )
    for r in range(rounds):
        console.print(f"round {r + 1}/{rounds}")
        for config in configs:
            config.times += config.compiled.latencies(runs)  # type: ignore[attr-defined]
    print_tables(configs, threads)


def print_tables(configs: list[Config], threads: int) -> None:
    from rich.table import Table

    from benchmarks.device import cpu_info
    from pipeline.pruning.engine_timing import stage_order

    reference = {
        (c.engine, c.imgsz): float(np.median(c.times)) for c in configs if c.model == configs[0].model
    }
    summary = Table(title=f"p50 per engine, {threads or 'default'} thread(s), {cpu_info()['model']}")
    for column in ("model", "engine", "imgsz", "GMACs", "p50 ms", "speed-up", "MACs ratio"):
        summary.add_column(column, justify="left" if column in ("model", "engine") else "right")
    reference_macs = {c.imgsz: sum(c.macs.values()) for c in configs if c.model == configs[0].model}
    for c in configs:
        p50 = float(np.median(c.times))
        macs = sum(c.macs.values())
        summary.add_row(
            c.model.name,
            c.engine,
            str(c.imgsz),
            f"{macs / 1e9:.2f}",
            f"{p50:.2f}",
            f"{reference[(c.engine, c.imgsz)] / p50:.2f}x",
            f"{macs / reference_macs[c.imgsz]:.2f}",
        )
    console.print(summary)
    for c in configs:
        conv = c.compiled.conv_times(10)  # type: ignore[attr-defined]
        total_ms, total_macs = sum(conv.values()), sum(c.macs.values())
        by_stage: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
        for name, stage in c.stage_of.items():
            by_stage[stage][0] += conv.get(name, 0.0)
            by_stage[stage][1] += c.macs.get(name, 0.0)
        table = Table(
            title=f"{c.model.name} {c.engine} @{c.imgsz}: convolutions {total_ms:.2f} ms of p50 "
            f"{np.median(c.times):.2f} ms"
        )
        for column in ("stage (part/stride)", "ms", "time share", "MACs share", "ms per GMAC"):
            table.add_column(column, justify="right")
        for stage, (ms, macs) in sorted(by_stage.items(), key=stage_order):
            table.add_row(
                stage,
                f"{ms:.2f}",
                f"{ms / total_ms:.1%}",
                f"{macs / total_macs:.1%}",
                f"{ms / (macs / 1e9):.1f}" if macs else "-",
            )
        console.print(table)


if __name__ == "__main__":
    typer.run(main)
