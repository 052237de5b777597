"""Whole-block removal: the surgery computes what the identity did, the greedy cut takes a block only
where it is cheaper per unit saved than channels, and a model with blocks removed reloads and exports."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

REFERENCE = Path(__file__).resolve().parents[1] / "examples" / "reference"


def _split_yolov8n() -> nn.Module:
    from ultralytics.nn.tasks import DetectionModel

    from pipeline.modules import split_c2f

    torch.manual_seed(0)
    return split_c2f(DetectionModel("yolov8n.yaml", nc=4, verbose=False).eval())


@torch.no_grad()
def test_removing_a_block_computes_exactly_what_the_block_replaced_by_the_identity_did():
    from pipeline.pruning.depth import candidate_blocks, remove_block

    model = _split_yolov8n()
    x = torch.rand(1, 3, 96, 96)
    names = [name for name, _, _ in candidate_blocks(model, [])]
    # both blocks of a two-block layer (the second one then reads cv1's half), and a neck block
    for name in ("model.4.m.1", "model.4.m.0", "model.15.m.0"):
        assert name in names
        layer, index = int(name.split(".")[1]), int(name.split(".")[3])
        owner = model.model[layer]
        handle = owner.m[index].register_forward_hook(lambda module, args, out: args[0])
        expected = model(x)[0]
        handle.remove()
        width = owner.cv2.conv.in_channels
        remove_block(owner, index)
        assert isinstance(owner.m[index], nn.Identity)
        assert owner.cv2.conv.in_channels == width - owner.cv1.conv.out_channels
        torch.testing.assert_close(model(x)[0], expected, atol=1e-4, rtol=1e-4)
    assert "model.4.m.0" not in [name for name, _, _ in candidate_blocks(model, [])]
    with pytest.raises(ValueError, match="already removed"):
        remove_block(model.model[4], 0)


def test_blocks_inside_ignored_layers_are_not_candidates():
    from pipeline.pruning.depth import candidate_blocks
    from pipeline.pruning.guards import ignored_layers

    model = _split_yolov8n()
    everywhere = {name for name, _, _ in candidate_blocks(model, [])}
    protected = {name for name, _, _ in candidate_blocks(model, ignored_layers(model, (2,)))}
    assert everywhere - protected == {"model.2.m.0"}


@pytest.mark.parametrize(
    ("block_distortion", "to_remove", "taken"),
    [
        (1e-9, 3.0, True),  # far cheaper per MAC than any channel cut
        (1e9, 3.0, False),  # far dearer: channels go instead
        (1e-9, 0.5, False),  # saves more than the step may remove: never overshoot with a whole block
    ],
)
def test_a_block_is_cut_only_where_it_costs_less_per_unit_saved_than_channels(
    block_distortion, to_remove, taken
):
    from pipeline.pruning.depth import BlockPlan
    from pipeline.pruning.groups import ChannelGroup
    from pipeline.pruning.selection import GroupPlan, allocate, channel_stats

    model = _split_yolov8n()
    stats = channel_stats(model, [torch.rand(1, 3, 64, 64)])

    wide = model.model[8].cv2.conv

    def macs(conv, cin, cout):  # the channel group's conv made heavy: channels alone can meet any step
        return stats.shapes[conv].per_pair * cin * cout * (1000 if conv is wide else 1)

    channels = GroupPlan(
        ChannelGroup(wide, [wide], {}), list(range(wide.out_channels)), 64, [(0, 0.0), (64, 1.0)]
    )
    block = BlockPlan("model.6.m.0", model.model[6], 0, block_distortion)
    block_macs = sum(macs(c, stats.shapes[c].cin, stats.shapes[c].cout) for c in block.convs)
    cuts = allocate([channels], stats, to_remove * block_macs, 8, macs, [block])  # in block MACs
    assert (cuts.blocks == [block]) is taken
    assert cuts.channels[id(channels)]  # the rest of the step comes from channels


def test_magnitude_pruning_refuses_block_removal(tmp_path):
    from typer.testing import CliRunner

    from pipeline.cli import app

    result = CliRunner().invoke(
        app,
        [
            "prune",
            "--model",
            str(REFERENCE / "synth-yolov8n.pt"),
            "--remove-blocks",
            "-o",
            str(tmp_path / "p.pt"),
        ],
    )
    assert result.exit_code == 2
    assert "remove_blocks need data-aware pruning" in result.output


@pytest.mark.slow
def test_a_model_with_blocks_removed_reloads_with_plain_yolo_and_exports_with_parity(tmp_path, synth_dataset):
    from core.checkpoints import load_detection_model, save_checkpoint
    from pipeline.modules import split_c2f
    from pipeline.pruning.depth import remove_block
    from pipeline.stages.export import ExportConfig, export_checked

    model = split_c2f(load_detection_model(REFERENCE / "synth-yolov8n.pt").float().eval())
    for layer, index in ((4, 1), (6, 0), (21, 0)):
        remove_block(model.model[layer], index)
    checkpoint = save_checkpoint(model, tmp_path / "shallower.pt")
    code = (
        "import pipeline, torch; from ultralytics import YOLO; "
        f"m = YOLO({str(checkpoint)!r}).model.float().eval(); "
        "print(sum(isinstance(b, torch.nn.Identity) for b in m.modules()))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split()[-1] == "3"
    _, parity = export_checked(
        checkpoint, tmp_path / "s.onnx", 160, ExportConfig(parity_images=8), synth_dataset
    )
    assert parity.passed
