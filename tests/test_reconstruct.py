"""Layer-wise reconstruction and data-aware selection, on small models with real numbers."""

from __future__ import annotations

from copy import deepcopy

import torch
from torch import nn

from pipeline.pruning.reconstruct import MAX_ROWS, im2col_rows, refit_conv


def _stack(seed: int = 0) -> tuple[nn.Sequential, torch.Tensor]:
    torch.manual_seed(seed)
    stack = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 8, 3, padding=1)).eval()
    images = torch.rand(6, 3, 24, 24)
    assert images[:, 0].numel() <= MAX_ROWS  # every output position enters the fit: no sampling
    return stack, images


@torch.no_grad()
def test_reconstruction_lowers_the_output_error_against_plain_removal():
    stack, images = _stack()
    hidden = stack[1](stack[0](images))
    target = stack(images)  # the unpruned output
    keep = torch.arange(16)[torch.arange(16) % 3 != 0]  # remove 6 of the 16 hidden channels

    consumer = nn.Conv2d(len(keep), 8, 3, padding=1)
    consumer.weight.copy_(stack[2].weight[:, keep])
    consumer.bias.copy_(stack[2].bias)
    plain = float((consumer(hidden[:, keep]) - target).square().sum())

    before, after = refit_conv(consumer, None, iter([(hidden[:, keep], target, None)]))
    refitted = float((consumer(hidden[:, keep]) - target).square().sum())

    energy = float((target - target.mean((0, 2, 3), keepdim=True)).square().sum())
    assert abs(before - plain / energy) < 1e-4  # the error it reports is the real one
    assert abs(after - refitted / energy) < 1e-3
    assert refitted < 0.5 * plain  # re-fitting recovers most of what removal lost


def _conv_needing_an_intercept() -> tuple[nn.Conv2d, nn.BatchNorm2d, torch.Tensor, torch.Tensor]:
    """A bias-free conv and its BatchNorm, inputs, and a target that is the conv's output + 3."""
    torch.manual_seed(1)
    conv, bn = nn.Conv2d(4, 6, 1, bias=False), nn.BatchNorm2d(6).eval()
    bn.running_mean.uniform_(-1, 1)
    x = torch.rand(5, 4, 8, 8)
    return conv, bn, x, conv(x) + 3.0


@torch.no_grad()
def test_intercept_is_folded_into_batchnorm():
    conv, bn, x, target = _conv_needing_an_intercept()
    original_bn = deepcopy(bn)
    refit_conv(conv, bn, iter([(x, target, None)]))
    assert conv.bias is None  # the architecture is unchanged
    assert torch.allclose(bn(conv(x)), original_bn(target), atol=1e-3)


@torch.no_grad()
def test_a_second_fit_replaces_the_folded_intercept_instead_of_adding_to_it():
    conv, bn, x, target = _conv_needing_an_intercept()
    teacher_bn = deepcopy(bn)
    for _ in range(2):  # every pruning step re-fits the convs downstream of its cut
        pairs = iter([(x, target, None)])
        before, after = refit_conv(conv, bn, pairs, reference_mean=teacher_bn.running_mean)
    assert before < 1e-3 and after < 1e-3  # the second fit starts from the function the first one left
    assert torch.allclose(bn(conv(x)), teacher_bn(target), atol=1e-3)


@torch.no_grad()
def test_sampled_patches_are_the_same_rows_as_the_full_im2col():
    torch.manual_seed(2)
    x = torch.rand(3, 5, 11, 9)
    for conv in (
        nn.Conv2d(5, 4, 3, padding=1),
        nn.Conv2d(5, 4, 3, stride=2, padding=1),
        nn.Conv2d(5, 4, 1),
        nn.Conv2d(5, 4, 5, padding=2, dilation=1),
        nn.Conv2d(5, 4, 3, padding=2, dilation=2),
    ):
        full = im2col_rows(conv, x)
        assert full.shape[0] == conv(x)[:, 0].numel()
        pick = torch.randperm(full.shape[0])[:17]
        assert torch.equal(im2col_rows(conv, x, pick), full[pick])


@torch.no_grad()
def test_a_residual_branch_fitted_to_the_corrected_target_absorbs_the_drift_of_its_skip():
    from ultralytics.nn.modules.block import Bottleneck

    from pipeline.pruning.reconstruct import skip_corrected

    torch.manual_seed(4)
    block = Bottleneck(8, 8, e=1.0).eval()
    block.cv2.bn.running_var.uniform_(0.5, 2)
    block.cv2.bn.weight.uniform_(0.5, 1.5)
    x_teacher = torch.randn(6, 8, 12, 12)
    x_student = 0.8 * x_teacher + 0.1  # the drift earlier pruned layers left, a function of the image
    wanted = block(x_teacher)
    target = block.cv2.conv(block.cv1(x_teacher))

    def block_error(fit_target: torch.Tensor) -> float:
        student = deepcopy(block)
        hidden = student.cv1(x_student)
        refit_conv(student.cv2.conv, student.cv2.bn, iter([(hidden, fit_target, None)]))
        return float((student(x_student) - wanted).square().mean())

    plain = block_error(target)
    corrected = block_error(skip_corrected(target, x_teacher - x_student, block.cv2.bn))
    assert corrected < 0.6 * plain
