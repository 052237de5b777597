"""Budget schema and evaluation: loading errors name file, entry and key; checks carry their margins."""

from __future__ import annotations

import pytest
from factories import JETSON, cpu_results, make_result

from benchmarks.budgets import Budget, budget_verdicts, load_budgets
from core.errors import InputError


def write(tmp_path, text: str):
    path = tmp_path / "budgets.yaml"
    path.write_text(text)
    return path


def test_load_valid_budgets(tmp_path):
    path = write(
        tmp_path,
        """
budgets:
  - device: "*xeon*"
    target: openvino/int8
    batch: 1
    max_latency_ms: {p90: 20, p99: 30}
    max_e2e_latency_ms: {p50: 25}
    min_throughput_ips: 50
    max_size_mb: 5
    min_map50_95: 0.38
    max_map_drop: 0.01
    baseline: torch/fp32
""",
    )
    (budget,) = load_budgets(path)
    assert budget.max_latency_ms == {"p90": 20, "p99": 30}
    assert budget.baseline == "torch/fp32" and budget.batch == 1


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("budgets:\n  - target: a/b\n    max_size_mb: 1\n  - target: x/y\n    max_sise_mb: 2\n",
         ["budgets[1].max_sise_mb", "unknown key"]),
        ("budgets:\n  - target: a/b\n    max_latency_ms: {p91: 3}\n",
         ["budgets[0].max_latency_ms", "unknown statistic 'p91'", "p99"]),
        ("budgets:\n  - target: a/b\n    max_latency_ms: 50\n",
         ["budgets[0].max_latency_ms", 'e.g. {p90: 20} or "p90<=20ms"']),
        ("budgets:\n  - target: a/b\n    max_latency_ms: 'p90>=50ms'\n", ["a latency budget is a ceiling"]),
        ("budgets:\n  - target: a/b\n    max_size_mb: 5GB\n", ["budgets[0].max_size_mb", "e.g. 5 or 5MB"]),
        ("budgets:\n  - target: a/b\n", ["budgets[0]", "no criterion"]),
        ("budgets:\n  - target: a/b\n    max_map_drop: 0.01\n", ["budgets[0]", "baseline"]),
        ("budgets:\n  - device: '*'\n    max_size_mb: 1\n", ["budgets[0].target", "missing"]),
        ("budgets: [\n", ["invalid YAML"]),
        ("- target: a/b\n", ["budgets:"]),
    ],
)  # fmt: skip
def test_load_errors_name_file_entry_and_key(tmp_path, text, expected):
    path = write(tmp_path, text)
    with pytest.raises(InputError) as info:
        load_budgets(path)
    message = str(info.value)
    assert str(path) in message
    for fragment in expected:
        assert fragment in message
    assert info.value.exit_code == 2
    if "YAML" not in message:  # the YAML parser's error points at the line instead
        assert 'look like - {target: "openvino/int8", max_latency_ms: "p90<=20ms"' in message


@pytest.mark.parametrize(
    "entry",
    [
        'max_latency_ms: "p90<=50ms"',  # the syntax of `search --budget`
        'max_latency: "P90 <= 50 ms"',  # its key without the unit, the statistic in capitals
        "Max_Latency_MS: {P90: 50ms}",
        'max_latency_ms: {p90: "0.05s"}',
        "max_latency_ms: {p90: 50}",  # the mapping form as before
    ],
)
def test_latency_budget_in_the_search_syntax_any_case_and_with_units(tmp_path, entry):
    (budget,) = load_budgets(write(tmp_path, f"budgets:\n  - target: a/b\n    {entry}\n"))
    assert budget.max_latency_ms == {"p90": 50.0}


def test_several_limits_units_of_size_and_throughput(tmp_path):
    text = 'budgets:\n  - target: a/b\n    max_e2e_latency: "p50<=15ms, p99<=30ms"\n'
    text += "    max_size_mb: 5MB\n    MIN_THROUGHPUT_IPS: 30fps\n    max_memory_mb: 300 MB\n"
    (budget,) = load_budgets(write(tmp_path, text))
    assert budget.max_e2e_latency_ms == {"p50": 15.0, "p99": 30.0}
    assert (budget.max_size_mb, budget.min_throughput_ips, budget.max_memory_mb) == (5.0, 30.0, 300.0)


def test_a_budget_can_require_what_the_engine_ran_as():
    fell_back = make_result("openvino", "int8", 10.0, 0.39, ran_as="fp32")
    quantized = make_result("openvino", "int8", 10.0, 0.39, ran_as="int8+fp32", seed=1)
    budget = Budget(target="openvino/int8", ran_as="int8*")
    broken, held = budget_verdicts([budget], [fell_back, quantized])
    (check,) = broken.checks
    assert not broken.passed and held.passed
    assert check.describe() == "ran as BROKEN: measured fp32, limit matches int8*, margin —"


def test_missing_budgets_file(tmp_path):
    with pytest.raises(InputError, match="not found"):
        load_budgets(tmp_path / "absent.yaml")


def test_latency_check_margin_and_message():
    result = make_result("openvino", "int8", 10.0, 0.39)
    limit = result.latency_ms.p90 / 1.01  # broken by 1%
    budget = Budget(target="openvino/int8", max_latency_ms={"p90": limit, "p50": 11})
    (verdict,) = budget_verdicts([budget], [result])
    assert not verdict.passed
    (broken,) = verdict.failures
    assert broken.criterion == "latency p90"
    assert broken.margin == pytest.approx(limit - result.latency_ms.p90)
    assert broken.margin_pct == pytest.approx(-1.0, abs=0.01)
    text = broken.describe()
    assert f"{result.latency_ms.p90:.2f} ms" in text and f"{limit:.2f} ms" in text and "-1.0%" in text


def test_globs_are_case_insensitive_and_batch_filters():
    results = [*cpu_results(), make_result("openvino", "int8", 30.0, 0.39, batch=8)]
    budget = Budget(device="*XEON*", target="openvino/*", batch=1, max_size_mb=10)
    verdicts = budget_verdicts([budget], results)
    assert sorted(v.result.key for v in verdicts) == ["openvino/fp32", "openvino/int8"]
    assert all(v.result.batch == 1 for v in verdicts)


def test_target_glob_takes_either_name_of_an_engine():
    # openvino/fp32 ran as bf16: the budget may name it as configured or as printed in "ran as"
    results = cpu_results()
    for name in ("openvino/fp32", "openvino/bf16", "OpenVINO/FP32"):
        (verdict,) = budget_verdicts([Budget(target=name, max_size_mb=10)], results)
        assert verdict.result.key == "openvino/fp32"
    with pytest.raises(InputError, match="matches no result"):
        budget_verdicts([Budget(target="openvino/fp16", max_size_mb=10)], results)


def test_map_drop_against_baseline_on_same_device():
    results = cpu_results()  # torch/fp32 0.401; onnxruntime/int8 0.385 (drop 0.016)
    budget = Budget(target="*/int8", max_map_drop=0.01, baseline="torch/fp32")
    verdicts = {v.result.key: v for v in budget_verdicts([budget], results)}
    assert verdicts["openvino/int8"].passed
    check = verdicts["onnxruntime/int8"].checks[0]
    assert not check.passed and check.measured == pytest.approx(0.016)


def test_missing_baseline_is_unusable_input():
    results = [make_result("tensorrt", "int8", 3.0, 0.39, device=JETSON), *cpu_results()]
    budget = Budget(device="*orin*", target="tensorrt/int8", max_map_drop=0.01, baseline="torch/fp32")
    with pytest.raises(InputError, match="no 'torch/fp32' result"):
        budget_verdicts([budget], results)


def test_unmeasured_figure_fails_the_budget():
    result = make_result("openvino", "int8", 10.0, None)
    (verdict,) = budget_verdicts([Budget(target="openvino/int8", min_map50_95=0.3)], [result])
    assert not verdict.passed and "not measured" in verdict.checks[0].describe()


def test_throughput_and_size_directions():
    result = make_result("openvino", "int8", 10.0, 0.39, size_mb=1.7)  # 100 img/s
    budget = Budget(target="openvino/int8", min_throughput_ips=120, max_size_mb=2)
    (verdict,) = budget_verdicts([budget], [result])
    throughput, size = verdict.checks
    assert not throughput.passed and throughput.margin == pytest.approx(-20)
    assert size.passed and size.margin == pytest.approx(0.3)
