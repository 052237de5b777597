"""Timing a detector as the engine it will be: exported as the deployment exports it, compiled by
OpenVINO at the precision, threads and input size it will run with, timed, and profiled per convolution.

`pipeline.pruning.latency` fits its latency model on these timings; `check_latency` times the unpruned and
the pruned model side by side after pruning.
"""

from __future__ import annotations

import io
import logging
import re
import time
import warnings
from collections.abc import Sequence
from copy import deepcopy
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from targets.head import head_postprocess_nodes
from targets.openvino import HINTS, int8_float_hint
from targets.openvino_int8 import OpenVinoOptions, quantize_options

ENGINES = ("openvino/fp32", "openvino/bf16", "openvino/int8")
# Untimed inferences after compiling: on this project's 2-vCPU machines the first ten or so ran twice as
# slow as the rest (measured: 98.8 ms against 51 ms median for yolov8n bf16 at 640 px).
WARMUP_RUNS = 20


def check_engine(engine: str) -> str:
    if engine not in ENGINES:
        raise ValueError(f"latency is measured on {', '.join(ENGINES)}, not {engine!r}")
    return engine


def deployment_onnx(model: nn.Module, imgsz: int) -> bytes:
    """The ONNX graph the export stage would write for `model`: BatchNorm fused, Detect in export mode."""
    copy = deepcopy(model).float().cpu().eval()
    copy.fuse(verbose=False)
    head = copy.model[-1]
    head.export, head.format = True, "onnx"
    example = torch.zeros(1, 3, imgsz, imgsz)
    copy(example)  # Detect caches its anchors on the first call; tracing then sees constants
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(copy, example, buffer, dynamo=False, opset_version=17, input_names=["images"])
    return buffer.getvalue()


def module_of(node_name: str) -> str | None:
    """The torch Conv2d a node of the exported graph belongs to: the convolution itself, or the
    activation after it where the runtime runs that apart (OpenVINO's INT8 runs SiLU and the next
    quantization as their own node).

    Exported scopes nest module names, each relative to its parent (`/model.22/cv2.0/cv2.0.0/conv/Conv`
    is `model.22.cv2.0.0.conv`); OpenVINO keeps them in its executed node names.
    """
    scope = r"/((?:[A-Za-z][A-Za-z0-9.]*/)*?[A-Za-z][A-Za-z0-9.]*)"  # module names; not a reorder's
    match = re.fullmatch(scope + r"/Conv(?:/WithoutBiases)?", node_name)
    suffix = ""
    if not match:
        match = re.fullmatch(scope + r"/act/(?:Mul|Sigmoid)(?:/fq_output_0)?", node_name)
        suffix = ".conv"
    if not match:
        return None
    path: list[str] = []
    for part in match.group(1).split("/"):
        if path and part.startswith(path[-1] + "."):
            path[-1] = part
        else:
            path.append(part)
    return ".".join(path) + suffix


class CompiledEngine:
    """One graph compiled as `engine` runs it (OpenVINO CPU, LATENCY hint, one stream), with a profiling
    copy for the per-layer counters."""

    def __init__(
        self, onnx: bytes, engine: str, imgsz: int, threads: int | None, calibration: Sequence[np.ndarray]
    ):
        import openvino as ov

        core = ov.Core()
        model = core.read_model(onnx)
        precision = check_engine(engine).split("/")[1]
        if precision == "int8":
            model = _quantized(model, calibration)
        # The hint the OpenVINO target builds this precision with (INT8: its float parts in bf16 where the
        # CPU has bf16 units), so the time is the engine's.
        hint = int8_float_hint() if precision == "int8" else HINTS[precision]
        config: dict = {
            "INFERENCE_PRECISION_HINT": hint,
            "PERFORMANCE_HINT": "LATENCY",
            "NUM_STREAMS": 1,
        }
        if threads:
            config["INFERENCE_NUM_THREADS"] = threads
        self.image = calibration[0] if calibration else np.zeros((1, 3, imgsz, imgsz), np.float32)
        self.request = core.compile_model(model, "CPU", config).create_infer_request()
        self.profiled = core.compile_model(model, "CPU", config | {"PERF_COUNT": True}).create_infer_request()
        for _ in range(WARMUP_RUNS):
            self.request.infer({0: self.image})
        self.profiled.infer({0: self.image})

    def latencies(self, runs: int) -> list[float]:
        """`runs` timed synchronous inferences (ms)."""
        times = []
        for _ in range(runs):
            started = time.perf_counter()
            self.request.infer({0: self.image})
            times.append((time.perf_counter() - started) * 1e3)
        return times

    def conv_times(self, runs: int) -> dict[str, float]:
        """Each convolution's median time (ms) over `runs` profiled inferences, its activation's included
        where that runs apart, by torch module name."""
        per_node: dict[str, list[float]] = {}
        for _ in range(runs):
            self.profiled.infer({0: self.image})
            this_run: dict[str, float] = {}
            for info in self.profiled.get_profiling_info():
                name = module_of(info.node_name)
                executed = info.status == info.Status.EXECUTED
                if name is not None and executed:
                    this_run[name] = this_run.get(name, 0.0) + info.real_time.total_seconds() * 1e3
            for name, ms in this_run.items():
                per_node.setdefault(name, []).append(ms)
        return {n: float(np.median(v)) for n, v in per_node.items()}


def _quantized(model, calibration: Sequence[np.ndarray]):
    """INT8 with the OpenVINO target's default NNCF options, Detect's post-processing in float."""
    import nncf

    nncf.set_log_level(logging.ERROR)
    float_ops = head_postprocess_nodes(op.get_friendly_name() for op in model.get_ordered_ops())
    return nncf.quantize(
        model,
        nncf.Dataset(list(calibration)),
        **quantize_options(OpenVinoOptions(), float_ops, len(calibration)),
    )


def stages(model: nn.Module, imgsz: int) -> dict[str, str]:
    """Each Conv2d's stage of the network, by module name: 'backbone/8' (part/output stride), 'neck/16',
    'head/8'. The backbone is every layer before the first upsampling; Detect's branches take the
    stride of the feature map they read."""
    strides: dict[int, int] = {}

    def hook(index: int):
        def record(_module, _args, out):
            if isinstance(out, torch.Tensor):
                strides[index] = imgsz // out.shape[-1]

        return record

    layers = list(model.model)
    _forward_with(model, imgsz, [layer.register_forward_hook(hook(i)) for i, layer in enumerate(layers[:-1])])
    first_upsample = next(
        (i for i, layer in enumerate(layers) if isinstance(layer, nn.Upsample)), len(layers)
    )
    head = layers[-1]
    found = {}
    for name, module in model.named_modules():
        if not isinstance(module, nn.Conv2d):
            continue
        index = int(name.split(".")[1])
        if index == len(layers) - 1:
            branch = re.match(rf"model\.{index}\.cv[23]\.(\d+)\.", name)
            level = int(branch.group(1)) if branch else 0
            found[name] = f"head/{strides.get(head.f[level], 0)}"
        else:
            part = "backbone" if index < first_upsample else "neck"
            found[name] = f"{part}/{strides.get(index, 0)}"
    return found


def macs_by_conv(model: nn.Module, imgsz: int) -> dict[str, float]:
    """Each Conv2d's MACs at `imgsz`, by module name."""
    macs: dict[str, float] = {}
    names = {m: n for n, m in model.named_modules()}

    def hook(conv: nn.Conv2d, _args, out):
        kh, kw = conv.kernel_size
        macs[names[conv]] = (
            kh * kw * conv.in_channels * out.shape[1] * out.shape[2] * out.shape[3] / conv.groups
        )

    _forward_with(
        model, imgsz, [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.Conv2d)]
    )
    return macs


def _forward_with(model: nn.Module, imgsz: int, handles: list) -> None:
    """One forward pass of a blank image through `model` with the hooks `handles` set, then removed."""
    try:
        with torch.no_grad():
            model(torch.zeros(1, 3, imgsz, imgsz, device=next(model.parameters()).device))
    finally:
        for handle in handles:
            handle.remove()


@dataclass
class LatencyCheck:
    """The unpruned and the pruned model timed in interleaved rounds, and where each spends its time."""

    engine: str
    imgsz: int
    threads: int | None
    p50_before: float
    p50_after: float
    stages: dict[str, tuple[float, float]]  # stage -> (ms before, ms after): convolutions only

    @property
    def ratio(self) -> float:
        return self.p50_after / self.p50_before

    def record(self) -> dict:
        return {
            "engine": self.engine,
            "imgsz": self.imgsz,
            "threads": self.threads,
            "p50_before_ms": round(self.p50_before, 3),
            "p50_after_ms": round(self.p50_after, 3),
            "measured": round(self.ratio, 4),
            "stages": {
                k: [round(b, 3), round(a, 3)] for k, (b, a) in sorted(self.stages.items(), key=stage_order)
            },
        }


def check_latency(
    before: nn.Module,
    after: nn.Module,
    calibration: Sequence[np.ndarray],
    *,
    engine: str,
    imgsz: int,
    threads: int | None,
    rounds: int = 5,
    runs: int = 20,
) -> LatencyCheck:
    """Both models compiled as `engine` runs them, timed and profiled in `rounds` interleaved rounds, so
    that a change in machine load hits both alike; per-stage convolution times are the rounds' medians."""
    compiled = [
        CompiledEngine(deployment_onnx(m, imgsz), engine, imgsz, threads, calibration)
        for m in (before, after)
    ]
    times: list[list[float]] = [[], []]
    profiles: list[list[dict[str, float]]] = [[], []]
    for _ in range(rounds):
        for k, engine_k in enumerate(compiled):
            times[k] += engine_k.latencies(runs)
            profiles[k].append(engine_k.conv_times(3))
    stage_times: dict[str, list[float]] = {}
    for k, model in enumerate((before, after)):
        for name, stage in stages(model, imgsz).items():
            ms = float(np.median([profile.get(name, 0.0) for profile in profiles[k]]))
            stage_times.setdefault(stage, [0.0, 0.0])[k] += ms
    return LatencyCheck(
        engine,
        imgsz,
        threads,
        float(np.median(times[0])),
        float(np.median(times[1])),
        {k: (v[0], v[1]) for k, v in stage_times.items()},
    )


def stage_order(item: tuple[str, object]) -> tuple[int, int]:
    """Sort key of a (stage, ...) pair: backbone, neck, head, each by stride."""
    part, stride = item[0].split("/")
    return ("backbone", "neck", "head").index(part), int(stride)
