"""What `edgepipe run` prints: what prune and fine-tune did to the model, the results apart from the
unpruned model's."""

from __future__ import annotations

from pathlib import Path

from factories import cpu_results, source_results
from rich.console import Console

from benchmarks.results import save_results
from core.artifacts import Artifact
from pipeline.stage_runner import StageOutcome
from pipeline.summary import model_stage_lines, print_summary


def checkpoint(tmp_path: Path, **metadata) -> Artifact:
    path = tmp_path / "model.pt"
    path.write_bytes(b"checkpoint")
    return Artifact.from_path("checkpoint", path, **metadata)


def test_a_prune_that_costs_the_map_says_so_in_yellow(tmp_path):
    """--macs 0.8 without fine-tuning: mAP 0.4359 -> 0.0891 must not pass in silence."""
    pruned = checkpoint(
        tmp_path, gflops_before=8.194, gflops_after=6.55, params_before=3_006_038, params_after=2_400_000,
        map50_95_before=0.4359, map50_95=0.0891,
    )  # fmt: skip
    summary, warning = model_stage_lines("prune", pruned)
    assert "GFLOPs 8.19 -> 6.55 (79.9% kept)" in summary
    assert "params 3.01 M -> 2.40 M (79.8% kept)" in summary
    assert "mAP50-95 0.4359 -> 0.0891 (-34.68 points)" in summary
    assert warning.startswith("[yellow]warning[/]: prune lost 34.68 mAP50-95 points")


def test_a_stage_within_one_point_prints_no_warning_and_fine_tuning_shows_its_gain(tmp_path):
    tuned = checkpoint(
        tmp_path, gflops_before=4.1, gflops=4.1, params_before=1_500_000, params=1_500_000,
        map50_95_before=0.35, map50_95=0.341,
    )  # fmt: skip
    (line,) = model_stage_lines("finetune", tuned)
    assert "GFLOPs 4.10 -> 4.10 (100.0% kept)" in line and "(-0.90 points)" in line
    (without_val,) = model_stage_lines("prune", checkpoint(tmp_path, gflops_before=8.0, gflops_after=4.0))
    assert "mAP" not in without_val and "50.0% kept" in without_val


def test_the_run_summary_prints_the_unpruned_models_results_apart(tmp_path):
    own = Artifact.from_path("results", save_results(tmp_path / "own.json", cpu_results()))
    source = Artifact.from_path("results", save_results(tmp_path / "source.json", source_results()))
    outcomes = [
        StageOutcome("bench:openvino/int8", "ran", 1.0, tmp_path, {"results": own}),
        StageOutcome("bench:source:openvino/int8", "ran", 1.0, tmp_path, {"results": source}),
    ]
    console = Console(record=True, width=200)
    print_summary(outcomes, console, seconds=2.0)
    text = console.export_text()
    own_table, source_table = text.split("the unpruned model, for reference")
    assert "21.90" in source_table and "21.90" not in own_table  # the source's openvino/int8 p50
    assert "9.50" in own_table


def test_run_prints_what_the_int8_check_of_a_build_found(tmp_path):
    """`edgepipe run` says what the INT8 fallback did, as `edgepipe build` does, not only report.md."""
    from pipeline.summary import engine_stage_lines

    (tmp_path / "engine").mkdir()
    record = {
        "val_data": "val.yaml", "met": True, "fell_back": True, "bound": "1% of FP32 mAP50-95",
        "max_map_drop": 0.004, "float_layers": [f"/model.{i}/conv" for i in range(24)],
        "fp32": {"map50_95": 0.40}, "final": {"map50_95": 0.398, "drop": 0.002},
    }  # fmt: skip
    engine = Artifact.from_path("engine", tmp_path / "engine", precision="int8", accuracy_control=record)
    (line,) = engine_stage_lines("build:openvino/int8", engine)
    assert line.startswith("[bold]build:openvino/int8[/bold]: INT8 checked on val.yaml")
    assert "fell back: 24 convolutions in float" in line
    unchecked = Artifact.from_path("engine", tmp_path / "engine", precision="fp32")
    assert engine_stage_lines("build:openvino/fp32", unchecked) == []
