"""Logit distillation from an unpruned teacher onto a pruned student of any family (YOLOv8, YOLO11, YOLO26).

A pruned student keeps its teacher's Detect layout (same classes, DFL bins and strides), so their raw
head outputs line up anchor for anchor and need no adapters. Two terms, added to the detection loss
(weighted by `label_weight`; 0 trains on the teacher alone):

- classification: binary cross-entropy of the student's class logits against the teacher's sigmoid
  scores, i.e. Hinton et al.'s soft targets (2015) in the per-class sigmoid form YOLO heads use;
- localization, weighted per anchor by the teacher's top class score so it concentrates where the
  teacher sees objects: with DFL bins (YOLOv8, YOLO11), Localization Distillation (LD, Zheng et al.,
  CVPR 2022), the KL divergence between the teacher's and the student's distributions over box-edge
  bins at temperature T; with one bin (YOLO26 regresses the four edge distances directly, so a KL over
  it is always zero), the L1 distance between the edge distances, in strides.

An end-to-end head (YOLO26) has two branches: a one-to-many branch trained as YOLOv8's is, and the
one-to-one branch that inference reads, on detached features. Each is distilled from the teacher's same
branch, with the gains Ultralytics' `E2ELoss` gives the branch's labelled loss at this step: the
one-to-one outputs are what ships, and only the one-to-many branch trains the backbone.

A third, optional term matches the neck features the head reads (P3/P4/P5, FitNets-style). A pruned
student's feature channels are a subset of the teacher's: the pruning records which ones
(`kept_features`), so the features are compared channel for channel without adapters.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

LD_TEMPERATURE = 2.0


class DistillationLoss:
    """Ultralytics detection criterion plus weighted logit distillation; adds a `kd_loss` item.

    A plain object, not an nn.Module: set as the live model's `criterion`, the teacher is neither part of
    the student's state_dict nor of the EMA copy the trainer saves.
    """

    def __init__(
        self,
        detection_loss,
        teacher: nn.Module,
        weight: float,
        features: tuple[FeatureTaps, FeatureTaps, list[torch.Tensor | None]] | None = None,
        feature_weight: float = 1.0,
        label_weight: float = 1.0,
    ):
        self.detection_loss = detection_loss
        self.teacher = teacher.eval()
        self.weight = weight
        self.features = features
        self.feature_weight = feature_weight
        self.label_weight = label_weight

    def __call__(self, preds, batch: dict) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        loss, items = self.detection_loss(preds, batch)
        with torch.no_grad():
            teacher = self.teacher(batch["img"])[1]  # eval mode: (decoded, raw head outputs)
        kd = self.weight * self._logit_loss(_raw_outputs(preds), teacher)
        if self.features is not None:
            student_taps, teacher_taps, kept = self.features
            kd = kd + self.feature_weight * feature_loss(student_taps.outputs, teacher_taps.outputs, kept)
        batch_size = batch["img"].shape[0]
        # The labelled terms are still reported (box/cls/dfl) when their weight is 0.
        total = torch.cat([loss * self.label_weight, (kd * batch_size).view(1)])
        return total, {**items, "kd_loss": kd.detach()}

    def update(self) -> None:
        if hasattr(self.detection_loss, "update"):
            self.detection_loss.update()

    def _logit_loss(self, student: dict, teacher: dict) -> torch.Tensor:
        if "one2one" not in student:
            return distillation_loss(student, teacher)
        labelled = self.detection_loss  # E2ELoss: its one-to-many gain decays as the one-to-one one grows
        one_to_many = distillation_loss(student["one2many"], teacher["one2many"])
        one_to_one = distillation_loss(student["one2one"], teacher["one2one"])
        return labelled.o2m * one_to_many + labelled.o2o * one_to_one


def _raw_outputs(preds) -> dict:
    """The head's raw outputs: training mode returns them alone, eval mode as (decoded, raw)."""
    return preds[1] if isinstance(preds, tuple) else preds


def distillation_loss(student: dict[str, torch.Tensor], teacher: dict[str, torch.Tensor]) -> torch.Tensor:
    """Soft-target BCE on class scores + a box term: LD over DFL bins, or L1 on edge distances with one bin.

    Dicts of one head branch: "scores" (B, nc, A) and "boxes" (B, 4R, A), R the DFL bins.
    """
    s_scores, t_scores = student["scores"].float(), teacher["scores"].float()
    t_prob = t_scores.sigmoid()
    cls = F.binary_cross_entropy_with_logits(s_scores, t_prob, reduction="none").sum(1).mean()

    b, _, anchors = student["boxes"].shape
    s_boxes = student["boxes"].float().view(b, 4, -1, anchors)
    t_boxes = teacher["boxes"].float().view(b, 4, -1, anchors)
    if s_boxes.shape[2] == 1:  # edge distances regressed directly (in strides)
        per_anchor = (s_boxes - t_boxes).abs().sum(2).mean(1)
    else:
        s_bins, t_bins = s_boxes / LD_TEMPERATURE, t_boxes / LD_TEMPERATURE
        kl = F.kl_div(s_bins.log_softmax(2), t_bins.log_softmax(2), reduction="none", log_target=True)
        per_anchor = kl.sum(2).mean(1) * LD_TEMPERATURE**2  # averaged over the four edges
    weight = t_prob.amax(1)  # (B, A)
    box = (per_anchor * weight).sum() / weight.sum().clamp(min=1e-6)
    return cls + box


class FeatureTaps:
    """Keeps the latest outputs of the layers a Detect head reads (P3/P4/P5)."""

    def __init__(self, model: nn.Module):
        head = model.model[-1]
        self.outputs: list[torch.Tensor] = [torch.empty(0)] * len(head.f)
        self.handles = [
            model.model[index].register_forward_hook(self._keep(k)) for k, index in enumerate(head.f)
        ]

    def _keep(self, k: int):
        def hook(_module, _args, output):
            self.outputs[k] = output

        return hook


def feature_loss(
    student: list[torch.Tensor], teacher: list[torch.Tensor], kept: list[torch.Tensor | None]
) -> torch.Tensor:
    """Mean over levels of the squared error on the kept channels, relative to the teacher's energy."""
    total = student[0].new_zeros(())
    for s, t, keep in zip(student, teacher, kept, strict=True):
        t = t.detach() if keep is None else t.detach()[:, keep.to(t.device)]
        total = total + (s.float() - t.float()).square().mean() / t.float().square().mean().clamp(min=1e-6)
    return total / len(student)
