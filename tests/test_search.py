"""Budget search: budget expressions, selection on recorded timings, and one tiny search end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from core.errors import EXIT_CHECK_FAILED, CheckFailed, InputError
from pipeline.config import load_config
from pipeline.search.budget_expr import parse_budget
from pipeline.search.ladder import check_ladder, ladder
from pipeline.search.select import CandidateTiming, monotone_fit, require_choice, select, upper_bound


def timing(ratio: float, center_ms: float, n: int = 200, spread_ms: float = 0.2) -> CandidateTiming:
    """Recorded samples spread evenly around `center_ms`, as a quiet machine would give them."""
    samples = np.linspace(center_ms - spread_ms, center_ms + spread_ms, n)
    return CandidateTiming(ratio, gflops=8.7 * ratio, params=int(3e6 * ratio), samples_ms=tuple(samples))


def ladder_timings(centers: dict[float, float]) -> list[CandidateTiming]:
    return [timing(ratio, center) for ratio, center in centers.items()]


LINEAR = {1.0: 12.0, 0.9: 11.0, 0.8: 10.0, 0.7: 9.0, 0.6: 8.0, 0.5: 7.0}


@pytest.mark.parametrize(
    ("text", "batch", "statistic", "limit", "strict"),
    [
        ("p90<=12ms", 1, "p90", 12.0, False),
        ("p50<8ms", 1, "p50", 8.0, True),
        (" P95 <= 7.5 ms ", 1, "p95", 7.5, False),
        ("mean<=20", 1, "mean", 20.0, False),
        ("fps>=30", 1, "mean", 1000 / 30, False),
        ("fps>=30", 4, "mean", 4000 / 30, False),  # a batch of 4 every 133 ms is 30 images/s
    ],
)
def test_budget_expressions(text, batch, statistic, limit, strict):
    budget = parse_budget(text, batch)
    assert (budget.statistic, budget.strict) == (statistic, strict)
    assert budget.limit_ms == pytest.approx(limit)
    assert budget.holds(limit - 0.01) and not budget.holds(limit + 0.01)
    assert budget.holds(limit) is not strict


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("fast please", "cannot read the budget"),
        ("p90>=12ms", "latency is a ceiling"),
        ("fps<=30", "fps is a floor"),
        ("p42<=12ms", "unknown statistic 'p42'"),
        ("p90<=12s", "unknown unit 's'"),
        ("p90<=0ms", "must be positive"),
    ],
)
def test_budget_expression_errors_say_what_is_wrong(text, says):
    with pytest.raises(InputError, match=says):
        parse_budget(text)


def test_ladder_spans_from_the_model_as_given_down_to_the_smallest_ratio():
    assert ladder(8, 0.3) == [1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3]
    assert check_ladder([0.5, 0.75]) == [1.0, 0.75, 0.5]
    with pytest.raises(InputError):
        check_ladder([1.2])


def test_upper_bound_of_a_percentile_is_an_order_statistic_above_it():
    samples = tuple(np.random.default_rng(0).gamma(4.0, 2.0, 300))
    p90 = parse_budget("p90<=100ms")
    bound = upper_bound(samples, p90, 0.95)
    assert np.percentile(samples, 90) < bound < max(samples)
    assert bound in samples
    assert upper_bound(samples, p90, 0.99) >= bound
    mean = parse_budget("mean<=100ms")
    assert upper_bound(samples, mean, 0.95) > float(np.mean(samples))


def test_selection_chooses_the_least_pruned_candidate_meeting_the_budget():
    selection = select(ladder_timings(LINEAR), parse_budget("p90<=10.5ms"), margin=0.0)
    assert selection.chosen is not None and selection.chosen.ratio == 0.8
    assert [row.ratio for row in selection.rows] == sorted(LINEAR, reverse=True)
    assert [row.meets for row in selection.rows] == [False, False, True, True, True, True]
    assert require_choice(selection).ratio == 0.8


def test_margin_keeps_a_candidate_too_close_to_the_budget_out():
    budget = parse_budget("p90<=10.4ms")  # 0.8 times at ~10.2 ms: meets it, but with less than 5% room
    assert select(ladder_timings(LINEAR), budget, margin=0.0).chosen.ratio == 0.8
    assert select(ladder_timings(LINEAR), budget, margin=0.05).chosen.ratio == 0.7


def test_confidence_bound_counts_the_spread_of_the_samples():
    """A candidate whose p90 is within the budget, but from few and spread samples, is not chosen."""
    noisy = [timing(1.0, 12.0), timing(0.8, 9.5, n=30, spread_ms=2.0), timing(0.6, 8.0)]
    selection = select(noisy, parse_budget("p90<=11.3ms"), margin=0.0)
    row = selection.rows[1]
    assert row.p90_ms < 11.3 < row.bound_ms
    assert selection.chosen.ratio == 0.6


def test_monotone_fit_pools_a_candidate_that_timed_faster_than_a_smaller_one():
    noisy = {1.0: 12.0, 0.9: 9.7, 0.8: 10.7, 0.7: 9.0}  # 0.9 ran in a quiet moment
    selection = select(ladder_timings(noisy), parse_budget("p90<=10.2ms"), margin=0.0)
    fitted = [row.fitted_ms for row in reversed(selection.rows)]
    assert fitted == sorted(fitted)
    assert selection.rows[1].bound_ms < 10.2 < selection.rows[1].fitted_ms
    assert selection.chosen.ratio == 0.7
    assert monotone_fit([0.5, 1.0, 0.75], [3.0, 5.0, 4.0]) == [3.0, 5.0, 4.0]


def test_no_candidate_meeting_the_budget_names_the_fastest():
    timings = [*ladder_timings(LINEAR), CandidateTiming(0.3, error="pruning stopped at 0.35")]
    selection = select(timings, parse_budget("p90<=5ms"))
    assert selection.chosen is None
    with pytest.raises(CheckFailed) as failure:
        require_choice(selection)
    message = str(failure.value)
    assert "no candidate meets 'p90<=5ms'" in message
    assert "the fastest, MACs ratio 0.5" in message and "p90 7.1" in message
    assert failure.value.exit_code == EXIT_CHECK_FAILED
    assert selection.rows[-1].error and not selection.rows[-1].meets


def test_search_config_replaces_prune_and_needs_its_build(tmp_path, tiny_checkpoint, synth_dataset):
    config = {"model": str(tiny_checkpoint), "data": str(synth_dataset), "imgsz": 64}
    search = {"budget": "p90<=10ms", "target": "onnxruntime", "precision": "fp32"}
    build = [{"target": "onnxruntime", "precision": "fp32"}]
    cases = [
        ({"search": search, "prune": {"macs": 0.5}, "build": build}, "not both"),
        ({"search": search}, "add {target: onnxruntime, precision: fp32} to `build`"),
        ({"search": {**search, "budget": "p90>=10ms"}, "build": build}, "latency is a ceiling"),
    ]
    for extra, says in cases:
        path = tmp_path / "pipeline.yaml"
        path.write_text(yaml.safe_dump({**config, **extra}))
        with pytest.raises(InputError, match=says):
            load_config(path)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory, synth_dataset) -> Path:
    """The tiny YOLOv8 with the synthetic dataset's classes, so that its mAP can be measured."""
    from conftest import tiny_detection_model

    from core.checkpoints import save_checkpoint
    from core.dataset import load_dataset

    names = load_dataset(synth_dataset).names
    model = tiny_detection_model(nc=len(names))
    model.names = names
    return save_checkpoint(model, tmp_path_factory.mktemp("search") / "tiny.pt")


def search_cli(model: Path, data: Path, out: Path, budget: str):
    from pipeline.cli import app

    args = ["search", "--model", str(model), "--data", str(data), "--budget", budget, "-w", str(out)]
    args += ["--target", "onnxruntime", "--precision", "fp32", "--imgsz", "64", "--candidates", "3"]
    args += ["--min-ratio", "0.6", "--round-to", "2", "--finetune-epochs", "0"]
    args += ["--rounds", "2", "--iters", "5", "--min-seconds", "0.05"]
    return CliRunner().invoke(app, args, catch_exceptions=False)


def test_tiny_search_end_to_end_then_a_new_budget_reuses_the_timings(tiny_model, synth_dataset, tmp_path):
    out = tmp_path / "search"
    first = search_cli(tiny_model, synth_dataset, out, "p90<=10000ms")
    assert first.exit_code == 0, first.output
    stages = {s["label"]: s for s in json.loads((out / "manifest.json").read_text())["stages"]}
    assert list(stages)[:3] == ["search:time", "search:select", "search:prune"]
    search = json.loads(Path(stages["search:select"]["artifacts"]["search"]["path"]).read_text())
    rows = search["candidates"]
    assert [r["ratio"] for r in rows] == [1.0, 0.8, 0.6]
    assert all(r["p90_ms"] > 0 and r["meets"] for r in rows)
    assert rows[0]["gflops"] > rows[1]["gflops"] > rows[2]["gflops"]
    assert search["chosen"]["ratio"] == 1.0  # every candidate meets a generous budget: prune nothing
    verdict = json.loads(Path(stages["search:verify"]["artifacts"]["verdict"]["path"]).read_text())
    assert verdict["passed"] and verdict["checks"][0]["criterion"] == "latency p90"
    report = Path(stages["report"]["artifacts"]["report"]["path"])
    assert "Budget search" in report.read_text() and "Budget search" in report.with_suffix(".md").read_text()
    assert (Path(stages["search:select"]["directory"]) / "search.png").read_bytes()[:4] == b"\x89PNG"

    second = search_cli(tiny_model, synth_dataset, out, "p90<=0.0001ms")
    assert second.exit_code == EXIT_CHECK_FAILED
    said = " ".join(second.output.split())
    assert "no candidate meets 'p90<=0.0001ms'" in said and "the fastest, MACs ratio" in said
    stages = {s["label"]: s for s in json.loads((out / "manifest.json").read_text())["stages"]}
    assert stages["search:time"]["status"] == "cached"
