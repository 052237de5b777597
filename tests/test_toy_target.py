"""A backend added in one module, touching no other file: this one registers a toy target that runs the
ONNX with ONNX Runtime and names PyYAML as its library. It builds, benches, shows in `edgepipe device`,
and its library's version enters the build stage's cache key: what adding a backend asks
(CONTRIBUTING.md, "Recipe: add a target")."""

from __future__ import annotations

import json
from importlib.metadata import version
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest
import yaml
from pydantic import Field
from typer.testing import CliRunner

from core.runner import Runner
from pipeline import stage_runner
from pipeline.cli import app
from targets.base import BuildInputs, RunOptions, library_status, register, unregister
from targets.engine_dir import copy_into, model_path, onnx_facts, write_engine_artifact
from targets.options import TargetOptions

if TYPE_CHECKING:
    from core.artifacts import Artifact
    from core.calibration import CalibrationSet

NAME = "toy"
LIBRARY = "pyyaml"  # the toy's "backend library": a real installed distribution with a version of its own
MODEL_FILE = "model.onnx"
built_with: list[TargetOptions] = []  # what each build received


class ToyOptions(TargetOptions):
    note: str = Field("", description="written into the engine's toy.yaml")


class ToyRunner(Runner):
    precision = "fp32"

    def __init__(self, path: Path):
        import onnxruntime

        self.session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0].name

    def infer(self, images: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input: images})[0]


class ToyTarget:
    name = NAME
    precisions = ("fp32",)
    options_model = ToyOptions
    from_onnx = True
    runtime_modules = ("yaml", "onnxruntime")

    def libraries(self, precision: str, options: ToyOptions) -> tuple[str, ...]:
        return (LIBRARY, "onnxruntime")

    def available(self) -> tuple[bool, str]:
        return library_status("yaml", "pip install pyyaml")

    def build(
        self,
        inputs: BuildInputs,
        precision: str,
        calibration: CalibrationSet | None,
        options: ToyOptions,
        out_dir: Path,
    ) -> Artifact:
        built_with.append(options)
        assert inputs.onnx is not None
        copy_into(inputs.onnx, out_dir, MODEL_FILE)
        (out_dir / "toy.yaml").write_text(yaml.safe_dump({"note": options.note}))
        return write_engine_artifact(
            out_dir,
            target=self.name,
            precision=precision,
            runtime_precision=precision,
            model_file=MODEL_FILE,
            inputs=inputs,
            facts=onnx_facts(inputs.onnx),
            calibration=None,
            options=options.record(),
            versions={LIBRARY: yaml.__version__},
        )

    def load(self, artifact: Artifact, options: RunOptions) -> ToyRunner:
        return ToyRunner(model_path(artifact))


@pytest.fixture(autouse=True)
def toy_registered():
    register(NAME, f"{__name__}:ToyTarget")
    yield
    unregister(NAME)


@pytest.fixture(scope="module")
def tiny_onnx(tiny_checkpoint, tmp_path_factory) -> Path:
    from pipeline.stages.export import export_onnx

    return export_onnx(tiny_checkpoint, tmp_path_factory.mktemp("toy") / "tiny.onnx", imgsz=64)


def invoke(*args: str):
    return CliRunner().invoke(app, list(args), catch_exceptions=False, terminal_width=200)


def test_the_toy_target_builds_with_its_options_and_benches(tiny_onnx, tmp_path):
    built_with.clear()
    engine = tmp_path / "engine"
    result = invoke("build", "--onnx", str(tiny_onnx), "--target", NAME, "-o", str(engine))
    assert result.exit_code == 0, result.output
    assert built_with == [ToyOptions()]  # the validated object, not a dict
    record = json.loads((engine / "artifact.json").read_text())
    assert (record["target"], record["versions"][LIBRARY]) == (NAME, version(LIBRARY))

    results = tmp_path / "results.json"
    bench = invoke("bench", "--artifact", str(engine), "--no-accuracy", "--iters", "3", "--warmup", "1",
                   "--min-seconds", "0", "--throughput-seconds", "0.1", "--threads", "1", "--no-memory",
                   "-o", str(results))  # fmt: skip
    assert bench.exit_code == 0, bench.output
    (found,) = json.loads(results.read_text())["results"]
    assert (found["target"], found["precision"], found["versions"][LIBRARY]) == (
        NAME,
        "fp32",
        version(LIBRARY),
    )
    assert found["latency_ms"]["n"] >= 3


def test_the_toy_target_refuses_an_option_it_does_not_declare(tiny_onnx, tmp_path):
    result = invoke(
        "build", "--onnx", str(tiny_onnx), "--target", NAME, "--qdq-only", "-o", str(tmp_path / "e")
    )
    assert result.exit_code == 2 and "--qdq-only is an option of --target tensorrt" in result.output


def test_the_toy_target_appears_in_device():
    result = invoke("device", "--json")
    assert result.exit_code == 0, result.output
    found = json.loads(result.output)
    (toy,) = [t for t in found["targets"] if t["target"] == NAME]
    assert toy["available"] and toy["reason"] == f"yaml {yaml.__version__}" and toy["precisions"] == ["fp32"]
    assert found["versions"][LIBRARY] == version(LIBRARY)
    assert NAME in invoke("device").output


def test_the_toy_library_version_enters_the_build_stage_cache_key(tmp_path, monkeypatch):
    from pipeline.config import PipelineConfig
    from pipeline.plan import make_plans
    from pipeline.stage_runner import StageRunner, WorkDir
    from pipeline.stages.base import RunSettings

    config = PipelineConfig.model_validate(
        {"model": str(tmp_path / "m.pt"), "data": str(tmp_path / "d.yaml"),
         "build": [{"target": NAME, "options": {"note": "hello"}}]}
    )  # fmt: skip
    plans = {plan.label: plan for plan in make_plans(config)}
    assert list(plans) == ["export", f"build:{NAME}/fp32"]  # it builds from the ONNX: exported first
    build = plans[f"build:{NAME}/fp32"]
    assert build.needs["onnx"] == "onnx" and LIBRARY in build.libraries
    assert stage_runner.stage_versions(build.libraries)[LIBRARY] == version(LIBRARY)

    runner = StageRunner(WorkDir(tmp_path / "work"), RunSettings(imgsz=64, device="cpu", data=None, val=None))
    monkeypatch.setattr(stage_runner, "fingerprint_data", lambda path: "data")  # the files do not exist
    before = runner.cache_key(build, {})
    original = stage_runner._version
    monkeypatch.setattr(stage_runner, "_version", lambda name: "99.0" if name == LIBRARY else original(name))
    assert runner.cache_key(build, {}) != before
