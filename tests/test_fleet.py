"""Fleet benchmarking on a real local Ray cluster: a head and worker nodes with fake device kinds.

The cluster lives in a private network namespace whose only interface is loopback, so every address Ray
picks is 127.0.0.1 and nothing can leave the machine (Ray otherwise swaps 127.0.0.1 for the host's
address). The driver runs the real `fleet run` command inside that namespace; the test kills a worker
node's whole process group while it benchmarks a cell.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import yaml

from core.errors import InputError
from pipeline.fleet.matrix import load_matrix
from pipeline.fleet.resources import cell_resources, device_kind, node_kind, node_resources

RAY = Path(sys.executable).with_name("ray")
HEAD = "127.0.0.1:6379"  # the namespace is private: this port is free in it
FLEET = [sys.executable, "-c", "from pipeline.cli.fleet import fleet_app; fleet_app()"]


def test_resources_make_one_slot_per_device_and_pin_kind_and_target():
    assert (
        device_kind({"name": "NVIDIA Jetson Orin Nano Developer Kit"})
        == "nvidia-jetson-orin-nano-developer-kit"
    )
    assert device_kind({"name": "x"}, override="Orin NX 16GB") == "orin-nx-16gb"
    advertised = node_resources("orin-nano", ["tensorrt", "onnxruntime"])
    assert advertised == {
        "device:orin-nano": 1,
        "target:tensorrt": 1,
        "target:onnxruntime": 1,
        "bench-slot": 1,
    }
    assert node_kind(advertised) == "orin-nano"
    wanted = cell_resources("orin-nano", "tensorrt")
    assert wanted["bench-slot"] == advertised["bench-slot"]  # a cell takes the whole slot: one at a time
    assert wanted["device:orin-nano"] < 1 and wanted["target:tensorrt"] < 1


def test_matrix_errors_name_the_file_and_key(tmp_path: Path, tiny_checkpoint: Path):
    path = tmp_path / "matrix.yaml"
    path.write_text(
        yaml.safe_dump(
            {"models": [{"checkpoint": str(tiny_checkpoint)}], "targets": ["openvino/int8"], "devices": ["a"]}
        )
    )
    with pytest.raises(
        InputError,
        match=r"matrix.yaml: invalid matrix:\n  devices\[0\] \(a\): openvino/int8 needs `calibration`",
    ):
        load_matrix(path)
    path.write_text(
        yaml.safe_dump(
            {
                "models": [{"onnx": "m.onnx"}],
                "targets": ["onnxruntime"],
                "devices": ["a"],
                "bench": {"iterz": 3},
            }
        )
    )
    with pytest.raises(InputError, match=r"bench\.iterz.: unknown key; did you mean `iters`"):
        load_matrix(path)
    path.write_text(
        yaml.safe_dump(
            {
                "models": [{"checkpoint": str(tiny_checkpoint), "imgsz": 64}],
                "targets": ["onnxruntime/fp32"],
                "devices": ["a", {"kind": "b", "targets": ["openvino/fp32", "openvino/fp16"]}],
                "bench": {"accuracy": False},
            }
        )
    )
    cells = load_matrix(path).cells()
    assert [(c.kind, c.target) for c in cells] == [
        ("a", "onnxruntime/fp32"),
        ("b", "openvino/fp32"),
        ("b", "openvino/fp16"),
    ]


def test_shipped_calibration_sample_keeps_its_hash_and_labels_travel(synth_dataset: Path, tmp_path: Path):
    from core.calibration import CalibrationSet
    from core.dataset import load_dataset, read_labels
    from pipeline.fleet.tasks import pack_dataset, unpack_dataset

    sample = CalibrationSet.from_dataset(synth_dataset, 64, size=8, seed=3)
    shipped = unpack_dataset(pack_dataset(synth_dataset, "train", list(sample.files)), tmp_path / "calib")
    again = CalibrationSet.from_dataset(shipped, 64, size=8, seed=3)
    assert again.sha256 == sample.sha256 and len(again) == 8

    val = unpack_dataset(pack_dataset(synth_dataset, "val"), tmp_path / "val")
    original, copy = load_dataset(synth_dataset), load_dataset(val)
    assert copy.name == original.name and copy.names == original.names
    assert [read_labels(p) for p in copy.images("val")] == [read_labels(p) for p in original.images("val")]


def test_run_fails_fast_when_no_head_answers():
    import socket

    from pipeline.fleet.driver import check_head

    with socket.socket() as probe:  # a loopback port that was free a moment ago: nothing listens there
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(InputError, match=r"no Ray head answers at 127\.0\.0\.1"):
        check_head(f"127.0.0.1:{port}")
    with pytest.raises(InputError, match="host:port"):
        check_head("127.0.0.1")


def _namespaces_work() -> bool:
    if not shutil.which("unshare") or not shutil.which("nsenter") or not shutil.which("ip"):
        return False
    done = subprocess.run(
        ["unshare", "--net", "ip", "link", "set", "lo", "up"], capture_output=True, check=False
    )
    return done.returncode == 0


class LoopbackCluster:
    """A Ray cluster whose processes all live in one network namespace that has only `lo`."""

    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.env = {
            **os.environ,
            "EDGEPIPE_HISTORY": str(workdir / "history.sqlite"),
            "RAY_USAGE_STATS_ENABLED": "0",
            "RAY_ADDRESS": HEAD,
            # notice a dead node within about a second instead of Ray's default of about 15
            "RAY_health_check_initial_delay_ms": "500",
            "RAY_health_check_period_ms": "500",
            "RAY_health_check_failure_threshold": "2",
        }
        self.holder = subprocess.Popen(
            ["unshare", "--net", "sh", "-c", "ip link set lo up && echo ready && exec sleep 3600"],
            stdout=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        # nsenter joins whatever namespace the holder has *now*: before unshare has run, that is the
        # host's, and the head and the nodes would land in different networks
        assert self.holder.stdout is not None and self.holder.stdout.readline().strip() == "ready"
        self.holder.stdout.close()
        assert os.readlink(f"/proc/{self.holder.pid}/ns/net") != os.readlink("/proc/self/ns/net")
        self.groups: list[int] = [self.holder.pid]
        self.nodes: dict[str, int] = {}  # name -> process group of its raylet and workers

    def enter(self, command: list[str]) -> list[str]:
        return ["nsenter", f"--net=/proc/{self.holder.pid}/ns/net", *command]

    def start_head(self) -> None:
        command = [str(RAY), "start", "--head", "--node-ip-address", "127.0.0.1", "--port", "6379"]
        command += ["--num-cpus", "0", "--include-dashboard", "false", "--disable-usage-stats"]
        self._start_group("head", [*command, "--object-store-memory", "100000000"])

    def join(self, **kinds: str) -> None:
        """`edgepipe fleet join` for each name=kind, one after the other (parallel starts on a host race)."""
        for name, kind in kinds.items():
            self._start_group(name, [*FLEET, "join", "--kind", kind, "--num-cpus", "1"])

    def _start_group(self, name: str, command: list[str]) -> None:
        """Run a command that leaves daemons behind, in a process group of its own.

        Its output goes to a file, not a pipe: a daemon that keeps an inherited pipe open would hold
        `communicate()` long after the command itself has exited.
        """
        log = self.workdir / f"{name}.log"
        with log.open("w") as output:
            process = subprocess.Popen(
                self.enter(command),
                env=self.env,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.groups.append(process.pid)
        try:
            returncode = process.wait(timeout=300)
        except subprocess.TimeoutExpired:
            pytest.fail(f"{name} did not start within 300 s:\n{log.read_text()}")
        assert returncode == 0, f"{name} failed to start:\n{log.read_text()}"
        self.nodes[name] = process.pid

    def busy_worker(self, name: str) -> bool:
        """Whether a Ray worker of this node is executing a task right now (its title is ray::<task>)."""
        idle = {"ray::IDLE", "ray::DashboardAgent", "ray::RuntimeEnvAgent"}
        for process in psutil.process_iter(["cmdline"]):
            try:
                title = " ".join(process.info["cmdline"] or [])
                if (
                    title.startswith("ray::")
                    and title not in idle
                    and os.getpgid(process.pid) == self.nodes[name]
                ):
                    return True
            except (psutil.Error, ProcessLookupError):
                continue
        return False

    def kill(self, name: str) -> None:
        os.killpg(self.nodes.pop(name), signal.SIGKILL)

    def run(self, *args: str) -> subprocess.Popen:
        return subprocess.Popen(
            self.enter([*FLEET, "run", *args]),
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

    def node_kinds(self) -> dict[str, str | None]:
        """Node id -> advertised kind of the live nodes, asked from inside the namespace."""
        script = "import json, ray; ray.init(logging_level='ERROR'); print(json.dumps(ray.nodes()))"
        done = subprocess.run(
            self.enter([sys.executable, "-c", script]),
            env=self.env,
            capture_output=True,
            text=True,
            check=True,
        )
        return {
            node["NodeID"]: node_kind(node["Resources"]) for node in json.loads(done.stdout.splitlines()[-1])
        }

    def stop(self) -> None:
        for group in reversed(self.groups):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(group, signal.SIGKILL)
        subprocess.run([str(RAY), "stop", "--force"], capture_output=True, check=False)
        self.holder.wait(timeout=10)


@pytest.fixture
def cluster(tmp_path: Path):
    if not RAY.is_file():
        pytest.skip('Ray is not installed: pip install "edgepipe[fleet]"')
    if not _namespaces_work():
        pytest.skip("needs unshare/nsenter to keep the Ray cluster on a loopback-only network namespace")
    cluster = LoopbackCluster(tmp_path)
    try:
        cluster.start_head()
        cluster.join(worker_a="fake-a", worker_b="fake-b")
        yield cluster
    finally:
        cluster.stop()


def write_matrix(path: Path, models: list[dict], devices: list[str], budgets: Path) -> Path:
    matrix = {
        "models": models,
        "targets": ["onnxruntime/fp32", "openvino/fp32"],
        "devices": devices,
        "bench": {"warmup": 1, "iters": 5, "min_seconds": 1.5, "throughput_seconds": 0.3, "accuracy": False},
        "budgets": str(budgets),
    }
    path.write_text(yaml.safe_dump(matrix))
    return path


def intervals_overlap(attempts: list[dict]) -> bool:
    by_node: dict[str, list[tuple[float, float]]] = {}
    for attempt in attempts:
        by_node.setdefault(attempt["node_id"], []).append((attempt["started"], attempt["ended"]))
    for spans in by_node.values():
        spans.sort()
        if any(later[0] < earlier[1] for earlier, later in itertools.pairwise(spans)):
            return True
    return False


@pytest.mark.slow  # about 2 minutes on 2 cores: a head, three nodes, three Python drivers
def test_fleet_run_places_cells_by_kind_survives_a_dead_node_and_skips_measured_cells(
    cluster: LoopbackCluster, tmp_path: Path, tiny_checkpoint: Path
):
    budgets = tmp_path / "budgets.yaml"
    budgets.write_text(yaml.safe_dump({"budgets": [{"target": "*/fp32", "max_latency_ms": {"p90": 10000}}]}))
    model = {"checkpoint": str(tiny_checkpoint), "name": "tiny", "imgsz": 64}
    matrix = write_matrix(tmp_path / "matrix.yaml", [model], ["fake-a", "fake-b"], budgets)
    out = tmp_path / "run1"

    # Run 1: kill worker-a while it benchmarks a cell, and bring up another fake-a device.
    kinds = cluster.node_kinds()
    (killed,) = [node for node, kind in kinds.items() if kind == "fake-a"]
    driver = cluster.run(str(matrix), "-o", str(out), "--retries", "2", "--node-wait", "90")
    deadline = time.monotonic() + 120
    while not cluster.busy_worker("worker_a"):
        assert driver.poll() is None, driver.communicate()[0]
        assert time.monotonic() < deadline, "no cell ever started on worker_a"
        time.sleep(0.1)
    cluster.kill("worker_a")
    cluster.join(worker_a2="fake-a")
    output, _ = driver.communicate(timeout=240)
    assert driver.returncode == 0, output

    kinds |= cluster.node_kinds()  # a dead node advertises nothing any more: keep what it had
    cells = json.loads((out / "cells.json").read_text())["cells"]
    assert len(cells) == 4 and {c["status"] for c in cells} == {"measured"}
    attempts = [c["attempts"][-1] | {"kind": c["kind"]} for c in cells]
    assert all(kinds[a["node_id"]] == a["kind"] for a in attempts), "a cell ran on a node of another kind"
    assert all(
        a["assigned"][f"device:{a['kind']}"] > 0 and a["assigned"]["bench-slot"] == 1 for a in attempts
    )
    assert not intervals_overlap(attempts), "one node ran two cells at once"
    used_a = {a["node_id"] for a in attempts if a["kind"] == "fake-a"}
    assert len(used_a) == 1 and killed not in used_a, "the fake-a cells finished on the replacement node"

    results = json.loads((out / "results.json").read_text())["results"]
    assert sorted((r["device"]["kind"], r["target"]) for r in results) == sorted(
        (kind, target) for kind in ("fake-a", "fake-b") for target in ("onnxruntime", "openvino")
    )
    assert all(r["device"]["node_id"] in kinds and r["fleet"]["source"]["sha256"] for r in results)
    assert {r["family"] for r in results} == {"yolov8"}  # recorded by each node's bench
    report = (out / "report.md").read_text()
    assert (out / "report.html").is_file() and "openvino/fp32" in report and "could not" not in report
    assert "Model: tiny (YOLOv8)" in report and "| YOLOv8 |" in (out / "gate.md").read_text()

    # Run 2: the measured cells come from the history; a kind no device has and a corrupt model fail.
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not an onnx model")
    matrix = write_matrix(
        tmp_path / "matrix2.yaml", [model, {"onnx": str(broken)}], ["fake-a", "fake-b", "fake-c"], budgets
    )
    out = tmp_path / "run2"
    driver = cluster.run(str(matrix), "-o", str(out), "--retries", "1", "--node-wait", "2")
    output, _ = driver.communicate(timeout=240)
    assert driver.returncode == 2, output
    cells = {
        (c["model"], c["kind"], c["target"]): c for c in json.loads((out / "cells.json").read_text())["cells"]
    }
    for kind in ("fake-a", "fake-b"):
        for target in ("onnxruntime/fp32", "openvino/fp32"):
            assert cells[("tiny", kind, target)]["status"] == "in history"
            broken_cell = cells[("broken", kind, target)]
            assert broken_cell["status"] == "failed" and len(broken_cell["attempts"]) == 2
            assert "InputError" in broken_cell["error"]
    for model_name in ("tiny", "broken"):
        unplaceable = cells[(model_name, "fake-c", "onnxruntime/fp32")]
        assert unplaceable["status"] == "failed" and "'fake-c'" in unplaceable["error"]
    assert len(json.loads((out / "results.json").read_text())["results"]) == 4
    assert "Could not be measured" in (out / "report.md").read_text()
    assert 'errors="8"' in (out / "gate.xml").read_text()
