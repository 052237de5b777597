"""What YOLO11's and YOLO26's blocks need from the pruner beyond YOLOv8's (C2f/C3k2 splits: `modules`).

- **Attention** (YOLO11's and YOLO26's C2PSA, YOLO26's last C3k2): one conv's output is viewed as q, k and v
  per head, and v's channels must equal the block's width. Torch-Pruning's index mapping cannot follow
  that view: it grows its index lists without end (the cause of `edgepipe prune` running for minutes on
  YOLO11 without output). Each Attention is therefore one leaf of the dependency graph, kept whole (width,
  heads, key_dim and head_dim unchanged); the feed-forward channels beside it and C2PSA's pass-through
  half still prune.
- **YOLO26's end-to-end head**: a one-to-one branch (`one2one_cv2/cv3`, what inference runs, no NMS)
  beside the one-to-many branch (`cv2/cv3`) that training also uses, built as copies of each other and
  without a DFL (reg_max 1). Channels are chosen on the one-to-one branch and the same ones are removed
  from its one-to-many twin, so both keep the same shape; MACs are counted on the inference branch, as
  Ultralytics' fused model (which drops the one-to-many branch) counts them.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch_pruning as tp
from torch import nn

ONE_TO_MANY = ("cv2", "cv3")
ONE_TO_ONE = ("one2one_cv2", "one2one_cv3")


class KeptWhole(tp.pruner.function.BasePruningFunc):
    """A leaf of the dependency graph whose channels never change: its input and output are one group,
    and that group is never pruned because the leaf is among the ignored layers."""

    def prune_out_channels(self, layer: nn.Module, idxs: Sequence[int]) -> nn.Module:
        raise RuntimeError(f"{type(layer).__name__} is kept whole; its channels are not pruned")

    prune_in_channels = prune_out_channels  # ties input and output channels into one group

    def get_out_channels(self, layer: nn.Module) -> int:
        return int(layer.proj.conv.out_channels)

    def get_in_channels(self, layer: nn.Module) -> int:
        return int(layer.qkv.conv.in_channels)


def attention_blocks(model: nn.Module) -> list[nn.Module]:
    from ultralytics.nn.modules.block import Attention

    return [m for m in model.modules() if isinstance(m, Attention)]


def customized_pruners(model: nn.Module) -> dict:
    """Torch-Pruning's `customized_pruners` for `model`: every Attention a kept-whole leaf."""
    from ultralytics.nn.modules.block import Attention

    return {Attention: KeptWhole()} if attention_blocks(model) else {}


def end_to_end(head: nn.Module) -> bool:
    """Whether the Detect head has YOLO26's one-to-one branch."""
    return getattr(head, "one2one_cv2", None) is not None


def head_branches(head: nn.Module) -> list[nn.Sequential]:
    """Every box and class branch of the Detect head, per pyramid level: one-to-many, then one-to-one."""
    names = ONE_TO_MANY + (ONE_TO_ONE if end_to_end(head) else ())
    return [branch for name in names for branch in getattr(head, name)]


def branch_internals(head: nn.Module) -> list[nn.Conv2d]:
    """The convs of every head branch whose output channels stay inside the branch: all but a first
    depthwise conv, which shares the pyramid level's channels (YOLO11/26 class branches)."""
    internal = []
    for branch in head_branches(head):
        convs = [m for m in branch.modules() if isinstance(m, nn.Conv2d)]
        first = convs[0]
        depthwise = first.groups > 1 and first.groups == first.in_channels
        internal += convs[1:] if depthwise else convs
    return internal


def twins(head: nn.Module) -> dict[nn.Conv2d, nn.Conv2d]:
    """Each conv of the one-to-one branch -> the conv at the same place in the one-to-many branch."""
    if not end_to_end(head):
        return {}
    pairs = {}
    for one, many in zip(ONE_TO_ONE, ONE_TO_MANY, strict=True):
        for a, b in zip(getattr(head, one).modules(), getattr(head, many).modules(), strict=True):
            if isinstance(a, nn.Conv2d):
                pairs[a] = b
    return pairs


def training_outputs(output):
    """What the dependency graph traces: the head's raw outputs (an end-to-end head's top-k selection
    after them is an index gather the graph need not follow)."""
    return output[1] if isinstance(output, tuple) else output


def inference_outputs(preds: dict) -> dict:
    """The raw outputs of the branch inference runs: one-to-one for an end-to-end head."""
    return preds.get("one2one", preds)
