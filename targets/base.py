"""The Target protocol and the registry of backends.

A Target turns an exported model into a device-specific engine directory (`build`) and loads that
directory into a Runner (`load`, the protocol in `core.runner`). Decoding, NMS, metrics and timing live
once in `benchmarks/`.

Like an Olive pass (a typed config next to its code, plus one manifest entry), a target declares its
facts on its class, and nothing outside `targets/` lists them again: its options model, whether it
builds from the ONNX, the modules its runtime imports, and the libraries whose versions decide what its
build writes. The registry below is its one entry; `register` adds a target defined elsewhere.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from pydantic import ValidationError

from core.errors import InputError
from core.runner import Runner
from core.validation import validation_error
from targets.options import TargetOptions

if TYPE_CHECKING:
    from core.artifacts import Artifact
    from core.calibration import CalibrationSet


@dataclass(frozen=True)
class BuildInputs:
    """What a build starts from: the ONNX every backend consumes, and the checkpoint torch runs."""

    onnx: Path | None
    checkpoint: Path | None = None
    imgsz: int | None = None  # the run's input size, for a target that builds from the checkpoint


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


OptionsT = TypeVar("OptionsT", bound=TargetOptions)


class Target(Protocol[OptionsT]):
    name: str
    precisions: tuple[str, ...]
    options_model: type[OptionsT]  # its `build[].options`, typed (docs/config.md lists each target's)
    from_onnx: bool  # builds from the exported ONNX; False: from the checkpoint (no export needed)
    runtime_modules: tuple[str, ...]  # what loading an engine imports (before the memory baseline)

    def libraries(self, precision: str, options: OptionsT) -> tuple[str, ...]:
        """The distributions whose versions decide what this build writes (the build's cache key)."""
        ...

    def available(self) -> tuple[bool, str]: ...

    def build(
        self,
        inputs: BuildInputs,
        precision: str,
        calibration: CalibrationSet | None,
        options: OptionsT,
        out_dir: Path,
    ) -> Artifact: ...

    def load(self, artifact: Artifact, options: RunOptions) -> Runner: ...


# name -> "module:Class"; imported when first asked for, so `edgepipe --help` imports no backend.
_REGISTRY: dict[str, str] = {
    "torch": "targets.pytorch:TorchTarget",
    "onnxruntime": "targets.onnxruntime:OnnxRuntimeTarget",
    "openvino": "targets.openvino:OpenVinoTarget",
    "tensorrt": "targets.tensorrt.target:TensorRtTarget",
}


def register(name: str, path: str) -> None:
    """Add a target defined outside this package: `path` is "module:Class", the class's `name` is `name`."""
    _REGISTRY[name] = path


def unregister(name: str) -> None:
    _REGISTRY.pop(name, None)


def target_names() -> list[str]:
    return list(_REGISTRY)


def get_target(name: str) -> Target[Any]:
    if name not in _REGISTRY:
        raise InputError(f"unknown target {name!r}; choose one of {', '.join(_REGISTRY)}")
    module_name, class_name = _REGISTRY[name].split(":")
    return getattr(importlib.import_module(module_name), class_name)()


def all_targets() -> list[Target[Any]]:
    return [get_target(name) for name in _REGISTRY]


def parse_options(target: Target[OptionsT], options: dict[str, Any]) -> OptionsT:
    """`options` validated into the target's model; an unknown or invalid key is an InputError."""
    try:
        return target.options_model.model_validate(options)
    except ValidationError as exc:
        raise validation_error(
            exc, what=f"{target.name} build options", model=target.options_model, one_line=True
        ) from None


def precision_libraries(target: Target[Any], precision: str, options: dict[str, Any]) -> tuple[str, ...]:
    """The libraries of a build at `precision` (with `auto`, of every precision it may choose)."""
    parsed = parse_options(target, options)
    precisions = target.precisions if precision == AUTO else (precision,)
    found = [library for p in precisions for library in target.libraries(p, parsed)]
    return tuple(dict.fromkeys(found))


def every_library() -> tuple[str, ...]:
    """Every registered target's libraries, at each of its precisions, with default options."""
    found = [library for target in all_targets() for library in precision_libraries(target, AUTO, {})]
    return tuple(dict.fromkeys(found))


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
