"""Budget search: budget expressions, the candidate grid, selection on recorded measurements, and searches
end to end on measured models (a tiny random one for the mechanics, the reference detector for the choice)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from core.errors import EXIT_BAD_INPUT, EXIT_CHECK_FAILED, CheckFailed, InputError
from pipeline.config import load_config
from pipeline.report.search import candidate_rows, row_score, summary_line
from pipeline.search.budget_expr import parse_budget
from pipeline.search.grid import Candidate, check_ratios, check_sizes, grid, model_tags
from pipeline.search.recheck import recheck
from pipeline.search.select import (
    Measurement,
    finetune_order,
    monotone_fit,
    predicted_seconds,
    require_choice,
    select,
    upper_bound,
)
from pipeline.stages.search import SearchConfig


def measured(
    imgsz: int, ratio: float, center_ms: float, map50_95: float | None, n: int = 200, spread_ms: float = 0.2
) -> Measurement:
    """A candidate as a quiet machine records it: samples spread evenly around `center_ms`."""
    samples = np.linspace(center_ms - spread_ms, center_ms + spread_ms, n)
    gflops = 8.7 * ratio * (imgsz / 640) ** 2
    return Measurement(imgsz, ratio, "int8", gflops=gflops, samples_ms=tuple(samples), map50_95=map50_95)


# The shape of COCO yolov8n on a CPU: a smaller input costs less mAP per millisecond saved than pruning.
COCO_LIKE = [
    measured(640, 1.0, 20.0, 0.435),
    measured(640, 0.8, 17.0, 0.290),
    measured(512, 1.0, 14.0, 0.417),
    measured(512, 0.8, 12.0, 0.270),
    measured(384, 1.0, 9.0, 0.382),
    measured(384, 0.8, 8.0, 0.248),
]


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


def test_grid_is_every_size_ratio_and_precision_largest_first():
    candidates = grid([448, 640], [0.8, 1.0, 0.8], ["int8", "bf16"])
    assert candidates[0] == Candidate(640, 1.0, "int8")
    assert len(candidates) == 2 * 2 * 2
    assert [c.imgsz for c in candidates] == [640] * 4 + [448] * 4
    with pytest.raises(InputError, match="input size 500: must be a multiple of 32"):
        check_sizes([640, 500])
    with pytest.raises(InputError, match=r"1\.2"):
        check_ratios([1.2])


def test_upper_bound_of_a_percentile_is_an_order_statistic_above_it():
    samples = tuple(np.random.default_rng(0).gamma(4.0, 2.0, 300))
    p90 = parse_budget("p90<=100ms")
    bound = upper_bound(samples, p90, 0.95)
    assert np.percentile(samples, 90) < bound < max(samples)
    assert bound in samples
    assert upper_bound(samples, p90, 0.99) >= bound
    mean = parse_budget("mean<=100ms")
    assert upper_bound(samples, mean, 0.95) > float(np.mean(samples))


def test_selection_chooses_the_highest_measured_map_that_meets_the_budget():
    selection = select(COCO_LIKE, parse_budget("p90<=15ms"), margin=0.0)
    chosen = require_choice(selection)
    assert (chosen.imgsz, chosen.ratio) == (512, 1.0)  # not 640 at 0.8 MACs, which is slower and worse
    assert [row.meets for row in selection.rows] == [False, False, True, True, True, True]
    knobs = selection.single_knob()
    assert knobs["pruning only"] is None  # no ratio of the 640 px model meets 15 ms
    assert knobs["input size only"] == chosen
    assert {(r.imgsz, r.ratio) for r in selection.rows if r.front} == {
        (640, 1.0),
        (512, 1.0),
        (384, 1.0),
        (384, 0.8),
    }


def test_a_more_pruned_candidate_wins_only_when_it_measures_better():
    """mAP is measured, not assumed: here pruning keeps more mAP than shrinking the input."""
    kind_to_pruning = [
        measured(640, 1.0, 20.0, 0.43),
        measured(640, 0.8, 17.0, 0.42),
        measured(512, 1.0, 14.0, 0.35),
    ]
    chosen = select(kind_to_pruning, parse_budget("p90<=18ms"), margin=0.0).chosen
    assert (chosen.imgsz, chosen.ratio) == (640, 0.8)


def test_margin_keeps_a_candidate_too_close_to_the_budget_out():
    budget = parse_budget("p90<=14.4ms")  # 512/1.0 times at ~14.2 ms: meets it, but with less than 5% room
    assert select(COCO_LIKE, budget, margin=0.0).chosen.imgsz == 512
    assert select(COCO_LIKE, budget, margin=0.05).chosen.imgsz == 384


def test_confidence_bound_counts_the_spread_of_the_samples():
    """A candidate whose p90 is within the budget, but from few and spread samples, is not chosen."""
    noisy = [measured(640, 1.0, 12.0, 0.43), measured(512, 1.0, 9.5, 0.41, n=30, spread_ms=2.0),
             measured(384, 1.0, 8.0, 0.38)]  # fmt: skip
    selection = select(noisy, parse_budget("p90<=11.3ms"), margin=0.0)
    row = selection.rows[1]
    assert row.p90_ms < 11.3 < row.bound_ms
    assert selection.chosen.imgsz == 384


def test_monotone_fit_pools_a_ratio_that_timed_faster_than_a_smaller_one_at_the_same_size():
    noisy = [measured(640, r, ms, 0.4) for r, ms in {1.0: 12.0, 0.9: 9.7, 0.8: 10.7, 0.7: 9.0}.items()]
    selection = select([*noisy, measured(320, 1.0, 5.0, 0.3)], parse_budget("p90<=10.2ms"), margin=0.0)
    at_640 = [row for row in selection.rows if row.imgsz == 640]
    fitted = [row.fitted_ms for row in reversed(at_640)]
    assert fitted == sorted(fitted)
    assert at_640[1].bound_ms < 10.2 < at_640[1].fitted_ms
    assert selection.rows[-1].fitted_ms == selection.rows[-1].bound_ms  # another size: not pooled
    assert (selection.chosen.imgsz, selection.chosen.ratio) == (640, 0.7)
    assert monotone_fit([0.5, 1.0, 0.75], [3.0, 5.0, 4.0]) == [3.0, 5.0, 4.0]


def test_fine_tuned_map_ranks_a_candidate():
    tuned = [*COCO_LIKE[:3], replace(COCO_LIKE[3], finetuned_map50_95=0.43)]
    chosen = select(tuned, parse_budget("p90<=15ms"), margin=0.0).chosen
    assert (chosen.imgsz, chosen.ratio, chosen.score) == (512, 0.8, 0.43)


def test_fine_tuning_goes_to_the_fastest_pruned_candidates_at_each_size_not_the_most_accurate():
    """The old rule fine-tuned the feasible candidates with the highest mAP before training: unpruned ones.
    The new one takes pruned candidates that full recovery would put on the front, fastest first at each
    input size, whatever their mAP before training."""
    candidates = [
        *COCO_LIKE,
        measured(640, 0.5, 14.5, 0.05),  # lowest mAP before training, yet the fastest pruned one at 640
        measured(512, 0.5, 10.5, 0.02),
        measured(320, 1.0, 6.0, 0.363),
        measured(320, 0.8, 5.5, 0.20),  # faster than all: would be on the front even at a lower ceiling
    ]
    selection = select(candidates, parse_budget("p90<=16ms"), margin=0.0)
    order = [(row.imgsz, row.ratio) for row in finetune_order(selection)]
    # 640 × 0.8 misses the budget; 384 × 0.8 could at best reach 384 px's 0.382, which 320 px × 1.0 (faster)
    # nearly has: it stays, since 0.382 > 0.363. Round one: the fastest at each size; round two: the rest.
    assert order == [(640, 0.5), (512, 0.5), (384, 0.8), (320, 0.8), (512, 0.8)]
    assert all(ratio < 1.0 for _, ratio in order)  # never the unpruned model, which the old rule picked
    top_before = max((r for r in selection.rows if r.meets), key=lambda r: r.score or 0.0)
    assert top_before.ratio == 1.0 and (top_before.imgsz, top_before.ratio) not in order

    # A pruned candidate that a faster one beats even at its ceiling never reaches the front: left out.
    dominated = [*candidates, measured(352, 1.0, 7.0, 0.39)]  # faster than 384 × 0.8, above its 0.382
    order = [(row.imgsz, row.ratio) for row in finetune_order(select(dominated, parse_budget("p90<=16ms")))]
    assert (384, 0.8) not in order and (640, 0.5) in order


def test_predicted_fine_tuning_time_scales_with_the_gflops_of_those_done():
    assert predicted_seconds([], 4.0) is None  # the first fine-tune always runs
    assert predicted_seconds([(8.0, 400.0), (4.0, 200.0)], 2.0) == pytest.approx(100.0)
    assert predicted_seconds([(8.0, 400.0)], None) is None


def test_default_input_sizes_are_a_ladder():
    assert SearchConfig(budget="p90<=10ms").sizes() == [640, 512, 448, 384, 320]
    assert SearchConfig(budget="p90<=10ms", imgsz=[320, 640]).sizes() == [640, 320]


def test_the_table_shows_a_partial_map_and_each_pruned_candidates_speed_up_against_its_macs_cut():
    partial = [replace(m, map_images=32, map_total_images=128) for m in COCO_LIKE]
    search = {"target": "openvino", "batch": 1, **select(partial, parse_budget("p90<=15ms")).as_dict()}
    header, rows = candidate_rows(search)
    assert "mAP50-95 (partial, 32 of 128 images)" in header
    column = header.index("speed-up vs MACs cut")
    by_size = {(row[0].rstrip(" ★"), row[1]): row[column] for row in rows}
    assert by_size["640", "1"] == "—"
    assert by_size["640", "0.8"] == f"{20.0 / 17.0:.2f}× vs {1 / 0.8:.2f}×"  # p50 20 -> 17 ms, GFLOPs ÷ 0.8
    whole = {"target": "openvino", "batch": 1, **select(COCO_LIKE, parse_budget("p90<=15ms")).as_dict()}
    assert candidate_rows(whole)[0][6] == "mAP50-95"


def test_the_winners_full_map_is_put_beside_the_partial_one_and_a_rival_flagged():
    partial = [replace(m, map_images=32, map_total_images=128) for m in COCO_LIKE]
    search = select(partial, parse_budget("p90<=15ms"), margin=0.0).as_dict()
    assert (search["chosen"]["imgsz"], search["chosen"]["map50_95"]) == (512, 0.417)
    fine = recheck(search, 0.41)
    assert fine is not None and fine.warning() is None
    assert "whole val split (128 images): 0.4100" in fine.line() and "32 images" in fine.line()
    flagged = recheck(search, 0.37)  # below 384 px's partial 0.382, which also meets the budget
    assert flagged is not None and flagged.as_dict()["rival"] == "384px × 1 MACs, int8"
    assert "may have ranked them wrongly" in (flagged.warning() or "")
    whole = select(COCO_LIKE, parse_budget("p90<=15ms"), margin=0.0).as_dict()
    assert recheck(whole, 0.37) is None  # scored on the whole split: nothing to check


def test_the_winner_is_pruned_at_its_own_input_size_and_old_search_files_at_theirs(tmp_path):
    from pipeline.budget_search import winner_config

    config = SearchConfig(budget="p90<=10ms")
    chosen = {"imgsz": 384, "ratio": 0.7, "precision": "int8", "finetuned_map50_95": None}
    files = tmp_path / "m.pt", tmp_path / "d.yaml", tmp_path / "v.yaml"
    for prune_imgsz, expected in ((None, 384), (640, 640)):  # search.json now; from before (one size)
        search = {"chosen": chosen, "prune_imgsz": prune_imgsz}
        run = winner_config(search, model=files[0], data=files[1], val=files[2], device="cpu", config=config)
        assert run["prune"] == {"macs": 0.7, "round_to": 8, "imgsz": expected} and run["imgsz"] == 384


def test_the_winner_is_written_as_a_pipeline_config_gated_by_the_budget(
    tiny_checkpoint, synth_dataset, tmp_path
):
    """The library writes what `edgepipe search` leaves behind: search.json, a budgets file that holds the
    budget for the winner's target and precision, and a config `edgepipe run` loads."""
    from benchmarks.budgets import load_budgets
    from core.artifacts import Artifact
    from pipeline.budget_search import BUDGET_FILE, SEARCH_FILE, winner_config, write_winner

    config = SearchConfig(
        budget="p90<=10ms", target="onnxruntime", precisions=["fp32"], batch=2, finetune_epochs=2
    )
    search = {"chosen": {"imgsz": 64, "ratio": 0.6, "precision": "fp32", "finetuned_map50_95": 0.3}}
    found = tmp_path / "found.json"
    found.write_text(json.dumps(search))
    chosen = Artifact.from_path("search", found, precision="fp32")
    run = winner_config(
        search, model=tiny_checkpoint, data=synth_dataset, val=synth_dataset, device="cpu", config=config
    )
    written = write_winner(chosen, config, tmp_path / "w", run)
    assert json.loads((tmp_path / "w" / SEARCH_FILE).read_text()) == search
    [budget] = load_budgets(tmp_path / "w" / BUDGET_FILE)
    assert (budget.target, budget.batch, budget.max_latency_ms) == ("onnxruntime/fp32", 2, {"p90": 10.0})
    loaded = load_config(written)
    assert (loaded.imgsz, loaded.prune.macs, loaded.finetune.epochs) == (64, 0.6, 2)
    assert loaded.gate is not None and loaded.gate.budgets == tmp_path / "w" / BUDGET_FILE
    assert [(b.target, b.precision) for b in loaded.build] == [("onnxruntime", "fp32")]


def test_no_candidate_meeting_the_budget_names_the_nearest():
    failed = Measurement(320, 0.3, "int8", error="pruning stopped at 0.35")
    selection = select([*COCO_LIKE, failed], parse_budget("p90<=5ms"))
    assert selection.chosen is None
    with pytest.raises(CheckFailed) as failure:
        require_choice(selection)
    message = str(failure.value)
    assert "no candidate meets 'p90<=5ms'" in message
    assert "the nearest, 384px × 0.8 MACs, int8" in message and "p90 8.1" in message
    assert failure.value.exit_code == EXIT_CHECK_FAILED
    assert selection.rows[-1].error and not selection.rows[-1].meets
    said = summary_line({"target": "openvino", "batch": 1, **selection.as_dict()})
    assert said.endswith(
        "no candidate's 95% upper bound of p90 (monotone in the MACs) plus a 5% margin meets it."
    )


def test_a_row_ranks_by_its_fine_tuned_map_even_when_that_is_zero():
    assert row_score({"map50_95": 0.31, "finetuned_map50_95": None}) == 0.31
    assert row_score({"map50_95": 0.31, "finetuned_map50_95": 0.0}) == 0.0  # not the untrained 0.31


def test_the_summary_names_the_winner_and_the_best_of_each_knob_alone():
    selection = select(COCO_LIKE, parse_budget("p90<=15ms"), margin=0.0)
    said = summary_line({"target": "openvino", "batch": 1, **selection.as_dict()})
    chosen, knobs = selection.chosen, selection.single_knob()
    assert f"{chosen.imgsz} px, {chosen.ratio:g} MACs, int8: mAP50-95 {chosen.score:.4f}" in said
    for name, row in knobs.items():
        shown = "none meets the budget" if row is None else f"{row.imgsz} px, {row.ratio:g} MACs"
        assert f"{name}: {shown}" in said


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


REFERENCE = Path(__file__).parents[1] / "examples" / "reference" / "synth-yolov8n.pt"
QUICK_TIMING = ["--rounds", "2", "--iters", "5", "--min-seconds", "0.05"]


def search_cli(model: Path, data: Path, out: Path, budget: str, *extra: str):
    from pipeline.cli import app

    args = ["search", "--model", str(model), "--data", str(data), "--budget", budget, "-w", str(out)]
    args += ["--target", "onnxruntime", "--precision", "fp32", *QUICK_TIMING, *extra]
    return CliRunner().invoke(app, args, catch_exceptions=False)


def manifest_stages(workdir: Path) -> dict[str, dict]:
    return {s["label"]: s for s in json.loads((workdir / "manifest.json").read_text())["stages"]}


@pytest.mark.parametrize(
    ("extra", "says"),
    [
        (["--budget", "p90>=10ms"], "latency is a ceiling"),
        (["--imgsz", "640,500"], "input size 500: must be a multiple of 32"),
        (["--imgsz", "640,big"], "'big' is not a int"),
        (["--macs", "1.0,1.5"], "1.5"),
    ],
)
def test_bad_search_options_exit_2_naming_the_value(tiny_checkpoint, synth_dataset, tmp_path, extra, says):
    result = search_cli(tiny_checkpoint, synth_dataset, tmp_path / "s", "p90<=10ms", *extra)
    assert result.exit_code == EXIT_BAD_INPUT
    assert says in " ".join(result.output.split())
    assert not (tmp_path / "s").exists()


def test_tiny_search_end_to_end_then_a_new_budget_reuses_the_measurements(
    tiny_model, synth_dataset, tmp_path
):
    out = tmp_path / "search"
    grid_options = ["--imgsz", "64,32", "--macs", "1.0,0.6", "--round-to", "2", "--map-images", "4"]
    first = search_cli(tiny_model, synth_dataset, out, "p90<=10000ms", *grid_options)
    assert first.exit_code == 0, first.output
    assert list(manifest_stages(out)) == [
        "search:prune:0.6@64", "search:prune:0.6@32", "search:measure", "search:select"
    ]  # fmt: skip
    search = json.loads((out / "search.json").read_text())
    rows = search["candidates"]
    assert [(r["imgsz"], r["ratio"]) for r in rows] == [(64, 1.0), (64, 0.6), (32, 1.0), (32, 0.6)]
    assert all(r["p90_ms"] > 0 and r["meets"] and r["map50_95"] is not None for r in rows)
    assert rows[0]["gflops"] > rows[1]["gflops"] and rows[0]["gflops"] > rows[2]["gflops"]
    chosen = search["chosen"]
    assert chosen["map50_95"] == max(r["map50_95"] for r in rows)  # every candidate meets a generous budget
    said = " ".join(first.output.split())
    for header in ("imgsz", "MACs", "p90 bound ms", "mAP50-95 (partial, 4 of"):
        assert header in said
    recheck_record = json.loads((out / "search.json").read_text())["recheck"]  # the winner's run: whole split
    assert recheck_record["map_images"] == 4 and recheck_record["total_images"] > 4
    assert f"whole val split ({recheck_record['total_images']} images)" in said

    winner = yaml.safe_load((out / "search.yaml").read_text())
    assert winner["imgsz"] == chosen["imgsz"]
    assert ("prune" in winner) == (chosen["ratio"] < 1.0)
    assert winner["build"] == [{"target": "onnxruntime", "precision": "fp32"}]
    load_config(out / "search.yaml")  # an ordinary pipeline config
    gate = manifest_stages(out / "winner")["gate"]
    assert gate["artifacts"]["gate"]["metadata"]["passed"]
    report = (out / "winner" / "report.html").read_text()
    assert "Budget search" in report and "mAP against latency" in report
    assert (Path(manifest_stages(out)["search:select"]["directory"]) / "search.png").read_bytes()[
        :4
    ] == b"\x89PNG"

    second = search_cli(tiny_model, synth_dataset, out, "p90<=0.0001ms", *grid_options)
    assert second.exit_code == EXIT_CHECK_FAILED
    said = " ".join(second.output.split())
    assert "no candidate meets 'p90<=0.0001ms'" in said and "the nearest, " in said
    stages = manifest_stages(out)
    assert stages["search:prune:0.6@32"]["status"] == stages["search:measure"]["status"] == "cached"
    pruned = {
        size: json.loads((Path(stages[f"search:prune:0.6@{size}"]["directory"]) / "stage.json").read_text())
        for size in (64, 32)
    }
    assert pruned[64]["key"] != pruned[32]["key"]  # pruned at each size, each cached on its own

    third = search_cli(tiny_model, synth_dataset, out, "p90<=10000ms", "--imgsz", "64", "--macs", "1.0,0.6",
                       "--round-to", "2", "--no-verify")  # fmt: skip
    assert third.exit_code == 0, third.output
    stages = manifest_stages(out)
    statuses = {label: stage["status"] for label, stage in stages.items()}
    assert statuses == {"search:prune:0.6@64": "cached", "search:measure": "ran", "search:select": "ran"}


@pytest.mark.slow
def test_search_on_the_reference_detector_picks_the_measured_best_under_the_budget(synth_dataset, tmp_path):
    """Two input sizes of a trained detector, measured: a loose budget takes the more accurate one, a budget
    between their latencies the one that fits, and the table says why."""
    out, sizes = tmp_path / "search", ["--imgsz", "256,128", "--macs", "1.0", "--no-verify"]
    sizes += ["--rounds", "3", "--iters", "30", "--min-seconds", "0.2"]  # bounds from ~90 samples, not ~10
    loose = search_cli(REFERENCE, synth_dataset, out, "p90<=10000ms", *sizes)
    assert loose.exit_code == 0, loose.output
    rows = {r["imgsz"]: r for r in json.loads((out / "search.json").read_text())["candidates"]}
    assert rows[256]["gflops"] > 3 * rows[128]["gflops"]
    assert rows[256]["p50_ms"] > rows[128]["p50_ms"]
    best = max(rows.values(), key=lambda r: r["map50_95"])
    assert json.loads((out / "search.json").read_text())["chosen"]["imgsz"] == best["imgsz"]
    assert not (out / "winner").exists()

    assert rows[128]["fitted_ms"] < rows[256]["fitted_ms"]
    between = 1.05 * (rows[128]["fitted_ms"] + rows[256]["fitted_ms"]) / 2  # the 5% margin on both
    tight = search_cli(REFERENCE, synth_dataset, out, f"p90<={between:.3f}ms", *sizes)
    assert tight.exit_code == 0, tight.output
    search = json.loads((out / "search.json").read_text())
    assert search["chosen"]["imgsz"] == 128
    assert manifest_stages(out)["search:measure"]["status"] == "cached"
    assert yaml.safe_load((out / "search.yaml").read_text())["imgsz"] == 128


@pytest.mark.slow
def test_search_fine_tunes_the_pruned_candidates_and_chooses_again(tiny_model, synth_dataset, tmp_path):
    out = tmp_path / "search"
    options = ["--imgsz", "64", "--macs", "1.0,0.6", "--round-to", "2", "--no-verify"]
    result = search_cli(
        tiny_model,
        synth_dataset,
        out,
        "p90<=10000ms",
        *options,
        "--finetune-epochs",
        "1",
    )
    assert result.exit_code == 0, result.output
    assert list(manifest_stages(out)) == [
        "search:prune:0.6@64",
        "search:measure",
        "search:select",
        "search:finetune",
    ]
    search = json.loads((out / "search.json").read_text())
    tuned = [r for r in search["candidates"] if r["finetuned_map50_95"] is not None]
    assert [(r["imgsz"], r["ratio"]) for r in tuned] == [(64, 0.6)]  # the pruned one, never the unpruned
    assert search["finetune"]["order"][0]["seconds"] > 0 and search["finetune"]["minutes"] == 30

    def score(row: dict) -> float:
        return row["map50_95"] if row["finetuned_map50_95"] is None else row["finetuned_map50_95"]

    best = max(search["candidates"], key=lambda r: (score(r), -r["fitted_ms"]))
    assert (search["chosen"]["imgsz"], search["chosen"]["ratio"]) == (best["imgsz"], best["ratio"])
    winner = yaml.safe_load((out / "search.yaml").read_text())
    assert ("finetune" in winner) == (search["chosen"]["finetuned_map50_95"] is not None)


def test_a_precision_this_device_cannot_run_is_a_row_not_the_end_of_the_search(
    tiny_model, synth_dataset, tmp_path, monkeypatch
):
    """On a CPU without fp16 units OpenVINO runs an fp16 model as f32: that candidate is not built, with
    the reason, and the fp32 candidate is still measured and chosen. The build is real OpenVINO; only the
    precision the plugin reports is that of such a CPU (this one may have AVX512-FP16)."""
    from targets import openvino

    monkeypatch.setattr(openvino, "hint_read_back", lambda compiled: "f32")
    out = tmp_path / "search"
    result = search_cli(
        tiny_model, synth_dataset, out, "p90<=10000ms", "--imgsz", "64", "--macs", "1.0", "--no-verify",
        "--target", "openvino", "--precision", "fp32,fp16",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    search = json.loads((out / "search.json").read_text())
    rows = {r["precision"]: r for r in search["candidates"]}
    assert "this device cannot run fp16" in rows["fp16"]["error"] and not rows["fp16"]["meets"]
    assert rows["fp32"]["error"] is None and search["chosen"]["precision"] == "fp32"


def test_candidates_of_several_models_are_fitted_and_ranked_on_one_front():
    """Each model's bounds are fitted monotone on their own (a fast pruned YOLO26 is never pooled with a
    slow unpruned YOLOv8), and the front and the choice span both models."""
    v8 = [replace(m, model="v8", family="yolov8") for m in COCO_LIKE[:2]]  # 640 px: 1.0 at 20 ms, 0.8 at 17
    y26 = [
        replace(measured(640, 1.0, 16.0, 0.44), model="y26", family="yolo26"),
        replace(measured(640, 0.8, 21.0, 0.30), model="y26", family="yolo26"),  # slower than its 1.0: noise
    ]
    selection = select([*v8, *y26], parse_budget("p90<=30ms"), margin=0.0)
    rows = {(row.model, row.ratio): row for row in selection.rows}
    assert rows["v8", 1.0].fitted_ms == pytest.approx(rows["v8", 1.0].bound_ms)  # not pooled with y26's
    assert rows["y26", 0.8].fitted_ms == rows["y26", 1.0].fitted_ms  # pooled within its own model
    assert {row.model for row in selection.rows if row.front} == {"y26", "v8"}
    assert selection.chosen is not None and selection.chosen.model == "y26"
    search = {"target": "openvino", "batch": 1, **selection.as_dict()}
    header, table = candidate_rows(search)
    assert header[:2] == ["model", "imgsz"]
    assert {row[0].rstrip(" ★") for row in table} == {"v8 (YOLOv8)", "y26 (YOLO26)"}
    assert [row[0].endswith("★") for row in table].count(True) == 1
    assert "y26 (YOLO26), 640 px, 1 MACs, int8" in summary_line(search)


def test_searched_models_are_named_by_their_files():
    from pipeline.cli.search import model_paths

    assert model_tags([Path("a/yolov8n.pt")]) == [""]  # one model: its records read as before
    assert model_tags([Path("a/best.pt"), Path("b/best.pt"), Path("c/yolo26n.pt")]) == [
        "best", "best-2", "yolo26n"
    ]  # fmt: skip
    assert Candidate(320, 0.8, "int8", "yolo26n").label == "yolo26n 320px × 0.8 MACs, int8"
    assert [c.model for c in grid([64], [1.0], ["fp32"], ("a", "b"))] == ["a", "b"]
    repeated = model_paths(["a/best.pt", "b/best.pt, c/yolo26n.pt", "a/best.pt"])  # each file once
    assert repeated == [Path("a/best.pt"), Path("b/best.pt"), Path("c/yolo26n.pt")]


REFERENCE_26 = REFERENCE.with_name("synth-yolo26n.pt")


@pytest.mark.slow
def test_a_search_across_families_puts_both_on_one_table_and_front(synth_dataset, tmp_path):
    """The YOLOv8n and YOLO26n reference detectors searched together (unpruned, two sizes, fp32 on ONNX
    Runtime): every row names its model and family, the front and the winner come from one selection
    over both, and the winner's config takes the chosen model's file."""
    out = tmp_path / "search"
    models = f"{REFERENCE},{REFERENCE_26}"
    result = search_cli(Path(models), synth_dataset, out, "p90<=10000ms", "--imgsz", "96,64", "--macs", "1.0",
                        "--map-images", "8", "--no-verify")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert list(manifest_stages(out)) == ["search:measure", "search:select"]
    search = json.loads((out / "search.json").read_text())
    rows = search["candidates"]
    assert {(r["model"], r["family"]) for r in rows} == {
        ("synth-yolov8n", "yolov8"),
        ("synth-yolo26n", "yolo26"),
    }
    assert len(rows) == 4 and all(r["map50_95"] is not None and r["fitted_ms"] for r in rows)
    front = [r for r in rows if r["front"]]
    points = [(r["fitted_ms"], r["map50_95"]) for r in rows]
    for r, (ms, score) in zip(rows, points, strict=True):  # on the front: no row of either model dominates it
        dominated = any(t <= ms and m >= score and (t, m) != (ms, score) for t, m in points)
        assert r["front"] == (not dominated), r
    assert front and search["chosen"]["map50_95"] == max(r["map50_95"] for r in rows)
    said = " ".join(result.output.split())
    assert "synth-yolov8n (YOLOv8)" in said and "synth-yolo26n (YOLO26)" in said
    winner = yaml.safe_load((out / "search.yaml").read_text())
    chosen_file = {"synth-yolov8n": REFERENCE, "synth-yolo26n": REFERENCE_26}[search["chosen"]["model"]]
    assert winner["model"] == str(chosen_file.resolve())
