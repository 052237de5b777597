"""Channel groups of a YOLO detector from Torch-Pruning's dependency graph, and surgery that remembers
what it kept.

A group is one set of coupled channels: the convolutions that produce them (several when a residual add
or C2f chunk ties their outputs together) and the convolutions that consume them, each at its own input
offset (a Concat shifts them). Removing channel j of a group removes output channel j of every producer
and the matching input channel of every consumer; Torch-Pruning's DepGraph does that surgery. YOLO11's
attention and YOLO26's two head branches are handled as `families` says: attention kept whole, the
one-to-many branch pruned as its one-to-one twin.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import nn

from pipeline.pruning.families import customized_pruners, end_to_end, training_outputs, twins


@dataclass
class ChannelGroup:
    """One prunable set of coupled channels.

    `consumers` maps each consuming Conv2d to (input channel indices, group channel of each): a channel can
    reach one consumer at several inputs (SPPF concatenates it with its max-pooled copies).
    """

    root: nn.Conv2d
    producers: list[nn.Conv2d]
    consumers: dict[nn.Conv2d, tuple[torch.Tensor, torch.Tensor]]

    @property
    def size(self) -> int:
        return self.root.out_channels


class GroupPruner:
    """DepGraph surgery on `model` that records, per Conv2d name, which original output channels remain."""

    def __init__(self, model: nn.Module, example: torch.Tensor, ignored: Iterable[nn.Module]):
        self.model, self.example = model, example
        self.trace()
        self.twins = twins(model.model[-1])
        self.ignored = [m for layer in ignored for m in layer.modules()]
        self.names = {m: n for n, m in model.named_modules()}
        self.initial = {m: m.out_channels for m in model.modules() if isinstance(m, nn.Conv2d)}
        self.kept: dict[str, torch.Tensor] = {
            n: torch.arange(m.out_channels) for n, m in model.named_modules() if isinstance(m, nn.Conv2d)
        }

    def trace(self) -> None:
        """Build the dependency graph of the model as it is now: again after surgery DepGraph did not do
        (whole blocks removed), keeping what each remaining convolution kept and its initial width."""
        import torch_pruning as tp

        for p in self.model.parameters():
            p.requires_grad_(True)  # DepGraph traces the autograd graph
        self.graph = tp.DependencyGraph().build_dependency(
            self.model,
            example_inputs=self.example,
            customized_pruners=customized_pruners(self.model),
            output_transform=training_outputs if end_to_end(self.model.model[-1]) else None,
        )
        for p in self.model.parameters():
            p.requires_grad_(False)

    def groups(self) -> list[ChannelGroup]:
        """Every prunable group, rooted at a Conv2d, with none of its producers among the ignored layers.

        Groups inside YOLO26's one-to-many head branch are left out: they go with their one-to-one twin.
        """
        groups = []
        shadows = set(self.twins.values())
        for group in self.graph.get_all_groups(ignored_layers=self.ignored, root_module_types=[nn.Conv2d]):
            producers, consumers = [], {}
            for item in group.items:
                module = item.dep.target.module
                if not isinstance(module, nn.Conv2d):
                    continue
                if self.graph.is_out_channel_pruning_fn(item.dep.handler):
                    producers.append(module)
                elif self.graph.is_in_channel_pruning_fn(item.dep.handler):
                    consumers[module] = (torch.tensor(item.idxs), torch.tensor(item.root_idxs))
            root = group.items[0].dep.target.module
            if producers and all(p in shadows for p in producers):
                continue
            groups.append(ChannelGroup(root, producers, consumers))
        return groups

    def remove(self, group: ChannelGroup, channels: list[int]) -> None:
        """Remove `channels` (indices into the group) from every coupled layer, and from its twin group in
        YOLO26's one-to-many branch."""
        if not channels:
            return
        inside_branch = all(
            p in self.twins for p in group.producers
        )  # not a pyramid level both branches read
        twin = self.twins.get(group.root) if inside_branch else None
        self._remove(group.root, channels)
        if twin is not None:
            self._remove(twin, channels)

    def _remove(self, root: nn.Conv2d, channels: list[int]) -> None:
        import torch_pruning as tp

        pruning = self.graph.get_pruning_group(root, tp.prune_conv_out_channels, sorted(channels))
        for item in pruning.items:
            module = item.dep.target.module
            if isinstance(module, nn.Conv2d) and self.graph.is_out_channel_pruning_fn(item.dep.handler):
                name = self.names[module]
                keep = torch.ones(len(self.kept[name]), dtype=torch.bool)
                keep[list(item.idxs)] = False
                self.kept[name] = self.kept[name][keep]
        pruning.prune()
