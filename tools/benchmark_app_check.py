"""Side by side: OpenVINO's `benchmark_app` and edgepipe's harness on the same IR, hint, threads, streams.

For each precision (fp32 with the f32 hint, bf16, int8) both tools measure, interleaved so that a change
in machine load hits both alike:
- latency: LATENCY hint, 1 stream, synchronous requests; benchmark_app's median vs edgepipe's p50;
- throughput: THROUGHPUT hint, `--streams` streams, async requests; FPS vs images/s.
The IRs come from `edgepipe build` directories (`--engine DIR`, repeatable), or are built here from
`--model` (exported to ONNX, then built as `edgepipe build` does; int8 is calibrated on `--calib`).

    python -m tools.benchmark_app_check --model ../shared/models/yolov8n.pt \\
        --calib ../shared/datasets/coco128/data.yaml --threads 2 --streams 2 --markdown check.md

One script of about 320 lines, kept whole: it is run by hand, and its parts (running benchmark_app, building
the IRs, the interleaved rounds, the Markdown table) serve only this comparison.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer

from benchmarks.device import fingerprint, library_versions
from benchmarks.latency import TimingPlan, latency_stats, model_latency
from benchmarks.noise import LoadMonitor
from benchmarks.throughput import measure_throughput
from core.artifacts import Artifact, sha256_path
from core.engine_record import read_artifact_dir
from core.errors import CheckFailed, InputError
from core.letterbox import preprocess
from pipeline.cli.console import console
from pipeline.stages.build import BuildEntry, build_engine
from pipeline.stages.export import export_onnx
from targets.base import RunOptions, get_target
from targets.openvino import engine_hint

PRECISIONS = ("fp32", "bf16", "int8")
TOLERANCE = 0.10
CPU_COUNT = os.cpu_count() or 1


@dataclass(frozen=True)
class AppRun:
    """What benchmark_app reported: its figures and the settings the compiled model ended up with."""

    median_ms: float | None
    fps: float | None
    settings: dict[str, str]


@dataclass(frozen=True)
class Row:
    """One precision: each figure is the median over the interleaved rounds."""

    precision: str
    runs_as: str
    threads: int
    streams: int
    app_median_ms: float | None
    app_fps: float | None
    our_p50_ms: float
    our_ips: float
    app_settings: dict[str, dict[str, str]]  # hint -> the properties benchmark_app's compiled model reported
    other_load: float  # share of the CPUs other processes used while this row was measured

    @property
    def latency_diff(self) -> float | None:
        return self.our_p50_ms / self.app_median_ms - 1 if self.app_median_ms else None

    @property
    def throughput_diff(self) -> float | None:
        return self.our_ips / self.app_fps - 1 if self.app_fps else None

    @property
    def within_tolerance(self) -> bool:
        diffs = (self.latency_diff, self.throughput_diff)
        return all(d is not None and abs(d) <= TOLERANCE for d in diffs)


@dataclass(frozen=True)
class CheckSettings:
    threads: int
    streams: int  # for the throughput measurement; latency always runs 1 stream
    seconds: float  # per measurement
    rounds: int  # alternations of benchmark_app and edgepipe; figures are medians over rounds
    image: Path | None  # edgepipe's input (benchmark_app fills random values); None: random too


def benchmark_app() -> list[str]:
    """The benchmark_app that ships in the openvino wheel, next to this Python, else its module."""
    script = Path(sys.executable).parent / "benchmark_app"
    if script.is_file():
        return [str(script)]
    found = shutil.which("benchmark_app")
    return [found] if found else [sys.executable, "-m", "openvino.tools.benchmark.main"]


def run_benchmark_app(xml: Path, config: dict[str, str], seconds: float, imgsz: int, work: Path) -> AppRun:
    """benchmark_app on the CPU with exactly `config` (hint, streams, threads, precision).

    benchmark_app refuses -nstreams/-nthreads next to -hint, so the same properties edgepipe compiles
    with go in through -load_config; sync requests for the LATENCY hint, async for THROUGHPUT.
    """
    config_file = work / f"benchmark_app_{config['PERFORMANCE_HINT'].lower()}.json"
    config_file.write_text(json.dumps({"CPU": config}))
    api = "sync" if config["PERFORMANCE_HINT"] == "LATENCY" else "async"
    command = [
        *benchmark_app(),
        "-m", str(xml),
        "-d", "CPU",
        "-load_config", str(config_file),
        "-api", api,
        "-shape", f"[1,3,{imgsz},{imgsz}]",
        "-t", str(round(seconds)),  # benchmark_app takes whole seconds
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise InputError(
            f"benchmark_app failed ({done.returncode}):\n{done.stdout[-2000:]}{done.stderr[-2000:]}"
        )
    return parse_benchmark_app(done.stdout)


def compile_config(hint: str, precision_hint: str, threads: int, streams: int) -> dict[str, str]:
    """The properties targets.openvino.compile_model sets, as strings for benchmark_app's config file."""
    return {
        "PERFORMANCE_HINT": hint,
        "NUM_STREAMS": str(streams),
        "INFERENCE_NUM_THREADS": str(threads),
        "INFERENCE_PRECISION_HINT": precision_hint,
    }


def parse_benchmark_app(text: str) -> AppRun:
    def number(pattern: str) -> float | None:
        match = re.search(pattern, text)
        return float(match.group(1)) if match else None

    settings = {
        key: match.group(1).strip()
        for key in ("PERFORMANCE_HINT", "NUM_STREAMS", "INFERENCE_NUM_THREADS", "INFERENCE_PRECISION_HINT")
        if (match := re.search(rf"\b{key}:\s*(.+)", text))
    }
    return AppRun(number(r"Median:\s*([\d.]+)\s*ms"), number(r"Throughput:\s*([\d.]+)\s*FPS"), settings)


def build_irs(model: Path, calib: Path | None, work: Path) -> dict[str, Artifact]:
    """Export `model` to ONNX and build an OpenVINO engine per precision, as `edgepipe build` does."""
    onnx = export_onnx(model, work / "model.onnx")
    engines = {}
    for precision in PRECISIONS:
        if precision == "int8" and calib is None:
            raise InputError("int8 needs calibration images", hint="pass --calib data.yaml")
        entry = BuildEntry(target="openvino", precision=precision, verify=False)  # speed only
        engines[precision] = build_engine(
            entry, work / precision, onnx=onnx, checkpoint=model, calib_data=calib, val_data=None
        )
    return engines


def load_engines(directories: list[Path]) -> dict[str, Artifact]:
    engines = {}
    for directory in directories:
        meta = read_artifact_dir(directory)
        if meta.get("target") != "openvino":
            raise InputError(f"an {meta.get('target')} engine, not an OpenVINO one", path=directory)
        engines[meta["precision"]] = Artifact(
            kind="engine", path=directory.resolve(), sha256=sha256_path(directory), metadata=meta
        )
    return engines


def measure(artifact: Artifact, settings: CheckSettings, work: Path) -> Row:
    """benchmark_app and edgepipe in alternation, `rounds` times: latency of each, then throughput of each."""
    import numpy as np

    meta = artifact.metadata
    imgsz, xml = int(meta["imgsz"]), artifact.path / meta["model_file"]
    hint, threads, seconds = engine_hint(meta), settings.threads, settings.seconds
    if settings.image is not None:
        tensor = preprocess([settings.image], imgsz)[0]
    else:
        tensor = np.random.default_rng(0).random((1, 3, imgsz, imgsz), dtype=np.float32)
    latency_config = compile_config("LATENCY", hint, threads, 1)
    throughput_config = compile_config("THROUGHPUT", hint, threads, settings.streams)
    runner = get_target("openvino").load(artifact, RunOptions(threads=threads, streams=1))
    app_latency, app_throughput, ours_p50, ours_ips = [], [], [], []
    with LoadMonitor() as load:
        for _ in range(settings.rounds):
            app_latency.append(run_benchmark_app(xml, latency_config, seconds, imgsz, work))
            samples = model_latency(runner, tensor, TimingPlan(warmup=2, iters=10, min_seconds=seconds))
            ours_p50.append(latency_stats(samples).p50)
            app_throughput.append(run_benchmark_app(xml, throughput_config, seconds, imgsz, work))
            ours_ips.append(measure_throughput(runner, tensor, settings.streams, seconds))
    return Row(
        precision=meta["precision"],
        runs_as=runner.precision,
        threads=threads,
        streams=settings.streams,
        app_median_ms=_median([run.median_ms for run in app_latency]),
        app_fps=_median([run.fps for run in app_throughput]),
        our_p50_ms=float(np.median(ours_p50)),
        our_ips=float(np.median(ours_ips)),
        app_settings={"latency": app_latency[-1].settings, "throughput": app_throughput[-1].settings},
        other_load=load.other_load,
    )


def _median(values: list[float | None]) -> float | None:
    import numpy as np

    known = [v for v in values if v is not None]
    return float(np.median(known)) if known else None


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value:+.1%}"


def _figure(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def table_rows(rows: list[Row]) -> tuple[list[str], list[list[str]]]:
    header = [
        "precision", "runs as", "threads", "streams (tput)",
        "benchmark_app median ms", "edgepipe p50 ms", "diff",
        "benchmark_app FPS", "edgepipe img/s", "diff", "other load", "within 10%",
    ]  # fmt: skip
    body = [
        [
            r.precision, r.runs_as, str(r.threads), str(r.streams),
            _figure(r.app_median_ms), _figure(r.our_p50_ms), _percent(r.latency_diff),
            _figure(r.app_fps, 1), _figure(r.our_ips, 1), _percent(r.throughput_diff),
            f"{r.other_load:.0%}", "yes" if r.within_tolerance else "NO",
        ]
        for r in rows
    ]  # fmt: skip
    return header, body


def markdown(rows: list[Row], conditions: str) -> str:
    header, body = table_rows(rows)
    lines = [f"| {' | '.join(header)} |", f"|{'---|' * len(header)}"]
    lines += [f"| {' | '.join(row)} |" for row in body]
    return "\n".join(lines) + f"\n\n{conditions}\n"


def conditions_line(settings: CheckSettings, load_before: list[float] | None) -> str:
    fp = fingerprint(threads=settings.threads)

    def loads(values: list[float] | None) -> str:
        return "/".join(f"{x:.2f}" for x in values or [])

    return (
        f"{fp['name']} ({fp['cpu']['logical_cores']} logical cores; {' '.join(fp['cpu']['flags'])}); "
        f"OpenVINO {library_versions().get('openvino')}; {settings.threads} threads; "
        f"{settings.rounds} alternating rounds of {settings.seconds:g} s per tool and measurement; "
        f"load average (1/5/15 min) {loads(load_before)} before, {loads(fp['load_average'])} after"
    )


def main(
    model: Annotated[Path | None, typer.Option(help="a .pt checkpoint to export and build")] = None,
    calib: Annotated[Path | None, typer.Option(help="data.yaml whose train images calibrate int8")] = None,
    engine: Annotated[
        list[Path] | None, typer.Option(help="OpenVINO build directories from `edgepipe build` (repeatable)")
    ] = None,
    threads: Annotated[int, typer.Option(min=1, help="inference threads for both tools")] = CPU_COUNT,
    streams: Annotated[int, typer.Option(min=1, help="streams for the throughput measurement")] = 2,
    seconds: Annotated[int, typer.Option(min=1, help="seconds per measurement and tool")] = 10,
    rounds: Annotated[int, typer.Option(min=1, help="alternations of the two tools")] = 3,
    image: Annotated[Path | None, typer.Option(help="an image to feed edgepipe (default: random)")] = None,
    markdown_out: Annotated[Path | None, typer.Option("--markdown", help="also write the table here")] = None,
) -> None:
    """Compare edgepipe's latency and throughput with OpenVINO benchmark_app's; exit 1 beyond 10%."""
    from rich.table import Table

    settings = CheckSettings(threads, streams, seconds, rounds, image)
    load_before = [round(x, 2) for x in os.getloadavg()]
    try:
        with tempfile.TemporaryDirectory(prefix="edgepipe-bacheck-") as work:
            if engine:
                engines = load_engines(engine)
            elif model is not None:
                with console.status("exporting and building the OpenVINO IRs"):
                    engines = build_irs(model, calib, Path(work))
            else:
                raise InputError("nothing to measure", hint="pass --engine DIR (repeatable) or --model M.pt")
            rows = []
            for precision, artifact in engines.items():
                with console.status(f"{precision}: benchmark_app and edgepipe, {rounds} rounds"):
                    rows.append(measure(artifact, settings, Path(work)))
    except InputError as exc:
        console.print(f"[red]error[/]: {exc}")
        raise typer.Exit(exc.exit_code) from exc
    header, body = table_rows(rows)
    table = Table(title="edgepipe vs OpenVINO benchmark_app (same IR, hint, threads, streams)")
    for column in header:
        table.add_column(column, justify="left" if column in ("precision", "runs as") else "right")
    for row in body:
        table.add_row(*row)
    console.print(table)
    for r in rows:
        console.print(f"[dim]{r.precision}: benchmark_app's compiled-model properties {r.app_settings}")
    conditions = conditions_line(settings, load_before)
    console.print(conditions)
    if markdown_out is not None:
        markdown_out.write_text(markdown(rows, conditions))
    if not all(r.within_tolerance for r in rows):
        console.print("[red]edgepipe and benchmark_app differ by more than 10%[/]")
        raise typer.Exit(CheckFailed.exit_code)


if __name__ == "__main__":
    typer.run(main)
