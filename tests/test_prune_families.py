"""YOLO11 and YOLO26 through the data-aware pruner: MACs target, reload, export parity, head consistency.

The structure is checked on detectors built from Ultralytics' own YAMLs with random weights; the reload
and export parity on the committed synthetic reference detectors (examples/reference). YOLO26's
one-to-one head is a copy of its one-to-many head when built, so after pruning the two branches give the
same outputs only if the same channels were kept in both and both were re-fitted alike.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

IMGSZ = 128
REFERENCE = Path(__file__).resolve().parents[1] / "examples" / "reference"


def _from_yaml(family: str, tmp_path: Path, data: Path | None = None) -> Path:
    """A randomly initialised detector; with `data`, its BatchNorm statistics measured on those images
    (a fresh model's unit statistics make deep activations vanish, which no trained model has)."""
    from ultralytics.nn.tasks import DetectionModel

    from core.checkpoints import save_checkpoint
    from pipeline.pruning.data import calibration_set
    from pipeline.pruning.magnitude import recalibrate_batchnorm

    torch.manual_seed(0)
    model = DetectionModel(f"{family}.yaml", nc=6, verbose=False)
    model.names = {i: f"shape{i}" for i in range(6)}
    if data is not None:
        images = calibration_set(data, IMGSZ, 8).batches(4)
        recalibrate_batchnorm(model, [{"img": torch.from_numpy(b)} for b in images])
    return save_checkpoint(model.eval(), tmp_path / f"{family}.pt")


@pytest.fixture(scope="module", params=["yolo11n", "yolo26n"])
def pruned(request, tmp_path_factory, synth_dataset) -> tuple[str, Path, Path, object]:
    """(family, source checkpoint, pruned checkpoint, prune report) at 0.7 of the MACs."""
    from pipeline.pruning.config import AutoConfig
    from pipeline.stages.prune import prune_checkpoint

    tmp_path = tmp_path_factory.mktemp(request.param)
    source = _from_yaml(request.param, tmp_path, synth_dataset)
    out = tmp_path / "pruned.pt"
    config = AutoConfig(macs=0.7, calib_images=8, sensitivity_images=4, steps=2)
    report = prune_checkpoint(source, out, config, imgsz=IMGSZ, device="cpu", data=synth_dataset)
    return request.param, source, out, report


@pytest.mark.slow
@pytest.mark.parametrize("family", ["yolo11n", "yolo26n"])
def test_reference_detectors_prune_to_0_7_of_the_macs_reload_with_plain_yolo_and_export_with_parity(
    family, synth_dataset, tmp_path
):
    """Trained weights here: a pruned model with random weights is a working function of its calibration
    images only, and its saturated scores make an end-to-end top-k a matter of ties."""
    from pipeline.pruning.config import AutoConfig
    from pipeline.stages.export import ExportConfig, export_checked
    from pipeline.stages.prune import prune_checkpoint

    source = REFERENCE / f"synth-{family}.pt"
    checkpoint = tmp_path / "pruned.pt"
    config = AutoConfig(macs=0.7, calib_images=16, sensitivity_images=4, steps=2)
    report = prune_checkpoint(source, checkpoint, config, imgsz=160, device="cpu", data=synth_dataset)
    assert report.extra["method"] == "reconstruct"
    assert report.gflops_ratio <= 0.71
    assert report.params_after < report.params_before
    code = (
        "import pipeline, torch; from ultralytics import YOLO; "
        f"m = YOLO({str(checkpoint)!r}).model.float().eval(); "
        "print(*m(torch.rand(1, 3, 160, 160))[0].shape, sep=',')"
    )
    shape = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()[-1]
    assert shape == ("1,300,6" if family == "yolo26n" else "1,10,525")
    _, parity = export_checked(
        checkpoint, tmp_path / "p.onnx", 160, ExportConfig(parity_images=8), synth_dataset
    )
    assert parity.passed


@pytest.mark.slow
def test_attention_keeps_whole_heads_and_its_neighbours_prune(pruned):
    from ultralytics.nn.modules.block import Attention, C3k

    from core.checkpoints import load_detection_model

    _, source, checkpoint, _ = pruned
    before = load_detection_model(source)
    after = load_detection_model(checkpoint)
    attention = [m for m in after.modules() if isinstance(m, Attention)]
    original = [m for m in before.modules() if isinstance(m, Attention)]
    assert attention and len(attention) == len(original)
    for new, old in zip(attention, original, strict=True):
        assert (new.num_heads, new.key_dim, new.head_dim) == (old.num_heads, old.key_dim, old.head_dim)
        assert new.qkv.conv.out_channels == new.num_heads * (2 * new.key_dim + new.head_dim)
        assert new.proj.conv.in_channels == new.num_heads * new.head_dim == new.qkv.conv.in_channels
    widths = {n: m.out_channels for n, m in before.named_modules() if isinstance(m, torch.nn.Conv2d)}
    pruned_names = {
        n
        for n, m in after.named_modules()
        if isinstance(m, torch.nn.Conv2d) and m.out_channels < widths.get(n, 0)
    }
    nested = {n for n, m in after.named_modules() if isinstance(m, C3k)}
    assert any(n.startswith(tuple(nested)) for n in pruned_names)  # C3k2's nested C3k prunes


def test_attention_is_one_kept_whole_leaf_and_its_neighbours_are_prunable(tmp_path):
    from ultralytics.nn.modules.block import Attention

    from core.checkpoints import load_detection_model
    from pipeline.modules import C2PSASplit, split_c2f
    from pipeline.pruning.groups import GroupPruner
    from pipeline.pruning.guards import ignored_layers

    model = split_c2f(load_detection_model(_from_yaml("yolo11n", tmp_path)))
    pruner = GroupPruner(model, torch.rand(1, 3, 64, 64), ignored_layers(model, (0, 1), protect_head=False))
    producers = {p for group in pruner.groups() for p in group.producers}
    inside = {m for a in model.modules() if isinstance(a, Attention) for m in a.modules()}
    (c2psa,) = [m for m in model.modules() if isinstance(m, C2PSASplit)]
    assert not producers & inside  # q, k, v, proj, pe keep every channel
    assert c2psa.cv0.conv in producers  # the pass-through half
    assert all(block.ffn[0].conv in producers for block in c2psa.m)  # the feed-forward's hidden channels
    assert c2psa.cv1.conv not in producers  # the attention's own width


@pytest.mark.slow
def test_yolo26_keeps_the_same_channels_in_both_head_branches(pruned):
    from core.checkpoints import load_detection_model

    family, _, checkpoint, _ = pruned
    if family != "yolo26n":
        pytest.skip("only YOLO26 has a one-to-one head")
    model = load_detection_model(checkpoint)
    head = model.model[-1]
    assert head.reg_max == 1 and isinstance(head.dfl, torch.nn.Identity)
    one, many = head.one2one_cv2[0], head.cv2[0]
    assert one[0].conv.out_channels < 16 or head.one2one_cv3[0][0][1].conv.out_channels < 64  # it pruned
    for a, b in zip(
        (*head.one2one_cv2.modules(), *head.one2one_cv3.modules()),
        (*head.cv2.modules(), *head.cv3.modules()),
        strict=True,
    ):
        if isinstance(a, torch.nn.Conv2d):
            assert a.weight.shape == b.weight.shape
    with torch.no_grad():
        preds = model(torch.rand(2, 3, IMGSZ, IMGSZ))[1]
    for key in ("boxes", "scores"):
        torch.testing.assert_close(preds["one2one"][key], preds["one2many"][key], atol=1e-4, rtol=1e-4)
    assert one is not many


def test_yolo11n_without_data_prunes_in_seconds_not_minutes(tmp_path):
    """Magnitude pruning (no data) of YOLO11n used to loop in Torch-Pruning's index mapping of C2PSA's
    attention; now the attention is one kept-whole leaf of the dependency graph."""
    from pipeline.pruning.config import MagnitudeConfig
    from pipeline.stages.prune import prune_checkpoint

    source = _from_yaml("yolo11n", tmp_path)
    config = MagnitudeConfig(macs=0.7, bn_batches=0)
    report = prune_checkpoint(source, tmp_path / "p.pt", config, imgsz=64, device="cpu", data=None)
    assert report.gflops_ratio <= 0.7
