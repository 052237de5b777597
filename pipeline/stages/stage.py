"""The Stage contract: a stage's work is one function of (its config section, the run's context).

It reads its input artifacts from `ctx.inputs` and the run settings from `ctx.settings`, writes its
outputs inside `ctx.out_dir` (a fresh directory) and returns them as named Artifacts. Caching, resuming,
locking and the atomic rename are the stage runner's (`pipeline.stage_runner`); wiring stages together is
the plan's (`pipeline.plan`). A stage module holds its config section and its work, nothing else: it
imports neither the plan, the config file, the run nor the CLI (the import contract checks this).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Protocol, TypeVar

from core.artifacts import Artifact
from pipeline.stages.base import Section, StageContext

SectionT = TypeVar("SectionT", bound=Section, contravariant=True)
BoundSectionT = TypeVar("BoundSectionT", bound=Section)


class Stage(Protocol[SectionT]):
    def __call__(self, config: SectionT, ctx: StageContext, /) -> dict[str, Artifact]: ...


def bind(stage: Stage[BoundSectionT], config: BoundSectionT) -> Callable[[StageContext], dict[str, Artifact]]:
    """The stage with its config section applied: what a StagePlan runs."""
    return partial(stage, config)
