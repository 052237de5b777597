"""The wiring of stages: the unpruned source model is built and benched beside the run's model."""

from __future__ import annotations

from pathlib import Path

import yaml

from pipeline.config import load_config
from pipeline.plan import make_plans

QUICKSTART = Path(__file__).parents[1] / "examples" / "quickstart.yaml"


def quickstart_plans(tmp_path: Path, **changes):
    config = yaml.safe_load(QUICKSTART.read_text())
    config.update(changes)
    config = {k: v for k, v in config.items() if v is not None}
    (tmp_path / "reference").symlink_to(QUICKSTART.parent / "reference")
    (tmp_path / "budgets.yaml").symlink_to(QUICKSTART.parent / "budgets.yaml")
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(config))
    return {plan.label: plan for plan in make_plans(load_config(path))}


def test_the_source_model_is_exported_built_and_benched_on_every_target(tmp_path):
    plans = quickstart_plans(tmp_path)
    labels = ["torch/fp32", "onnxruntime/int8", "openvino/int8"]
    assert plans["export:source"].needs["model"] == "model:source"
    assert plans["export:source"].provides == {"onnx": "onnx:source"}
    for label in labels:
        build = plans[f"build:source:{label}"]
        assert build.needs["model"] == "model:source"
        assert build.provides == {"engine": f"engine:source:{label}"}
        bench = plans[f"bench:source:{label}"]
        assert bench.needs["engine"] == f"engine:source:{label}"
        assert bench.provides == {"results": f"results:source:{label}"}
        assert f"results:source:{label}" in plans["report"].needs.values()
    assert plans["build:source:onnxruntime/int8"].needs["onnx"] == "onnx:source"
    assert "onnx" not in plans["build:source:torch/fp32"].needs
    gated = plans["gate"].needs.values()
    assert not [name for name in gated if "source" in name]  # the gate checks the run's model only
    assert sorted(gated) == sorted(f"results:{label}" for label in labels)


def test_nothing_extra_when_the_model_reaches_the_build_unchanged(tmp_path):
    plans = quickstart_plans(tmp_path, prune=None, finetune=None)
    assert not [label for label in plans if "source" in label]


def test_a_torch_only_run_builds_its_source_without_exporting_it(tmp_path):
    plans = quickstart_plans(tmp_path, build=[{"target": "torch", "precision": "fp32"}])
    assert "export:source" not in plans
    assert {"build:source:torch/fp32", "bench:source:torch/fp32"} <= set(plans)
