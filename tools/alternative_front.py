"""edgepipe's search front against the user's alternative: Ultralytics' own OpenVINO exports of the same
model (FP32 IR and INT8) at the same input sizes, timed side by side in one run.

    python -m tools.alternative_front --search WORKDIR --model yolov8n.pt \
        --data coco128/data.yaml --val coco128-val2017/data.yaml [--out front.json]

WORKDIR is an `edgepipe search` work dir on the openvino target. Its front candidates are built again from
the search's pruned checkpoints; Ultralytics exports the model at every input size the search tried (INT8
calibrated by Ultralytics on --data). Every engine is then timed in interleaved rounds (model only, batch 1)
and scored with the same mAP50-95 evaluation (square letterbox, COCO metric) on --val. The table prints
both fronts, and for each mAP level from the unpruned 640 px INT8 model's down to 3 points below it, the
fastest engine of each side that reaches it and how much faster edgepipe's is.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

from rich.table import Table

from benchmarks.accuracy import evaluate
from benchmarks.latency import latency_stats
from core.artifacts import write_json_atomic
from core.pareto import pareto_front
from pipeline.cli.console import console, user_output
from pipeline.search.budget_expr import parse_budget
from pipeline.search.grid import Candidate
from pipeline.search.select import upper_bound
from pipeline.stages.search import CANDIDATES_FILE
from pipeline.stages.search_candidates import MeasureSettings, build_candidate, time_runners
from targets.base import RunOptions, get_target
from targets.openvino import OpenVinoRunner, int8_float_hint

LEVELS = 7  # mAP levels compared, from the reference model's down to 3 points below it
P90 = parse_budget("p90<=1ms")  # only its statistic is used: the upper bound of p90


def search_files(workdir: Path, model: Path) -> tuple[dict[str, Any], dict[tuple[float, int], Path]]:
    """search.json and the search's checkpoint of each (ratio, input size), the model itself at 1.0."""
    stages = json.loads((workdir / "manifest.json").read_text())["stages"]
    search = json.loads((workdir / "search.json").read_text())
    files = {(row["ratio"], row["imgsz"]): model for row in search["candidates"] if row["ratio"] >= 1.0}
    for stage in stages:
        if stage["label"].startswith("search:prune:"):
            folder = Path(stage["artifacts"]["checkpoint"]["path"])
            record = json.loads((folder / CANDIDATES_FILE).read_text())
            if record["file"]:
                files[record["ratio"], record["imgsz"]] = folder / record["file"]
    return search, files


def ultralytics_exports(model: Path, sizes: list[int], data: Path, work: Path) -> dict[str, Path]:
    """Ultralytics' FP32 IR and INT8 IR of `model` at every size: label -> model.xml."""
    from ultralytics import YOLO

    exports = {}
    for size in sizes:
        for int8 in (False, True):
            folder = work / f"{size}-{'int8' if int8 else 'fp32'}"
            folder.mkdir(parents=True)
            copy = shutil.copyfile(model, folder / model.name)  # exports land beside the checkpoint
            exported = Path(YOLO(str(copy)).export(format="openvino", imgsz=size, int8=int8, data=str(data)))
            exports[f"ultralytics {'INT8' if int8 else 'FP32 IR'} {size}"] = next(exported.glob("*.xml"))
    return exports


def measure(args: argparse.Namespace) -> list[dict[str, Any]]:
    search, files = search_files(args.search, args.model)
    sizes = sorted({row["imgsz"] for row in search["candidates"]}, reverse=True)
    front = [row for row in search["candidates"] if row["front"]]
    settings = MeasureSettings(target="openvino", rounds=args.rounds, iters=args.iters)
    options = RunOptions(batch=1)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="edgepipe-front-") as tmp:
        runners: dict[Candidate, Any] = {}
        labels: dict[Candidate, str] = {}
        for index, row in enumerate(front):
            candidate = Candidate(row["imgsz"], row["ratio"], row["precision"])
            engine = build_candidate(
                files[row["ratio"], row["imgsz"]], candidate, Path(tmp) / f"e{index}", settings, args.data
            )
            runners[candidate] = get_target("openvino").load(engine, options)
            labels[candidate] = f"edgepipe {row['imgsz']} px {row['ratio']:g} MACs {row['precision']}"
        exports = ultralytics_exports(args.model, sizes, args.data, Path(tmp) / "ultralytics")
        for label, xml in exports.items():
            size = int(label.rsplit(" ", 1)[1])
            candidate = Candidate(size, 1.0, label)  # the label keeps the two sides apart
            precision = "int8" if "INT8" in label else "bf16"  # float parts as OpenVINO runs them by default
            runners[candidate] = OpenVinoRunner(xml, precision, options, hint=int8_float_hint())
            labels[candidate] = label
        samples, flags = time_runners(runners, settings, args.data)
        for candidate, runner in runners.items():
            score = evaluate(runner, args.val, candidate.imgsz)
            p50 = latency_stats(samples[candidate]).p50
            rows.append(
                {
                    "engine": labels[candidate],
                    "side": "edgepipe" if labels[candidate].startswith("edgepipe") else "ultralytics",
                    "imgsz": candidate.imgsz,
                    "ran": runner.precision,
                    "p50_ms": round(p50, 3),
                    "p90_bound_ms": round(upper_bound(tuple(samples[candidate]), P90, 0.95), 3),
                    "map50_95": round(score.map50_95, 4),
                }
            )
            runner.close()
    if flags:
        console.print(f"[yellow]noise flags[/]: {'; '.join(flags)}")
    return rows


def fronts(rows: list[dict[str, Any]]) -> None:
    for side in ("edgepipe", "ultralytics"):
        group = [r for r in rows if r["side"] == side]
        on = pareto_front([(r["p50_ms"], r["map50_95"]) for r in group])
        for i, row in enumerate(group):
            row["front"] = i in on


def fastest_reaching(rows: list[dict[str, Any]], side: str, level: float) -> dict[str, Any] | None:
    reaching = [r for r in rows if r["side"] == side and r["map50_95"] >= level]
    return min(reaching, key=lambda r: r["p50_ms"], default=None)


def comparison(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """At each mAP level: the fastest engine of each side reaching it, and edgepipe's speed-up."""
    reference = max(
        (r for r in rows if r["side"] == "ultralytics" and "INT8" in r["engine"]), key=lambda r: r["imgsz"]
    )
    top = reference["map50_95"]
    levels = [round(top - 0.03 * i / (LEVELS - 1), 4) for i in range(LEVELS)]
    table = []
    for level in levels:
        ours, theirs = fastest_reaching(rows, "edgepipe", level), fastest_reaching(rows, "ultralytics", level)
        speedup = theirs["p50_ms"] / ours["p50_ms"] if ours and theirs else None
        table.append({"map_at_least": level, "edgepipe": ours, "ultralytics": theirs, "speedup": speedup})
    return table


def print_tables(rows: list[dict[str, Any]], levels: list[dict[str, Any]]) -> None:
    engines = Table(title="Both fronts, timed in one run (model only, batch 1)")
    for column in ("engine", "ran as", "p50 ms", "p90 bound ms", "mAP50-95", "front"):
        engines.add_column(column, justify="left" if column in ("engine", "ran as") else "right")
    for row in sorted(rows, key=lambda r: r["p50_ms"]):
        engines.add_row(
            row["engine"], row["ran"], f"{row['p50_ms']:.2f}", f"{row['p90_bound_ms']:.2f}",
            f"{row['map50_95']:.4f}", "●" if row["front"] else "",
        )  # fmt: skip
    console.print(engines)
    table = Table(title="At equal mAP: the fastest engine of each side")
    for column in ("mAP50-95 ≥", "edgepipe", "p50 ms", "Ultralytics", "p50 ms", "edgepipe faster by"):
        table.add_column(column, justify="left" if column in ("edgepipe", "Ultralytics") else "right")
    for level in levels:
        ours, theirs = level["edgepipe"], level["ultralytics"]
        table.add_row(
            f"{level['map_at_least']:.4f}",
            ours["engine"] if ours else "none reaches it", f"{ours['p50_ms']:.2f}" if ours else "—",
            theirs["engine"] if theirs else "none reaches it", f"{theirs['p50_ms']:.2f}" if theirs else "—",
            f"{level['speedup']:.2f}×" if level["speedup"] else "—",
        )  # fmt: skip
    console.print(table)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--search", type=Path, required=True, help="an `edgepipe search` work dir (openvino)")
    parser.add_argument("--model", type=Path, required=True, help="the model the search started from")
    parser.add_argument("--data", type=Path, required=True, help="data.yaml: INT8 calibration (train split)")
    parser.add_argument("--val", type=Path, required=True, help="data.yaml whose val split measures mAP")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved timing rounds")
    parser.add_argument("--iters", type=int, default=40, help="timed runs per engine and round")
    parser.add_argument("--out", type=Path, help="write the measurements as JSON here")
    args = parser.parse_args(argv)
    with user_output():
        rows = measure(args)
    fronts(rows)
    levels = comparison(rows)
    print_tables(rows, levels)
    if args.out:
        write_json_atomic(args.out, {"engines": rows, "levels": levels})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
