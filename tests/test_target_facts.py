"""A target owns its facts (targets/base.py): its options model, whether it builds from the ONNX, its
runtime modules and its libraries. The build's cache key, the plan's wiring and the CLI read them from
the target; nothing outside `targets/` branches on a target's name."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from core.errors import InputError
from pipeline import stage_runner
from pipeline.config import PipelineConfig
from pipeline.plan import make_plans
from pipeline.stage_runner import StageRunner, WorkDir
from pipeline.stages.base import RunSettings
from pipeline.stages.build import BuildEntry
from targets.base import all_targets, get_target, parse_options, target_names
from targets.options import TargetOptions

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", target_names())
def test_each_target_declares_its_facts(name):
    target = get_target(name)
    assert target.name == name
    assert issubclass(target.options_model, TargetOptions)
    assert isinstance(target.from_onnx, bool)
    assert target.runtime_modules and all(isinstance(m, str) for m in target.runtime_modules)
    for precision in target.precisions:
        libraries = target.libraries(precision, target.options_model())
        assert all(isinstance(library, str) and library for library in libraries), (precision, libraries)
    assert parse_options(target, {}).record() == {}


@pytest.mark.parametrize("name", target_names())
def test_target_options_refuse_unknown_keys_naming_the_target(name):
    with pytest.raises(InputError, match=rf"{name} build options: key 'no_such_option': unknown key"):
        parse_options(get_target(name), {"no_such_option": 1})


def test_the_validated_options_reach_the_build_typed():
    """The model checks values (TensorRT's `int8_mode` is no longer re-checked by hand in its build)."""
    with pytest.raises(InputError, match=r"tensorrt build options: key 'int8_mode': .*'qdq' or 'calibrator'"):
        parse_options(get_target("tensorrt"), {"int8_mode": "implicit"})
    with pytest.raises(ValueError, match=r"key 'int8_mode': .*\(got 'implicit'\)"):
        BuildEntry(target="tensorrt", precision="int8", options={"int8_mode": "implicit"})
    entry = BuildEntry(target="tensorrt", precision="int8", options={"opt_batch": 4})
    options = entry.parsed_options(val_data="val.yaml")
    assert (options.opt_batch, options.max_batch, options.int8_mode, options.val_data) == (
        4,
        16,
        "qdq",
        "val.yaml",
    )
    assert options.record() == {"opt_batch": 4, "val_data": "val.yaml"}  # what artifact.json records


def test_an_unknown_target_is_refused_with_the_choices():
    with pytest.raises(ValueError, match="unknown target 'tensorflow'; choose one of torch, onnxruntime"):
        BuildEntry(target="tensorflow")


@pytest.mark.parametrize(
    ("precision", "options", "present", "absent"),
    [
        ("int8", {}, {"tensorrt", "nvidia-modelopt", "onnxruntime"}, set()),  # ModelOpt writes the Q/DQ ONNX
        ("fp16", {}, {"tensorrt"}, {"nvidia-modelopt"}),
        ("int8", {"int8_mode": "calibrator"}, {"tensorrt"}, {"nvidia-modelopt"}),
        ("int8", {"qdq_onnx": "made-earlier"}, {"tensorrt"}, {"nvidia-modelopt"}),
        ("int8", {"qdq_only": True}, {"nvidia-modelopt", "onnxruntime"}, {"tensorrt"}),  # the host half
        ("auto", {}, {"tensorrt", "nvidia-modelopt"}, set()),  # auto may choose int8
    ],
)
def test_tensorrt_builds_list_tensorrt_and_modelopt_where_they_use_them(precision, options, present, absent):
    libraries = set(BuildEntry(target="tensorrt", precision=precision, options=options).libraries())
    assert present <= libraries and not absent & libraries


def test_tensorrt_and_modelopt_versions_enter_the_build_and_bench_cache_keys(tmp_path, monkeypatch):
    """An upgraded TensorRT or ModelOpt rebuilds the engine and re-benches it (neither installed here:
    their versions are what the metadata would say)."""
    config = PipelineConfig.model_validate(
        {"model": str(tmp_path / "m.pt"), "data": str(tmp_path / "d.yaml"), "bench": {},
         "build": [{"target": "tensorrt", "precision": "int8"}]}
    )  # fmt: skip
    plans = {plan.label: plan for plan in make_plans(config) if plan.stage in ("build", "bench")}
    assert set(plans) == {"build:tensorrt/int8", "bench:tensorrt/int8"}
    runner = StageRunner(WorkDir(tmp_path / "work"), RunSettings(imgsz=64, device="cpu", data=None, val=None))
    installed = {"tensorrt": "10.3.0", "nvidia-modelopt": "0.47.0"}
    original = stage_runner._version
    monkeypatch.setattr(stage_runner, "_version", lambda name: installed.get(name) or original(name))
    monkeypatch.setattr(stage_runner, "fingerprint_data", lambda path: "data")  # the files do not exist

    def keys() -> dict[str, str]:
        return {label: runner.cache_key(plan, {}) for label, plan in plans.items()}

    before = keys()
    # JetPack's `tensorrt`, PyPI's `tensorrt-cu12` wheel, ModelOpt: each one's upgrade changes both keys
    for library, upgrade in (
        ("tensorrt", "10.4.0"),
        ("tensorrt-cu12", "10.5.0"),
        ("nvidia-modelopt", "0.48.0"),
    ):
        installed[library] = upgrade
        after = keys()
        assert all(after[label] != before[label] for label in plans), library
        before = after
    assert stage_runner.stage_versions(plans["build:tensorrt/int8"].libraries)["tensorrt"] == "10.4.0"


def test_only_targets_from_onnx_need_the_export(tmp_path):
    config = PipelineConfig.model_validate(
        {"model": str(tmp_path / "m.pt"), "data": str(tmp_path / "d.yaml"),
         "build": [{"target": t.name} for t in all_targets()]}
    )  # fmt: skip
    plans = {plan.label: plan for plan in make_plans(config)}
    for target in all_targets():
        assert ("onnx" in plans[f"build:{target.name}/fp32"].needs) is target.from_onnx, target.name
    torch_only = PipelineConfig.model_validate(
        {"model": str(tmp_path / "m.pt"), "data": str(tmp_path / "d.yaml"), "build": [{"target": "torch"}]}
    )
    assert [plan.label for plan in make_plans(torch_only)] == ["build:torch/fp32"]


def _target_name_comparisons(path: Path, names: set[str], root: Path = REPO) -> list[str]:
    """`x == "openvino"`, `x != "torch"`, `x in ("tensorrt", ...)` and `case "onnxruntime":` in one file."""
    found = []
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        literals: list[ast.expr] = []
        if isinstance(node, ast.Compare):
            for operand in [node.left, *node.comparators]:
                literals += operand.elts if isinstance(operand, ast.Tuple | ast.List | ast.Set) else [operand]
        elif isinstance(node, ast.MatchValue):
            literals = [node.value]
        for literal in literals:
            if isinstance(literal, ast.Constant) and literal.value in names:
                found.append(f"{path.relative_to(root)}:{node.lineno}: {literal.value!r}")
    return found


def test_no_module_outside_targets_compares_a_target_name():
    """Which target it is decides nothing outside `targets/`: the facts do (`from_onnx`, the options)."""
    names = set(target_names())
    found = [
        hit
        for package in ("core", "benchmarks", "pipeline")
        for path in sorted((REPO / package).rglob("*.py"))
        for hit in _target_name_comparisons(path, names)
    ]
    assert found == []


def test_the_scan_finds_each_kind_of_comparison(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text(
        'if entry.target == "torch":\n    pass\nif t in ("x", "openvino"):\n    pass\n'
        'match t:\n    case "tensorrt":\n        pass\nif device == "cpu":\n    pass\n'
    )
    found = _target_name_comparisons(sample, {"torch", "openvino", "tensorrt"}, tmp_path)
    assert found == ["sample.py:1: 'torch'", "sample.py:3: 'openvino'", "sample.py:6: 'tensorrt'"]


def test_a_fleet_refuses_a_target_that_builds_from_the_checkpoint(tmp_path):
    from pipeline.fleet.matrix import Matrix

    onnx = tmp_path / "m.onnx"
    onnx.write_bytes(b"")
    builds_from_checkpoint = [t.name for t in all_targets() if not t.from_onnx]
    assert builds_from_checkpoint == ["torch"]
    matrix = {"models": [{"onnx": str(onnx)}], "devices": ["cpu"], "bench": {"accuracy": False}}
    with pytest.raises(ValueError, match="the torch target runs a checkpoint; a fleet builds from ONNX"):
        Matrix.model_validate({**matrix, "targets": ["torch/fp32"]})
    cells = Matrix.model_validate({**matrix, "targets": ["openvino"]}).cells()
    assert [cell.build.target for cell in cells] == ["openvino"]
