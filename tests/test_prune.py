"""Pruning: the C2f rewrite is exact, pruning meets its MACs target, pruned checkpoints reload and export."""

from __future__ import annotations

import re
import subprocess
import sys
from copy import deepcopy
from pathlib import Path

import pytest
import torch
from conftest import tiny_detection_model
from typer.main import get_command

from core.checkpoints import save_checkpoint
from core.dataset import load_dataset
from core.errors import InputError
from pipeline.cli import app
from pipeline.cli.prune import command
from pipeline.pruning.config import AutoConfig, MagnitudeConfig, ReconstructConfig
from pipeline.stages.base import RunSettings, StageContext
from pipeline.stages.prune import run

IMGSZ = 64


def _load(path: Path):
    from core.checkpoints import load_detection_model

    return load_detection_model(path)


def _tiny_checkpoint(tmp_path: Path, nc: int) -> Path:
    from conftest import tiny_detection_model

    from core.checkpoints import save_checkpoint

    return save_checkpoint(tiny_detection_model(nc=nc), tmp_path / f"tiny{nc}.pt")


def test_split_c2f_is_numerically_identical(tiny_checkpoint):
    from ultralytics.nn.modules.block import C2f

    from pipeline.modules import C2fSplit, split_c2f

    model = _load(tiny_checkpoint)
    x = torch.rand(2, 3, IMGSZ, IMGSZ)
    expected = model(x)[0]
    split = split_c2f(deepcopy(model))
    assert not any(type(m) is C2f for m in split.modules())
    assert sum(isinstance(m, C2fSplit) for m in split.modules()) == 8
    torch.testing.assert_close(split(x)[0], expected, atol=1e-5, rtol=0)
    fused = deepcopy(split).fuse(verbose=False)  # Ultralytics' BN folding reaches the split convs
    torch.testing.assert_close(fused(x)[0], expected, atol=1e-4, rtol=1e-4)


def test_pruning_meets_macs_target_and_prunes_both_c2f_halves(tiny_checkpoint):
    from pipeline.pruning.magnitude import prune_model

    model = _load(tiny_checkpoint)
    head_widths = [branch[-1].out_channels for branch in (*model.model[-1].cv2, *model.model[-1].cv3)]
    stem_width = model.model[0].conv.out_channels
    options = MagnitudeConfig(round_to=2, max_layer_ratio=0.6, min_channels=0, protect_head=False)
    report = prune_model(model, options, imgsz=IMGSZ, macs=0.5)
    assert report.gflops_ratio <= 0.5
    assert report.params_after < report.params_before
    assert model(torch.rand(1, 3, IMGSZ, IMGSZ))[0].shape[1] == 4 + 6  # boxes + nc, Detect output intact
    assert [b[-1].out_channels for b in (*model.model[-1].cv2, *model.model[-1].cv3)] == head_widths
    halves = [(m.cv0.conv.out_channels, m.cv1.conv.out_channels) for m in model.model if hasattr(m, "cv0")]
    assert any(a < 8 or b < 8 for a, b in halves)  # some half (8 channels in the tiny model) lost channels
    assert model.model[0].conv.out_channels == stem_width  # the protected stem keeps its width


def test_prune_stage_writes_checkpoint_that_reloads_in_a_fresh_process(tiny_checkpoint, tmp_path):
    from core.artifacts import Artifact

    ctx = StageContext(
        out_dir=tmp_path,
        settings=RunSettings(imgsz=IMGSZ, device="cpu", data=None, val=None),
        inputs={"model": Artifact.from_path("checkpoint", tiny_checkpoint)},
    )
    config = MagnitudeConfig(macs=0.6, round_to=2, max_layer_ratio=0.6, min_channels=0, bn_batches=0)
    outputs = run(config, ctx)
    artifact = outputs["model"]
    assert artifact.kind == "checkpoint" and artifact.path == (tmp_path / "pruned.pt").resolve()
    meta = artifact.metadata
    assert meta["gflops_ratio"] <= 0.6 and meta["params_after"] < meta["params_before"]
    code = (
        f"from ultralytics import YOLO; import torch; m = YOLO(r'{artifact.path}').model; "
        "m(torch.zeros(1, 3, 64, 64)); print(sum(p.numel() for p in m.parameters()))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert int(out.stdout.strip().splitlines()[-1]) == meta["params_after"]


def test_pruned_checkpoint_exports_to_onnx(tiny_checkpoint, tmp_path):
    import onnxruntime as ort

    from pipeline.pruning.magnitude import prune_model

    model = _load(tiny_checkpoint)
    prune_model(
        model, MagnitudeConfig(round_to=2, max_layer_ratio=0.6, min_channels=0), imgsz=IMGSZ, macs=0.6
    )
    path = tmp_path / "pruned.onnx"
    torch.onnx.export(model, torch.zeros(1, 3, IMGSZ, IMGSZ), path, opset_version=17, dynamo=False)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = torch.rand(1, 3, IMGSZ, IMGSZ)
    (onnx_out, *_) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    torch.testing.assert_close(torch.from_numpy(onnx_out), model(x)[0], atol=1e-4, rtol=1e-4)


def test_batchnorm_reestimation_and_taylor_use_the_dataset(synth_dataset, tmp_path):
    from pipeline.stages.prune import prune_checkpoint

    source = _tiny_checkpoint(tmp_path, nc=6)
    config = MagnitudeConfig(
        macs=0.6,
        importance="taylor",
        round_to=2,
        max_layer_ratio=0.6,
        min_channels=0,
        bn_batches=2,
        batch=4,
    )
    report = prune_checkpoint(
        source, tmp_path / "p.pt", config, imgsz=IMGSZ, device="cpu", data=synth_dataset
    )
    assert report.gflops_ratio <= 0.6
    pruned = _load(tmp_path / "p.pt")
    bn = pruned.model[2].cv2.bn
    assert not torch.equal(bn.running_var, torch.ones_like(bn.running_var))  # re-estimated, not the init


def _conv_widths(model) -> dict[str, int]:
    return {name: m.out_channels for name, m in model.named_modules() if isinstance(m, torch.nn.Conv2d)}


def test_narrow_layers_and_the_convs_feeding_detect_outputs_keep_their_width(tiny_checkpoint):
    from pipeline.modules import split_c2f
    from pipeline.pruning.magnitude import prune_model

    before = _conv_widths(split_c2f(_load(tiny_checkpoint)))
    model = _load(tiny_checkpoint)
    options = MagnitudeConfig(round_to=2, max_layer_ratio=0.6, min_channels=16)
    assert prune_model(model, options, imgsz=IMGSZ, macs=0.8).gflops_ratio <= 0.8
    after = _conv_widths(model)
    assert any(after[name] < before[name] for name in before)
    assert all(after[name] >= min(before[name], 16) for name in before)
    head = "model.22"
    for branch in ("cv2", "cv3"):
        for level in range(3):
            name = f"{head}.{branch}.{level}.1.conv"  # feeds the final box/class conv: never narrowed
            assert after[name] == before[name]


def test_the_head_is_protected_by_default_only_for_magnitude_pruning(tiny_checkpoint):
    from pipeline.pruning.guards import ignored_layers

    model = _load(tiny_checkpoint)
    head = model.model[-1]
    feeding = {id(branch[-2]) for branch in (*head.cv2, *head.cv3)}  # the convs before the final ones

    def protected(config: ReconstructConfig | MagnitudeConfig) -> bool:
        ignored = ignored_layers(model, [], config.resolved_protect_head())
        return feeding <= {id(m) for m in ignored}

    assert protected(MagnitudeConfig())
    assert not protected(ReconstructConfig())  # its final convs are re-fitted by least squares
    assert protected(ReconstructConfig(protect_head=True))
    assert not protected(MagnitudeConfig(protect_head=False))


@pytest.mark.parametrize("ratio", [0.0, 1.0, 1.5, -0.2])
def test_ratio_outside_zero_one_is_rejected(tiny_checkpoint, tmp_path, ratio):
    out = tmp_path / "pruned.pt"
    with pytest.raises(InputError, match=rf"--macs .*\(got {ratio}\)"):
        command(model=tiny_checkpoint, output=out, macs=ratio)
    assert not out.exists()


def test_cli_exits_2_naming_the_bad_value_and_the_empty_folder(tiny_checkpoint, tmp_path):
    from typer.testing import CliRunner

    from pipeline.cli import app

    out = tmp_path / "pruned.pt"
    runner = CliRunner()
    result = runner.invoke(app, ["prune", "--model", str(tiny_checkpoint), "--macs", "1.5", "-o", str(out)])
    assert result.exit_code == 2 and "1.5" in result.output
    args = ["prune", "--model", str(tiny_checkpoint), "--sensitivity-images", "0", "-o", str(out)]
    result = runner.invoke(app, args)
    assert result.exit_code == 2 and "sensitivity" in result.output
    empty = tmp_path / "no-images"
    empty.mkdir()
    (empty / "notes.txt").write_text("no images here")
    args = ["prune", "--model", str(tiny_checkpoint), "--macs", "0.7", "--data", str(empty), "-o", str(out)]
    result = runner.invoke(app, args)
    assert result.exit_code == 2 and "no images found" in result.output and "no-images" in result.output
    assert not out.exists()


def test_unusable_inputs_fail_clearly_and_write_nothing(tmp_path, synth_dataset, tiny_checkpoint):
    out = tmp_path / "pruned.pt"
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(InputError, match=r"garbage\.pt"):
        command(model=garbage, output=out, macs=0.5)
    not_detector = tmp_path / "conv.pt"
    torch.save({"model": torch.nn.Conv2d(3, 8, 3)}, not_detector)
    with pytest.raises(InputError, match="not an Ultralytics model"):
        command(model=not_detector, output=out, macs=0.5)
    with pytest.raises(InputError, match="not found"):
        command(model=tmp_path / "missing.pt", output=out, macs=0.5)
    with pytest.raises(InputError, match="names lists 6 classes but the model predicts 3"):
        command(model=_tiny_checkpoint(tmp_path, nc=3), output=out, macs=0.5, data=synth_dataset, imgsz=IMGSZ)
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["conv.pt", "garbage.pt", "tiny3.pt"]


@pytest.mark.slow
def test_yolov8n_half_macs_is_at_most_4_4_gflops(shared_dir, tmp_path):
    from pipeline.stages.prune import prune_checkpoint

    config = MagnitudeConfig(macs=0.5, bn_batches=0)
    report = prune_checkpoint(
        shared_dir / "models" / "yolov8n.pt", tmp_path / "p.pt", config, imgsz=640, device="cpu", data=None
    )
    assert round(report.gflops_before, 1) == 8.7
    assert report.gflops_after <= 4.4


def test_prune_stage_records_the_map_before_and_after(tiny_checkpoint, synth_dataset, tmp_path):
    """The mAP each checkpoint scores with PyTorch: the same figure bench reports for torch/fp32."""
    from benchmarks.results import Result
    from core.artifacts import Artifact
    from pipeline.stages.benchmark import BenchConfig, bench_artifact

    settings = RunSettings(imgsz=IMGSZ, device="cpu", data=None, val=synth_dataset)
    config = MagnitudeConfig(macs=0.6, round_to=2, max_layer_ratio=0.6, min_channels=0, bn_batches=0)
    source = Artifact.from_path("checkpoint", tiny_checkpoint)
    meta = run(config, StageContext(tmp_path / "a", settings, {"model": source}))["model"].metadata
    bench = BenchConfig(warmup=0, iters=1, min_seconds=0, throughput_seconds=0.1, memory=False)
    benched: list[Result] = bench_artifact(tiny_checkpoint, synth_dataset, bench, imgsz=IMGSZ)
    assert meta["map50_95_before"] == pytest.approx(benched[0].map50_95, abs=1e-4)
    assert 0 <= meta["map50_95"] <= 1
    recorded = Artifact.from_path("checkpoint", tiny_checkpoint, map50_95=0.4321)  # by an earlier stage
    (tmp_path / "b").mkdir()
    again = run(config, StageContext(tmp_path / "b", settings, {"model": recorded}))["model"].metadata
    assert again["map50_95_before"] == 0.4321 and again["map50_95"] == meta["map50_95"]


def test_pruned_and_reconstructed_yolov8n_exports_with_parity(shared_dir, tmp_path):
    """The default data-aware path on the real model, at a small size: the checkpoint passes the export's
    ONNX-against-PyTorch parity check on real images, and the reconstruction was recorded."""
    from core.checkpoints import checkpoint_metadata
    from pipeline.stages.export import ExportConfig, export_checked
    from pipeline.stages.prune import prune_checkpoint

    data = shared_dir / "datasets" / "coco128" / "data.yaml"
    pruned = tmp_path / "p.pt"
    config = AutoConfig(macs=0.85, calib_images=8, steps=1)
    report = prune_checkpoint(
        shared_dir / "models" / "yolov8n.pt", pruned, config, imgsz=160, device="cpu", data=data
    )
    assert report.gflops_ratio <= 0.85
    assert checkpoint_metadata(pruned)["pruning"]["method"] == "reconstruct"
    onnx_path, parity = export_checked(pruned, tmp_path / "p.onnx", 160, ExportConfig(parity_images=4), data)
    assert parity.passed and parity.images == 4
    assert onnx_path.is_file()


@pytest.mark.parametrize(("imgsz", "expected"), [(640, 320), (704, 352), (480, 480), (384, 384), (32, 32)])
def test_sensitivity_images_are_half_size_down_to_320_px_and_a_whole_multiple_of_the_stride(imgsz, expected):
    from pipeline.pruning.schedule import sensitivity_size

    assert sensitivity_size(imgsz, stride=32) == expected


def _prune_tiny(model, batches: list[torch.Tensor], steps: int, importance=None):
    """Data-aware pruning of the tiny model to 0.8 of its MACs, with guards that suit its narrow layers."""
    import pipeline.pruning.schedule as schedule
    from pipeline.pruning.goals import CountGoal
    from pipeline.pruning.guards import Guards, ignored_layers

    guards = Guards(max_layer_ratio=0.6, min_channels=0, round_to=2)
    return schedule.prune_and_reconstruct(
        model,
        ignored_layers(model, []),
        batches,
        0.8,
        guards,
        goal=CountGoal("macs", IMGSZ),
        steps=steps,
        sensitivity_images=4,
        importance=importance,
    )


def _tiny_batches() -> list[torch.Tensor]:
    torch.manual_seed(0)
    return [torch.rand(2, 3, IMGSZ, IMGSZ) for _ in range(4)]


def test_only_the_last_step_reconstructs_on_every_calibration_batch(tiny_checkpoint, monkeypatch):
    import pipeline.pruning.schedule as schedule
    from core.checkpoints import gflops
    from pipeline.modules import split_c2f

    seen: list[int] = []
    real = schedule.reconstruct

    def recording(model, teacher, batches, kept, **kwargs):
        seen.append(len(batches))
        return real(model, teacher, batches, kept, **kwargs)

    monkeypatch.setattr(schedule, "reconstruct", recording)
    model = split_c2f(_load(tiny_checkpoint))
    before = gflops(model, IMGSZ)
    _prune_tiny(model, _tiny_batches(), steps=3)
    assert seen == [2, 2, 4]  # the steps before the last fit on half the batches, the last on all of them
    assert gflops(model, IMGSZ) <= 0.8 * before * 1.02


def test_the_data_aware_ranking_is_a_swappable_importance(tiny_checkpoint):
    """An importance scoring each channel by its index (the first channels cheapest) takes the first
    channels of every group it cuts; the default variance share takes others."""
    from pipeline.modules import split_c2f
    from pipeline.pruning.importance import VarianceShare

    class FirstChannelsFirst:
        def __call__(self, group, stats) -> torch.Tensor:
            return torch.arange(group.size, dtype=torch.float32)

    by_index = _prune_tiny(split_c2f(_load(tiny_checkpoint)), _tiny_batches(), 1, FirstChannelsFirst())
    cut = {name: kept for name, kept in by_index.kept.items() if kept[0] > 0}
    assert cut  # some convolutions lost channels: each lost its first ones, and kept the rest in order
    assert all(torch.equal(kept, torch.arange(int(kept[0]), int(kept[-1]) + 1)) for kept in cut.values())
    default = _prune_tiny(split_c2f(_load(tiny_checkpoint)), _tiny_batches(), 1, VarianceShare())
    assert any(not torch.equal(default.kept[name], kept) for name, kept in cut.items())


@pytest.mark.parametrize(
    ("guards", "initial", "floor"),
    [((0.5, 32, 8), 64, 32), ((0.5, 32, 8), 24, 24), ((0.75, 20, 8), 64, 24), ((0.6, 0, 2), 16, 8)],
)
def test_one_layer_floor_bounds_both_methods(guards, initial, floor):
    """Magnitude pruning's cap (LayerCap) and the data-aware method's groups read the same Guards."""
    from types import SimpleNamespace

    from pipeline.pruning.guards import Guards
    from pipeline.pruning.importance import LayerCap

    limits = Guards(*guards)
    assert limits.floor(initial) == floor and limits.removable(initial, initial) == initial - floor
    conv = torch.nn.Conv2d(3, initial, 1)
    group = [SimpleNamespace(dep=SimpleNamespace(target=SimpleNamespace(module=conv)))]
    scores = LayerCap(lambda g: torch.rand(initial), {conv: initial}, limits)(group)
    assert int((scores >= LayerCap.PROTECTED).sum()) == floor


def test_reconstructing_a_reconstructed_model_again_leaves_its_folded_intercepts(tiny_checkpoint):
    """A multi-step prune re-fits the same convolutions at every step: each fit must replace the intercept
    the previous one folded into a BatchNorm's running mean, not add to it."""
    from pipeline.modules import split_c2f
    from pipeline.pruning.reconstruct import reconstruct

    model = split_c2f(_load(tiny_checkpoint))
    teacher = deepcopy(model)
    batches = _tiny_batches()
    outcome = _prune_tiny(model, batches, steps=1)

    def running_means() -> list[torch.Tensor]:
        return [m.running_mean.clone() for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]

    once = running_means()
    with torch.no_grad():
        reconstruct(model, teacher, batches, outcome.kept)
    moved = max(float((a - b).abs().max()) for a, b in zip(once, running_means(), strict=True))
    assert moved < 1e-3  # the same fit again; adding the intercepts up moved them by 0.06


def test_prune_val_prints_the_map_before_and_after_with_the_one_point_warning(
    synth_dataset, tmp_path, capsys
):
    """A standalone prune says what it cost, as `edgepipe run` does; its --data help names no run."""
    names = load_dataset(synth_dataset).names
    model = tiny_detection_model(nc=len(names))
    model.names = names
    source = save_checkpoint(model, tmp_path / "six.pt")
    out = tmp_path / "pruned.pt"
    command(model=source, output=out, macs=0.7, val=synth_dataset, imgsz=IMGSZ, round_to=4)
    printed = " ".join(capsys.readouterr().out.split())
    assert "prune: GFLOPs" in printed and "mAP50-95 " in printed and " points)" in printed
    before, after = map(float, re.search(r"mAP50-95 (\d\.\d{4}) -> (\d\.\d{4})", printed).groups())
    assert ("warning: prune lost" in printed) is (before - after > 0.01)
    prune = get_command(app).commands["prune"]
    data_help = next(p.help for p in prune.params if p.name == "data")
    assert "the run" not in data_help
