"""Turn a PipelineConfig into the ordered StagePlans the stage runner executes: the wiring of stages."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

from core.artifacts import Artifact
from pipeline.config import PipelineConfig, SynthSource
from pipeline.data.synth import generate_dataset
from pipeline.pruning.config import AutoConfig
from pipeline.stage_runner import StagePlan
from pipeline.stages import benchmark, build, export, finetune, gate, prune, report, search
from pipeline.stages.base import StageContext
from pipeline.stages.search_candidates import MeasureSettings
from pipeline.stages.stage import bind
from targets.base import get_target

TRAINING_LIBS = ("torch", "ultralytics", "torch-pruning")
EXPORT_LIBS = ("torch", "ultralytics", "onnx", "onnxslim")
# A build's and a bench's libraries are its target's (`BuildEntry.libraries`); the search adds those of
# its target in each of its precisions to these.
SEARCH_LIBS = ("torch", "ultralytics", "torch-pruning", "onnx", "onnxslim")
# What each search stage's work depends on; the budget, confidence and margin only steer the cheap
# selection, so a new budget reuses the pruned and measured candidates.
SEARCH_PRUNE_FIELDS = {"macs", "imgsz", "round_to"}
SEARCH_MEASURE_FIELDS = {"target", "precisions", "imgsz", *MeasureSettings.__dataclass_fields__}
SEARCH_SELECT_FIELDS = {"budget", "batch", "confidence", "margin"}
SEARCH_FINETUNE_FIELDS = {
    *SEARCH_SELECT_FIELDS,
    "finetune_epochs",
    "finetune_minutes",
    "finetune_top",
    "teacher",
}


def _synth_stage(section: SynthSource, ctx: StageContext) -> dict[str, Artifact]:
    data_yaml = generate_dataset(
        ctx.out_dir / "synth", images=section.synth.images, seed=section.synth.seed, imgsz=section.synth.imgsz
    )
    return {"data": Artifact.from_path("dataset", data_yaml.parent, data_yaml=str(data_yaml.name))}


def build_label(entry: build.BuildEntry) -> str:
    return f"{entry.target}/{entry.precision}"


def search_libraries(config: search.SearchConfig) -> tuple[str, ...]:
    entries = [build.BuildEntry(target=config.target, precision=p) for p in config.precisions]
    return tuple(dict.fromkeys((*SEARCH_LIBS, *(lib for entry in entries for lib in entry.libraries()))))


def _prune_defaults() -> dict[str, Any]:
    """The prune stage's defaults shape every candidate, so they belong in the search's cache keys."""
    return AutoConfig().model_dump(mode="json")


def search_plans(
    config: search.SearchConfig, *, data_reads: tuple[Path, ...], models: tuple[str, ...] = ("",)
) -> list[StagePlan]:
    """`edgepipe search`: prune, measure, select and (with `finetune_epochs`) fine-tune the best few.

    `models` are the searched models' tags (`pipeline.search.grid.model_tags`), each read from the input
    `search.model_input(tag)`; one model's tag is "", so its stages keep their labels."""

    def key(fields: set[str]) -> dict[str, Any]:
        return {"search": config.model_dump(mode="json", include=fields), "prune": _prune_defaults()}

    libraries = search_libraries(config)
    pruned = [(m, r, s) for m in models for s in config.sizes() for r in config.macs if r < 1.0]
    checkpoints = {
        search.checkpoint_input(r, s, m): f"search:{search.checkpoint_input(r, s, m)}" for m, r, s in pruned
    }
    sources = {search.model_input(m): search.model_input(m) for m in models}
    plans = [
        StagePlan(
            f"search:prune:{model + ':' if model else ''}{ratio:g}@{size}",  # each cached on its own
            "search",
            partial(search.run_prune, config, model, ratio, size),
            {
                "search": {"macs": ratio, "imgsz": size, "round_to": config.round_to},
                "prune": _prune_defaults(),
            },
            needs={search.model_input(model): search.model_input(model)},
            provides={"checkpoint": f"search:{search.checkpoint_input(ratio, size, model)}"},
            libraries=libraries,
            reads=data_reads,
        )
        for model, ratio, size in pruned
    ]
    plans += [
        StagePlan(
            "search:measure",
            "search",
            partial(search.run_measure, config, models),
            key(SEARCH_PRUNE_FIELDS | SEARCH_MEASURE_FIELDS),
            needs={**sources, **checkpoints},
            provides={"measurements": "search:measurements"},
            libraries=libraries,
            reads=data_reads,
        ),
        StagePlan(
            "search:select",
            "search",
            bind(search.run_select, config),
            key(SEARCH_SELECT_FIELDS),
            needs={"measurements": "search:measurements"},
            provides={"search": "search"},
            libraries=("scipy", "matplotlib"),
        ),
    ]
    if config.finetune_epochs:
        plans.append(
            StagePlan(
                "search:finetune",
                "search",
                partial(search.run_finetune, config, models),
                key(SEARCH_FINETUNE_FIELDS),
                needs={**sources, "measurements": "search:measurements", **checkpoints},
                provides={"search": "search"},
                libraries=libraries,
                reads=data_reads,
            )
        )
    return plans


def deployment_plans(
    config: PipelineConfig,
    *,
    role: str = "",
    data_needs: dict[str, str],
    data_reads: tuple[Path, ...],
    val_reads: tuple[Path, ...],
) -> list[StagePlan]:
    """Export, build and bench a model on the run's targets.

    `role` "" is the run's model ("model" in, "onnx", "engine:T/P", "results:T/P" out); "source" is the
    unpruned model, the reference of the report: the same stage functions and sections, "model:source"
    in, ":source" in every name out, and results of the role "source".
    """
    tag = f":{role}" if role else ""
    model = f"model{tag}"
    plans: list[StagePlan] = []
    onnx_targets = [e for e in config.build if get_target(e.target).from_onnx]
    if onnx_targets or (config.export and not role):
        section = config.export or export.ExportConfig()
        plans.append(
            StagePlan(
                f"export{tag}",
                "export",
                bind(export.run, section),
                section,
                needs={"model": model, **data_needs},
                provides={"onnx": f"onnx{tag}"},
                libraries=EXPORT_LIBS,
                reads=val_reads,
            )
        )
    for entry in config.build:
        label = build_label(entry)
        needs = {"model": model, **data_needs}
        if get_target(entry.target).from_onnx:
            needs["onnx"] = f"onnx{tag}"
        plans.append(
            StagePlan(
                f"build{tag}:{label}",
                "build",
                bind(build.run, entry),
                entry,
                needs=needs,
                provides={"engine": f"engine{tag}:{label}"},
                libraries=entry.libraries(),
                reads=data_reads + val_reads,
            )
        )
    if config.bench:
        bench = benchmark.run_source if role else benchmark.run
        for entry in config.build:
            label = build_label(entry)
            plans.append(
                StagePlan(
                    f"bench{tag}:{label}",
                    "bench",
                    bind(bench, config.bench),
                    config.bench,
                    needs={"engine": f"engine{tag}:{label}", **data_needs},
                    provides={"results": f"results{tag}:{label}"},
                    libraries=entry.libraries(),
                    reads=val_reads,
                )
            )
    return plans


def make_plans(config: PipelineConfig) -> list[StagePlan]:
    """Stages in order: only those whose section is present run; the model flows through them."""
    plans: list[StagePlan] = []
    synth = config.data if isinstance(config.data, SynthSource) else None
    data_reads: tuple[Path, ...] = () if isinstance(config.data, SynthSource) else (config.data,)
    val = config.val or (None if isinstance(config.data, SynthSource) else config.data)
    val_reads: tuple[Path, ...] = (val,) if val else ()
    if synth is not None:
        plans.append(StagePlan("data", "data", bind(_synth_stage, synth), synth, provides={"data": "data"}))
        data_needs = {"data": "data"}
    else:
        data_needs = {}
    if config.prune:
        plans.append(
            StagePlan(
                "prune",
                "prune",
                bind(prune.run, config.prune),
                config.prune,
                needs={"model": "model", **data_needs},
                provides={"model": "model"},
                libraries=TRAINING_LIBS,
                reads=data_reads + val_reads,  # val: the mAP before and after
            )
        )
    if config.finetune:
        teacher = {"teacher": "model:source"} if config.finetune.teacher else {}
        plans.append(
            StagePlan(
                "finetune",
                "finetune",
                bind(finetune.run, config.finetune),
                config.finetune,
                needs={"model": "model", **teacher, **data_needs},
                provides={"model": "model"},
                libraries=TRAINING_LIBS,
                reads=data_reads + val_reads,
            )
        )
    deploy = partial(
        deployment_plans, config, data_needs=data_needs, data_reads=data_reads, val_reads=val_reads
    )
    plans += deploy()
    # A model the run changed is compared with the unpruned one on the same targets.
    sources = deploy(role="source") if config.bench and (config.prune or config.finetune) else []
    plans += sources
    results_needs = {f"results:{build_label(e)}": f"results:{build_label(e)}" for e in config.build}
    source_needs = {name: name for p in sources if p.stage == "bench" for name in p.provides.values()}
    story_needs = {"model:source": "model:source"}
    if config.prune:
        story_needs["model:prune"] = "model:prune"
    if config.finetune:
        story_needs["model:finetune"] = "model:finetune"
    if config.report and config.bench:
        plans.append(
            StagePlan(
                "report",
                "report",
                bind(report.run, config.report),
                config.report,
                needs={**results_needs, **source_needs, **story_needs},
                provides={"report": "report"},
                libraries=("matplotlib",),
            )
        )
    if config.gate and config.bench:
        plans.append(
            StagePlan(
                "gate",
                "gate",
                bind(gate.run, config.gate),
                config.gate,
                needs=results_needs,  # the run's model only: the source's results are the report's
                provides={"gate": "gate"},
            )
        )
    return plans
