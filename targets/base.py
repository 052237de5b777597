"""The Target protocol and the registry of backends.

A Target turns an exported model into a device-specific engine directory (`build`) and loads that
directory into a Runner (`load`, the protocol in `core.runner`). Decoding, NMS, metrics and timing live
once in `benchmarks/`.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from core.errors import InputError
from core.runner import Runner

if TYPE_CHECKING:
    from core.artifacts import Artifact
    from core.calibration import CalibrationSet


@dataclass(frozen=True)
class BuildInputs:
    """What a build starts from: the ONNX every backend consumes, and the checkpoint torch runs."""

    onnx: Path | None
    checkpoint: Path | None = None


@dataclass(frozen=True)
class RunOptions:
    """How a Runner is loaded for measurement. `None` lets the backend choose.

    `performance_hint` and `infer_requests` are OpenVINO's, `cuda_graphs` TensorRT's; a backend
    ignores the options it has no use for.
    """

    threads: int | None = None
    streams: int = 1
    batch: int = 1
    device: str = "cpu"
    performance_hint: str | None = None
    infer_requests: int | None = None
    cuda_graphs: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


class Target(Protocol):
    name: str
    precisions: tuple[str, ...]

    def available(self) -> tuple[bool, str]: ...

    def build(
        self,
        inputs: BuildInputs,
        precision: str,
        calibration: CalibrationSet | None,
        options: dict[str, Any],
        out_dir: Path,
    ) -> Artifact: ...

    def load(self, artifact: Artifact, options: RunOptions) -> Runner: ...


# name -> "module:Class"; imported lazily so a missing backend library breaks only its own target.
_REGISTRY: dict[str, str] = {
    "torch": "targets.pytorch:TorchTarget",
    "onnxruntime": "targets.onnxruntime:OnnxRuntimeTarget",
    "openvino": "targets.openvino:OpenVinoTarget",
    "tensorrt": "targets.tensorrt.target:TensorRtTarget",
}


def target_names() -> list[str]:
    return list(_REGISTRY)


def get_target(name: str) -> Target:
    if name not in _REGISTRY:
        raise InputError(f"unknown target {name!r}; choose one of {', '.join(_REGISTRY)}")
    module_name, class_name = _REGISTRY[name].split(":")
    return getattr(importlib.import_module(module_name), class_name)()


def library_status(module: str, install: str) -> tuple[bool, str]:
    """A target's `available()`: (True, "<module> <version>") when it imports, else how to install it."""
    try:
        library = importlib.import_module(module)
    except ImportError:
        return False, f"{module} is not installed: {install}"
    return True, f"{module} {library.__version__}"


AUTO = "auto"  # the build measures each precision on the device and keeps the fastest accurate one


def check_precision(target: Target, precision: str) -> None:
    if precision == AUTO and len(target.precisions) > 1:
        return
    if precision not in target.precisions:
        raise InputError(
            f"target {target.name!r} does not support precision {precision!r}; "
            f"it supports {', '.join(target.precisions)} (or auto)"
        )
