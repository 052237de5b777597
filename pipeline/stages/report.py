"""The report stage: a self-contained HTML page (and its Markdown twin) of every result, per device."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import Field

from benchmarks.results import Result
from core.artifacts import Artifact, now_iso, write_atomic
from core.checkpoints import count_params, gflops, load_detection_model
from pipeline.report.html import report_html
from pipeline.report.inputs import results_from_inputs
from pipeline.report.markdown import report_markdown
from pipeline.report.summary import stage_stories, summarize
from pipeline.stages.base import Section, StageContext

STORY_ORDER = ("source", "prune", "finetune")


class ReportConfig(Section):
    """HTML and Markdown report of the benchmark results."""

    title: str = Field("edgepipe report", description="the report's heading")
    baseline: str = Field(
        "torch/fp32", description="target/precision glob whose mAP50-95 the drop column is measured against"
    )
    search: Path | None = Field(None, description="search.json of `edgepipe search`, shown as a section")


def write_report(
    results: list[Result],
    html_path: Path,
    *,
    baseline: str = "torch/fp32",
    title: str = "edgepipe report",
    stories: dict[str, list[dict[str, Any]]] | None = None,
    search: dict[str, Any] | None = None,
) -> tuple[Path, Path]:
    """Write `html_path` and the Markdown beside it (same name, .md); return both paths.

    `search` is the search.json of `edgepipe search`, whose table and plot get a section of their own.
    """
    devices = summarize(results, baseline)
    stories = stories or stage_stories(results)
    html = report_html(title, devices, stories, results, baseline, now_iso(), search)
    markdown_path = Path(html_path).with_suffix(".md")
    write_atomic(Path(html_path), html)
    write_atomic(markdown_path, report_markdown(title, devices, stories, baseline, search))
    return Path(html_path), markdown_path


def _story_from_checkpoints(ctx: StageContext) -> dict[str, list[dict[str, Any]]]:
    """Params, GFLOPs and mAP50-95 of the checkpoint after each stage (inputs "model:<stage>"), when
    results lack them. A checkpoint no stage measured (the source) takes the mAP the next stage measured
    of its input (`map50_95_before`)."""
    models = {key.split(":", 1)[1]: a for key, a in ctx.inputs.items() if key.startswith("model:")}
    if not models:
        return {}
    order = sorted(models, key=lambda s: STORY_ORDER.index(s) if s in STORY_ORDER else len(STORY_ORDER))
    artifacts = [models[stage] for stage in order]
    story = []
    for stage, artifact, following in zip(order, artifacts, [*artifacts[1:], None], strict=True):
        step = {
            "stage": stage,
            **{
                k: artifact.metadata[k]
                for k in ("params", "gflops", "map50_95")
                if artifact.metadata.get(k) is not None
            },
        }
        if "map50_95" not in step and following is not None:
            measured = following.metadata.get("map50_95_before")
            step |= {"map50_95": measured} if measured is not None else {}
        if "params" not in step or "gflops" not in step:
            model = load_detection_model(artifact.path)
            step.setdefault("params", count_params(model))
            step.setdefault("gflops", gflops(model, ctx.settings.imgsz))
        story.append(step)
    return {ctx.settings.model_name: story}


def run(config: ReportConfig, ctx: StageContext) -> dict[str, Artifact]:
    results = results_from_inputs(ctx.inputs)
    stories = stage_stories(results) or _story_from_checkpoints(ctx)
    search = json.loads(config.search.read_text()) if config.search else None
    html, markdown = write_report(
        results,
        ctx.out_dir / "report.html",
        baseline=config.baseline,
        title=config.title,
        stories=stories,
        search=search,
    )
    return {"report": Artifact.from_path("report", html, markdown=markdown.name)}
