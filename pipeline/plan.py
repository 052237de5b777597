"""Turn a PipelineConfig into the ordered StagePlans the runner executes."""

from __future__ import annotations

from functools import partial
from pathlib import Path

from core.artifacts import Artifact
from pipeline.config import PipelineConfig, SynthSource
from pipeline.stage_runner import StagePlan
from pipeline.stages import benchmark, build, export, finetune, gate, prune, report, search
from pipeline.stages.base import StageContext

TRAINING_LIBS = ("torch", "ultralytics", "torch-pruning")
EXPORT_LIBS = ("torch", "ultralytics", "onnx", "onnxslim")
BACKEND_LIBS = ("torch", "onnx", "onnxruntime", "openvino", "nncf")


def _synth_stage(section: SynthSource, ctx: StageContext) -> dict[str, Artifact]:
    from pipeline.data.synth import generate_dataset

    data_yaml = generate_dataset(
        ctx.out_dir / "synth", images=section.synth.images, seed=section.synth.seed, imgsz=section.synth.imgsz
    )
    return {"data": Artifact.from_path("dataset", data_yaml.parent, data_yaml=str(data_yaml.name))}


def build_label(entry: build.BuildEntry) -> str:
    return f"{entry.target}/{entry.precision}"


def make_plans(config: PipelineConfig) -> list[StagePlan]:
    """Stages in order: only those whose section is present run; the model flows through them."""
    plans: list[StagePlan] = []
    synth = isinstance(config.data, SynthSource)
    data_reads: tuple[Path, ...] = () if synth else (config.data,)
    val = config.val or (None if synth else config.data)
    val_reads: tuple[Path, ...] = (val,) if val else ()
    if synth:
        plans.append(
            StagePlan(
                "data", "data", partial(_synth_stage, config.data), config.data, provides={"data": "data"}
            )
        )
        data_needs = {"data": "data"}
    else:
        data_needs = {}
    if config.prune:
        plans.append(
            StagePlan(
                "prune",
                "prune",
                partial(prune.run, config.prune),
                config.prune,
                needs={"model": "model", **data_needs},
                provides={"model": "model"},
                libraries=TRAINING_LIBS,
                reads=data_reads,
            )
        )
    if config.search:
        plans += search.plans(config.search, data_needs=data_needs, data_reads=data_reads)
    if config.finetune:
        teacher = {"teacher": "model:source"} if config.finetune.teacher else {}
        plans.append(
            StagePlan(
                "finetune",
                "finetune",
                partial(finetune.run, config.finetune),
                config.finetune,
                needs={"model": "model", **teacher, **data_needs},
                provides={"model": "model"},
                libraries=TRAINING_LIBS,
                reads=data_reads,
            )
        )
    onnx_targets = [e for e in config.build if e.target != "torch"]
    if config.export or onnx_targets:
        section = config.export or export.ExportConfig()
        plans.append(
            StagePlan(
                "export",
                "export",
                partial(export.run, section),
                section,
                needs={"model": "model", **data_needs},
                provides={"onnx": "onnx"},
                libraries=EXPORT_LIBS,
                reads=val_reads,
            )
        )
    for entry in config.build:
        label = build_label(entry)
        needs = {"model": "model", **data_needs}
        if entry.target != "torch":
            needs["onnx"] = "onnx"
        plans.append(
            StagePlan(
                f"build:{label}",
                "build",
                partial(build.run, entry),
                entry,
                needs=needs,
                provides={"engine": f"engine:{label}"},
                libraries=BACKEND_LIBS,
                reads=data_reads + val_reads,
            )
        )
    if config.bench:
        for entry in config.build:
            label = build_label(entry)
            plans.append(
                StagePlan(
                    f"bench:{label}",
                    "bench",
                    partial(benchmark.run, config.bench),
                    config.bench,
                    needs={"engine": f"engine:{label}", **data_needs},
                    provides={"results": f"results:{label}"},
                    libraries=BACKEND_LIBS,
                    reads=val_reads,
                )
            )
    if config.search and config.bench:
        plans.append(search.verify_plan(config.search))
    results_needs = {f"results:{build_label(e)}": f"results:{build_label(e)}" for e in config.build}
    story_needs = {"model:source": "model:source"}
    if config.prune:
        story_needs["model:prune"] = "model:prune"
    if config.search:
        story_needs |= {"model:prune": "model:search:prune", "search": "search"}
    if config.finetune:
        story_needs["model:finetune"] = "model:finetune"
    if config.report and config.bench:
        plans.append(
            StagePlan(
                "report",
                "report",
                partial(report.run, config.report),
                config.report,
                needs={**results_needs, **story_needs},
                provides={"report": "report"},
                libraries=("matplotlib",),
            )
        )
    if config.gate and config.bench:
        plans.append(
            StagePlan(
                "gate",
                "gate",
                partial(gate.run, config.gate),
                config.gate,
                needs=results_needs,
                provides={"gate": "gate"},
            )
        )
    return plans
