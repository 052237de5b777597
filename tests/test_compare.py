"""`edgepipe compare`: latency verdicts on synthetic samples with a known shift and without one."""

from __future__ import annotations

import numpy as np
import pytest
from factories import make_result

from benchmarks.compare import compare_results, latency_change
from benchmarks.results import save_results
from core.errors import CheckFailed, InputError
from pipeline.cli.compare import compare_command


def lognormal(median: float, seed: int, n: int = 300, spread: float = 0.08) -> list[float]:
    return (median * np.random.default_rng(seed).lognormal(0.0, spread, n)).tolist()


def test_known_shift_is_detected():
    change = latency_change("latency", lognormal(10.0, 0), lognormal(11.0, 1))
    assert change.verdict == "slower"
    assert change.relative == pytest.approx(0.10, abs=0.02)
    assert change.p_value < 1e-6
    assert latency_change("latency", lognormal(11.0, 0), lognormal(10.0, 1)).verdict == "faster"


def test_no_shift_is_not_detected():
    for seed in range(5):
        assert latency_change("latency", lognormal(10.0, seed), lognormal(10.0, seed + 100)).verdict == "same"


def test_tiny_significant_shift_is_below_min_effect():
    # 20000 samples make a 1% shift "significant", but it is smaller than the 3% minimum effect.
    base, new = lognormal(10.0, 0, 20000), lognormal(10.1, 1, 20000)
    change = latency_change("latency", base, new, alpha=0.01, min_effect=0.03)
    assert change.p_value < 0.01
    assert change.verdict == "same"
    assert latency_change("latency", base, new, alpha=0.01, min_effect=0.005).verdict == "slower"


def test_pairs_by_target_precision_batch_and_reports_map_and_size():
    base = [make_result("openvino", "int8", 10.0, 0.42, seed=0), make_result("torch", "fp32", 30.0, 0.43)]
    new = [
        make_result("openvino", "int8", 12.0, 0.40, seed=1, size_mb=6.0),
        make_result("onnxruntime", "fp32", 20.0, 0.43),
    ]
    comparisons, unpaired = compare_results(base, new)
    assert [c.key for c in comparisons] == [("openvino", "int8", 1)]
    (c,) = comparisons
    assert c.latency[0].verdict == "slower"
    assert c.map_change == pytest.approx(-0.02)
    assert c.size_change == pytest.approx(-0.5)
    assert any("latency" in r for r in c.regressions) and any("mAP50-95" in r for r in c.regressions)
    assert unpaired == ["only in base: torch/fp32/1", "only in new: onnxruntime/fp32/1"]


def test_results_without_raw_samples_are_untested():
    base, new = make_result("torch", "fp32", 10.0, None), make_result("torch", "fp32", 20.0, None)
    base.samples_ms, new.samples_ms = [], []
    (c,), _ = compare_results([base], [new])
    assert c.latency[0].verdict == "untested" and not c.regressions


def test_command_exits_1_on_regression_and_0_without(tmp_path):
    base = save_results(tmp_path / "base.json", [make_result("openvino", "int8", 10.0, 0.42, seed=0)])
    same = save_results(tmp_path / "same.json", [make_result("openvino", "int8", 10.0, 0.42, seed=7)])
    slower = save_results(tmp_path / "slow.json", [make_result("openvino", "int8", 11.0, 0.42, seed=7)])
    compare_command(base, same)  # no exception: exit 0
    with pytest.raises(CheckFailed, match=r"latency p50 10\.00 -> 11\.00") as raised:
        compare_command(base, slower)
    assert raised.value.exit_code == 1
    compare_command(base, slower, min_effect=0.2)  # a 10% change is below a 20% minimum effect


def test_no_common_pair_exits_2_naming_what_each_file_holds(tmp_path):
    ort = save_results(tmp_path / "ort.json", [make_result("onnxruntime", "int8", 10.0, 0.42)])
    ov = save_results(tmp_path / "ov.json", [make_result("openvino", "int8", 9.0, 0.42)])
    with pytest.raises(InputError, match="nothing can be compared") as raised:
        compare_command(ort, ov)
    assert raised.value.exit_code == 2
    assert "only in base: onnxruntime/int8/1" in str(raised.value) and "only in new: openvino/int8/1" in str(
        raised.value
    )
    batch8 = save_results(tmp_path / "b8.json", [make_result("onnxruntime", "int8", 10.0, 0.42, batch=8)])
    with pytest.raises(InputError, match="nothing can be compared"):
        compare_command(ort, batch8)


@pytest.mark.parametrize(
    ("changes", "why", "option"),
    [
        ({"dataset": "coco128"}, "dataset: coco128-val2017 in base, coco128 in new", "--val"),
        ({"letterbox": "square 320x320"}, "letterbox: square 640x640 in base, square 320x320", "--imgsz"),
        ({"imgsz": 320}, "input size: 640 in base, 320 in new", "--imgsz"),
        ({"map50_95": None}, "mAP in one file only (the base)", "--no-accuracy"),
        ({"timing_images": "synthetic 480x640"}, "timing images: coco128-val2017/val in base", "--val"),
        ({"map_images": 32, "map_partial": True}, "mAP images: 128 in base, 32 in new", "--max-images"),
        ({"threads": 2}, "threads: 1 in base, 2 in new", "--threads"),
        ({"streams": 4}, "streams: 1 in base, 4 in new", "--streams"),
        (
            {"backend_settings": {"performance_hint": "THROUGHPUT"}},
            "performance hint: LATENCY in base, THROUGHPUT in new",
            "--performance-hint",
        ),
    ],
)
def test_pairs_that_cannot_be_judged_exit_2_and_name_the_option(tmp_path, changes, why, option):
    common = {"timing_images": "coco128-val2017/val", "map_images": 128, "threads": 1, "imgsz": 640}
    common["backend_settings"] = {"performance_hint": "LATENCY"}
    base = save_results(tmp_path / "b.json", [make_result("openvino", "int8", 10.0, 0.42, **common)])
    other = make_result("openvino", "int8", 10.0, 0.42, seed=3, **common)
    new = save_results(tmp_path / "n.json", [other.model_copy(update=changes)])
    with pytest.raises(InputError, match="not comparable") as raised:
        compare_command(base, new)
    assert why in str(raised.value) and raised.value.exit_code == 2
    assert option in raised.value.hint and "datasets" not in raised.value.hint


def test_threads_unknown_in_an_older_result_are_not_held_against_it():
    base = make_result("openvino", "int8", 10.0, 0.42, threads=None)
    (c,), _ = compare_results([base], [make_result("openvino", "int8", 10.0, 0.42, seed=1, threads=2)])
    assert c.problems == []


def test_noisy_results_warn_and_fail_with_strict(tmp_path, capsys):
    flag = "cpu-load: other processes used 51% of the CPUs during the run (limit 10%)"
    base = save_results(tmp_path / "b.json", [make_result("openvino", "int8", 10.0, 0.42)])
    noisy = save_results(
        tmp_path / "n.json", [make_result("openvino", "int8", 10.0, 0.42, seed=5, flags=[flag])]
    )
    compare_command(base, noisy)
    assert f"noisy result, openvino/int8 batch 1: new: {flag}" in capsys.readouterr().out.replace("\n", "")
    with pytest.raises(CheckFailed, match="--strict") as raised:
        compare_command(base, noisy, strict=True)
    assert raised.value.exit_code == 1


def test_a_runs_unpruned_source_results_never_pair_with_its_model():
    """A run's results hold the source model's (role "source") beside its own: compare judges its own."""
    base = [make_result("openvino", "int8", 10.0, 0.42, seed=0)]
    source = make_result("openvino", "int8", 25.0, 0.45, seed=2, role="source")
    new = [make_result("openvino", "int8", 10.0, 0.42, seed=1), source]
    (comparison,), unpaired = compare_results(base, new)
    assert comparison.map_change == pytest.approx(0.0) and not unpaired
    (alone,), _ = compare_results(base, [source])  # a file of source results alone still compares
    assert alone.map_change == pytest.approx(0.03)
