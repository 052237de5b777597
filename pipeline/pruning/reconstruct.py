"""Layer-wise reconstruction: re-fit a pruned YOLOv8's convolutions to reproduce its unpruned teacher.

After channels are removed, every convolution downstream sees inputs that differ from the ones it was
trained on. Following He et al. (ICCV 2017) and ThiNet (Luo et al., ICCV 2017), each convolution is
re-fitted by ridge least squares so that, on calibration images, its output before BatchNorm matches the
teacher's output for the channels it kept. The fit runs in execution order on the student's own
(already repaired) activations, so each layer also corrects the drift left by the layers before it.
The last convolution of a residual bottleneck is fitted so that the block's output (skip + branch), not
the branch alone, matches the teacher's: otherwise the skip's drift passes through every bottleneck of a
chain untouched (`skip_corrected`).

The intercept of each fit is folded into the following BatchNorm's running mean, or into the bias of
Detect's final convolutions, so the repaired model has exactly the unpruned architecture minus the
removed channels. No labels are needed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.pruning.families import ONE_TO_MANY, ONE_TO_ONE, end_to_end

RIDGE = 3e-4  # ridge strength relative to the mean input energy; pulls the fit towards today's weights
CONFIDENCE_FLOOR = 0.05  # weight of a background position in the head's fits (an object's is up to 1.05)
MAX_ROWS = 4096  # im2col rows (output positions) per batch of 8 images that enter a fit
SLOPE_FLOOR = 0.5  # smallest SiLU slope a residual branch's linearised correction divides by


class _Captured(Exception):
    """Raised from a hook to stop a forward pass once the tensor it needs is in hand."""


@dataclass
class ConvFit:
    """How well one convolution reproduces its teacher after re-fitting (relative squared error)."""

    name: str
    error_before: float
    error_after: float


def layer_inputs(layer: nn.Module, outputs: Sequence[torch.Tensor | None], previous: torch.Tensor):
    """The input of a top-level YOLOv8 layer, from the saved outputs as DetectionModel._predict_once does."""
    if layer.f == -1:
        return previous
    if isinstance(layer.f, int):
        return outputs[layer.f]
    return [previous if j == -1 else outputs[j] for j in layer.f]


class LayerCache:
    """Runs a DetectionModel one top-level layer at a time over fixed batches.

    Keeps the outputs that later layers read (the model's `save` list), as DetectionModel does.
    """

    def __init__(self, model: nn.Module, batches: Sequence[torch.Tensor]):
        self.model = model
        self.saved: list[list[torch.Tensor | None]] = [[] for _ in batches]
        self.current: list[torch.Tensor] = list(batches)
        self.index = 0

    def inputs(self, batch: int):
        layer = self.model.model[self.index]
        return layer_inputs(layer, self.saved[batch], self.current[batch])

    @torch.no_grad()
    def advance(self) -> None:
        """Run the current layer on every batch and move to the next one."""
        layer = self.model.model[self.index]
        keep = layer.i in self.model.save
        for b in range(len(self.current)):
            out = layer(self.inputs(b))
            self.saved[b].append(out if keep else None)
            self.current[b] = out
        self.index += 1


def execution_order(module: nn.Module, inputs, skip: Callable[[nn.Module], bool]) -> list[nn.Conv2d]:
    """The module's Conv2d layers in the order one forward pass calls them."""
    order: list[nn.Conv2d] = []
    hooks = [
        m.register_forward_pre_hook(lambda mod, _args: order.append(mod))
        for m in module.modules()
        if isinstance(m, nn.Conv2d) and not skip(m)
    ]
    try:
        with torch.no_grad():
            module(inputs)
    finally:
        for hook in hooks:
            hook.remove()
    return list(dict.fromkeys(order))


def im2col_rows(conv: nn.Conv2d, x: torch.Tensor, positions: torch.Tensor | None = None) -> torch.Tensor:
    """(rows, Cin*kh*kw) im2col rows of `x` as `conv` sees them, laid out as conv.weight.view(Cout, -1).

    With `positions` (flat indices into the N x Hout x Wout output grid), only those rows are gathered:
    the full im2col of a high-resolution layer is many times larger than the sample a fit needs.
    """
    one_by_one = conv.kernel_size == (1, 1) and conv.stride == (1, 1) and conv.padding in ((0, 0), "valid")
    if one_by_one:
        rows = x.permute(0, 2, 3, 1).reshape(-1, x.shape[1])
        return rows if positions is None else rows[positions]
    if isinstance(conv.padding, str):
        raise ValueError(f"padding {conv.padding!r} is not supported: Ultralytics' convs pad by a number")
    if positions is None:
        cols = F.unfold(x, conv.kernel_size, conv.dilation, conv.padding, conv.stride)
        return cols.transpose(1, 2).reshape(-1, cols.shape[1])
    (kh, kw), (sh, sw), (dh, dw), (ph, pw) = conv.kernel_size, conv.stride, conv.dilation, conv.padding
    height, width = _output_size(conv, x)
    image, rest = positions // (height * width), positions % (height * width)
    top, left = (rest // width) * sh, (rest % width) * sw
    padded = F.pad(x, (pw, pw, ph, ph))
    taps = [
        padded[image, :, top + i * dh, left + j * dw] for i in range(kh) for j in range(kw)
    ]  # each (rows, Cin)
    return torch.stack(taps, 2).reshape(len(positions), -1)  # (Cin, kh, kw) order, as unfold's


def _output_size(conv: nn.Conv2d, x: torch.Tensor) -> tuple[int, int]:
    sizes = []
    for n, k, s, d, p in zip(
        x.shape[2:], conv.kernel_size, conv.stride, conv.dilation, conv.padding, strict=True
    ):
        sizes.append((n + 2 * p - d * (k - 1) - 1) // s + 1)
    return sizes[0], sizes[1]


def _inputs_of(module: nn.Module, inputs, *targets: nn.Module) -> list[torch.Tensor]:
    """The input tensor of each of `targets` during module(inputs); stops the pass once it has them all."""
    found: dict[nn.Module, torch.Tensor] = {}

    def hook(mod, args):
        found[mod] = args[0]
        if len(found) == len(targets):
            raise _Captured

    handles = [target.register_forward_pre_hook(hook) for target in targets]
    try:
        with torch.no_grad():
            module(inputs)
    except _Captured:
        pass
    finally:
        for handle in handles:
            handle.remove()
    return [found[target] for target in targets]


@torch.no_grad()
def _teacher_outputs(unit: nn.Module, inputs: list, convs: list[nn.Module]) -> list[list[torch.Tensor]]:
    """Per conv of `convs`, its output on every batch: one forward pass of the teacher's unit per batch."""
    outputs: list[list[torch.Tensor]] = [[] for _ in convs]
    hooks = [
        conv.register_forward_hook(lambda _m, _a, out, k=k: outputs[k].append(out))
        for k, conv in enumerate(convs)
    ]
    try:
        for x in inputs:
            unit(x)
    finally:
        for hook in hooks:
            hook.remove()
    return outputs


@torch.no_grad()
def refit_conv(
    conv: nn.Conv2d,
    bn: nn.BatchNorm2d | None,
    pairs: Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]],
    ridge: float = RIDGE,
    *,
    reference_mean: torch.Tensor | None = None,
) -> tuple[float, float]:
    """Re-fit `conv` (and fold the intercept) so conv(x) matches `target` over the (x, target[, weight]).

    `target` is the teacher's convolution output for the channels `conv` keeps; an optional weight
    (N, 1, H, W) per output position makes it a weighted fit. Returns the relative squared error
    (weighted alike) before and after the fit.

    A bias-free conv's intercept lives in `bn`'s running mean, as `reference_mean - intercept`, where
    `reference_mean` is the running mean of the teacher's BatchNorm for these channels (default: `bn`'s
    own, i.e. nothing folded yet). A conv re-fitted at every pruning step thus carries its latest
    intercept only, not the sum of all of them.
    """
    assert conv.groups == 1, "grouped convolutions are not re-fitted"
    weight = conv.weight.reshape(conv.out_channels, -1).double()
    d = weight.shape[1] + 1
    gram = torch.zeros(d, d, dtype=torch.float64)
    cross = torch.zeros(d, conv.out_channels, dtype=torch.float64)
    target_energy = target_square = 0.0
    if conv.bias is not None:
        bias = conv.bias.double()
    elif bn is not None:
        reference_mean = bn.running_mean.clone() if reference_mean is None else reference_mean
        bias = (reference_mean - bn.running_mean).double()  # the intercept folded by an earlier fit
    else:
        bias = torch.zeros(conv.out_channels, dtype=torch.float64)
    generator = torch.Generator().manual_seed(0)
    for x, target, position_weight in pairs:
        y = target.permute(0, 2, 3, 1).reshape(-1, conv.out_channels)
        w = position_weight.permute(0, 2, 3, 1).reshape(-1, 1) if position_weight is not None else None
        pick = None
        if y.shape[0] > MAX_ROWS:  # high-resolution layers: a seeded sample of positions is plenty
            pick = torch.randperm(y.shape[0], generator=generator)[:MAX_ROWS]
            y = y[pick]
            w = w[pick] if w is not None else None
        rows = im2col_rows(conv, x, pick)
        rows = torch.cat([rows, torch.ones(rows.shape[0], 1)], 1)
        if w is not None:  # weighted least squares: scale each row by the square root of its weight
            rows, y = rows * w.sqrt(), y * w.sqrt()
        gram += (rows.T @ rows).double()  # float32 products, float64 sums across batches
        cross += (rows.T @ y).double()
        y = y.double()
        target_energy += float((y - y.mean(0)).square().sum())
        target_square += float(y.square().sum())
    # Ridge towards today's weights (not towards zero): where the data say little, nothing moves.
    current = torch.cat([weight.T, bias.view(1, -1)], 0)
    strength = ridge * float(torch.diagonal(gram)[:-1].mean())
    penalty = torch.full((d,), strength, dtype=torch.float64)
    penalty[-1] = 0.0
    solution = torch.linalg.solve(gram + torch.diag(penalty), cross + penalty.view(-1, 1) * current)

    # Residual energy from the normal equations, sum (Xw - y)^2 = w'Gw - 2 w'c + y'y: no second pass
    # over the rows.
    def residual(w: torch.Tensor) -> float:
        return float((w * (gram @ w)).sum() - 2 * (w * cross).sum()) + target_square

    before, after = residual(current), residual(solution)
    new_weight, intercept = solution[:-1].T, solution[-1]
    conv.weight.copy_(new_weight.reshape_as(conv.weight).to(conv.weight.dtype))
    if conv.bias is not None:
        conv.bias.copy_(intercept.to(conv.bias.dtype))
    elif bn is not None:
        bn.running_mean.copy_(reference_mean - intercept.to(bn.running_mean.dtype))
    else:
        conv.bias = nn.Parameter(intercept.to(conv.weight.dtype), requires_grad=False)
    scale = max(target_energy, 1e-12)
    return max(before, 0.0) / scale, max(after, 0.0) / scale


def _units(s_layer: nn.Module, t_layer: nn.Module) -> list[tuple[nn.Module, nn.Module, int | None]]:
    """(student part, teacher part, index of its input) fitted one after the other within a layer.

    Detect's box and class branches are independent chains, each reading one pyramid level: fitting them
    one chain at a time re-runs a chain, not the whole head, for every convolution. YOLO26's one-to-one
    branches are fitted to the teacher's one-to-one branches.
    """
    if all(hasattr(s_layer, a) for a in ("cv2", "cv3", "nl")):
        branches = ONE_TO_MANY + (ONE_TO_ONE if end_to_end(s_layer) else ())
        return [
            (getattr(s_layer, branch)[i], getattr(t_layer, branch)[i], i)
            for i in range(s_layer.nl)
            for branch in branches
        ]
    return [(s_layer, t_layer, None)]


@torch.no_grad()
def _confidence(head: nn.Module, level: int, inputs: list[torch.Tensor]) -> list[torch.Tensor]:
    """Per position of one pyramid level, the teacher's top class probability plus a floor.

    Detect's branches keep their level's grid, so these weights make every head fit concentrate on the
    anchors where the teacher sees objects, as the mAP does, without ignoring the background.
    """
    return [head.cv3[level](x).sigmoid().amax(1, keepdim=True) + CONFIDENCE_FLOOR for x in inputs]


def residual_branches(model: nn.Module) -> dict[nn.Conv2d, nn.Module]:
    """The Conv2d that ends the branch of every residual bottleneck (x + cv2(cv1(x))), to its bottleneck."""
    from ultralytics.nn.modules.block import Bottleneck

    return {m.cv2.conv: m for m in model.modules() if isinstance(m, Bottleneck) and m.add}


def skip_corrected(
    target: torch.Tensor, drift: torch.Tensor, bn: nn.BatchNorm2d, channels: torch.Tensor | None = None
) -> torch.Tensor:
    """The pre-BatchNorm output a residual branch needs so that skip + branch matches the teacher's.

    Fitting the branch to the teacher's branch leaves the drift of the skip input (`drift`, teacher's
    minus student's) in the block's output, and chains of bottlenecks add it up. With SiLU linearised
    around the teacher's own activation, the branch takes it up: z = z_t + drift / (SiLU'(u_t) * scale),
    with u_t = BN(z_t) and `scale` BatchNorm's gain. `bn` is the teacher's; `channels` are the ones the
    student kept (default: all).
    """
    pick = slice(None) if channels is None else channels

    def per_channel(values: torch.Tensor) -> torch.Tensor:
        return values[pick].view(1, -1, 1, 1)

    scale = per_channel(bn.weight / (bn.running_var + bn.eps).sqrt())
    u = (target - per_channel(bn.running_mean)) * scale + per_channel(bn.bias)
    gate = u.sigmoid()
    slope = (gate * (1 + u * (1 - gate))).clamp(min=SLOPE_FLOOR)
    return target + drift / (slope * scale)


def batchnorm_after(model: nn.Module) -> dict[nn.Conv2d, nn.BatchNorm2d]:
    """Each Ultralytics Conv's nn.Conv2d mapped to the BatchNorm that follows it."""
    return {
        m.conv: m.bn
        for m in model.modules()
        if isinstance(getattr(m, "conv", None), nn.Conv2d)
        and isinstance(getattr(m, "bn", None), nn.BatchNorm2d)
    }


@torch.no_grad()
def reconstruct(
    student: nn.Module,
    teacher: nn.Module,
    batches: Sequence[torch.Tensor],
    kept_out: dict[str, torch.Tensor],
    *,
    ridge: float = RIDGE,
    progress: Callable[[float], None] | None = None,
) -> list[ConvFit]:
    """Re-fit every convolution of `student` downstream of a change, in execution order, against `teacher`.

    `student` is `teacher` with channels removed (same module names); `kept_out[name]` lists, for each
    pruned Conv2d, which of the teacher's output channels it kept. Detect's DFL is left as it is, and so
    are depthwise convs (YOLO11/26's head and attention): each keeps its own channels' weights, and the
    1x1 conv after it is re-fitted.
    """
    student.eval()
    teacher.eval()
    names = {m: n for n, m in student.named_modules()}
    teacher_modules = dict(teacher.named_modules())
    norms, t_norms = batchnorm_after(student), batchnorm_after(teacher)
    residual = residual_branches(student)
    head = student.model[-1]
    frozen = set(head.dfl.modules()) if hasattr(head, "dfl") else set()
    s_cache, t_cache = LayerCache(student, batches), LayerCache(teacher, batches)
    fits: list[ConvFit] = []
    changed = False
    layers = len(student.model)
    for index in range(layers):
        s_layer, t_layer = student.model[index], teacher.model[index]
        changed = changed or any(
            m.weight.shape != teacher_modules[names[m]].weight.shape
            for m in s_layer.modules()
            if isinstance(m, nn.Conv2d)
        )
        if changed:
            for s_unit, t_unit, pick in _units(s_layer, t_layer):

                def unit_inputs(cache: LayerCache, b: int, pick=pick):
                    inputs = cache.inputs(b)
                    return inputs if pick is None else inputs[pick]

                convs = execution_order(
                    s_unit, unit_inputs(s_cache, 0), skip=lambda m: m in frozen or int(m.groups) != 1
                )
                t_inputs = [unit_inputs(t_cache, b) for b in range(len(batches))]
                targets = _teacher_outputs(t_unit, t_inputs, [teacher_modules[names[c]] for c in convs])
                weights = _confidence(t_layer, pick, t_inputs) if pick is not None else None
                for conv, target in zip(convs, targets, strict=True):
                    keep = kept_out.get(names[conv])
                    block = residual.get(conv)
                    t_block = teacher_modules[names[block]] if block is not None else None

                    def pairs(
                        conv=conv,
                        target=target,
                        keep=keep,
                        block=block,
                        t_block=t_block,
                        s_unit=s_unit,
                        t_unit=t_unit,
                        unit_inputs=unit_inputs,
                        weights=weights,
                        t_inputs=t_inputs,
                    ):
                        for b in range(len(batches)):
                            s_inputs = unit_inputs(s_cache, b)
                            y = target[b] if keep is None else target[b][:, keep]
                            if block is None:
                                (x,) = _inputs_of(s_unit, s_inputs, conv)
                            else:
                                skip, x = _inputs_of(s_unit, s_inputs, block, conv)
                                (t_skip,) = _inputs_of(t_unit, t_inputs[b], t_block)
                                t_skip = t_skip if keep is None else t_skip[:, keep]
                                y = skip_corrected(y, t_skip - skip, t_block.cv2.bn, keep)
                            yield x, y, (weights[b] if weights is not None else None)

                    t_norm = t_norms.get(teacher_modules[names[conv]])
                    reference = None
                    if t_norm is not None:
                        reference = t_norm.running_mean if keep is None else t_norm.running_mean[keep]
                    before, after = refit_conv(
                        conv, norms.get(conv), pairs(), ridge, reference_mean=reference
                    )
                    fits.append(ConvFit(names[conv], before, after))
        s_cache.advance()
        t_cache.advance()
        if progress:
            progress((index + 1) / layers)
    return fits
