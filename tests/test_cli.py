"""The command line as a user meets it: device listing, help, and errors as messages with exit codes."""

from __future__ import annotations

import importlib.util

import pytest
from typer.testing import CliRunner

from pipeline.cli import app


def invoke(*args: str):
    return CliRunner().invoke(app, list(args), catch_exceptions=False, terminal_width=200)


def test_help_lists_every_stage_command():
    result = invoke("--help")
    assert result.exit_code == 0
    for command in (
        "run",
        "prune",
        "finetune",
        "export",
        "build",
        "bench",
        "report",
        "gate",
        "compare",
        "data",
        "device",
        "history",
        "fleet",
    ):
        assert command in result.output


def test_device_lists_cpu_targets_available_and_tensorrt_with_its_reason():
    result = invoke("device")
    assert result.exit_code == 0, result.output
    rows = {line.split("│")[1].strip(): line for line in result.output.splitlines() if line.count("│") >= 4}
    for target in ("torch", "onnxruntime", "openvino"):
        assert "yes" in rows[target], rows.get(target)
    if importlib.util.find_spec("tensorrt") is None:
        assert "│ no " in rows["tensorrt"] and "tensorrt is not" in rows["tensorrt"]


def test_device_json_tells_which_precisions_run_here():
    import json

    import torch

    result = invoke("device", "--json")
    assert result.exit_code == 0, result.output
    found = json.loads(result.output)
    assert found["device"]["name"] and found["device"]["cpu"]
    torch_here = next(t for t in found["targets"] if t["target"] == "torch")
    assert torch_here["available"] and "fp32" in torch_here["precisions"]
    if not torch.cuda.is_available():  # fp16 is CUDA only: not listed as runnable on a CPU-only machine
        assert (
            "fp16" not in torch_here["precisions"] and "CUDA" in torch_here["unavailable_precisions"]["fp16"]
        )
        table = invoke("device").output
        torch_row = next(line for line in table.splitlines() if line.startswith("│ torch "))
        assert "fp16" not in torch_row.split("│")[3] and "no fp16: CUDA only" in torch_row


def test_no_help_screen_shows_a_type_beside_a_flag():
    from typer.main import get_command

    group = get_command(app)
    screens = [("--help",), ("data", "synth", "--help")] + [(name, "--help") for name in group.commands]
    for args in screens:
        output = invoke(*args).output
        assert "Show this message and exit" in output and "<bool>" not in output, args


@pytest.mark.parametrize(
    "args",
    [
        ("run", "missing.yaml"),
        ("bench", "--artifact", "missing-dir", "--no-accuracy", "-o", "r.json"),
        ("gate", "missing.json", "--budgets", "missing.yaml"),
        ("export", "--model", "missing.pt", "-o", "m.onnx"),
    ],
)
def test_missing_input_is_a_message_and_exit_2(tmp_path, monkeypatch, args):
    monkeypatch.chdir(tmp_path)
    result = invoke(*args)
    assert result.exit_code == 2, result.output
    assert "error:" in result.output and "missing" in result.output
    assert not any(p.name in {"r.json", "m.onnx"} for p in tmp_path.iterdir())


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (("prune", "--model", "m.pt", "--macs", "1.5"), ["--macs", "1.5"]),
        (("bench", "--artifact", "missing.onnx", "-o", "r.json"), ["missing.onnx", "not found"]),
        (("build", "--onnx", "m.onnx", "--calib-images", "0"), ["--calib-images", "0"]),
        (("export", "--model", "m.pt", "--imgsz", "100"), ["--imgsz", "100"]),
    ],
)
def test_bad_option_is_one_message_naming_the_value_and_exit_2(tmp_path, monkeypatch, args, named):
    monkeypatch.chdir(tmp_path)
    result = invoke(*args)
    assert result.exit_code == 2, result.output
    first = result.output.splitlines()[0]
    assert first.startswith("error:") and all(fragment in first for fragment in named), result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    ("args", "old", "new"),
    [
        (("export", "--model", "missing.pt", "--data", "v.yaml"), "--data", "--val"),
        (("build", "--onnx", "missing.onnx", "--calib", "d.yaml"), "--calib", "--data"),
        (
            ("search", "--model", "missing.pt", "--data", "d.yaml", "--budget", "p90<=5ms", "-o", "s"),
            "-o",
            "-w",
        ),
        (("prune", "--model", "missing.pt", "--device", "0"), "--device 0", "--device cuda:0"),
    ],
)
def test_old_spellings_still_work_with_a_deprecation_warning(tmp_path, monkeypatch, args, old, new):
    monkeypatch.chdir(tmp_path)
    result = invoke(*args)
    assert "deprecated" in result.output and old in result.output and new in result.output, result.output
    assert result.exit_code == 2 and "error:" in result.output  # and the command went on to read its input


def test_device_has_one_syntax():
    result = invoke("prune", "--model", "m.pt", "--device", "gpu0")
    assert result.exit_code == 2 and "--device takes cpu, cuda or cuda:N, got 'gpu0'" in result.output
