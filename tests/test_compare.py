"""`edgepipe compare`: latency verdicts on synthetic samples with a known shift and without one."""

from __future__ import annotations

import numpy as np
import pytest
from factories import make_result

from benchmarks.compare import compare_results, latency_change
from benchmarks.results import save_results
from core.errors import CheckFailed
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
