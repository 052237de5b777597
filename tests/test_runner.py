"""The runner's contracts: content-keyed cache, resume after a crash, the work-dir lock, the manifest."""

from __future__ import annotations

import json
import multiprocessing
import time
from functools import partial
from pathlib import Path

import pytest

from core.artifacts import MANIFEST_FILE, Artifact, sha256_path
from core.errors import EdgepipeError, InputError
from pipeline import stage_runner
from pipeline.stage_runner import StagePlan, StageRunner, WorkDir
from pipeline.stages.base import RunSettings, Section, StageContext

SETTINGS = RunSettings(imgsz=64, device="cpu", data=None, val=None)


class Params(Section):
    factor: int = 2


def multiply(section: Params, calls: list[str], ctx: StageContext) -> dict[str, Artifact]:
    """A stage: reads a number from its input file and writes it multiplied."""
    calls.append("multiply")
    value = int(ctx.input("number").path.read_text())
    out = ctx.out_dir / "number.txt"
    out.write_text(str(value * section.factor))
    return {"number": Artifact.from_path("number", out)}


def crash(ctx: StageContext) -> dict[str, Artifact]:
    (ctx.out_dir / "half.txt").write_text("half")
    raise RuntimeError("boom")


def plans(calls: list[str], factor: int = 2, second_factor: int = 3) -> list[StagePlan]:
    return [
        StagePlan(
            "prune",
            "prune",
            partial(multiply, Params(factor=factor), calls),
            Params(factor=factor),
            needs={"number": "number"},
            provides={"number": "number"},
        ),
        StagePlan(
            "export",
            "export",
            partial(multiply, Params(factor=second_factor), calls),
            Params(factor=second_factor),
            needs={"number": "number"},
            provides={"number": "number"},
        ),
    ]


def run(tmp_path: Path, calls: list[str], **kwargs) -> StageRunner:
    source = tmp_path / "source.txt"
    if not source.exists():
        source.write_text("7")
    runner = StageRunner(WorkDir(tmp_path / "work"), SETTINGS)
    runner.seed("number", Artifact.from_path("number", source))
    with runner.workdir.lock():
        runner.workdir.clean_stale()
        runner.execute(
            plans(calls, **{k: v for k, v in kwargs.items() if "factor" in k}),
            **{k: v for k, v in kwargs.items() if "factor" not in k},
        )
    return runner


def test_second_run_with_unchanged_config_is_fully_cached(tmp_path):
    calls: list[str] = []
    first = run(tmp_path, calls)
    assert [o.status for o in first.outcomes] == ["ran", "ran"]
    assert first.available["number"].path.read_text() == "42"
    calls.clear()
    second = run(tmp_path, calls)
    assert calls == []
    assert [o.status for o in second.outcomes] == ["cached", "cached"]
    assert second.available["number"].path.read_text() == "42"


def test_changing_a_later_section_reruns_only_that_stage(tmp_path):
    calls: list[str] = []
    run(tmp_path, calls)
    changed = run(tmp_path, [], second_factor=5)
    assert [o.status for o in changed.outcomes] == ["cached", "ran"]
    assert changed.available["number"].path.read_text() == "70"


def test_changing_an_input_file_reruns_everything(tmp_path):
    run(tmp_path, [])
    (tmp_path / "source.txt").write_text("1")
    again = run(tmp_path, [])
    assert [o.status for o in again.outcomes] == ["ran", "ran"]
    assert again.available["number"].path.read_text() == "6"


def test_from_and_force_rerun(tmp_path):
    run(tmp_path, [])
    assert [o.status for o in run(tmp_path, [], force_from="export").outcomes] == ["cached", "ran"]
    assert [o.status for o in run(tmp_path, [], force=True).outcomes] == ["ran", "ran"]


def test_only_reruns_one_stage_and_needs_earlier_outputs(tmp_path):
    with pytest.raises(InputError, match="no complete cached output"):
        run(tmp_path, [], only="export")
    run(tmp_path, [])
    assert [o.status for o in run(tmp_path, [], only="export").outcomes] == ["cached", "ran"]


def test_crashed_stage_leaves_no_output_and_resumes(tmp_path):
    source = tmp_path / "source.txt"
    source.write_text("7")
    work = WorkDir(tmp_path / "work")
    good = plans([])[0]
    bad = StagePlan("export", "export", crash, {"x": 1}, needs={"number": "number"})
    runner = StageRunner(work, SETTINGS)
    runner.seed("number", Artifact.from_path("number", source))
    with pytest.raises(RuntimeError, match="boom"):
        runner.execute([good, bad])
    stage_dirs = sorted(p.name for p in work.stages.iterdir())
    assert len(stage_dirs) == 1 and stage_dirs[0].startswith("prune-")  # no half-written export dir
    manifest = json.loads((work.root / MANIFEST_FILE).read_text())
    assert [s["label"] for s in manifest["stages"]] == ["prune"]
    resumed = run(tmp_path, [])
    assert [o.status for o in resumed.outcomes] == ["cached", "ran"]


def test_manifest_lists_artifacts_with_sha256(tmp_path):
    runner = run(tmp_path, [])
    manifest = json.loads((runner.workdir.root / MANIFEST_FILE).read_text())
    for stage in manifest["stages"]:
        for artifact in stage["artifacts"].values():
            assert artifact["sha256"] == sha256_path(Path(artifact["path"]))


def test_tampered_input_is_refused(tmp_path):
    runner = run(tmp_path, [])
    runner.available["number"].path.write_text("999")
    runner2 = StageRunner(runner.workdir, SETTINGS)
    runner2.seed("number", runner.available["number"])
    with pytest.raises(InputError, match="sha256 changed"):
        runner2.execute(plans([])[:1])


def _hold_lock(root: str, ready, release) -> None:
    with WorkDir(Path(root)).lock():
        ready.set()
        release.wait(30)


def test_second_run_on_a_locked_workdir_fails_clearly(tmp_path):
    ctx = multiprocessing.get_context("spawn")
    ready, release = ctx.Event(), ctx.Event()
    holder = ctx.Process(target=_hold_lock, args=(str(tmp_path / "work"), ready, release))
    holder.start()
    try:
        assert ready.wait(30)
        start = time.monotonic()
        with pytest.raises(EdgepipeError, match="another edgepipe run holds this work dir"):
            WorkDir(tmp_path / "work").lock(wait_seconds=0.5)
        assert time.monotonic() - start >= 0.4
    finally:
        release.set()
        holder.join(30)
    with WorkDir(tmp_path / "work").lock():  # released: the next run proceeds
        pass


def test_data_fingerprint_follows_labels_but_not_trainer_caches(tmp_path):
    from pipeline.stage_runner import fingerprint_data

    (tmp_path / "labels").mkdir()
    (tmp_path / "labels" / "a.txt").write_text("0 0.5 0.5 0.1 0.1\n")
    (tmp_path / "data.yaml").write_text("names: [a]\ntrain: images\n")
    before = fingerprint_data(tmp_path / "data.yaml")
    (tmp_path / "labels" / "train.cache").write_bytes(b"written by Ultralytics")
    assert fingerprint_data(tmp_path / "data.yaml") == before
    (tmp_path / "labels" / "a.txt").write_text("0 0.5 0.5 0.2 0.1\n")
    assert fingerprint_data(tmp_path / "data.yaml") != before


def test_dataset_artifact_survives_trainer_caches_but_not_edits(tmp_path):
    (tmp_path / "labels").mkdir()
    (tmp_path / "labels" / "a.txt").write_text("0 0.5 0.5 0.1 0.1\n")
    dataset = Artifact.from_path("dataset", tmp_path)
    (tmp_path / "labels" / "train.cache").write_bytes(b"written by Ultralytics")
    dataset.verify()
    (tmp_path / "labels" / "a.txt").write_text("1 0.5 0.5 0.1 0.1\n")
    with pytest.raises(InputError, match="sha256 changed"):
        dataset.verify()


def test_a_change_to_edgepipes_code_reruns_every_stage(tmp_path, monkeypatch):
    run(tmp_path, [])
    monkeypatch.setattr(stage_runner, "source_digest", lambda: "edited")
    again = run(tmp_path, [])
    assert [o.status for o in again.outcomes] == ["ran", "ran"]


def test_the_source_digest_follows_file_contents_and_names(tmp_path):
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "sub" / "a.py").write_text("x = 1\n")
    (package / "notes.txt").write_text("not code")
    first = stage_runner.digest_sources([package])
    (package / "notes.txt").write_text("still not code")
    assert stage_runner.digest_sources([package]) == first
    (package / "sub" / "a.py").write_text("x = 2\n")
    edited = stage_runner.digest_sources([package])
    assert edited != first
    (package / "sub" / "a.py").rename(package / "sub" / "b.py")
    assert stage_runner.digest_sources([package]) not in {first, edited}
    assert len(stage_runner.source_digest()) == 64
