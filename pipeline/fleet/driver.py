"""Run a matrix on a Ray cluster: ship the inputs, place each cell by resources, retry, gather, record.

Ray retries a cell whose node or worker died (`max_retries`); a cell that raised is retried here, on
another node of the same kind when there is one. A cell that no live node can take (its kind is gone, or
never joined) waits `node_wait` seconds for one to join, then counts as failed. Results go to the history
as each cell finishes, so a later failure or an interrupt loses nothing.

One module of about 330 lines: shipping the inputs, placing, retrying and gathering cells all work on the
same driver state (the live nodes, the outstanding refs), which a split would have to pass around.
"""

from __future__ import annotations

import logging
import socket
import time
from collections import Counter
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from rich.table import Table

from benchmarks.history import append_results, query_results
from benchmarks.results import Result
from core import progress
from core.artifacts import sha256_file
from core.calibration import CalibrationSet
from core.errors import InputError
from pipeline.fleet.matrix import Cell, Matrix
from pipeline.fleet.resources import can_run, cell_resources, node_kind, node_targets, require_ray
from pipeline.fleet.tasks import CellJob, pack_dataset, run_cell
from pipeline.stages.export import ExportConfig, export_checked
from targets.engine_dir import META_CHECKPOINT_SHA256, load_onnx, onnx_facts

if TYPE_CHECKING:
    from core.progress import Task

log = logging.getLogger(__name__)

Status = Literal["measured", "in history", "failed"]
POLL_SECONDS = 1.0


@dataclass
class CellOutcome:
    cell: Cell
    key: str
    status: Status | None = None
    results: list[Result] = field(default_factory=list)
    attempts: list[dict[str, Any]] = field(default_factory=list)  # one per run that came back
    error: str | None = None


@dataclass(frozen=True)
class ModelSource:
    onnx: Path
    sha256: str  # of the file the user named (checkpoint or ONNX): the cell's identity in the history
    record: dict[str, str]


def connect(address: str) -> Any:
    ray = require_ray()
    check_head(address)
    try:
        ray.init(address=address, logging_level=logging.ERROR, log_to_driver=False)
    except (ConnectionError, ValueError, RuntimeError) as exc:
        raise InputError(
            f"could not connect to the Ray cluster at {address}: {exc}",
            hint="start the head with `ray start --head --port 6379`, then run this on the head node",
        ) from exc
    return ray


def check_head(address: str) -> None:
    """Fail in seconds when nothing listens at host:port (Ray itself would retry for minutes)."""
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise InputError(f"--address must be host:port of the Ray head, got {address!r}")
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as exc:
        raise InputError(
            f"no Ray head answers at {address} ({exc.strerror or exc})",
            hint="start it with `ray start --head --port 6379`; check the address and the firewall",
        ) from None


def alive_nodes(ray: Any) -> list[dict[str, Any]]:
    return [node for node in ray.nodes() if node.get("Alive")]


def prepare_sources(matrix: Matrix, out_dir: Path) -> dict[str, ModelSource]:
    """ONNX per model: as given, or exported from the checkpoint (once; reused while the checkpoint holds)."""
    sources = {}
    for model in matrix.models:
        sha = sha256_file(model.source)
        onnx = model.onnx or export_once(
            model.source, out_dir / "models", model.label, model.imgsz, sha, matrix
        )
        sources[model.label] = ModelSource(onnx, sha, {"file": str(model.source), "sha256": sha})
    return sources


def export_once(checkpoint: Path, folder: Path, name: str, imgsz: int, sha: str, matrix: Matrix) -> Path:
    path = folder / f"{name}-{imgsz}.onnx"
    if path.is_file():
        props = {p.key: p.value for p in load_onnx(path).metadata_props}
        if props.get(META_CHECKPOINT_SHA256) == sha:
            return path
    log.info(f"exporting {checkpoint} to {path}")
    folder.mkdir(parents=True, exist_ok=True)
    return export_checked(checkpoint, path, imgsz, ExportConfig(), matrix.data)[0]


def measured_cells(keys: set[str]) -> dict[str, list[Result]]:
    """The newest history results of each cell key (one per batch size)."""
    found: dict[str, dict[int, Result]] = {}
    for result in query_results():  # newest first
        key = (getattr(result, "fleet", None) or {}).get("cell")
        if key in keys:
            found.setdefault(key, {}).setdefault(result.batch, result)
    return {key: list(by_batch.values()) for key, by_batch in found.items()}


class FleetDriver:
    """Submits the cells, watches them and records what comes back."""

    def __init__(
        self,
        ray: Any,
        matrix: Matrix,
        sources: dict[str, ModelSource],
        retries: int,
        node_wait: float,
    ):
        self.ray = ray
        self.matrix = matrix
        self.sources = sources
        self.retries = retries
        self.node_wait = node_wait
        self.remote = ray.remote(run_cell)
        self.pending: dict[Any, CellOutcome] = {}  # ObjectRef -> outcome
        self.unplaceable_since: dict[str, float] = {}
        self.bars: dict[str, Task] = {}
        self.inputs: dict[str, Any] = {}

    def run(self, outcomes: list[CellOutcome]) -> None:
        with ExitStack() as bars:
            for kind, total in Counter(o.cell.kind for o in outcomes).items():
                self.bars[kind] = bars.enter_context(progress.current().task(kind, total))
                done = sum(o.cell.kind == kind and o.status is not None for o in outcomes)
                self.bars[kind].update(completed=done)
            self.run_cells(outcomes)

    def run_cells(self, outcomes: list[CellOutcome]) -> None:
        todo = [o for o in outcomes if o.status is None]
        self.inputs = self.ship_inputs(todo)
        for outcome in todo:
            self.submit(outcome)
        while self.pending:
            ready, _ = self.ray.wait(list(self.pending), num_returns=1, timeout=POLL_SECONDS)
            for ref in ready:
                self.collect(ref, self.pending.pop(ref))
            self.give_up_unplaceable()
            self.describe()

    def ship_inputs(self, todo: list[CellOutcome]) -> dict[str, Any]:
        """Object refs (or shared paths) of each ONNX, calibration sample and the val split, put once."""
        ship = self.matrix.data_paths == "ship"
        inputs: dict[str, Any] = {}
        for name in {o.cell.model for o in todo}:
            inputs[f"onnx:{name}"] = self.ray.put(self.sources[name].onnx.read_bytes())
        if self.matrix.bench.accuracy and todo and self.matrix.data is not None:
            split = self.matrix.bench.split
            data = pack_dataset(self.matrix.data, split) if ship else self.matrix.data
            inputs["data"] = self.ray.put(data)
        for outcome in todo:
            entry = outcome.cell.build
            key = self.calibration_key(outcome)
            if entry.precision != "int8" or key in inputs:
                continue
            if self.matrix.calibration is None:
                raise InputError("an int8 cell needs `calibration` (a data.yaml) in the matrix")
            if ship:
                imgsz = onnx_facts(self.sources[outcome.cell.model].onnx).imgsz
                sample = CalibrationSet.from_dataset(
                    self.matrix.calibration, imgsz, entry.calib_images, entry.calib_seed
                )
                inputs[key] = self.ray.put(pack_dataset(self.matrix.calibration, "train", list(sample.files)))
            else:
                inputs[key] = self.matrix.calibration
        return inputs

    @staticmethod
    def calibration_key(outcome: CellOutcome) -> str:
        entry = outcome.cell.build
        return f"calib:{outcome.cell.model}:{entry.calib_images}:{entry.calib_seed}"

    def submit(self, outcome: CellOutcome, avoid: set[str] | None = None) -> None:
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        cell = outcome.cell
        strategy: Any = "DEFAULT"  # or a NodeAffinitySchedulingStrategy
        if avoid:
            others = [
                node["NodeID"]
                for node in alive_nodes(self.ray)
                if node["NodeID"] not in avoid and can_run(node["Resources"], cell.kind, cell.build.target)
            ]
            if others:  # soft: if that node dies too, any node of the kind will do
                strategy = NodeAffinitySchedulingStrategy(others[0], soft=True)
        job = CellJob(
            cell_key=outcome.key,
            model=cell.model,
            kind=cell.kind,
            build=cell.build,
            bench=self.matrix.bench,
            onnx_name=f"{cell.model}.onnx",
            source=self.sources[cell.model].record,
        )
        ref = self.remote.options(
            name=f"edgepipe: {cell.label}",
            num_cpus=0,
            resources=cell_resources(cell.kind, cell.build.target),
            max_retries=self.retries,
            scheduling_strategy=strategy,
        ).remote(
            job,
            self.inputs[f"onnx:{cell.model}"],
            self.inputs.get(self.calibration_key(outcome)) if cell.build.precision == "int8" else None,
            self.inputs.get("data"),
        )
        self.pending[ref] = outcome

    def collect(self, ref: Any, outcome: CellOutcome) -> None:
        try:
            report = self.ray.get(ref)
        except self.ray.exceptions.RayError as exc:  # the node or worker died more often than max_retries
            outcome.attempts.append({"error": f"{type(exc).__name__} (Ray retried it {self.retries} times)"})
            self.finish(outcome, "failed", f"{type(exc).__name__}: the device died {self.retries + 1} times")
            return
        attempt = {key: report[key] for key in ("node_id", "hostname", "pid", "assigned", "started", "ended")}
        outcome.attempts.append({**attempt, "error": report.get("error")})
        if report.get("error"):
            if len(outcome.attempts) <= self.retries:
                self.submit(outcome, avoid={a["node_id"] for a in outcome.attempts if a.get("node_id")})
            else:
                self.finish(
                    outcome, "failed", f"failed {len(outcome.attempts)} times; last: {report['error']}"
                )
            return
        outcome.results = [Result.model_validate(record) for record in report["results"]]
        append_results(outcome.results)
        self.finish(outcome, "measured")

    def give_up_unplaceable(self) -> None:
        """Fail the cells no live node can take after waiting `node_wait` seconds for one to join."""
        nodes = alive_nodes(self.ray)
        now = time.monotonic()
        for ref, outcome in list(self.pending.items()):
            cell = outcome.cell
            if any(can_run(node["Resources"], cell.kind, cell.build.target) for node in nodes):
                self.unplaceable_since.pop(outcome.key, None)
                continue
            since = self.unplaceable_since.setdefault(outcome.key, now)
            if now - since >= self.node_wait:
                self.ray.cancel(ref, force=True)
                del self.pending[ref]
                self.finish(
                    outcome,
                    "failed",
                    f"no live node of kind {cell.kind!r} offers target {cell.build.target!r} "
                    f"(waited {self.node_wait:.0f} s)",
                )

    def finish(self, outcome: CellOutcome, status: Status, error: str | None = None) -> None:
        outcome.status, outcome.error = status, error
        self.bars[outcome.cell.kind].advance()

    def describe(self) -> None:
        running = Counter(o.cell.kind for o in self.pending.values())
        for kind, bar in self.bars.items():
            bar.update(f"{kind}: {running.get(kind, 0)} queued or running")


def run_matrix(
    matrix: Matrix,
    address: str,
    out_dir: Path,
    *,
    force: bool = False,
    retries: int = 2,
    node_wait: float = 120.0,
    show_nodes: Callable[[list[dict[str, Any]]], None] = lambda nodes: None,
) -> list[CellOutcome]:
    """Every cell of the matrix, measured now, found in the history, or failed (with the reason).

    `show_nodes` receives the cluster's live nodes before the cells are submitted."""
    sources = prepare_sources(matrix, out_dir)
    dataset = matrix.data.parent.name if matrix.bench.accuracy and matrix.data else None
    outcomes = [
        CellOutcome(cell, cell.key(sources[cell.model].sha256, matrix.bench, dataset))
        for cell in matrix.cells()
    ]
    if not force:
        known = measured_cells({o.key for o in outcomes})
        for outcome in outcomes:
            if outcome.key in known and len(known[outcome.key]) >= len(set(matrix.bench.batch)):
                outcome.status, outcome.results = "in history", known[outcome.key]
    ray = connect(address)
    try:
        show_nodes(alive_nodes(ray))
        FleetDriver(ray, matrix, sources, retries, node_wait).run(outcomes)
    finally:
        ray.shutdown()
    return outcomes


def nodes_table(nodes: list[dict[str, Any]]):
    table = Table(title="fleet nodes", title_justify="left")
    for column in ("kind", "targets", "host", "node"):
        table.add_column(column)
    for node in sorted(nodes, key=lambda n: node_kind(n["Resources"]) or ""):
        kind = node_kind(node["Resources"])
        table.add_row(
            kind or "[dim](no device: head or foreign node)[/dim]",
            ", ".join(node_targets(node["Resources"])),
            str(node.get("NodeManagerHostname") or node.get("NodeManagerAddress")),
            node["NodeID"][:12],
        )
    return table
