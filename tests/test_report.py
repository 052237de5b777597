"""The report: self-contained HTML (checked in headless Chromium) and Markdown, per device."""

from __future__ import annotations

import base64
import io
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest
from factories import JETSON, cpu_results, make_result, source_results
from PIL import Image

from benchmarks.results import save_results
from core.artifacts import Artifact
from pipeline.cli import report as report_cli
from pipeline.report.summary import SourceGain, pareto_front, summarize
from pipeline.stages import report
from pipeline.stages.base import RunSettings, StageContext


class Sources(HTMLParser):
    """Every src/href in a page, and the <script> tags."""

    def __init__(self) -> None:
        super().__init__()
        self.images: list[str] = []
        self.links: list[str] = []
        self.scripts = 0

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.images.append(attrs.get("src") or "")
        self.links += [v for k, v in attrs.items() if k in {"href", "src"} and v]
        self.scripts += tag == "script"


def decode_png(src: str) -> Image.Image:
    prefix = "data:image/png;base64,"
    assert src.startswith(prefix), src[:40]
    image = Image.open(io.BytesIO(base64.b64decode(src[len(prefix) :])))
    image.load()
    return image.convert("RGB")


@pytest.fixture(scope="module")
def two_device_report(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("report")
    jetson = [
        make_result("torch", "fp32", 28.0, 0.401, device=JETSON, seed=7),
        make_result("tensorrt", "fp16", 4.1, 0.400, device=JETSON, seed=8),
        make_result("tensorrt", "int8", 2.6, 0.389, device=JETSON, seed=9),
    ]
    inputs = {
        f"results:{r.role or 'final'}:{r.device_name}/{r.key}": Artifact.from_path(
            "results", save_results(tmp / f"r{i}.json", [r])
        )
        for i, r in enumerate([*cpu_results(), *source_results(), *jetson])
    }
    out = tmp / "out"
    out.mkdir()
    ctx = StageContext(out, RunSettings(imgsz=64, device="cpu", data=None, val=None), inputs)
    artifact = report.run(report.ReportConfig(), ctx)["report"]
    assert artifact.kind == "report" and artifact.path == (out / "report.html").resolve()
    return out / "report.html"


def test_pareto_front_keeps_only_undominated_points():
    points = [(10, 0.39), (14, 0.385), (18, 0.40), (25, 0.401), (40, 0.401)]
    assert pareto_front(points) == {0, 2, 3}


def test_html_is_self_contained_with_every_plot(two_device_report):
    page = Sources()
    page.feed(two_device_report.read_text())
    assert page.scripts == 0
    assert not [link for link in page.links if not link.startswith("data:")]
    assert not re.search(r"https?://|@import|url\(", two_device_report.read_text())
    assert len(page.images) == 2 * 2 + 1  # per device latency-vs-mAP and CDF, plus the stage story
    for src in page.images:
        image = decode_png(src)
        assert image.width > 300 and image.height > 200
        assert len(image.getcolors(maxcolors=1 << 16) or range(1 << 16)) > 50  # a drawing, not a blank


def test_report_tables_and_markdown(two_device_report):
    html = two_device_report.read_text()
    for text in ("Intel Xeon Platinum 8480+", "NVIDIA Jetson AGX Orin 64GB", "tensorrt/int8", "bf16-hint"):
        assert text in html
    assert 'title="requested fp32, ran as bf16"' in html
    # threads per row, never one result's threads for the whole device
    assert "<td>640 px, 1 thr, 1 str</td>" in html and "threads_used" not in html
    markdown = two_device_report.with_suffix(".md").read_text()
    int8_row = next(line for line in markdown.splitlines() if line.startswith("| tensorrt/int8"))
    cells = [c.strip() for c in int8_row.strip("|").split("|")]
    assert cells[1] == "int8" and cells[10] == "0.3890"
    assert cells[3] == "640 px, 1 thr, 1 str"  # how it was measured
    assert cells[7] == "5.60"  # e2e p50
    assert cells[12] == "-0.0120"  # against torch/fp32 on the same Jetson, not the CPU's
    assert cells[13] == "10.77×"  # no unpruned model benched on the Jetson: against torch/fp32 there
    assert cells[14] == "★"  # fastest on its device is always on the front
    assert "mAP on coco128-val2017 (square 640x640)" in markdown
    assert "Model: yolov8n-pruned (YOLOv8)." in markdown and "Model: yolov8n-pruned (YOLOv8). mAP" in html
    assert "The pipeline's story" in markdown and "| prune | 1.480 | 4.30 |" in markdown


def markdown_row(markdown: str, after: str, first_cell: str) -> list[str]:
    """The cells of the first row starting with `first_cell` below the line `after`."""
    lines = markdown.split(after, 1)[1].splitlines()
    row = next(line for line in lines if line.startswith(f"| {first_cell} "))
    return [c.strip() for c in row.strip("|").split("|")]


def test_what_pruning_bought_and_cost_against_the_unpruned_model():
    final = make_result("openvino", "int8", 9.5, 0.392, size_mb=1.7)
    source = make_result("openvino", "int8", 21.9, 0.425, size_mb=3.4, role="source")
    gain = SourceGain(final, source)
    assert gain.speedup == pytest.approx(21.9 / 9.5)
    assert gain.map_points == pytest.approx(-3.3)
    assert gain.size_ratio == pytest.approx(0.5)
    no_map = SourceGain(make_result("openvino", "int8", 9.5, None), source)
    assert no_map.map_points is None


def test_summary_pairs_each_result_with_the_unpruned_one_of_its_engine_device_and_batch():
    results = [*cpu_results(), *source_results()]
    results.append(make_result("openvino", "int8", 30.0, 0.425, device=JETSON, role="source"))
    (cpu,) = summarize(results, "torch/fp32")  # the sources are no rows of their own, nor a device
    assert len(cpu.rows) == len(cpu_results()) and not any(row.result.is_source for row in cpu.rows)
    by_key = {row.result.key: row for row in cpu.rows}
    int8 = by_key["openvino/int8"].gain
    assert int8 is not None and int8.source.device_name == cpu.name and int8.source.is_source
    assert by_key["openvino/fp32"].gain is None  # the source was not benched there
    assert [g.final.key for g in cpu.gains] == ["openvino/int8", "onnxruntime/fp32", "torch/fp32"]
    assert by_key["openvino/int8"].map_delta == pytest.approx(0.392 - 0.401)  # the run's own torch/fp32


def test_report_tables_against_the_unpruned_model(two_device_report):
    markdown = two_device_report.with_suffix(".md").read_text()
    assert markdown.count("### Against the unpruned model") == 1  # the CPU only: no source on the Jetson
    header = "### Against the unpruned model"
    assert markdown_row(markdown, header, "openvino/int8") == [
        "openvino/int8", "1", "21.90", "9.50", "2.31×", "0.4250", "0.3920", "-3.30", "3.40", "1.70", "0.50×",
    ]  # fmt: skip
    assert markdown_row(markdown, header, "torch/fp32")[4:8] == ["2.30×", "0.4330", "0.4010", "-3.20"]
    assert markdown_row(markdown, "## Intel", "openvino/int8")[13] == "2.31×"  # the results' speed-up column
    html = two_device_report.read_text()
    assert "<h3>Against the unpruned model</h3>" in html and '<td class="loss">-3.30</td>' in html


def test_report_command_writes_html_and_markdown(tmp_path):
    import typer
    from typer.testing import CliRunner

    app = typer.Typer()
    app.command("report")(report_cli.command)
    app.command("version")(lambda: None)
    results = save_results(tmp_path / "results.json", cpu_results())
    outcome = CliRunner().invoke(app, ["report", str(results), "-o", str(tmp_path / "r.html"), "--baseline",
                                       "onnxruntime/fp32"])  # fmt: skip
    assert outcome.exit_code == 0, outcome.output
    assert (tmp_path / "r.html").is_file()
    assert "Δ mAP50-95 vs onnxruntime/fp32" in (tmp_path / "r.md").read_text()


def test_report_says_which_nms_the_e2e_latency_was_timed_with(tmp_path):
    import json

    from typer.testing import CliRunner

    from pipeline.cli import app as edgepipe

    deployed = {"conf": 0.25, "iou": 0.7, "max_det": 300, "multi_label": False, "agnostic": False}
    new = save_results(
        tmp_path / "new.json", [make_result("openvino", "int8", 20.0, 0.43, e2e_thresholds=deployed)]
    )
    old = json.loads(new.read_text())
    old["schema"] = 2
    del old["results"][0]["e2e_thresholds"]
    (tmp_path / "old.json").write_text(json.dumps(old))
    for name, words in (
        ("new", "NMS at conf 0.25, iou 0.7, max_det 300, single-label."),
        ("old", "NMS at evaluation thresholds (conf 0.001, multi-label)."),
    ):
        out = tmp_path / f"{name}.html"
        outcome = CliRunner().invoke(edgepipe, ["report", str(tmp_path / f"{name}.json"), "-o", str(out)])
        assert outcome.exit_code == 0, outcome.output
        assert f"End-to-end latency timed with {words}" in out.with_suffix(".md").read_text()
        assert words.removesuffix(".") in out.read_text()


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium is not installed (apt-get install chromium)")
def test_report_renders_in_headless_chromium(two_device_report, tmp_path):
    common = [
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", "--enable-logging=stderr", "--v=0",
    ]  # fmt: skip
    url = two_device_report.resolve().as_uri()
    shot = tmp_path / "shot.png"
    run = subprocess.run(
        [*common, f"--user-data-dir={tmp_path / 'profile-shot'}", f"--screenshot={shot}",
         "--window-size=1280,2000", url],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert shot.is_file(), run.stderr[-2000:]
    console = [line for line in run.stderr.splitlines() if ":CONSOLE" in line]
    assert not console, console
    image = Image.open(shot).convert("RGB")
    colours = image.getcolors(maxcolors=1 << 20)
    assert colours is not None and len(colours) > 500
    pixels = list(image.getdata())
    assert sum(p != (255, 255, 255) for p in pixels) / len(pixels) > 0.2
    assert (31, 119, 180) in {colour for _, colour in colours}  # tab10 blue: the plots were drawn

    dom = subprocess.run(
        [*common, f"--user-data-dir={tmp_path / 'profile-dom'}", "--dump-dom", url],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    page = Sources()
    page.feed(dom.stdout)
    assert len(page.images) == 5
    for src in page.images:
        decode_png(src)
    text = re.sub(r"<[^>]+>", " ", dom.stdout)
    assert "Against the unpruned model" in text
    for shown in ("2.31×", "-3.30", "0.50×"):  # speed-up, mAP change in points, size ratio of openvino/int8
        assert shown in text, shown
    assert not [line for line in dom.stderr.splitlines() if ":CONSOLE" in line]


@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium is not installed (apt-get install chromium)")
def test_every_table_fits_a_1280_px_page(two_device_report, tmp_path):
    """Rendered 1280 px wide, no table is wider than its box (no column is cut or scrolled away)."""
    measure = (
        "<script>document.addEventListener('DOMContentLoaded', () => { document.body.dataset.overflow = "
        "[...document.querySelectorAll('table')].map(t => t.parentElement.clientWidth < t.scrollWidth ? "
        "1 : 0).join(''); });</script>"
    )
    page = tmp_path / "measured.html"
    page.write_text(two_device_report.read_text().replace("</head>", measure + "</head>"))
    dom = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1280,2000", "--dump-dom", page.as_uri()],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    overflow = re.search(r'data-overflow="([01]*)"', dom.stdout)
    assert overflow is not None, dom.stderr[-2000:]
    assert overflow.group(1) == "0000"  # the CPU's results and unpruned tables, the Jetson's, the story


def test_story_from_the_checkpoints_when_results_lack_it(tmp_path, tiny_checkpoint):
    result = make_result("torch", "fp32", 5.0, 0.3)
    assert not result.stage_story
    inputs = {
        "results:torch/fp32": Artifact.from_path("results", save_results(tmp_path / "r.json", [result])),
        "model:prune": Artifact.from_path("checkpoint", tiny_checkpoint, params=1000, gflops=0.01),
        "model:source": Artifact.from_path("checkpoint", tiny_checkpoint),
    }
    out = tmp_path / "out"
    out.mkdir()
    ctx = StageContext(
        out, RunSettings(imgsz=64, device="cpu", data=None, val=None, model_name="tiny"), inputs
    )
    report.run(report.ReportConfig(title="story"), ctx)
    markdown = (out / "report.md").read_text()
    assert "## The pipeline's story: tiny" in markdown
    stages = [
        line.split("|")[1].strip() for line in markdown.split("The pipeline's story")[1].splitlines()[4:6]
    ]
    assert stages == ["source", "prune"]  # pipeline order, whatever order the inputs came in
    assert "| prune | 0.001 | 0.01 | — |" in markdown  # from the checkpoint's metadata


def test_story_takes_the_map_each_stage_measured(tmp_path, tiny_checkpoint):
    """prune and finetune record the mAP of their input and output; the source's is prune's input's."""
    result = make_result("torch", "fp32", 5.0, 0.3)
    measured = {"params": 1000, "gflops": 0.01}
    inputs = {
        "results:torch/fp32": Artifact.from_path("results", save_results(tmp_path / "r.json", [result])),
        "model:source": Artifact.from_path("checkpoint", tiny_checkpoint),
        "model:prune": Artifact.from_path(
            "checkpoint", tiny_checkpoint, **measured, map50_95_before=0.4359, map50_95=0.0891
        ),
        "model:finetune": Artifact.from_path(
            "checkpoint", tiny_checkpoint, **measured, map50_95_before=0.0891, map50_95=0.4102
        ),
    }
    out = tmp_path / "out"
    out.mkdir()
    ctx = StageContext(out, RunSettings(imgsz=64, device="cpu", data=None, val=None, model_name="m"), inputs)
    report.run(report.ReportConfig(), ctx)
    story = (out / "report.md").read_text().split("The pipeline's story")[1]
    maps = [line.split("|")[4].strip() for line in story.splitlines()[4:7]]
    assert maps == ["0.4359", "0.0891", "0.4102"]
    html = (out / "report.html").read_text()
    assert "<td>0.4359</td></tr>" in html and "<td>0.4102</td></tr>" in html


def test_what_the_build_checked_is_a_note_under_the_device_table():
    from pipeline.report.markdown import report_markdown
    from pipeline.report.summary import summarize
    from pipeline.stages.benchmark import build_notes

    meta = {"precision": "int8", "accuracy_control": {
        "val_data": "val.yaml", "met": True, "fell_back": True, "bound": "1% of FP32 mAP50-95",
        "max_map_drop": 0.004, "layer_groups": 87, "float_layers": ["/model.0", "/model.2/cv1"],
        "fp32": {"map50_95": 0.40}, "final": {"map50_95": 0.398, "drop": 0.002, "float_layers": 2},
    }}  # fmt: skip
    notes = build_notes(meta)
    assert notes == [
        "INT8 checked on val.yaml: mAP50-95 0.3980 vs fp32 0.4000, drop +0.0020 within the bound 0.0040 "
        "(1% of FP32 mAP50-95); fell back: 2 of 87 layer groups in float (/model.0, /model.2/cv1)"
    ]
    results = [make_result("onnxruntime", "int8", 4.0, 0.398, batch=b, build_notes=notes) for b in (1, 4)]
    (device,) = summarize([make_result("onnxruntime", "fp32", 8.0, 0.40), *results], "onnxruntime/fp32")
    assert device.notes.count(f"onnxruntime/int8: {notes[0]}") == 1  # once per engine, not per batch
    assert f"> onnxruntime/int8: {notes[0]}" in report_markdown("r", [device], {}, "onnxruntime/fp32")


def test_map_axis_starts_a_little_below_the_lowest_map_and_is_never_too_short():
    from pipeline.report.plots import MIN_MAP_SPAN, map_limits

    low, high = map_limits([0.400, 0.397])
    assert high - low == pytest.approx(MIN_MAP_SPAN) and low < 0.397 and high > 0.400
    assert (0.400 - 0.397) / (high - low) < 0.1  # 0.003 apart is a small step, not a cliff
    low, high = map_limits([0.0891, 0.4359])
    assert 0.0 < low < 0.0891 and 0.4359 < high < 0.5
    assert map_limits([0.01, 0.02])[0] == 0.0 and map_limits([0.99, 0.995])[1] == 1.0
    assert map_limits([0.99, 0.995])[0] == pytest.approx(1.0 - MIN_MAP_SPAN)


@pytest.mark.parametrize(("p50s", "scale"), [([40.0, 25.0, 9.5], "linear"), ([28.0, 4.1, 2.6], "log")])
def test_both_latency_plots_share_one_scale_rule(p50s, scale):
    from pipeline.report import plots

    results = [make_result(t, "fp32", p50, 0.40 - i * 0.001) for i, (t, p50) in enumerate(zip(
        ("torch", "onnxruntime", "openvino"), p50s, strict=True))]  # fmt: skip
    (device,) = summarize(results, "torch/fp32")
    assert plots.latency_scale(device) == scale
    pareto, cdf = plots.latency_vs_map_figure(device), plots.latency_cdf_figure(device)
    assert pareto.axes[0].get_xscale() == cdf.axes[0].get_xscale() == scale
    low, high = pareto.axes[0].get_ylim()
    assert high - low == pytest.approx(plots.MIN_MAP_SPAN) and low < 0.398 < 0.400 < high
